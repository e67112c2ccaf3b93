"""Two real `notifq api` processes and a WebSocket client for the in-app tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from notifq.settings import Settings, child_env
from tests.live import _free_port, wait_until_serving


@dataclass
class ApiProcesses:
    urls: list[str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ws(self, i: int) -> str:
        return self.urls[i].replace("http://", "ws://") + "/ws"


@pytest.fixture(scope="session")
def two_apis(base_settings: Settings) -> Iterator[ApiProcesses]:
    """Two API processes on their own ports, sharing the test PostgreSQL and Redis (like two hosts)."""
    procs, urls = [], []
    for _ in range(2):
        port = _free_port()
        env = child_env(base_settings.with_(port=port, host="127.0.0.1", log_format="text"), isolated=True)
        procs.append(subprocess.Popen([sys.executable, "-m", "notifq", "api"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url, proc in zip(urls, procs, strict=True):
            wait_until_serving(f"{url}/ready", lambda p=proc: p.poll() is None, within=60)
        yield ApiProcesses(urls, procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


class Inbox:
    """A subscriber's WebSocket: AUTH, then frames collected in arrival order."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self.arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.conn:
                frame = json.loads(raw)
                self.frames.append(frame)
                self.arrived.set()
                if frame["type"] == "READY":
                    self.ready.set()

    @property
    def notifications(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "NOTIFICATION"]

    async def wait_for(self, count: int, within: float = 20) -> list[dict[str, Any]]:
        async with asyncio.timeout(within):
            while len(self.notifications) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.notifications

    async def send(self, **frame: Any) -> None:
        await self.conn.send(json.dumps(frame))

    async def close(self) -> None:
        await self.conn.close()
        await self._reader


@contextlib.asynccontextmanager
async def inbox(url: str, token: str, *, wait_ready: bool = True) -> AsyncIterator[Inbox]:
    async with websockets.connect(url, open_timeout=10) as conn:
        await conn.send(json.dumps({"type": "AUTH", "token": token}))
        box = Inbox(conn)
        if wait_ready:
            await asyncio.wait_for(box.ready.wait(), 20)
        try:
            yield box
        finally:
            await box.close()


async def subscriber_token(client: httpx.AsyncClient, auth: dict[str, str], sid: str, **profile: Any) -> str:
    r = await client.put(f"/subscribers/{sid}", json=profile, headers=auth)
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"/subscribers/{sid}/token", headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])
