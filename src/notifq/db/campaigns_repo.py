"""SQL for the campaigns table. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq import vocabulary
from notifq.vocabulary import FINISHED_CAMPAIGN_STATUSES, CampaignStatus, Channel, Event, MessageStatus

# The API layer still imports these names; they are derived from the vocabulary, never copied.
MESSAGE_STATUSES = tuple(MessageStatus)
TERMINAL_MESSAGE_STATUSES = vocabulary.TERMINAL_MESSAGE_STATUSES
CAMPAIGN_STATUSES = tuple(CampaignStatus)
_FINISHED = ", ".join(f"'{s}'" for s in sorted(FINISHED_CAMPAIGN_STATUSES))


@dataclass(frozen=True)
class CampaignRow:
    id: uuid.UUID
    name: str
    subject: str | None
    body: str | None
    status: CampaignStatus
    channel: Channel
    send_at: datetime | None
    total_messages: int
    counts: Mapping[MessageStatus, int]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    category: str | None = None
    audience: Literal["addresses", "subscribers"] = "addresses"  # "subscribers": messages addressed to profiles
    feedback: CampaignFeedback = field(default_factory=lambda: CampaignFeedback())


@dataclass(frozen=True)
class CampaignFeedback:
    """What recipients and their servers said about a campaign, and whether its guard paused it."""

    bounces: int = 0  # hard bounces, each message counted once
    complaints: int = 0
    unsubscribes: int = 0
    paused_reason: str | None = None  # set when the guard paused it (NOTIFQ_MAX_BOUNCE_RATE, …)


_COLUMNS = (
    "id, name, subject, body, status, channel, send_at, total_messages, pending_count, queued_count, sending_count, "
    "sent_count, failed_count, cancelled_count, skipped_count, created_at, updated_at, completed_at, category, "
    "audience, bounce_count, complaint_count, unsubscribe_count, paused_reason"
)


def _row(r: Any) -> CampaignRow:
    m = r._mapping
    return CampaignRow(
        id=m["id"], name=m["name"], subject=m["subject"], body=m["body"], status=CampaignStatus(m["status"]),
        channel=Channel(m["channel"]), send_at=m["send_at"], total_messages=m["total_messages"],
        counts={s: m[f"{s}_count"] for s in MESSAGE_STATUSES},
        created_at=m["created_at"], updated_at=m["updated_at"], completed_at=m["completed_at"],
        category=m["category"], audience=m["audience"],
        feedback=CampaignFeedback(m["bounce_count"], m["complaint_count"], m["unsubscribe_count"], m["paused_reason"]),
    )  # fmt: skip


async def insert(
    conn: AsyncConnection, *, name: str, subject: str | None, body: str | None, total: int, channel: Channel,
    send_at: datetime | None, created_by: uuid.UUID | None, category: str | None = None,
    audience: str = "addresses",
) -> CampaignRow:  # fmt: skip
    """A scheduled campaign (send_at in the future) holds its messages as `pending` until then."""
    scheduled = send_at is not None
    result = await conn.execute(
        text(
            "INSERT INTO campaigns (name, subject, body, total_messages, channel, send_at, status, "
            "queued_count, pending_count, created_by, category, audience) "
            "VALUES (:name, :subject, :body, :total, :channel, :send_at, :status, :queued, :pending, :created_by, "
            ":category, :audience) "
            f"RETURNING {_COLUMNS}"
        ),
        {
            "name": name, "subject": subject, "body": body, "total": total, "channel": channel,
            "send_at": send_at, "status": CampaignStatus.SCHEDULED if scheduled else CampaignStatus.PENDING,
            "queued": 0 if scheduled else total, "pending": total if scheduled else 0, "created_by": created_by,
            "category": category, "audience": audience,
        },
    )  # fmt: skip
    return _row(result.one())


async def get(conn: AsyncConnection, campaign_id: uuid.UUID) -> CampaignRow | None:
    result = await conn.execute(text(f"SELECT {_COLUMNS} FROM campaigns WHERE id = :id"), {"id": campaign_id})
    row = result.first()
    return _row(row) if row else None


async def lock(conn: AsyncConnection, campaign_id: uuid.UUID) -> CampaignRow | None:
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM campaigns WHERE id = :id FOR UPDATE"), {"id": campaign_id}
    )
    row = result.first()
    return _row(row) if row else None


async def list_page(
    conn: AsyncConnection, *, limit: int, status: str | None, before: tuple[datetime, uuid.UUID] | None
) -> list[CampaignRow]:
    """Newest first, keyset-paginated on (created_at, id) so deep pages stay cheap."""
    clauses, params = [], {"limit": limit}
    if status:
        clauses.append("status = :status")
        params["status"] = status  # type: ignore[assignment]
    if before:
        clauses.append("(created_at, id) < (:before_at, :before_id)")
        params["before_at"], params["before_id"] = before  # type: ignore[assignment]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM campaigns {where} ORDER BY created_at DESC, id DESC LIMIT :limit"), params
    )
    return [_row(r) for r in result]


async def mark_enqueued(conn: AsyncConnection, campaign_ids: list[uuid.UUID]) -> None:
    await conn.execute(
        text(
            "UPDATE campaigns SET enqueued_at = COALESCE(enqueued_at, now()), updated_at = now(), "
            f"status = CASE WHEN status = '{CampaignStatus.PENDING}' THEN '{CampaignStatus.PROCESSING}' "
            "ELSE status END "
            "WHERE id = ANY(:ids)"
        ),
        {"ids": campaign_ids},
    )


async def set_status(conn: AsyncConnection, campaign_id: uuid.UUID, status: CampaignStatus,
                     paused_reason: str | None = None) -> None:  # fmt: skip
    """Any change of status clears the guard's pause reason (a pause by the guard sets it); leaving
    `paused` starts the guard's sample afresh: from now on, of the messages attempted from now on."""
    resumed = f"status = '{CampaignStatus.PAUSED}'"
    await conn.execute(
        text(
            f"""UPDATE campaigns SET status = :status, updated_at = now(),
            completed_at = CASE WHEN :status IN ({_FINISHED}) THEN now() ELSE NULL END,
            paused_reason = :reason,
            guard_since = CASE WHEN {resumed} THEN now() ELSE guard_since END,
            guard_attempted_base = CASE WHEN {resumed} THEN sent_count + failed_count ELSE guard_attempted_base END,
            guard_bounces = CASE WHEN {resumed} THEN 0 ELSE guard_bounces END,
            guard_complaints = CASE WHEN {resumed} THEN 0 ELSE guard_complaints END
            WHERE id = :id"""
        ),
        {"id": campaign_id, "status": status, "reason": paused_reason},
    )


