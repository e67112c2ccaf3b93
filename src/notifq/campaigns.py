"""The campaign service: the transactions behind the campaign endpoints.

Creation is one PostgreSQL transaction (campaign row + every message, already split
into batches), and only after the commit are the batches' jobs written to Redis. A crash
or a Redis failure between the two leaves a durable `pending` campaign whose jobs the
reconciler writes later: nothing accepted is lost, nothing is half-written.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import admins_repo, campaigns_repo, messages_repo
from notifq.db.campaigns_repo import CampaignRow
from notifq.db.messages_repo import MessageRow
from notifq.errors import Conflict, NotFound, Unauthorized, ValidationError
from notifq.queue import BatchJob, enqueue_batches
from notifq.settings import Settings
from notifq.validation import CampaignRequest, is_ascii_number

MAX_BIGINT = 2**63 - 1

log = logging.getLogger("notifq.campaigns")


def parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationError("malformed campaign id: expected a UUID", {"field": "id", "value": raw[:64]}) from None


def synthetic_recipients(count: int) -> Iterator[str]:
    """The seed's load-test mode: user1@example.com … userN@example.com."""
    return (f"user{i}@example.com" for i in range(1, count + 1))


def encode_cursor(created_at: datetime, campaign_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{campaign_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        at, _, cid = decoded.partition("|")
        created_at = datetime.fromisoformat(at)
        if created_at.tzinfo is None:
            raise ValueError("cursor time without a zone")
        return created_at.astimezone(UTC), uuid.UUID(cid)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("malformed cursor", {"field": "cursor"}) from None


class CampaignService:
    def __init__(self, engine: AsyncEngine, redis: Redis, settings: Settings) -> None:
        self.engine = engine
        self.redis = redis
        self.settings = settings

    async def create(self, request: CampaignRequest, created_by: uuid.UUID | None) -> CampaignRow:
        # Refuse up front while Redis is down: a 503 that wrote nothing beats a campaign that waits.
        await self.redis.ping()
        batch = self.settings.job_batch_size
        total = request.total
        async with self.engine.begin() as conn:
            if created_by is not None and not await admins_repo.exists_id(conn, created_by):
                raise Unauthorized("the token's admin no longer exists")
            campaign = await campaigns_repo.insert(
                conn, name=request.name, subject=request.subject, body=request.body, total=total,
                created_by=created_by,
            )  # fmt: skip
            job_ids = await messages_repo.reserve_job_ids(conn, -(-total // batch))
            recipients = request.recipients if request.recipients is not None else synthetic_recipients(total)
            await messages_repo.copy_queued(conn, campaign.id, recipients, job_ids, batch)
        if await self._enqueue(campaign.id, job_ids):
            return replace(campaign, status="processing")
        return campaign

    async def _enqueue(self, campaign_id: uuid.UUID, job_ids: list[int]) -> bool:
        try:
            await enqueue_batches(self.redis, self.settings.queue_name, (BatchJob(j) for j in job_ids))
            async with self.engine.begin() as conn:
                await campaigns_repo.mark_enqueued(conn, [campaign_id])
        except Exception:
            # The campaign is committed; the reconciler enqueues its batches once Redis answers.
            log.exception("enqueue of campaign %s failed after commit; the reconciler will finish it", campaign_id)
            return False
        return True

    async def get(self, campaign_id: uuid.UUID) -> CampaignRow:
        async with self.engine.connect() as conn:
            row = await campaigns_repo.get(conn, campaign_id)
        if row is None:
            raise NotFound(f"campaign {campaign_id} not found", {"id": str(campaign_id)})
        return row

    async def list_page(
        self, *, limit: int, status: str | None, cursor: str | None
    ) -> tuple[list[CampaignRow], str | None]:
        before = decode_cursor(cursor) if cursor else None
        async with self.engine.connect() as conn:
            rows = await campaigns_repo.list_page(conn, limit=limit + 1, status=status, before=before)
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
        return rows[:limit], next_cursor

    async def messages(
        self, campaign_id: uuid.UUID, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[MessageRow], str | None]:
        after = None
        if cursor:
            if not is_ascii_number(cursor) or int(cursor) > MAX_BIGINT:
                raise ValidationError("malformed cursor", {"field": "cursor"})
            after = int(cursor)
        await self.get(campaign_id)
        async with self.engine.connect() as conn:
            rows = await messages_repo.list_page(conn, campaign_id, status=status, after_id=after, limit=limit + 1)
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        return rows[:limit], next_cursor

    async def retry(self, campaign_id: uuid.UUID) -> int:
        await self.redis.ping()
        async with self.engine.begin() as conn:
            campaign = await campaigns_repo.lock(conn, campaign_id)
            if campaign is None:
                raise NotFound(f"campaign {campaign_id} not found", {"id": str(campaign_id)})
            if campaign.status == "cancelled":
                raise Conflict("a cancelled campaign cannot be retried", {"status": campaign.status})
            count, job_ids = await messages_repo.requeue_failed(conn, campaign_id, self.settings.job_batch_size)
            if count:
                await campaigns_repo.apply_deltas(conn, campaign_id, Counter({"failed": -count, "queued": count}))
                await campaigns_repo.set_status(conn, campaign_id, "processing")
        if count:
            await enqueue_batches(self.redis, self.settings.queue_name, (BatchJob(j) for j in sorted(job_ids)))
        return count

    async def cancel(self, campaign_id: uuid.UUID) -> CampaignRow:
        async with self.engine.begin() as conn:
            campaign = await campaigns_repo.lock(conn, campaign_id)
            if campaign is None:
                raise NotFound(f"campaign {campaign_id} not found", {"id": str(campaign_id)})
            if campaign.status not in ("pending", "processing"):
                raise Conflict(f"campaign is already {campaign.status}", {"status": campaign.status})
            deltas = await messages_repo.cancel_open(conn, campaign_id)
            await campaigns_repo.apply_deltas(conn, campaign_id, deltas)
            await campaigns_repo.set_status(conn, campaign_id, "cancelled")
            row = await campaigns_repo.get(conn, campaign_id)
        assert row is not None
        return row
