"""SQL for the worker registry (migration 0011): who holds which claims, and who has been given up for dead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.vocabulary import MessageStatus

FORGET_DAYS = 7  # stopped or lost workers' rows are deleted after this long (their number stays in messages)


@dataclass(frozen=True)
class RegisteredWorker:
    number: int
    name: str
    lost: bool


async def register(conn: AsyncConnection, name: str, host: str, pid: int) -> int:
    """The new worker's number, written into `messages.claimed_by` by its claims."""
    row = await conn.execute(
        # ON CONFLICT: a retry after an INSERT whose answer was lost gets the same number back.
        text(
            "INSERT INTO workers (name, host, pid) VALUES (:name, :host, :pid) "
            "ON CONFLICT (name) DO UPDATE SET stopped_at = NULL, lost_at = NULL RETURNING id"
        ),
        {"name": name, "host": host, "pid": pid},
    )
    return int(row.scalar_one())


async def mark_stopped(conn: AsyncConnection, number: int) -> None:
    await conn.execute(text("UPDATE workers SET stopped_at = now() WHERE id = :id"), {"id": number})


async def running(conn: AsyncConnection, started_before_seconds: float) -> list[RegisteredWorker]:
    """Workers not stopped, registered at least that long ago (a new one may not have sent its first beat)."""
    result = await conn.execute(
        text(
            "SELECT id, name, lost_at IS NOT NULL AS lost FROM workers WHERE stopped_at IS NULL "
            "AND started_at < now() - make_interval(secs => :s) ORDER BY id"
        ),
        {"s": started_before_seconds},
    )
    return [RegisteredWorker(r.id, r.name, r.lost) for r in result]


async def mark_lost(conn: AsyncConnection, numbers: Sequence[int]) -> None:
    await conn.execute(
        text("UPDATE workers SET lost_at = now() WHERE id = ANY(CAST(:ids AS integer[])) AND lost_at IS NULL"),
        {"ids": list(numbers)},
    )


async def mark_found(conn: AsyncConnection, numbers: Sequence[int]) -> None:
    """Workers given up for dead whose heartbeat came back (a partition healed, a long pause ended)."""
    await conn.execute(
        text("UPDATE workers SET lost_at = NULL WHERE id = ANY(CAST(:ids AS integer[]))"), {"ids": list(numbers)}
    )


@dataclass(frozen=True)
class Released:
    messages: int  # claims whose leases were ended
    jobs: list[int]  # the batches they came from, whose arq jobs the dead workers were running


async def release_claims(conn: AsyncConnection, numbers: Sequence[int]) -> Released:
    """End the leases of every message these workers hold (the reconciler's expiry path then takes them back).

    Reads through the partial index on `sending` messages (only messages in flight), filtered by owner.
    """
    result = await conn.execute(
        text(
            "UPDATE messages SET lease_until = now() - interval '1 second' "
            f"WHERE status = '{MessageStatus.SENDING}' AND lease_until > now() "
            "AND claimed_by = ANY(CAST(:ids AS integer[])) RETURNING job_id"
        ),
        {"ids": list(numbers)},
    )
    rows = result.all()
    return Released(len(rows), sorted({r.job_id for r in rows if r.job_id is not None}))


async def forget_old(conn: AsyncConnection) -> int:
    result = await conn.execute(
        text(
            "DELETE FROM workers WHERE COALESCE(stopped_at, lost_at) < now() - make_interval(days => :d) "
            "AND (stopped_at IS NOT NULL OR lost_at IS NOT NULL)"
        ),
        {"d": FORGET_DAYS},
    )
    return int(result.rowcount)
