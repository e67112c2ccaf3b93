"""The campaign service: the transactions behind the campaign endpoints.

Creation is one PostgreSQL transaction (campaign row + every message, already split
into batches), and only after the commit are the batches' jobs written to Redis. A crash
or a Redis failure between the two leaves a durable `pending` campaign whose jobs the
reconciler writes later: nothing accepted is lost, nothing is half-written. A scheduled
campaign (`sendAt`) holds its messages as `pending` until the scheduler releases them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifq.addresses import synthetic
from notifq.db import admins_repo, campaigns_repo, lifecycle, messages_repo
from notifq.db.campaigns_repo import CampaignRow
from notifq.db.engine import read_fresh, retry_deadlocks
from notifq.db.lifecycle import Released
from notifq.db.messages_repo import MessageRow
from notifq.errors import Conflict, NotFound, Unauthorized, ValidationError
from notifq.idempotency import Ticket
from notifq.keys import RedisKeys
from notifq.queue import BatchJob, enqueue_batches, enqueue_released
from notifq.settings import Settings
from notifq.validation import CampaignRequest, is_ascii_number
from notifq.vocabulary import FINISHED_CAMPAIGN_STATUSES, CampaignStatus, Channel, Event, MessageStatus

log = logging.getLogger("notifq.campaigns")
T = TypeVar("T")
TIMELINE_CACHE_SIZE = 64
# Where an operator's action is allowed from.
Statuses = tuple[CampaignStatus, ...]
RETRYABLE = (
    CampaignStatus.PROCESSING,
    CampaignStatus.PAUSED,
    CampaignStatus.COMPLETED,
    CampaignStatus.COMPLETED_WITH_FAILURES,
)
CANCELLABLE = (CampaignStatus.SCHEDULED, CampaignStatus.PENDING, CampaignStatus.PROCESSING, CampaignStatus.PAUSED)
PAUSABLE = (CampaignStatus.SCHEDULED, CampaignStatus.PENDING, CampaignStatus.PROCESSING)


def parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationError("malformed campaign id: expected a UUID", {"field": "id", "value": raw[:64]}) from None


def synthetic_recipients(channel: str, count: int) -> Iterator[tuple[str, None]]:
    """The seed's load-test mode: user1@example.com … (or +1555… numbers, mock- tokens)."""
    return ((synthetic(channel, i), None) for i in range(1, count + 1))


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# `<microseconds since 1970>-<uuid hex>`: every string of this shape decodes (16 digits reach 2286), so the
# pattern served in /openapi.json is exactly what the API accepts.
CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9a-f]{32}$"


def encode_cursor(created_at: datetime, campaign_id: uuid.UUID) -> str:
    return f"{(created_at - EPOCH) // timedelta(microseconds=1)}-{campaign_id.hex}"


def decode_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    micros, _, hex_id = raw.partition("-")
    try:
        if not (is_ascii_number(micros) and len(micros) <= 16 and len(hex_id) == 32 and hex_id == hex_id.lower()):
            raise ValueError("not a cursor")
        return EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=hex_id)
    except (ValueError, OverflowError):
        raise ValidationError("malformed cursor", {"field": "cursor"}) from None


