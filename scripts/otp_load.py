#!/usr/bin/env python3
"""The bench's transactional load: one `POST /notifications` every interval, until SIGTERM.

A process of its own with a bare HTTP/1.1 client (keep-alive sockets, no framework),
because the load generator shares the two cores with the system under test: httpx in the
bench process cost ~1.3 ms of CPU per request and competed for the GIL with the bench's
samplers, so the client itself started sends seconds late (firing lag p50 3.8 s in run
20261122T111510Z) and the measured latency was partly its own. Latency is measured from
the moment a send's request is started; how late that was against the fixed schedule is
recorded too (`fire_lag_ms`), so a lagging client shows in the report instead of hiding.

Writes {"sends": [[due, started, answered, id | null, status]], "fire_lag_ms": [...]} to --out.

`--inapp PREFIX:N` sends in-app notifications instead (the in-app bench, scripts/bench_inapp.py):
`{"channel":"inapp","subscriber":"<PREFIX><i % N + 1>","category":"single",...}`, so each goes
to one of N connected subscribers, whose client records when it arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

IDLE_DROP_SECONDS = 2.0  # uvicorn closes keep-alive sockets idle for 5 s; never reuse one near that


class Client:
    """Keep-alive connections, most recently used first; a send never waits for a free one."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST /notifications HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self.idle:
            used, reader, writer = self.idle.pop()
            if now - used < IDLE_DROP_SECONDS:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        try:
            writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()  # a half-read socket is never reused
            raise
        self.idle.append((time.monotonic(), reader, writer))
        return status, payload

    def close(self) -> None:
        for _, _, writer in self.idle:
            writer.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    client = Client(args.host, args.port, args.token)
    sends: list[list[object]] = []
    lag_ms: list[float] = []

    prefix, _, count = (args.inapp or "").partition(":")

    def body_of(i: int) -> bytes:
        if args.inapp:
            return json.dumps({"channel": "inapp", "subscriber": f"{prefix}{i % int(count) + 1}",
                               "category": "single", "body": f"single {i}"}).encode()  # fmt: skip
        return json.dumps({"channel": "email", "to": f"otp{i}@example.com", "subject": "Your code",
                           "body": f"{i:06d}"}).encode()  # fmt: skip

    async def one(i: int, due: float) -> None:
        body = body_of(i)
        started = time.time()
        try:
            status, payload = await client.post(body)
            ident = json.loads(payload).get("id") if status == 202 else None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status, ident = 0, None
        sends.append([due, started, time.time(), ident, status])

    tasks: set[asyncio.Task[None]] = set()
    origin_wall, origin = time.time(), time.monotonic()
    i = 0
    while not stop.is_set():
        due = origin + i * args.interval
        now = time.monotonic()
        if due > now:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), due - now)
            continue
        lag_ms.append((now - due) * 1000)
        task = asyncio.create_task(one(i, origin_wall + (due - origin)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    client.close()
    return {"sends": sends, "fire_lag_ms": lag_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between sends")
    parser.add_argument("--out", required=True, help="where to write the results (JSON)")
    parser.add_argument("--inapp", metavar="PREFIX:N", help="in-app sends to subscribers PREFIX1 … PREFIXN")
    args = parser.parse_args()
    import uvloop  # a notifq dependency on Linux

    Path(args.out).write_text(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
