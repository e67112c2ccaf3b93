#!/usr/bin/env python3
"""The in-app bench's subscribers: many WebSocket clients in one process, driven by the bench over stdin/stdout.

A process of its own (the bench may start two), with the `websockets` library's asyncio
client as an application would use it: one connection per subscriber, AUTH, wait for
READY, then every NOTIFICATION frame is parsed (json) and ACKed at once, as docs/inapp.md
asks of a client. Clients offer permessage-deflate (the library's default, as browsers do)
and send no pings of their own (browsers don't); they answer the server's.

Commands, one JSON object per line on stdin; one JSON answer per line on stdout:
- `{"cmd":"connect"}`: open every connection (`--parallel` handshakes at a time), AUTH
  each, wait for its READY; answers how many, how long, and this process's RSS.
- `{"cmd":"wait","category":c,"count":n,"within":s}`: answer once n NOTIFICATION frames of
  category c arrived here (or s seconds passed), with the first and last arrival (epoch s).
- `{"cmd":"stats"}`: per category count/first/last, ACKs sent, frames per type, closes,
  and the arrival time of every frame of category `single` (id -> epoch s); then forgets them.
- `{"cmd":"close"}`: close every connection (code 1000) and exit.

Each connection's frames are read by its own task, the library's way; the tasks are what
a real client process pays too (watch the RSS per connection in the answers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import websockets
from websockets.asyncio.client import ClientConnection, connect

MIB = 1024 * 1024
ACK = '{"type":"ACK","id":"%s"}'
SINGLE = "single"


class Clients:
    def __init__(self, url: str, tokens: list[str], parallel: int) -> None:
        self.url = url
        self.tokens = tokens
        self.parallel = parallel
        self.conns: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.categories: dict[str, list[float]] = {}  # category -> [count, first, last]
        self.singles: dict[str, float] = {}
        self.types: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.acks = 0
        self.replayed = 0
        self.failed: Counter[str] = Counter()
        self.arrived = asyncio.Event()

    async def _open(self, token: str, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                conn = await connect(self.url, open_timeout=60, ping_interval=None, proxy=None,
                                     close_timeout=5)  # fmt: skip
                await conn.send(json.dumps({"type": "AUTH", "token": token}))
                while True:  # replayed frames (ACKed like live ones), then READY
                    raw = await asyncio.wait_for(conn.recv(), 60)
                    frame = json.loads(raw)
                    if frame["type"] == "READY":
                        self.replayed += frame["replayed"]
                        break
                    if frame["type"] == "NOTIFICATION":
                        await conn.send(ACK % frame["id"])
                        self.acks += 1
            except Exception as exc:
                self.failed[type(exc).__name__] += 1
                return
        self.conns.append(conn)
        self.readers.append(asyncio.create_task(self._read(conn)))

    async def _read(self, conn: ClientConnection) -> None:
        try:
            async for raw in conn:
                now = time.time()
                frame = json.loads(raw)
                kind = frame["type"]
                self.types[kind] += 1
                if kind != "NOTIFICATION":
                    continue
                await conn.send(ACK % frame["id"])
                self.acks += 1
                category = frame["category"] or ""
                stat = self.categories.get(category)
                if stat is None:
                    self.categories[category] = [1, now, now]
                else:
                    stat[0] += 1
                    stat[2] = now
                if category == SINGLE:
                    self.singles[frame["id"]] = now
                self.arrived.set()
        except websockets.ConnectionClosed:
            pass
        rcvd = conn.close_code
        self.closes[str(rcvd)] += 1

    async def connect_all(self) -> dict[str, Any]:
        started = time.perf_counter()
        rss_before = psutil.Process().memory_info().rss
        gate = asyncio.Semaphore(self.parallel)
        await asyncio.gather(*(self._open(t, gate) for t in self.tokens))
        seconds = time.perf_counter() - started
        rss = psutil.Process().memory_info().rss
        return {"connected": len(self.conns), "failed": dict(self.failed), "seconds": round(seconds, 3),
                "replayed": self.replayed, "rss_mb": round(rss / MIB, 1),
                "rss_per_conn_kb": round((rss - rss_before) / 1024 / max(1, len(self.conns)), 1)}  # fmt: skip

    async def wait(self, category: str, count: int, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            stat = self.categories.get(category, [0, 0.0, 0.0])
            left = deadline - time.monotonic()
            if stat[0] >= count or left <= 0:
                return {"count": int(stat[0]), "first": stat[1], "last": stat[2]}
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.5))

    def stats(self) -> dict[str, Any]:
        out = {"categories": {k: {"count": int(v[0]), "first": v[1], "last": v[2]} for k, v in self.categories.items()},
               "acks": self.acks, "types": dict(self.types), "closes": dict(self.closes), "singles": self.singles,
               "open": sum(1 for c in self.conns if c.close_code is None),
               "rss_mb": round(psutil.Process().memory_info().rss / MIB, 1)}  # fmt: skip
        self.categories, self.singles = {}, {}
        return out

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.conns), return_exceptions=True)
        await asyncio.gather(*self.readers, return_exceptions=True)


async def serve(args: argparse.Namespace, tokens: list[str]) -> None:
    if args.slice:
        part, parts = (int(x) for x in args.slice.split("/"))
        tokens = tokens[part::parts]
    clients = Clients(args.url, tokens, args.parallel)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(doc: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "connect":
            answer(await clients.connect_all())
        elif cmd == "wait":
            answer(await clients.wait(command["category"], command["count"], command["within"]))
        elif cmd == "stats":
            answer(clients.stats())
        elif cmd == "close":
            await clients.close()
            answer({"closed": len(clients.conns)})
            return
    await clients.close()  # stdin closed: the bench is gone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:<port>/ws")
    parser.add_argument("--tokens", required=True, help="a file of subscriber tokens, one per line")
    parser.add_argument("--slice", help="K/N: this process takes every Nth token from the Kth")
    parser.add_argument("--parallel", type=int, default=200, help="handshakes in flight at once")
    args = parser.parse_args()
    import uvloop  # a notifq dependency on Linux

    uvloop.run(serve(args, Path(args.tokens).read_text().split()))


if __name__ == "__main__":
    main()