async def stale_pending(conn: AsyncConnection, grace_seconds: float) -> list[uuid.UUID]:
    """Campaigns whose enqueue never ran (a crash after the commit), by `enqueued_at`, not status:
    once the reconciler re-enqueues their batches, workers may complete them before it stamps them."""
    result = await conn.execute(
        text(
            f"SELECT id FROM campaigns WHERE enqueued_at IS NULL AND status <> '{CampaignStatus.SCHEDULED}' "
            "AND created_at < now() - make_interval(secs => :grace)"
        ),
        {"grace": grace_seconds},
    )
    return [r[0] for r in result]


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    sent: int
    failed: int
    attempts: int
    retried: int


# Audit events are stamped (clock_timestamp()) by the statements that move the campaign's
# counters, which also set campaigns.updated_at (now(): the statement's start); so every event
# of the campaign lies in [its start, updated_at + the longest such statement]. This bounds it.
EVENT_SLACK = timedelta(minutes=5)


def _timeline_sql(exclude: bool) -> str:
    """Finished messages by `updated_at`, attempts and retries by their audit event, in one set of buckets.

    Each source is aggregated per second in one pass, then the seconds are binned (a campaign
    spans far fewer seconds than it has messages). `exclude`: ids in the campaign's range that
    belong to other messages (`:others`), whose events are left out.
    """
    others = "AND NOT EXISTS (SELECT 1 FROM unnest(CAST(:others AS bigint[])) o(id) WHERE o.id = e.message_id)"
    return f"""
    WITH seconds AS (
        SELECT date_trunc('second', updated_at) AS at,
               count(*) FILTER (WHERE status = '{MessageStatus.SENT}') AS sent,
               count(*) FILTER (WHERE status = '{MessageStatus.FAILED}') AS failed, 0 AS attempts, 0 AS retried
        FROM messages WHERE campaign_id = :id AND status IN ('{MessageStatus.SENT}', '{MessageStatus.FAILED}')
        GROUP BY 1
        UNION ALL
        SELECT date_trunc('second', e.at), 0, 0, count(*) FILTER (WHERE e.event = '{Event.ATTEMPT}'),
               count(*) FILTER (WHERE e.event = '{Event.RETRY}')
        FROM message_events e
        WHERE e.at >= :since AND e.at < :until AND e.message_id BETWEEN :lo AND :hi
            AND e.event IN ('{Event.ATTEMPT}', '{Event.RETRY}') {others if exclude else ""}
        GROUP BY 1
    ), width AS (
        SELECT min(at) AS origin, greatest(1, ceil(extract(epoch FROM max(at) - min(at)) / :points))::int AS seconds
        FROM seconds
    )
    SELECT date_bin(make_interval(secs => w.seconds), s.at, w.origin) AS at, w.seconds, sum(s.sent) AS sent,
           sum(s.failed) AS failed, sum(s.attempts) AS attempts, sum(s.retried) AS retried
    FROM seconds s CROSS JOIN width w
    GROUP BY 1, 2 ORDER BY 1
    """


