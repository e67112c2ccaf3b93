"""The notification service: single and batch sends, their history, dead letters and statistics.

Single notifications live in the same `messages` table, batches and workers as campaign
messages; only their lane differs. Transactional ones go to their own arq queue, which
workers poll apart from bulk work, so an OTP never waits behind a newsletter.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifq import telemetry
from notifq.coalesce import Coalescer
from notifq.db import idempotency_repo, lifecycle, messages_repo, notifications_repo
from notifq.db.engine import read_fresh, retry_deadlocks
from notifq.db.idempotency_repo import KeyCompletion
from notifq.db.lifecycle import Released
from notifq.db.messages_repo import EventRow, MessageRow
from notifq.db.notifications_repo import Inserted, NewNotification
from notifq.db.transitions import sql_in
from notifq.errors import Conflict, NotFound, NotifqError, ServiceUnavailable, ValidationError
from notifq.idempotency import KeyClaims, Ticket
from notifq.keys import RedisKeys
from notifq.queue import BatchJob, announce_transactional, enqueue_batches, enqueue_released, queue_depth
from notifq.settings import Settings
from notifq.validation import NotificationRequest, is_ascii_number
from notifq.vocabulary import CampaignStatus, Event, Lane, MessageStatus

log = logging.getLogger("notifq.api")
GROUP_MAX_NOTIFICATIONS = 1000  # notifications per group statement (a batch request's largest size)
# One group statement at a time per API process: what arrives while it runs forms the next group.
# Measured (make bench --only single-sustained, 2 API processes, paced 4,000/s): with 2 in flight the
# second slot kept writing groups of one or two, PostgreSQL spent 0.28 ms per send and the API fell
# behind at 2,894/s; with 1, 0.13 ms, 4,000/s held, and the unpaced maximum rose from 4,182 to 4,931/s.
GROUPS_IN_FLIGHT = 1
_COMPLETED = sql_in((CampaignStatus.COMPLETED, CampaignStatus.COMPLETED_WITH_FAILURES))


def parse_message_id(raw: str) -> int:
    """A positive integer; one past the largest id PostgreSQL can hold is well formed but names no message."""
    if not is_ascii_number(raw) or len(raw) > 19 or int(raw) < 1:
        raise ValidationError("malformed notification id: expected a positive integer", {"field": "id"})
    if int(raw) > messages_repo.MAX_ID:
        raise NotFound(f"notification {raw} not found", {"id": raw})
    return int(raw)


def parse_id_cursor(raw: str | None) -> int | None:
    if not raw:
        return None
    if not is_ascii_number(raw):
        raise ValidationError("malformed cursor", {"field": "cursor"})
    return min(int(raw), messages_repo.MAX_ID)  # every id is below a larger one


@dataclass(frozen=True)
class NotificationView:
    message: MessageRow
    events: list[EventRow]


class NotificationService:
    def __init__(
        self, engine: AsyncEngine, redis: Redis, settings: Settings, *, sends: AsyncEngine, reads: AsyncEngine,
        replica: AsyncEngine | None = None,
    ) -> None:  # fmt: skip
        """`sends`, `reads`: autocommit engines (db/engine.py) for a send without a key, and for reads; `replica`:
        the same on DATABASE_READ_URL, for what may lag (listings, stats), else `reads`."""
        self.engine = engine
        self.sends = sends
        self.reads = reads
        self.replica = replica or reads
        self.redis = redis
        self.keys = RedisKeys.from_settings(settings)
        self.settings = settings
        self.key_claims = KeyClaims(sends)  # Idempotency-Keys, claimed in groups too (idempotency.py)
        # Group commit: a group is capped at one batch request's size, so a full batch goes alone.
        self.group: Coalescer[_Send, list[MessageRow]] = Coalescer(
            self._write_group, max_weight=GROUP_MAX_NOTIFICATIONS, weight=lambda send: len(send.requests),
            linger=settings.send_linger_ms / 1000, concurrency=GROUPS_IN_FLIGHT,
        )  # fmt: skip

    async def create(
        self, requests: list[NotificationRequest], created_by: uuid.UUID | None, ticket: Ticket | None = None
    ) -> list[MessageRow]:
        """Written with the other sends of this moment (group commit); answers once its own rows are committed."""
        return await self.group.submit(_Send(requests, created_by, ticket))

    async def _write_group(self, sends: list[_Send]) -> list[list[MessageRow]]:
        """One statement (a transaction when keys are completed too) and one Redis pipeline for many requests.

        Redis must answer before anything is written (a 503 that wrote nothing). For a due
        transactional send the check is the flag itself, which makes the workers' bulk work
        give way at once; the batch numbers follow in one pipeline after the commit.
        """
        requests = [r for send in sends for r in send.requests]
        if any(r.priority == Lane.TRANSACTIONAL and r.send_at is None for r in requests):
            await announce_transactional(self.redis, self.keys)
        else:
            await self.redis.ping()
        # One batch per lane and schedule, so a bulk or scheduled item never delays a transactional one.
        groups: dict[tuple[str, bool], list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[(r.priority, r.send_at is not None)].append(i)
        size = self.settings.job_batch_size
        chunks = [idx[i : i + size] for idx in groups.values() for i in range(0, len(idx), size)]
        batch_of = {i: b for b, chunk in enumerate(chunks) for i in chunk}
        rows = [NewNotification(r.channel, r.to, r.subject, r.body, r.data, r.priority, r.send_at, r.subscriber,
                                r.category, r.dedup_key, created_by=send.created_by)
                for send in sends for r in send.requests]  # fmt: skip
        try:
            inserted = await self._insert(rows, [batch_of[i] for i in range(len(rows))], sends)
        except NotifqError:
            raise
        except Exception as exc:
            log.warning("a group of %d send(s) (%d notifications) was not written: %s: %s", len(sends), len(rows),
                        type(exc).__name__, exc, exc_info=not _is_dependency_error(exc))  # fmt: skip
            raise ServiceUnavailable(
                "this send was written in one statement with others, and that statement failed; nothing was "
                "written, retry",
                {"groupSize": len(sends)},
            ) from exc
        due = {(n.job_id, n.row.priority) for n in inserted if n.row.status == MessageStatus.QUEUED}
        if due:
            jobs = [BatchJob(job, lane=lane) for job, lane in sorted(due)]
            try:
                await enqueue_batches(self.redis, self.keys, jobs)
            except Exception:
                # Committed already: the reconciler enqueues them once Redis answers (after
                # NOTIFQ_RECONCILE_GRACE), so the answer stays 202; late, never lost.
                log.warning("enqueue of %d notification batch(es) failed after commit; the reconciler will "
                            "enqueue them", len(jobs), exc_info=True,
                            extra={"message_id": inserted[0].row.id})  # fmt: skip
        return [[n.row for n in own] for own in _split(sends, inserted)]

    async def _insert(self, rows: list[NewNotification], batches: list[int], sends: list[_Send]) -> list[Inserted]:
        """In request order. Without keys one autocommit statement; with keys, the rows and every key's
        record commit together (two statements in one transaction)."""
        if not any(send.ticket for send in sends):
            async with self.sends.connect() as conn:
                return await notifications_repo.insert(conn, rows, batches)
        async with self.engine.begin() as conn:
            inserted = await notifications_repo.insert(conn, rows, batches)
            completions = [
                KeyCompletion(send.ticket.admin_id, send.ticket.key, [str(n.row.id) for n in own])
                for send, own in zip(sends, _split(sends, inserted), strict=True)
                if send.ticket
            ]
            await idempotency_repo.complete_many(conn, "notifications", completions, 202)
        return inserted

    async def get(self, message_id: int) -> NotificationView:
        async def read(conn: AsyncConnection) -> NotificationView | None:
            row = await messages_repo.get(conn, message_id)
            return None if row is None else NotificationView(row, await messages_repo.events(conn, message_id))

        view = await read_fresh(self.replica, self.reads, read)
        if view is None:
            raise NotFound(f"notification {message_id} not found", {"id": str(message_id)})
        return view

    async def rows(self, ids: list[int]) -> list[MessageRow]:
        async with self.reads.connect() as conn:
            found = [await messages_repo.get(conn, i) for i in ids]
        return [r for r in found if r is not None]

    async def list_page(
        self, *, status: str | None, channel: str | None, to: str | None, cursor: str | None, limit: int,
        since: datetime | None = None, until: datetime | None = None,
    ) -> tuple[list[MessageRow], str | None]:  # fmt: skip
        """Newest first: by id, or by creation time when `since`/`until` bound it (index-served either way)."""
        clauses: list[str] = ["campaign_id IS NULL"]
        params: dict[str, object] = {}
        for column, value in (("status", status), ("channel", channel), ("recipient", to)):
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        before = parse_id_cursor(cursor)
        async with self.replica.connect() as conn:
            rows = await messages_repo.list_filtered(conn, clauses, params, before_id=before, limit=limit + 1,
                                                     since=since, until=until)  # fmt: skip
        return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)

    async def cancel(self, message_id: int) -> MessageRow:
        async with self.engine.begin() as conn:
            row = await messages_repo.get(conn, message_id)
            if row is None:
                raise NotFound(f"notification {message_id} not found", {"id": str(message_id)})
            if row.campaign_id is not None:
                raise Conflict(
                    "this message belongs to a campaign; cancel the campaign", {"campaignId": str(row.campaign_id)}
                )
            if not await lifecycle.cancel_message(conn, message_id):
                raise Conflict(f"a {row.status} notification cannot be cancelled", {"status": row.status})
            cancelled = await messages_repo.get(conn, message_id)
        assert cancelled is not None
        return cancelled

    async def dead_letters(
        self, *, channel: str | None, campaign_id: uuid.UUID | None, cursor: str | None, limit: int
    ) -> tuple[list[MessageRow], str | None]:
        clauses, params = _dead_letter_filter(channel, campaign_id)
        async with self.replica.connect() as conn:
            rows = await messages_repo.list_filtered(conn, clauses, params, before_id=parse_id_cursor(cursor),
                                                     limit=limit + 1)  # fmt: skip
        return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)

    async def redrive(self, *, ids: list[int] | None, channel: str | None, campaign_id: uuid.UUID | None) -> int:
        """Dead letters back to the queue with fresh attempts; their campaigns resume `processing`."""
        await self.redis.ping()
        clauses, params = _dead_letter_filter(channel, campaign_id)
        if ids is not None:
            clauses.append("id = ANY(CAST(:ids AS bigint[]))")
            params["ids"] = [i for i in ids if i <= messages_repo.MAX_ID]  # larger ones name no message
        clauses.append(
            "(campaign_id IS NULL OR campaign_id NOT IN "
            f"(SELECT id FROM campaigns WHERE status = '{CampaignStatus.CANCELLED}'))"
        )

        async def attempt() -> tuple[int, list[Released]]:
            async with self.engine.begin() as conn:
                count, released = await lifecycle.requeue_failed(
                    conn, " AND ".join(clauses[1:]) or "true", params, self.settings.job_batch_size, Event.REDRIVEN,
                    lifecycle.REQUEUE_LIMIT,
                )  # fmt: skip
                if released:
                    await conn.execute(
                        text(
                            f"UPDATE campaigns SET status = '{CampaignStatus.PROCESSING}', completed_at = NULL, "
                            f"updated_at = now() WHERE status IN ({_COMPLETED}) AND id IN "
                            "(SELECT DISTINCT campaign_id FROM messages WHERE job_id = ANY(CAST(:jobs AS bigint[])))"
                        ),
                        {"jobs": [r.job_id for r in released]},
                    )
                return count, released

        count, released = await retry_deadlocks(attempt)
        if released:
            await enqueue_released(self.redis, self.keys, released)
        return count

    async def stats(self) -> dict[str, Any]:
        async with self.replica.connect() as conn:
            counts = await notifications_repo.counts(conn)
        by_status: dict[str, int] = defaultdict(int)
        by_channel: dict[str, dict[str, int]] = defaultdict(dict)
        for channel, status, n in counts:
            by_status[status] += n
            by_channel[channel][status] = n
        sent_last_minute = await telemetry.sent_last_minute(self.redis, self.keys)
        return {
            "byStatus": dict(by_status),
            "byChannel": {c: dict(s) for c, s in by_channel.items()},
            "sentLastMinute": sent_last_minute,
            "sendRatePerSecond": round(sent_last_minute / 60, 2),
            "queueDepth": await queue_depth(self.redis, self.keys),
        }


@dataclass(frozen=True)
class _Send:
    """One request's notifications, waiting for its group's statement."""

    requests: list[NotificationRequest]
    created_by: uuid.UUID | None
    ticket: Ticket | None


def _split(sends: list[_Send], inserted: list[Inserted]) -> list[list[Inserted]]:
    """The group's rows (in request order) cut back into each send's own."""
    own, at = [], 0
    for send in sends:
        own.append(inserted[at : at + len(send.requests)])
        at += len(send.requests)
    return own


def _is_dependency_error(exc: BaseException) -> bool:
    """PostgreSQL or Redis did not answer (logged without a traceback; anything else gets one)."""
    return isinstance(exc, (OSError, TimeoutError, RedisConnectionError, RedisTimeoutError, sa_exc.OperationalError,
                            sa_exc.InterfaceError, sa_exc.TimeoutError))  # fmt: skip


def _dead_letter_filter(channel: str | None, campaign_id: uuid.UUID | None) -> tuple[list[str], dict[str, object]]:
    clauses: list[str] = [f"status = '{MessageStatus.FAILED}'"]
    params: dict[str, object] = {}
    if channel is not None:
        clauses.append("channel = :channel")
        params["channel"] = channel
    if campaign_id is not None:
        clauses.append("campaign_id = :campaign")
        params["campaign"] = campaign_id
    return clauses, params