class CampaignService:
    def __init__(self, engine: AsyncEngine, redis: Redis, settings: Settings, reads: AsyncEngine | None = None,
                 replica: AsyncEngine | None = None) -> None:  # fmt: skip
        """`reads`: an autocommit engine for single SELECTs (no BEGIN/ROLLBACK around a poll); `replica`: the
        same on DATABASE_READ_URL, for what may lag (progress, listings), else `reads`."""
        self.engine = engine
        self.reads = reads or engine
        self.replica = replica or self.reads
        self.redis = redis
        self.keys = RedisKeys.from_settings(settings)
        self.settings = settings
        self._timelines: dict[tuple[uuid.UUID, datetime], tuple[int, list[campaigns_repo.TimelinePoint]]] = {}

    async def create(
        self, request: CampaignRequest, created_by: uuid.UUID | None, ticket: Ticket | None = None
    ) -> CampaignRow:
        # Refuse up front while Redis is down: a 503 that wrote nothing beats a campaign that waits.
        await self.redis.ping()
        batch = self.settings.job_batch_size
        total = request.total
        status = MessageStatus.PENDING if request.send_at else MessageStatus.QUEUED
        async with self.engine.begin() as conn:
            if created_by is not None and not await admins_repo.exists_id(conn, created_by):
                raise Unauthorized("the token's admin no longer exists")
            campaign = await campaigns_repo.insert(
                conn, name=request.name, subject=request.subject, body=request.body, total=total,
                channel=Channel(request.channel), send_at=request.send_at, created_by=created_by,
                category=request.category, audience="subscribers" if request.subscribers is not None else "addresses",
            )  # fmt: skip
            job_ids = await messages_repo.reserve_job_ids(conn, -(-total // batch))
            if request.subscribers is not None:
                await messages_repo.insert_subscriber_messages(
                    conn, campaign.id, request.subscribers, job_ids, batch, channel=Channel(request.channel),
                    status=status, send_at=request.send_at, category=request.category,
                )  # fmt: skip
            else:
                recipients: Iterable[tuple[str, str | None]] = (
                    request.recipients if request.recipients is not None
                    else synthetic_recipients(request.channel, total)
                )  # fmt: skip
                await messages_repo.copy_campaign_messages(
                    conn, campaign.id, recipients, job_ids, batch, channel=Channel(request.channel),
                    status=status, send_at=request.send_at,
                )  # fmt: skip
            if ticket is not None:
                await ticket.complete(conn, "campaign", [str(campaign.id)], 202)
        if request.send_at is not None:
            return campaign  # the scheduler releases it at send_at
        if await self._enqueue(campaign.id, job_ids):
            return await self.get(campaign.id, fresh=True)  # as stored, so an idempotent replay answers the same
        return campaign

    async def _enqueue(self, campaign_id: uuid.UUID, job_ids: list[int]) -> bool:
        try:
            await enqueue_batches(self.redis, self.keys, (BatchJob(j) for j in job_ids))
            async with self.engine.begin() as conn:
                await campaigns_repo.mark_enqueued(conn, [campaign_id])
        except Exception:
            # The campaign is committed; the reconciler enqueues its batches once Redis answers.
            log.exception("enqueue of campaign %s failed after commit; the reconciler will finish it", campaign_id)
            return False
        return True

    async def get(self, campaign_id: uuid.UUID, *, fresh: bool = False) -> CampaignRow:
        """From the replica (the primary if it lacks the campaign yet); `fresh`: from the primary (its own write)."""
        replica = self.reads if fresh else self.replica
        row = await read_fresh(replica, self.reads, lambda conn: campaigns_repo.get(conn, campaign_id))
        if row is None:
            raise NotFound(f"campaign {campaign_id} not found", {"id": str(campaign_id)})
        return row

    async def timeline(
        self, campaign_id: uuid.UUID, points: int = 300
    ) -> tuple[int, list[campaigns_repo.TimelinePoint]]:
        """A finished campaign's timeline is read once per process (it scans the campaign's messages and events)."""
        campaign = await self.get(campaign_id)
        key = (campaign_id, campaign.updated_at)
        if key in self._timelines:
            return self._timelines[key]
        async with self.replica.connect() as conn:
            timeline = await campaigns_repo.timeline(conn, campaign, points)
        # Cached only when read from the primary: a lagging replica's timeline of a finished campaign may lack its end.
        if campaign.status in FINISHED_CAMPAIGN_STATUSES and self.replica is self.reads:
            if len(self._timelines) >= TIMELINE_CACHE_SIZE:
                self._timelines.pop(next(iter(self._timelines)))
            self._timelines[key] = timeline
        return timeline

    async def list_page(
        self, *, limit: int, status: str | None, cursor: str | None
    ) -> tuple[list[CampaignRow], str | None]:
        before = decode_cursor(cursor) if cursor else None
        async with self.replica.connect() as conn:
            rows = await campaigns_repo.list_page(conn, limit=limit + 1, status=status, before=before)
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
        return rows[:limit], next_cursor

    async def messages(
        self, campaign_id: uuid.UUID, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[MessageRow], str | None]:
        after = None
        if cursor:
            if not is_ascii_number(cursor):
                raise ValidationError("malformed cursor", {"field": "cursor"})
            after = min(int(cursor), messages_repo.MAX_ID)  # no id follows the largest
        await self.get(campaign_id)
        async with self.replica.connect() as conn:
            rows = await messages_repo.list_page(conn, campaign_id, status=status, after_id=after, limit=limit + 1)
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        return rows[:limit], next_cursor

    async def _checked(self, conn: AsyncConnection, campaign_id: uuid.UUID, allowed: Statuses, action: str
                       ) -> CampaignRow:  # fmt: skip
        """Read (not lock) the campaign: the transition that follows locks messages first and the
        campaign row after, the same order as the workers' statements (no lock-order deadlock)."""
        campaign = await campaigns_repo.get(conn, campaign_id)
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} not found", {"id": str(campaign_id)})
        if campaign.status not in allowed:
            raise Conflict(f"a {campaign.status} campaign cannot be {action}", {"status": campaign.status})
        return campaign

    async def _in_transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def attempt() -> T:
            async with self.engine.begin() as conn:
                return await work(conn)

        return await retry_deadlocks(attempt)

    async def retry(self, campaign_id: uuid.UUID) -> int:
        await self.redis.ping()

        async def work(conn: AsyncConnection) -> tuple[int, list[Released]]:
            campaign = await self._checked(conn, campaign_id, RETRYABLE, "retried")
            count, released = await lifecycle.requeue_failed(
                conn, "campaign_id = :c", {"c": campaign_id}, self.settings.job_batch_size, Event.REQUEUED,
                lifecycle.REQUEUE_LIMIT,
            )  # fmt: skip
            await self._confirm(conn, campaign_id, RETRYABLE, "retried", count)
            if released and campaign.status != CampaignStatus.PAUSED:
                await campaigns_repo.set_status(conn, campaign_id, CampaignStatus.PROCESSING)
            return count, released

        count, released = await self._in_transaction(work)
        if released:
            await enqueue_released(self.redis, self.keys, released)
        return count

    async def _confirm(self, conn: AsyncConnection, campaign_id: uuid.UUID, allowed: Statuses, action: str,
                       moved: int) -> None:  # fmt: skip
        """After the move, under the campaign row lock: did a concurrent request get there first?

        Our own move may have completed the campaign (its last open messages); anything else
        outside `allowed` means another request won, and this transaction rolls back.
        """
        current = await campaigns_repo.lock(conn, campaign_id)
        assert current is not None
        ours = moved > 0 and current.status in (CampaignStatus.COMPLETED, CampaignStatus.COMPLETED_WITH_FAILURES)
        if current.status not in allowed and not ours:
            raise Conflict(f"a {current.status} campaign cannot be {action}", {"status": current.status})

    async def _transition(self, campaign_id: uuid.UUID, allowed: Statuses, action: str, status: CampaignStatus,
                          move: Callable[[AsyncConnection, uuid.UUID], Awaitable[int]],
                          reason: str | None = None) -> CampaignRow:  # fmt: skip
        """Move the messages, then set the campaign's status, in one transaction."""

        async def work(conn: AsyncConnection) -> CampaignRow:
            await self._checked(conn, campaign_id, allowed, action)
            moved = await move(conn, campaign_id)
            await self._confirm(conn, campaign_id, allowed, action, moved)
            await campaigns_repo.set_status(conn, campaign_id, status, reason)
            row = await campaigns_repo.get(conn, campaign_id)
            assert row is not None
            return row

        return await self._in_transaction(work)

    async def cancel(self, campaign_id: uuid.UUID) -> CampaignRow:
        """What has not started is cancelled; messages in flight finish and land in sent or failed."""
        return await self._transition(campaign_id, CANCELLABLE, "cancelled", CampaignStatus.CANCELLED,
                                      lifecycle.cancel_campaign_messages)  # fmt: skip

    async def pause(self, campaign_id: uuid.UUID, reason: str | None = None) -> CampaignRow:
        """Hold what has not started; messages in flight finish. Resume sends only what was held.
        `reason`: why the guard paused it (None when an operator did)."""
        return await self._transition(campaign_id, PAUSABLE, "paused", CampaignStatus.PAUSED,
                                      lifecycle.pause_campaign_messages, reason)  # fmt: skip

    async def resume(self, campaign_id: uuid.UUID) -> CampaignRow:
        await self.redis.ping()

        async def work(conn: AsyncConnection) -> tuple[CampaignRow, list[Released]]:
            campaign = await self._checked(conn, campaign_id, (CampaignStatus.PAUSED,), "resumed")
            future = campaign.send_at is not None and campaign.send_at > datetime.now(UTC)
            released = [] if future else await lifecycle.resume_campaign_messages(conn, campaign_id)
            await self._confirm(conn, campaign_id, (CampaignStatus.PAUSED,), "resumed", 0)
            await campaigns_repo.set_status(
                conn, campaign_id, CampaignStatus.SCHEDULED if future else CampaignStatus.PROCESSING
            )
            row = await campaigns_repo.get(conn, campaign_id)
            assert row is not None
            return row, released

        row, released = await self._in_transaction(work)
        if released:
            await enqueue_released(self.redis, self.keys, released)
        return row
