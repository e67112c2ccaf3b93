"""SQL for the messages table: every statement moves a whole batch in one round trip.

The hot-path statements (claim, record) also move the campaign's per-status counters in
the same statement, so the counters always equal the per-status counts of the rows.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db.engine import raw_connection

INSERT_CHUNK = 1000


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    campaign_id: uuid.UUID
    recipient: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What a delivery attempt decided for one message.

    status is `sent`, `failed`, or `queued` (retry later under `retry_job_id`).
    """

    message_id: int
    attempts: int
    status: str
    error: str | None = None
    retry_job_id: int | None = None


@dataclass(frozen=True)
class MessageRow:
    id: int
    recipient: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime


async def reserve_job_ids(conn: AsyncConnection, count: int) -> list[int]:
    if count <= 0:
        return []
    result = await conn.execute(text("SELECT nextval('notifq_job_seq') FROM generate_series(1, :n)"), {"n": count})
    return [r[0] for r in result]


async def copy_queued(
    conn: AsyncConnection, campaign_id: uuid.UUID, recipients: Iterable[str], job_ids: Sequence[int], batch_size: int
) -> int:
    """COPY the messages in chunks of 1,000, each already assigned to its batch (job).

    COPY is ~2.5x faster than executemany here (docs/benchmarks.md); chunking bounds the
    memory held per round trip for a million-recipient campaign.
    """
    raw = await raw_connection(conn)
    columns = ("campaign_id", "recipient", "status", "job_id")
    chunk: list[tuple[uuid.UUID, str, str, int]] = []
    n = 0
    for recipient in recipients:
        chunk.append((campaign_id, recipient, "queued", job_ids[n // batch_size]))
        n += 1
        if len(chunk) == INSERT_CHUNK:
            await raw.copy_records_to_table("messages", records=chunk, columns=columns)
            chunk = []
    if chunk:
        await raw.copy_records_to_table("messages", records=chunk, columns=columns)
    return n


STATUSES = ("pending", "queued", "sending", "sent", "failed", "cancelled")
_COMPLETE = (
    "c.status IN ('pending', 'processing') AND c.sent_count + d.sent + c.failed_count + d.failed "
    "+ c.cancelled_count + d.cancelled = c.total_messages"
)


def _with_counters(moved_sql: str, old_status: str) -> str:
    """Wrap a message UPDATE (a CTE named `moved` returning campaign_id, status) so the same
    statement moves the campaign counters and, when the last message lands, completes the
    campaign exactly once.

    Run in autocommit: the campaign row is then locked only inside the server for the
    statement's duration, never across a client round trip, which is what let every
    worker queue up behind one hot row before.
    """
    deltas = ", ".join(
        f"count(*) FILTER (WHERE status = '{s}') - {'count(*)' if s == old_status else '0'} AS {s}" for s in STATUSES
    )
    counters = ", ".join(f"{s}_count = c.{s}_count + d.{s}" for s in STATUSES)
    return f"""
    WITH moved AS ({moved_sql}),
    d AS (SELECT campaign_id, {deltas} FROM moved GROUP BY campaign_id),
    camp AS (
        UPDATE campaigns c SET {counters},
            status = CASE WHEN {_COMPLETE} THEN
                CASE WHEN c.failed_count + d.failed > 0 THEN 'completed_with_failures' ELSE 'completed' END
                ELSE c.status END,
            completed_at = CASE WHEN {_COMPLETE} THEN now() ELSE c.completed_at END,
            updated_at = now()
        FROM d WHERE c.id = d.campaign_id
        RETURNING c.id
    )
    SELECT * FROM moved
    """


# No SELECT … FOR UPDATE: locking a row writes a WAL record per row before the UPDATE
# writes its own. The UPDATE's re-check of `status = 'queued'` already makes a concurrent
# claimer of the same row skip it, so each message is claimed once.
_CLAIM = text(
    _with_counters(
        """
        UPDATE messages m
        SET status = CASE WHEN c.status = 'cancelled' THEN 'cancelled' ELSE 'sending' END,
            attempts = CASE WHEN c.status = 'cancelled' THEN m.attempts ELSE m.attempts + 1 END,
            lease_until = CASE WHEN c.status = 'cancelled' THEN NULL
                               ELSE now() + make_interval(secs => :lease) END,
            updated_at = now()
        FROM campaigns c
        WHERE m.id IN (SELECT id FROM messages WHERE job_id = :job_id AND status = 'queued'
                       ORDER BY id LIMIT :limit)
          AND m.status = 'queued' AND c.id = m.campaign_id
        RETURNING m.id, m.campaign_id, m.recipient, m.attempts, m.status
        """,
        old_status="queued",
    )
)


async def claim(conn: AsyncConnection, job_id: int, limit: int, lease_seconds: float) -> list[ClaimedMessage]:
    """Take up to `limit` queued messages of a batch; those of a cancelled campaign become `cancelled`."""
    result = await conn.execute(_CLAIM, {"job_id": job_id, "limit": limit, "lease": lease_seconds})
    claimed = [ClaimedMessage(r.id, r.campaign_id, r.recipient, r.attempts) for r in result if r.status == "sending"]
    claimed.sort(key=lambda m: m.id)
    return claimed


_UNNEST = """unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:attempts AS int[]),
                    CAST(:errors AS text[]), CAST(:jobs AS bigint[])) AS r(id, status, attempts, error, job_id)"""

# The owner of the current attempt writes its outcome; `sent` is also accepted from an
# older attempt (the provider did take the message), so it never gets sent again.
_RECORD = text(
    _with_counters(
        f"""
        UPDATE messages m
        SET status = r.status,
            last_error = CASE WHEN r.status = 'sent' THEN m.last_error ELSE r.error END,
            job_id = COALESCE(r.job_id, m.job_id), lease_until = NULL, updated_at = now()
        FROM {_UNNEST}
        WHERE m.id = r.id AND m.status = 'sending' AND (r.status = 'sent' OR m.attempts = r.attempts)
        RETURNING m.id, m.campaign_id, m.status, m.job_id
        """,
        old_status="sending",
    )
)

# A late `sent` for a message the reconciler already put back in the queue.
_RECORD_LATE_SENT = text(
    _with_counters(
        f"""
        UPDATE messages m SET status = 'sent', lease_until = NULL, updated_at = now()
        FROM {_UNNEST}
        WHERE m.id = r.id AND m.status = 'queued'
        RETURNING m.id, m.campaign_id, m.status, m.job_id
        """,
        old_status="queued",
    )
)


@dataclass(frozen=True)
class RecordResult:
    requeued_jobs: set[int]
    stale: int  # outcomes that lost to a newer attempt or an earlier terminal state


def _params(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    return {
        "ids": [o.message_id for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "attempts": [o.attempts for o in outcomes],
        "errors": [o.error for o in outcomes],
        "jobs": [o.retry_job_id for o in outcomes],
    }


async def record_outcomes(conn: AsyncConnection, outcomes: Sequence[Outcome]) -> RecordResult:
    """Write many outcomes with one statement, guarded so each message ends in exactly one terminal state."""
    if not outcomes:
        return RecordResult(set(), 0)
    requeued: set[int] = set()
    applied: set[int] = set()
    for r in await conn.execute(_RECORD, _params(outcomes)):
        applied.add(r.id)
        if r.status == "queued":
            requeued.add(r.job_id)
    late = [o for o in outcomes if o.status == "sent" and o.message_id not in applied]
    if late:
        applied.update(r.id for r in await conn.execute(_RECORD_LATE_SENT, _params(late)))
    return RecordResult(requeued, len(outcomes) - len(applied))


async def move_queued(conn: AsyncConnection, old_job_id: int, new_job_id: int) -> int:
    """Hand a batch's unclaimed messages to another batch (job slice over, or SIGTERM)."""
    result = await conn.execute(
        text("UPDATE messages SET job_id = :new WHERE job_id = :old AND status = 'queued'"),
        {"new": new_job_id, "old": old_job_id},
    )
    return int(result.rowcount)


async def requeue_failed(conn: AsyncConnection, campaign_id: uuid.UUID, batch_size: int) -> tuple[int, set[int]]:
    """Failed messages back to `queued` with fresh attempts, in new batches (the retry endpoint)."""
    ids_result = await conn.execute(
        text("SELECT id FROM messages WHERE campaign_id = :c AND status = 'failed' ORDER BY id FOR UPDATE"),
        {"c": campaign_id},
    )
    ids = [r[0] for r in ids_result]
    if not ids:
        return 0, set()
    job_ids = await reserve_job_ids(conn, -(-len(ids) // batch_size))
    await conn.execute(
        text(
            "UPDATE messages m SET status = 'queued', attempts = 0, lease_until = NULL, updated_at = now(), "
            "job_id = u.job_id FROM unnest(CAST(:ids AS bigint[]), CAST(:jobs AS bigint[])) AS u(id, job_id) "
            "WHERE m.id = u.id"
        ),
        {"ids": ids, "jobs": [job_ids[i // batch_size] for i in range(len(ids))]},
    )
    return len(ids), set(job_ids)


async def cancel_open(conn: AsyncConnection, campaign_id: uuid.UUID) -> Counter[str]:
    """Cancel what has not started; messages in flight finish and land in sent/failed."""
    result = await conn.execute(
        text(
            "WITH c AS (SELECT id, status AS old_status FROM messages "
            "WHERE campaign_id = :c AND status IN ('pending', 'queued') FOR UPDATE) "
            "UPDATE messages m SET status = 'cancelled', updated_at = now() FROM c WHERE m.id = c.id "
            "RETURNING c.old_status"
        ),
        {"c": campaign_id},
    )
    deltas: Counter[str] = Counter()
    for (old,) in result:
        deltas[old] -= 1
        deltas["cancelled"] += 1
    return deltas


async def expired_leases(conn: AsyncConnection, limit: int) -> list[ClaimedMessage]:
    """Messages whose worker vanished mid-send (SIGKILL, OOM, lost host)."""
    result = await conn.execute(
        text(
            "SELECT id, campaign_id, recipient, attempts FROM messages "
            "WHERE status = 'sending' AND lease_until < now() ORDER BY lease_until LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [ClaimedMessage(id=r.id, campaign_id=r.campaign_id, recipient=r.recipient, attempts=r.attempts)
            for r in result]  # fmt: skip


async def open_jobs(conn: AsyncConnection, limit: int) -> list[int]:
    """Distinct batches that still have queued or sending messages.

    A loose index scan over the partial `messages_open_by_job` index: one index probe per
    batch, so a million-message backlog (2,000 batches) costs 2,000 probes, not a million rows.
    """
    result = await conn.execute(
        text(
            """
            WITH RECURSIVE j(job_id, n) AS (
                (SELECT job_id, 1 FROM messages WHERE status IN ('queued', 'sending') AND job_id IS NOT NULL
                 ORDER BY job_id LIMIT 1)
                UNION ALL
                SELECT (SELECT m.job_id FROM messages m
                        WHERE m.status IN ('queued', 'sending') AND m.job_id > j.job_id
                        ORDER BY m.job_id LIMIT 1), j.n + 1
                FROM j WHERE j.job_id IS NOT NULL AND j.n < :limit
            )
            SELECT job_id FROM j WHERE job_id IS NOT NULL
            """
        ),
        {"limit": limit},
    )
    return [r[0] for r in result]


async def stale_among(conn: AsyncConnection, job_ids: Sequence[int], grace_seconds: float) -> list[int]:
    """Of these batches, those with queued messages untouched for `grace_seconds`."""
    if not job_ids:
        return []
    result = await conn.execute(
        text(
            "SELECT DISTINCT job_id FROM messages WHERE job_id = ANY(CAST(:jobs AS bigint[])) "
            "AND status = 'queued' AND updated_at < now() - make_interval(secs => :grace)"
        ),
        {"jobs": list(job_ids), "grace": grace_seconds},
    )
    return sorted(r[0] for r in result)


async def list_page(
    conn: AsyncConnection, campaign_id: uuid.UUID, *, status: str | None, after_id: int | None, limit: int
) -> list[MessageRow]:
    clauses = ["campaign_id = :c"]
    params: dict[str, object] = {"c": campaign_id, "limit": limit}
    if status:
        clauses.append("status = :status")
        params["status"] = status
    if after_id is not None:
        clauses.append("id > :after")
        params["after"] = after_id
    result = await conn.execute(
        text(
            "SELECT id, recipient, status, attempts, last_error, updated_at FROM messages "
            f"WHERE {' AND '.join(clauses)} ORDER BY id LIMIT :limit"
        ),
        params,
    )
    return [MessageRow(id=r.id, recipient=r.recipient, status=r.status, attempts=r.attempts,
                       last_error=r.last_error, updated_at=r.updated_at) for r in result]  # fmt: skip


async def count_by_status(conn: AsyncConnection, campaign_id: uuid.UUID) -> dict[str, int]:
    result = await conn.execute(
        text("SELECT status, count(*) FROM messages WHERE campaign_id = :c GROUP BY status"), {"c": campaign_id}
    )
    return {r[0]: r[1] for r in result}
