"""SQL for the campaigns table. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq import vocabulary
from notifq.vocabulary import FINISHED_CAMPAIGN_STATUSES, CampaignStatus, Channel, MessageStatus

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


_COLUMNS = (
    "id, name, subject, body, status, channel, send_at, total_messages, pending_count, queued_count, sending_count, "
    "sent_count, failed_count, cancelled_count, created_at, updated_at, completed_at"
)


def _row(r: Any) -> CampaignRow:
    m = r._mapping
    return CampaignRow(
        id=m["id"], name=m["name"], subject=m["subject"], body=m["body"], status=CampaignStatus(m["status"]),
        channel=Channel(m["channel"]), send_at=m["send_at"], total_messages=m["total_messages"],
        counts={s: m[f"{s}_count"] for s in MESSAGE_STATUSES},
        created_at=m["created_at"], updated_at=m["updated_at"], completed_at=m["completed_at"],
    )  # fmt: skip


async def insert(
    conn: AsyncConnection, *, name: str, subject: str | None, body: str | None, total: int, channel: Channel,
    send_at: datetime | None, created_by: uuid.UUID | None,
) -> CampaignRow:  # fmt: skip
    """A scheduled campaign (send_at in the future) holds its messages as `pending` until then."""
    scheduled = send_at is not None
    result = await conn.execute(
        text(
            "INSERT INTO campaigns (name, subject, body, total_messages, channel, send_at, status, "
            "queued_count, pending_count, created_by) "
            "VALUES (:name, :subject, :body, :total, :channel, :send_at, :status, :queued, :pending, :created_by) "
            f"RETURNING {_COLUMNS}"
        ),
        {
            "name": name, "subject": subject, "body": body, "total": total, "channel": channel,
            "send_at": send_at, "status": CampaignStatus.SCHEDULED if scheduled else CampaignStatus.PENDING,
            "queued": 0 if scheduled else total, "pending": total if scheduled else 0, "created_by": created_by,
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


async def set_status(conn: AsyncConnection, campaign_id: uuid.UUID, status: CampaignStatus) -> None:
    await conn.execute(
        text(
            "UPDATE campaigns SET status = :status, updated_at = now(), "
            f"completed_at = CASE WHEN :status IN ({_FINISHED}) "
            "THEN now() ELSE NULL END "
            "WHERE id = :id"
        ),
        {"id": campaign_id, "status": status},
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


TIMELINE_SQL = text(f"""
WITH done AS (
    SELECT updated_at, status FROM messages WHERE campaign_id = :id
        AND status IN ('{MessageStatus.SENT}', '{MessageStatus.FAILED}')
), width AS (
    SELECT date_trunc('second', min(updated_at)) AS origin,
           greatest(1, ceil(extract(epoch FROM max(updated_at) - min(updated_at)) / :points))::int AS seconds
    FROM done
)
SELECT date_bin(make_interval(secs => w.seconds), d.updated_at, w.origin) AS at, w.seconds,
       count(*) FILTER (WHERE d.status = '{MessageStatus.SENT}') AS sent,
       count(*) FILTER (WHERE d.status = '{MessageStatus.FAILED}') AS failed
FROM done d CROSS JOIN width w
GROUP BY 1, 2 ORDER BY 1
""")


async def timeline(conn: AsyncConnection, campaign_id: uuid.UUID, points: int) -> tuple[int, list[TimelinePoint]]:
    """Finished messages per time bucket, at most about `points` buckets (wider ones for long campaigns)."""
    rows = (await conn.execute(TIMELINE_SQL, {"id": campaign_id, "points": points})).all()
    width = int(rows[0].seconds) if rows else 1
    return width, [TimelinePoint(r.at, int(r.sent), int(r.failed)) for r in rows]
