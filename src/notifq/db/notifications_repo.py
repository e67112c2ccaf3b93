"""SQL for single notifications: one statement per group of requests (notifications.py's group commit)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db.messages_repo import MessageRow, message_row
from notifq.db.transitions import address_of, transition
from notifq.vocabulary import MessageStatus


@dataclass(frozen=True)
class NewNotification:
    """One single notification to insert (already checked by the service's caller)."""

    channel: str
    recipient: str | None  # None: the subscriber's address for the channel
    subject: str | None
    body: str
    data: dict[str, str] | None
    priority: str
    send_at: datetime | None
    subscriber_id: str | None = None
    category: str | None = None
    dedup_key: str | None = None
    created_by: uuid.UUID | None = None  # the admin whose request it came in


@dataclass(frozen=True)
class Inserted:
    row: MessageRow
    job_id: int


# The profiles of the subscribers named, locked against an erasure until this transaction ends
# (FOR KEY SHARE: a DELETE of the row waits, a PUT does not), so an erasure never misses a message
# inserted beside it: it redacts it once the insert commits.
LOCKED_SUBSCRIBERS = (
    "subs AS MATERIALIZED (SELECT id, email, phone, push_tokens FROM subscribers "
    "WHERE id = ANY(CAST(:subscribers AS text[])) FOR KEY SHARE)"
)

# Job numbers are drawn inside the statement (a MATERIALIZED CTE runs nextval exactly once
# per batch), so a single send is one round trip: in autocommit, no BEGIN/COMMIT either.
_INSERT = text(
    transition(
        f"""
        INSERT INTO messages (channel, recipient, subject, body, data, priority, status, send_at, job_id, created_by,
                              subscriber_id, category, dedup_key)
        SELECT n.channel, COALESCE(n.recipient, {address_of("n.channel")}, ''), n.subject, n.body, n.data,
               n.priority, n.status, n.send_at, j.job_id, n.created_by, n.subscriber_id, n.category,
               n.dedup_key
        FROM unnest(CAST(:channels AS text[]), CAST(:recipients AS text[]), CAST(:subjects AS text[]),
                    CAST(:bodies AS text[]), CAST(:data AS jsonb[]), CAST(:priorities AS text[]),
                    CAST(:statuses AS text[]), CAST(:send_ats AS timestamptz[]), CAST(:batches AS int[]),
                    CAST(:subscribers AS text[]), CAST(:categories AS text[]), CAST(:dedup_keys AS text[]),
                    CAST(:created_bys AS uuid[]))
            WITH ORDINALITY AS n(channel, recipient, subject, body, data, priority, status, send_at, batch,
                                 subscriber_id, category, dedup_key, created_by, ord)
        JOIN jobs j ON j.batch = n.batch
        LEFT JOIN subs s ON s.id = n.subscriber_id
        ORDER BY n.ord
        RETURNING id, campaign_id, channel, NULL::text AS old_status, status, attempts,
            NULL::text AS event, NULL::text AS detail, NULL::text AS provider, job_id, priority,
            recipient, subject, last_error, provider_message_id, send_at, created_at, updated_at,
            subscriber_id, category, skip_reason, delivered_at, read_at
        """,
        before="jobs AS MATERIALIZED (SELECT b AS batch, nextval('notifq_job_seq') AS job_id "
        "FROM generate_series(0, CAST(:batch_count AS int) - 1) AS b), " + LOCKED_SUBSCRIBERS,
    )
)


async def insert(conn: AsyncConnection, requests: Sequence[NewNotification], batches: Sequence[int]) -> list[Inserted]:
    """Insert in request order (identity values follow it, so sorting by id restores it).

    `batches[i]` (0, 1, …) is request i's batch: each batch gets its own job number.
    """
    result = await conn.execute(
        _INSERT,
        {
            "channels": [r.channel for r in requests],
            "recipients": [r.recipient for r in requests],
            "subjects": [r.subject for r in requests],
            "bodies": [r.body for r in requests],
            "data": [json.dumps(r.data) if r.data else None for r in requests],
            "priorities": [r.priority for r in requests],
            "statuses": [MessageStatus.PENDING if r.send_at else MessageStatus.QUEUED for r in requests],
            "send_ats": [r.send_at for r in requests],
            "batches": list(batches),
            "batch_count": max(batches, default=-1) + 1,
            "subscribers": [r.subscriber_id for r in requests],
            "categories": [r.category for r in requests],
            "dedup_keys": [r.dedup_key for r in requests],
            "created_bys": [r.created_by for r in requests],
        },
    )
    inserted = [Inserted(message_row(r), r.job_id) for r in result]
    return sorted(inserted, key=lambda i: i.row.id)


async def counts(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    result = await conn.execute(
        text("SELECT channel, status, sum(n) AS n FROM message_counts GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2")
    )
    return [(r.channel, r.status, int(r.n)) for r in result]
