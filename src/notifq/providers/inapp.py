"""The in-app channel's delivery: the inbox row is already in PostgreSQL; this makes it live.

"Sending" an in-app notification writes its frame to the subscriber's Redis replay buffer
(a hash, message id -> frame, kept NOTIFQ_INAPP_BUFFER_TTL after the last write) and
publishes it on the subscriber's channel, where every API process holding one of the
subscriber's WebSockets forwards it as is. The provider succeeds once Redis has both: the
message is then `sent`, and `deliveredAt` comes with the client's ACK (docs/inapp.md).

The sends of a chunk arrive in the same event-loop turn (the worker starts them together),
so they are gathered and written in one pipeline: three commands per message, one round
trip per chunk, never one per message.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from redis.asyncio import Redis

from notifq.errors import TransientError
from notifq.keys import RedisKeys
from notifq.providers.base import OutgoingMessage, SendResult

NAME = "inapp"


def frame(message: OutgoingMessage) -> bytes:
    """The NOTIFICATION frame a client receives (docs/inapp.md): `id` is the notification's id."""
    created = message.created_at or datetime.now(UTC)
    return json.dumps(
        {"type": "NOTIFICATION", "id": str(message.message_id), "category": message.category,
         "subject": message.subject or None, "body": message.body, "data": message.data,
         "createdAt": created.astimezone(UTC).isoformat().replace("+00:00", "Z")},
        separators=(",", ":"), ensure_ascii=False,
    ).encode()  # fmt: skip


class InAppProvider:
    name = NAME

    def __init__(self, redis_url: str, keys: RedisKeys, buffer_ttl_seconds: float) -> None:
        self.redis: Redis = Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
        self.keys = keys
        self.ttl_ms = int(buffer_ttl_seconds * 1000)
        self._pending: list[tuple[OutgoingMessage, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def send(self, message: OutgoingMessage) -> SendResult:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((message, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done
        return SendResult(NAME)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the rest of the chunk's sends join this pipeline
        batch, self._pending, self._flusher = self._pending, [], None
        pipe = self.redis.pipeline(transaction=False)
        for message, _ in batch:
            payload = frame(message)
            buffer = self.keys.inbox_buffer(message.recipient)
            pipe.hset(buffer, str(message.message_id), payload)  # type: ignore[arg-type]
            pipe.pexpire(buffer, self.ttl_ms)
            pipe.publish(self.keys.inbox_live(message.recipient), payload)
        try:
            await pipe.execute()
        except Exception as exc:  # Redis away: a transient failure, retried on the usual schedule
            error = TransientError(f"in-app fan-out failed: {type(exc).__name__}: {exc}")
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def aclose(self) -> None:
        await self.redis.aclose()
