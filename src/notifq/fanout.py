"""Live fan-out in one API process: the subscribers' Redis channels to their open WebSockets.

One Redis pub/sub connection per process, subscribed to the channel of each subscriber
with at least one socket here (and unsubscribed when the last one closes), so a process
receives only what its own sockets need, whichever worker published it and whichever API
process accepted the send. Frames are forwarded as published (no parsing).

When Redis goes away the sockets stay open: the hub reconnects with backoff, subscribes
again to every channel it had, and asks each socket to replay what it may have missed
(from PostgreSQL, as on connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from notifq.keys import RedisKeys

log = logging.getLogger("notifq.inbox")
RECONNECT_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)
ERASED_FRAME = b'{"type":"ERASED"}'  # published on the live channel by an erasure: sockets close (4403)


class Socket(Protocol):
    subscriber_id: str

    def deliver(self, frame: bytes) -> None:
        """Queue a frame for the client; never blocks."""

    def close(self, code: int, reason: str) -> None:
        """Close the socket (from the hub: the subscriber was erased)."""

    def resync(self) -> None:
        """The fan-out was interrupted: replay what may have been missed."""


class Hub:
    def __init__(self, redis_url: str, keys: RedisKeys) -> None:
        self.redis: Redis = Redis.from_url(redis_url, socket_connect_timeout=3)
        self.keys = keys
        self._prefix = keys.inbox_live("").encode()
        self.sockets: dict[str, set[Socket]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.reconnects = 0

    @property
    def control(self) -> str:
        return self.keys.inbox_live("\x00hub")  # never a subscriber id: keeps the connection subscribed

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifq-fanout")

    async def add(self, socket: Socket) -> None:
        """Register a socket; its subscriber's channel is subscribed before this returns (when Redis answers)."""
        group = self.sockets.setdefault(socket.subscriber_id, set())
        group.add(socket)
        if len(group) == 1 and self._pubsub is not None and self._ready.is_set():
            with contextlib.suppress(Exception):  # if Redis is away, the reconnect subscribes it
                await self._pubsub.subscribe(self.keys.inbox_live(socket.subscriber_id))

    async def remove(self, socket: Socket) -> None:
        group = self.sockets.get(socket.subscriber_id)
        if group is None:
            return
        group.discard(socket)
        if not group:
            del self.sockets[socket.subscriber_id]
            if self._pubsub is not None and self._ready.is_set():
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(self.keys.inbox_live(socket.subscriber_id))

    async def _connect(self) -> PubSub:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.control, *(self.keys.inbox_live(s) for s in list(self.sockets)))
        return pubsub

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                self._pubsub = await self._connect()
                self._ready.set()
                if attempt:
                    self.reconnects += 1
                    log.info("fan-out reconnected to Redis; %d subscribers resync", len(self.sockets))
                    for group in list(self.sockets.values()):
                        for socket in list(group):
                            socket.resync()
                attempt = 0
                await self._listen(self._pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._ready.clear()
                delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                attempt += 1
                if attempt == 1:
                    log.warning("fan-out lost Redis (%s); sockets stay open, reconnecting", type(exc).__name__)
                await self._drop()
                await asyncio.sleep(delay)

    async def _listen(self, pubsub: PubSub) -> None:
        prefix_len = len(self._prefix)
        while True:
            message = await pubsub.get_message(timeout=5.0)
            if message is None or message.get("type") != "message":
                continue
            subscriber_id = message["channel"][prefix_len:].decode()
            frame: bytes = message["data"]
            group = self.sockets.get(subscriber_id)
            if not group:
                continue
            if frame == ERASED_FRAME:
                for socket in list(group):
                    socket.close(4403, "subscriber erased")
                continue
            for socket in group:
                socket.deliver(frame)

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def wait_ready(self, within: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), within)
        return self._ready.is_set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop()
        await self.redis.aclose()
