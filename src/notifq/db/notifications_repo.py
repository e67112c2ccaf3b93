"""SQL for single notifications: one INSERT per request (a batch of up to 1,000 included)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db.transitions import transition
from notifq.validation import NotificationRequest


@dataclass(frozen=True)
class Inserted:
    id: int
    status: str
    job_id: int
    priority: str


_INSERT = text(
    transition(
        """
        INSERT INTO messages (channel, recipient, subject, body, data, priority, status, send_at, job_id, created_by)
        SELECT n.channel, n.recipient, n.subject, n.body, n.data, n.priority, n.status, n.send_at, n.job_id,
               CAST(:created_by AS uuid)
        FROM unnest(CAST(:channels AS text[]), CAST(:recipients AS text[]), CAST(:subjects AS text[]),
                    CAST(:bodies AS text[]), CAST(:data AS jsonb[]), CAST(:priorities AS text[]),
                    CAST(:statuses AS text[]), CAST(:send_ats AS timestamptz[]), CAST(:jobs AS bigint[]))
            WITH ORDINALITY AS n(channel, recipient, subject, body, data, priority, status, send_at, job_id, ord)
        ORDER BY n.ord
        RETURNING id, campaign_id, channel, NULL::text AS old_status, status, attempts,
            NULL::text AS event, NULL::text AS detail, NULL::text AS provider, job_id, priority
        """
    )
)


async def insert(
    conn: AsyncConnection, requests: Sequence[NotificationRequest], job_ids: Sequence[int], created_by: uuid.UUID | None
) -> list[Inserted]:
    """Insert in request order (identity values follow it, so sorting by id restores it)."""
    result = await conn.execute(
        _INSERT,
        {
            "channels": [r.channel for r in requests],
            "recipients": [r.to for r in requests],
            "subjects": [r.subject for r in requests],
            "bodies": [r.body for r in requests],
            "data": [json.dumps(r.data) if r.data else None for r in requests],
            "priorities": [r.priority for r in requests],
            "statuses": ["pending" if r.send_at else "queued" for r in requests],
            "send_ats": [r.send_at for r in requests],
            "jobs": list(job_ids),
            "created_by": created_by,
        },
    )
    return sorted((Inserted(r.id, r.status, r.job_id, r.priority) for r in result), key=lambda i: i.id)


async def counts(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    result = await conn.execute(text("SELECT channel, status, n FROM message_counts WHERE n <> 0 ORDER BY 1, 2"))
    return [(r.channel, r.status, int(r.n)) for r in result]
