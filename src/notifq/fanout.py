"""Live fan-out in one API process: the subscribers' Redis channels to their open WebSockets.

One Redis pub/sub connection per process, subscribed to the channel of each subscriber
with at least one socket here (and unsubscribed when the last one closes), so a process
receives only what its own sockets need, whichever worker published it and whichever API
process accepted the send. Frames are forwarded as published (no parsing).

The connection is read raw: each read (up to 64 KiB, hundreds of messages during a
campaign) is fed to one hiredis reader and every message in it is handed to its sockets in
the same loop turn. Measured (2026-12-01, 50,000 messages on 1,000 channels): redis-py's
`PubSub.get_message` cost ~8 µs of CPU per message (a retry wrapper, a timeout context and a
dict per call), this ~0.4 µs. Subscriptions are batched the same way: the channels of every
socket that connects in one loop turn go out as one SUBSCRIBE, and `add` returns once Redis
has confirmed the socket's channel (a replay read after that misses nothing published since).

When Redis goes away the sockets stay open: the hub reconnects with backoff, subscribes
again to every channel it had, and asks each socket to replay what it may have missed
(from PostgreSQL, as on connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from notifq.keys import RedisKeys
from notifq.redis_connect import redis_from_url

log = logging.getLogger("notifq.inbox")
RECONNECT_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)
ERASED_FRAME = b'{"type":"ERASED"}'  # published on the live channel by an erasure: sockets close (4403)
READ_SIZE = 1 << 16
SUBSCRIBE_WAIT_SECONDS = 5.0  # past it, `add` returns anyway (the socket then relies on its replay)
SUBSCRIBE_BATCH = 5000  # channels per SUBSCRIBE command (a reconnect subscribes every channel again)


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
        self.redis: Redis = redis_from_url(redis_url, socket_connect_timeout=3)
        self.keys = keys
        self._prefix = keys.inbox_live("").encode()
        self.sockets: dict[str, set[Socket]] = {}
        self._groups: dict[bytes, set[Socket]] = {}  # the same sets, by channel name as Redis sends it
        self._conn: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}
        self._changed: set[bytes] = set()  # channels to (un)subscribe at the next flush
        self._flush_scheduled = False
        self.reconnects = 0

    @property
    def control(self) -> str:
        return self.keys.inbox_live("\x00hub")  # never a subscriber id: keeps the connection subscribed

    def _channel(self, subscriber_id: str) -> bytes:
        return self._prefix + subscriber_id.encode()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifq-fanout")

    async def add(self, socket: Socket) -> None:
        """Register a socket; returns once its subscriber's channel is subscribed (when Redis answers)."""
        group = self.sockets.get(socket.subscriber_id)
        if group is None:
            group = self.sockets[socket.subscriber_id] = set()
            self._groups[self._channel(socket.subscriber_id)] = group
        group.add(socket)
        if self._conn is None or not self._ready.is_set():
            return  # the reconnect subscribes it
        channel = self._channel(socket.subscriber_id)
        first = len(group) == 1
        if not first and channel not in self._confirmations:
            return  # subscribed already
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(confirmed)
        if first:
            self._change(channel)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_WAIT_SECONDS)

    async def remove(self, socket: Socket) -> None:
        group = self.sockets.get(socket.subscriber_id)
        if group is None:
            return
        group.discard(socket)
        if not group:
            del self.sockets[socket.subscriber_id]
            channel = self._channel(socket.subscriber_id)
            del self._groups[channel]
            if self._conn is not None and self._ready.is_set():
                self._change(channel)

    def _change(self, channel: bytes) -> None:
        self._changed.add(channel)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One SUBSCRIBE and one UNSUBSCRIBE for every channel that changed in this loop turn."""
        self._flush_scheduled = False
        changed, self._changed = self._changed, set()
        conn = self._conn
        if conn is None or not self._ready.is_set():
            return  # the reconnect subscribes whatever has sockets then
        subscribe = [c for c in changed if c in self._groups]
        unsubscribe = [c for c in changed if c not in self._groups]
        for c in unsubscribe:  # nobody waits for these any more
            self._confirm(c)
        try:
            self._send(conn, "UNSUBSCRIBE", unsubscribe)
            self._send(conn, "SUBSCRIBE", subscribe)
        except Exception:  # the reader sees the broken connection and reconnects
            log.debug("fan-out (un)subscribe not sent", exc_info=True)

    @staticmethod
    def _send(conn: AbstractConnection, command: str, channels: list[bytes]) -> None:
        writer = conn._writer
        assert writer is not None
        for i in range(0, len(channels), SUBSCRIBE_BATCH):
            writer.writelines(conn.pack_command(command, *channels[i : i + SUBSCRIBE_BATCH]))

    def _confirm(self, channel: bytes) -> None:
        for waiter in self._confirmations.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _confirm_all(self) -> None:
        for channel in list(self._confirmations):
            self._confirm(channel)

    async def _connect(self) -> AbstractConnection:
        conn: AbstractConnection = self.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        await conn.connect()  # type: ignore[no-untyped-call]
        self._send(conn, "SUBSCRIBE", [self.control.encode(), *self._groups])
        return conn

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                self._conn = await self._connect()
                self._ready.set()
                if attempt:
                    self.reconnects += 1
                    log.info("fan-out reconnected to Redis; %d subscribers resync", len(self.sockets))
                    for group in list(self.sockets.values()):
                        for socket in list(group):
                            socket.resync()
                attempt = 0
                await self._listen(self._conn)
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

    async def _listen(self, conn: AbstractConnection) -> None:
        stream = conn._reader
        assert stream is not None
        reader = hiredis.Reader()
        groups = self._groups
        while True:
            data = await stream.read(READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the fan-out connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not isinstance(reply, list) or len(reply) < 3:
                    continue  # a pong or an error: nothing to forward
                kind = reply[0]
                if kind == b"message":
                    group = groups.get(reply[1])
                    if not group:
                        continue
                    frame: bytes = reply[2]
                    if frame == ERASED_FRAME:
                        for socket in list(group):
                            socket.close(4403, "subscriber erased")
                        continue
                    for socket in group:
                        socket.deliver(frame)
                elif kind == b"subscribe":
                    self._confirm(reply[1])

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._confirm_all()  # nobody waits on a dead connection; the reconnect resyncs them
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

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
