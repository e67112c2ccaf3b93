"""Operator-driven transitions: cancel, pause, resume, retry/redrive, and releasing scheduled messages.

Each is one `transition` statement (counters, per-channel counts and audit events move
with the messages). Callers own the transaction; the campaign row is locked first by the
service where a campaign's status changes too.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db.transitions import sql_in, transition
from notifq.vocabulary import CampaignStatus, Event, Lane, MessageStatus

S, C, E = MessageStatus, CampaignStatus, Event  # short names for the SQL below
REQUEUE_LIMIT = 1_000_000  # failed messages one retry or redrive request queues again
_OPEN = sql_in((S.PENDING, S.QUEUED))


@dataclass(frozen=True)
class Released:
    """A batch that now has queued messages and needs its job written to Redis."""

    job_id: int
    priority: Lane


def _released(rows: Sequence[object]) -> list[Released]:
    seen: dict[int, str] = {}
    for r in rows:
        if r.status == MessageStatus.QUEUED and r.job_id is not None:  # type: ignore[attr-defined]
            seen[r.job_id] = r.priority  # type: ignore[attr-defined]
    return [Released(job_id, Lane(priority)) for job_id, priority in sorted(seen.items())]


_CANCEL_CAMPAIGN = text(
    transition(
        f"""
        UPDATE messages m SET status = '{S.CANCELLED}', updated_at = now()
        FROM (SELECT id, status FROM messages WHERE campaign_id = :c AND status IN ({_OPEN})
              FOR UPDATE) o
        WHERE m.id = o.id
        RETURNING m.id, m.campaign_id, m.channel, o.status AS old_status, m.status, m.attempts,
            '{E.CANCELLED}'::text AS event, NULL::text AS detail, NULL::text AS provider
        """
    )
)


async def cancel_campaign_messages(conn: AsyncConnection, campaign_id: uuid.UUID) -> int:
    """What has not started is cancelled; messages in flight finish and land in sent/failed."""
    return len((await conn.execute(_CANCEL_CAMPAIGN, {"c": campaign_id})).all())


_CANCEL_ONE = text(
    transition(
        f"""
        UPDATE messages m SET status = '{S.CANCELLED}', updated_at = now()
        FROM (SELECT id, status FROM messages WHERE id = :id AND status IN ({_OPEN}) FOR UPDATE) o
        WHERE m.id = o.id
        RETURNING m.id, m.campaign_id, m.channel, o.status AS old_status, m.status, m.attempts,
            '{E.CANCELLED}'::text AS event, NULL::text AS detail, NULL::text AS provider
        """
    )
)


async def cancel_message(conn: AsyncConnection, message_id: int) -> bool:
    return bool((await conn.execute(_CANCEL_ONE, {"id": message_id})).all())


_PAUSE = text(
    transition(
        f"""
        UPDATE messages m SET status = '{S.PENDING}', updated_at = now()
        WHERE m.campaign_id = :c AND m.status = '{S.QUEUED}'
        RETURNING m.id, m.campaign_id, m.channel, '{S.QUEUED}'::text AS old_status, m.status, m.attempts,
            '{E.PAUSED}'::text AS event, NULL::text AS detail, NULL::text AS provider
        """
    )
)


async def pause_campaign_messages(conn: AsyncConnection, campaign_id: uuid.UUID) -> int:
    return len((await conn.execute(_PAUSE, {"c": campaign_id})).all())


_RESUME = text(
    transition(
        f"""
        UPDATE messages m SET status = '{S.QUEUED}', updated_at = now()
        WHERE m.campaign_id = :c AND m.status = '{S.PENDING}' AND (m.send_at IS NULL OR m.send_at <= now())
        RETURNING m.id, m.campaign_id, m.channel, '{S.PENDING}'::text AS old_status, m.status, m.attempts,
            '{E.RESUMED}'::text AS event, NULL::text AS detail, NULL::text AS provider, m.job_id, m.priority
        """
    )
)


async def resume_campaign_messages(conn: AsyncConnection, campaign_id: uuid.UUID) -> list[Released]:
    """Held messages back to the queue in their own batches; sent ones are never touched."""
    return _released((await conn.execute(_RESUME, {"c": campaign_id})).all())


_RELEASE_DUE = text(
    transition(
        f"""
        UPDATE messages m SET status = '{S.QUEUED}', updated_at = now()
        FROM (SELECT q.id FROM messages q LEFT JOIN campaigns c ON c.id = q.campaign_id
              WHERE q.status = '{S.PENDING}' AND q.send_at <= now()
                AND (c.id IS NULL OR c.status IN ({sql_in((C.SCHEDULED, C.PENDING, C.PROCESSING))}))
              ORDER BY q.send_at LIMIT :limit FOR UPDATE OF q SKIP LOCKED) due
        WHERE m.id = due.id
        RETURNING m.id, m.campaign_id, m.channel, '{S.PENDING}'::text AS old_status, m.status, m.attempts,
            '{E.RELEASED}'::text AS event, NULL::text AS detail, NULL::text AS provider, m.job_id, m.priority
        """
    )
)


async def release_due(conn: AsyncConnection, limit: int) -> list[Released]:
    """Scheduled messages whose time has come (not of a paused or cancelled campaign)."""
    released = _released((await conn.execute(_RELEASE_DUE, {"limit": limit})).all())
    await conn.execute(
        text(
            f"UPDATE campaigns SET status = '{C.PROCESSING}', updated_at = now(), enqueued_at = now() "
            f"WHERE status = '{C.SCHEDULED}' AND send_at <= now()"
        )
    )
    return released


_REQUEUE = text(
    transition(
        f"""
        UPDATE messages m SET status = '{S.QUEUED}', attempts = 0, lease_until = NULL, updated_at = now(),
            job_id = u.job_id
        FROM unnest(CAST(:ids AS bigint[]), CAST(:jobs AS bigint[])) AS u(id, job_id)
        WHERE m.id = u.id AND m.status = '{S.FAILED}'
        RETURNING m.id, m.campaign_id, m.channel, '{S.FAILED}'::text AS old_status, m.status, m.attempts,
            CAST(:event AS text) AS event, NULL::text AS detail, NULL::text AS provider, m.job_id, m.priority
        """
    )
)


async def requeue_failed(
    conn: AsyncConnection, where: str, params: dict[str, object], batch_size: int, event: Event, limit: int
) -> tuple[int, list[Released]]:
    """Failed messages (matching `where`) back to the queue with fresh attempts, in new batches.

    Batches never mix campaigns or lanes, so each keeps its campaign's and lane's semantics.
    """
    rows = (
        await conn.execute(
            text(
                f"SELECT id, campaign_id, priority FROM messages WHERE status = '{S.FAILED}' AND {where} "
                "ORDER BY campaign_id NULLS FIRST, priority, id LIMIT :limit FOR UPDATE"
            ),
            {**params, "limit": limit},
        )
    ).all()
    if not rows:
        return 0, []
    groups: list[list[int]] = []
    key: object = object()
    for r in rows:
        if (r.campaign_id, r.priority) != key or len(groups[-1]) >= batch_size:
            groups.append([])
            key = (r.campaign_id, r.priority)
        groups[-1].append(r.id)
    job_ids = [
        row[0]
        for row in await conn.execute(
            text("SELECT nextval('notifq_job_seq') FROM generate_series(1, :n)"), {"n": len(groups)}
        )
    ]
    ids = [mid for group in groups for mid in group]
    jobs = [job for job, group in zip(job_ids, groups, strict=True) for _ in group]
    moved = (await conn.execute(_REQUEUE, {"ids": ids, "jobs": jobs, "event": event})).all()
    return len(moved), _released(moved)
