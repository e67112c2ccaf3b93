"""A webhook receiver for tests and the benchmark: a real HTTP server on 127.0.0.1 that checks each
signature the way a user's code would (its own HMAC, not notifq's), and keeps a dedup log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def user_verify(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """docs/webhooks.md's recipe, written out as a receiver would (not notifq.webhook_http.verify)."""
    fields = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if abs(time.time() - int(fields.get("t", "0"))) > tolerance:
        return False
    mac = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields.get("v1", ""))


@dataclass
class Receiver:
    secret: str = ""
    status: int = 200  # what it answers; 500 to simulate an outage
    delay: float = 0.0  # seconds before answering
    posts: int = 0
    bad_signatures: int = 0
    seen: Counter[str] = field(default_factory=Counter)  # event id -> times received (the dedup log)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    bodies: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    keep_bodies: bool = False
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.posts += 1
        if self.keep_bodies:
            self.bodies.append((dict(request.headers), body))
        if self.status >= 300:
            return web.Response(status=self.status, text="not now")
        if not self.secret or not user_verify(self.secret, request.headers.get("Notifq-Signature", ""), body):
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        payload = json.loads(body)
        for event in payload.get("events", [payload]):
            self.seen[event["id"]] += 1
            self.events[event["id"]] = event
        return web.Response(status=204)

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)

        async def route(request: web.Request) -> web.Response:
            # Looked up per request, so a test (or the benchmark) may wrap `handle` after start().
            return await self.handle(request)

        app.router.add_post("/hook", route)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if e["type"] == type_]

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seen.values())
