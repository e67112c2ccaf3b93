"""The subscriber service: profiles, preferences, inbox tokens and erasure (GDPR art. 17)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.auth import IssuedToken, issue_subscriber_token
from notifq.db import subscribers_repo
from notifq.db.engine import retry_deadlocks
from notifq.db.subscribers_repo import Profile, SubscriberRow
from notifq.errors import NotFound
from notifq.fanout import ERASED_FRAME
from notifq.keys import RedisKeys
from notifq.settings import Settings

log = logging.getLogger("notifq.subscribers")


def not_found(subscriber_id: str) -> NotFound:
    return NotFound(f"subscriber {subscriber_id} not found", {"id": subscriber_id})


class SubscriberService:
    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, redis: Redis, settings: Settings) -> None:
        self.engine = engine
        self.reads = reads
        self.redis = redis
        self.keys = RedisKeys.from_settings(settings)
        self.settings = settings

    @property
    def erased_mark_seconds(self) -> float:
        """How long an erasure keeps in-flight in-app sends of that id from writing: as long as a worker
        may hold a claimed message (its lease), and the provider timeout on top."""
        return self.settings.lease_seconds + self.settings.provider_timeout

    async def put(self, subscriber_id: str, profile: Profile) -> tuple[SubscriberRow, bool]:
        async with self.engine.begin() as conn:
            row, created = await subscribers_repo.upsert(conn, subscriber_id, profile)
        if created:  # an id erased a moment ago, created again: its live frames flow at once
            with contextlib.suppress(Exception):
                await self.redis.delete(self.keys.inbox_erased(subscriber_id))
        return row, created

    async def get(self, subscriber_id: str) -> SubscriberRow:
        async with self.reads.connect() as conn:
            row = await subscribers_repo.get(conn, subscriber_id)
        if row is None:
            raise not_found(subscriber_id)
        return row

    async def list_page(self, cursor: str | None, limit: int) -> tuple[list[SubscriberRow], str | None]:
        async with self.reads.connect() as conn:
            rows = await subscribers_repo.list_page(conn, after=cursor, limit=limit + 1)
        return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)

    async def set_preferences(self, subscriber_id: str, preferences: dict[str, Any]) -> dict[str, Any]:
        async with self.engine.begin() as conn:
            if not await subscribers_repo.set_preferences(conn, subscriber_id, preferences):
                raise not_found(subscriber_id)
        return preferences

    async def issue_token(self, subscriber_id: str) -> IssuedToken:
        async with self.reads.connect() as conn:
            key = await subscribers_repo.token_key(conn, subscriber_id)
        if key is None:
            raise not_found(subscriber_id)
        s = self.settings
        return issue_subscriber_token(s.jwt_secret, s.jwt_issuer, subscriber_id, s.subscriber_token_ttl_seconds, key)

    async def erase(self, subscriber_id: str) -> int:
        """Erase the profile, redact its messages; then drop its replay buffer and close its live sockets.

        PostgreSQL first and in one transaction: if Redis is away afterwards, the erasure holds
        (the buffer expires within NOTIFQ_INAPP_BUFFER_TTL, and its sockets fail their next
        token check), and the answer is still 204.
        """

        async def attempt() -> int | None:
            async with self.engine.begin() as conn:
                return await subscribers_repo.erase(conn, subscriber_id)

        redacted = await retry_deadlocks(attempt)
        if redacted is None:
            raise not_found(subscriber_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.inbox_erased(subscriber_id), b"1", px=int(self.erased_mark_seconds * 1000))
                pipe.delete(self.keys.inbox_buffer(subscriber_id))
                pipe.publish(self.keys.inbox_live(subscriber_id), ERASED_FRAME)
                await pipe.execute()
        except Exception:
            log.warning("subscriber erased, but its Redis buffer could not be dropped now (it expires)",
                        exc_info=True)  # fmt: skip
        log.info("subscriber erased: %d messages redacted", redacted)
        return redacted