_TIMELINE = {exclude: text(_timeline_sql(exclude)) for exclude in (False, True)}
_ID_RANGE = text("SELECT min(id) AS lo, max(id) AS hi FROM messages WHERE campaign_id = :id")
# Messages created while this campaign's were being copied: single notifications (the partial
# index `messages_single`) and other campaigns' (one probe of `messages_by_campaign` per campaign).
_OTHERS_IN_RANGE = text(
    "SELECT id FROM messages WHERE campaign_id IS NULL AND id BETWEEN :lo AND :hi "
    "UNION ALL "
    "SELECT m.id FROM campaigns c CROSS JOIN LATERAL "
    "(SELECT id FROM messages WHERE campaign_id = c.id AND id BETWEEN :lo AND :hi) m WHERE c.id <> :id"
)


async def timeline(conn: AsyncConnection, campaign: CampaignRow, points: int) -> tuple[int, list[TimelinePoint]]:
    """Per time bucket (at most about `points`, wider for long campaigns): messages finished `sent` and
    `failed` (by their last update, so they add up to the campaign's counts), and attempts started and
    transient failures retried (audit events `attempt` and `retry`; pruned ones are not counted).

    The events are found without a lookup per event: the BRIN index on `message_events.at`
    narrows them to the campaign's lifetime (EVENT_SLACK), its messages' id range (two probes
    of `messages_by_campaign`) to its own. When the range holds other messages too (sends made
    while the campaign was being created), their ids are found by index and left out.
    Measured through this function (PostgreSQL 18, shared machine, warm cache): a 100,000-message
    campaign delivered by a worker with 20 % transient failures (250,000 events): 115 ms (sent and
    failed alone, as before: 55 ms). A synthetic 1,000,000-message one (2.4 M of the table's 4.6 M
    events): 0.95-1.0 s, about half for each source (sent and failed alone: 0.35-0.7 s); with
    100,000 other ids in its range left out, 1.4 s. One call per chart opened; a finished
    campaign's is kept per process (campaigns.py).
    """
    ids = (await conn.execute(_ID_RANGE, {"id": campaign.id})).one()
    if ids.lo is None:
        return 1, []
    params: dict[str, object] = {
        "id": campaign.id, "points": points, "lo": ids.lo, "hi": ids.hi,
        "since": max(campaign.created_at, campaign.send_at or campaign.created_at),
        "until": campaign.updated_at + EVENT_SLACK,
    }  # fmt: skip
    others: list[int] = []
    if ids.hi - ids.lo + 1 != campaign.total_messages:  # else the range is the campaign's alone
        others = [r.id for r in await conn.execute(_OTHERS_IN_RANGE, params)]
    rows = (await conn.execute(_TIMELINE[bool(others)], {**params, "others": others})).all()
    width = int(rows[0].seconds) if rows else 1
    return width, [TimelinePoint(r.at, int(r.sent), int(r.failed), int(r.attempts), int(r.retried)) for r in rows]
