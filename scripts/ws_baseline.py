#!/usr/bin/env python3
"""The in-app bench's baseline: a bare Starlette WebSocket broadcast endpoint under uvicorn, one process.

What the same machine gives with nothing of notifq's: no JWT, no PostgreSQL, no Redis.
`/ws` takes the same protocol's outline (a first frame, then READY, then frames the client
ACKs) so the same client process (scripts/inapp_clients.py) measures both: the AUTH frame
is accepted unread, and ACKs are parsed (json) and counted, nothing more.
`POST /broadcast?category=c` sends one NOTIFICATION frame to every open socket, in a plain
`await ws.send_text(...)` loop, and answers how long the loop took. `GET /health` answers
the number of open sockets and ACKs received.

uvicorn runs with the same WebSocket options as `notifq api` (notifq.cli.WS_OPTIONS), so
the two differ by notifq's code only.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from notifq.cli import WS_OPTIONS

sockets: set[WebSocket] = set()
acks = 0
next_id = 1


async def ws_endpoint(ws: WebSocket) -> None:
    global acks
    await ws.accept()
    try:
        await ws.receive_text()  # AUTH, not checked
        await ws.send_text('{"type":"READY","replayed":0}')
        sockets.add(ws)
        while True:
            frame = json.loads(await ws.receive_text())
            if frame.get("type") == "ACK":
                acks += 1
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sockets.discard(ws)


async def broadcast(request: Request) -> JSONResponse:
    global next_id
    category = request.query_params.get("category", "baseline")
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    started = time.perf_counter()
    sent = 0
    for ws in list(sockets):
        frame = json.dumps({"type": "NOTIFICATION", "id": str(next_id), "category": category, "subject": "Benchmark",
                            "body": "Hello from make bench.", "data": None, "createdAt": created},
                           separators=(",", ":"))  # fmt: skip
        next_id += 1
        try:
            await ws.send_text(frame)
            sent += 1
        except (WebSocketDisconnect, RuntimeError):
            sockets.discard(ws)
    return JSONResponse({"sent": sent, "seconds": time.perf_counter() - started})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"sockets": len(sockets), "acks": acks})


app = Starlette(routes=[WebSocketRoute("/ws", ws_endpoint), Route("/broadcast", broadcast, methods=["POST"]),
                        Route("/health", health)])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", log_level="warning", **WS_OPTIONS)


if __name__ == "__main__":
    main()
