"""SQL for single notifications: one statement per request (a batch of up to 1,000 included)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db.messages_repo import MessageRow, message_row
from notifq.db.transitions import transition
from notifq.vocabulary import MessageStatus


@dataclass(frozen=True)
class NewNotification:
    """One single notification to insert (already checked by the service's caller)."""

    channel: str
    recipient: str
    subject: str | None
    body: str
    data: dict[str, str] | None
    priority: str
    send_at: datetime | None


@dataclass(frozen=True)
class Inserted:
    row: MessageRow
    job_id: int


# Job numbers are drawn inside the statement (a MATERIALIZED CTE runs nextval exactly once
# per batch), so a single send is one round trip: in autocommit, no BEGIN/COMMIT either.
_INSERT = text(
    transition(
        """
        INSERT INTO messages (channel, recipient, subject, body, data, priority, status, send_at, job_id, created_by)
        SELECT n.channel, n.recipient, n.subject, n.body, n.data, n.priority, n.status, n.send_at, j.job_id,
               CAST(:created_by AS uuid)
        FROM unnest(CAST(:channels AS text[]), CAST(:recipients AS text[]), CAST(:subjects AS text[]),
                    CAST(:bodies AS text[]), CAST(:data AS jsonb[]), CAST(:priorities AS text[]),
                    CAST(:statuses AS text[]), CAST(:send_ats AS timestamptz[]), CAST(:batches AS int[]))
            WITH ORDINALITY AS n(channel, recipient, subject, body, data, priority, status, send_at, batch, ord)
        JOIN jobs j ON j.batch = n.batch
        ORDER BY n.ord
        RETURNING id, campaign_id, channel, NULL::text AS old_status, status, attempts,
            NULL::text AS event, NULL::text AS detail, NULL::text AS provider, job_id, priority,
            recipient, subject, last_error, provider_message_id, send_at, created_at, updated_at
        """,
        before="jobs AS MATERIALIZED (SELECT b AS batch, nextval('notifq_job_seq') AS job_id "
        "FROM generate_series(0, CAST(:batch_count AS int) - 1) AS b)",
    )
)


async def insert(
    conn: AsyncConnection, requests: Sequence[NewNotification], batches: Sequence[int], created_by: uuid.UUID | None
) -> list[Inserted]:
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
            "created_by": created_by,
        },
    )
    inserted = [Inserted(message_row(r), r.job_id) for r in result]
    return sorted(inserted, key=lambda i: i.row.id)


async def counts(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    result = await conn.execute(
        text("SELECT channel, status, sum(n) AS n FROM message_counts GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2")
    )
    return [(r.channel, r.status, int(r.n)) for r in result]
