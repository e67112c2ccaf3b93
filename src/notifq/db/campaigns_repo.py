"""SQL for the campaigns table. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MESSAGE_STATUSES = ("pending", "queued", "sending", "sent", "failed", "cancelled")
TERMINAL_MESSAGE_STATUSES = frozenset({"sent", "failed", "cancelled"})
CAMPAIGN_STATUSES = ("pending", "processing", "completed", "completed_with_failures", "cancelled")


@dataclass(frozen=True)
class CampaignRow:
    id: uuid.UUID
    name: str
    subject: str | None
    body: str | None
    status: str
    total_messages: int
    counts: Mapping[str, int]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


_COLUMNS = (
    "id, name, subject, body, status, total_messages, pending_count, queued_count, sending_count, "
    "sent_count, failed_count, cancelled_count, created_at, updated_at, completed_at"
)


def _row(r: Any) -> CampaignRow:
    m = r._mapping
    return CampaignRow(
        id=m["id"], name=m["name"], subject=m["subject"], body=m["body"], status=m["status"],
        total_messages=m["total_messages"],
        counts={s: m[f"{s}_count"] for s in MESSAGE_STATUSES},
        created_at=m["created_at"], updated_at=m["updated_at"], completed_at=m["completed_at"],
    )  # fmt: skip


async def insert(
    conn: AsyncConnection, *, name: str, subject: str | None, body: str | None, total: int,
    created_by: uuid.UUID | None,
) -> CampaignRow:  # fmt: skip
    result = await conn.execute(
        text(
            "INSERT INTO campaigns (name, subject, body, total_messages, queued_count, created_by) "
            f"VALUES (:name, :subject, :body, :total, :total, :created_by) RETURNING {_COLUMNS}"
        ),
        {"name": name, "subject": subject, "body": body, "total": total, "created_by": created_by},
    )
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


async def apply_deltas(conn: AsyncConnection, campaign_id: uuid.UUID, deltas: Counter[str]) -> None:
    """Move the per-status counters by the changes a batch statement just made to its messages."""
    if not any(deltas.values()):
        return
    sets = ", ".join(f"{s}_count = {s}_count + :{s}" for s in MESSAGE_STATUSES)
    params: dict[str, Any] = {s: deltas.get(s, 0) for s in MESSAGE_STATUSES}
    params["id"] = campaign_id
    await conn.execute(text(f"UPDATE campaigns SET {sets}, updated_at = now() WHERE id = :id"), params)


async def complete_if_done(conn: AsyncConnection, campaign_id: uuid.UUID) -> str | None:
    """Reach the terminal state exactly once: only the statement that sees `processing` wins."""
    result = await conn.execute(
        text(
            "UPDATE campaigns SET status = CASE WHEN failed_count > 0 THEN 'completed_with_failures' "
            "ELSE 'completed' END, completed_at = now(), updated_at = now() "
            "WHERE id = :id AND status IN ('pending', 'processing') "
            "AND sent_count + failed_count + cancelled_count = total_messages RETURNING status"
        ),
        {"id": campaign_id},
    )
    return result.scalar_one_or_none()


async def mark_enqueued(conn: AsyncConnection, campaign_ids: list[uuid.UUID]) -> None:
    await conn.execute(
        text(
            "UPDATE campaigns SET status = 'processing', enqueued_at = now(), updated_at = now() "
            "WHERE id = ANY(:ids) AND status = 'pending'"
        ),
        {"ids": campaign_ids},
    )


async def set_status(conn: AsyncConnection, campaign_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        text(
            "UPDATE campaigns SET status = :status, updated_at = now(), "
            "completed_at = CASE WHEN :status IN ('pending', 'processing') THEN NULL ELSE now() END "
            "WHERE id = :id"
        ),
        {"id": campaign_id, "status": status},
    )


async def stale_pending(conn: AsyncConnection, grace_seconds: float) -> list[uuid.UUID]:
    result = await conn.execute(
        text(
            "SELECT id FROM campaigns WHERE status = 'pending' AND created_at < now() - make_interval(secs => :grace)"
        ),
        {"grace": grace_seconds},
    )
    return [r[0] for r in result]
