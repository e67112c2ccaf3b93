"""SQL for the suppression list: addresses no message goes to (see migration 0008)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.vocabulary import Channel, SuppressionReason

_COLUMNS = "channel, address, category, reason, detail, message_id, campaign_id, created_at, id"


@dataclass(frozen=True)
class Suppression:
    channel: Channel
    address: str  # normalised (addresses.suppression_key)
    reason: SuppressionReason
    category: str | None = None  # None: every category; only an unsubscribe names one
    detail: str | None = None
    message_id: int | None = None
    campaign_id: uuid.UUID | None = None
    created_at: datetime | None = None
    id: int | None = None  # list order (newest first) and cursor


def _row(r: Any) -> Suppression:
    return Suppression(Channel(r.channel), r.address, SuppressionReason(r.reason), r.category or None, r.detail,
                       r.message_id, r.campaign_id, r.created_at, r.id)  # fmt: skip


# A stronger entry replaces an unsubscribe (which only stops bulk messages) for the same address; anything
# else already there stays as it was (the first reason is the one an operator needs to see).
_UPSERT = text(
    f"""
    INSERT INTO suppressions (channel, address, category, reason, detail, message_id, campaign_id)
    SELECT DISTINCT ON (channel, address, category) * FROM unnest(
        CAST(:channels AS text[]), CAST(:addresses AS text[]), CAST(:categories AS text[]), CAST(:reasons AS text[]),
        CAST(:details AS text[]), CAST(:messages AS bigint[]), CAST(:campaigns AS uuid[]))
        AS s(channel, address, category, reason, detail, message_id, campaign_id)
    ORDER BY channel, address, category, reason = '{SuppressionReason.UNSUBSCRIBED}'
    ON CONFLICT (channel, address, category) DO UPDATE SET reason = EXCLUDED.reason, detail = EXCLUDED.detail,
        message_id = EXCLUDED.message_id, campaign_id = EXCLUDED.campaign_id, created_at = now()
    WHERE suppressions.reason = '{SuppressionReason.UNSUBSCRIBED}'
        AND EXCLUDED.reason <> '{SuppressionReason.UNSUBSCRIBED}'
    RETURNING (xmax = 0) AS created, {_COLUMNS}
    """
)


async def add(conn: AsyncConnection, entries: Sequence[Suppression]) -> list[tuple[Suppression, bool]]:
    """Insert (or strengthen) entries in one statement, sorted so concurrent writers lock in one order.
    Returns the rows written, each with True if it is new."""
    if not entries:
        return []
    entries = sorted(entries, key=lambda e: (e.channel, e.address, e.category or ""))
    result = await conn.execute(_UPSERT, {
        "channels": [e.channel for e in entries], "addresses": [e.address for e in entries],
        "categories": [e.category or "" for e in entries], "reasons": [e.reason for e in entries],
        "details": [e.detail for e in entries], "messages": [e.message_id for e in entries],
        "campaigns": [e.campaign_id for e in entries],
    })  # fmt: skip
    return [(_row(r), bool(r.created)) for r in result]


async def get(conn: AsyncConnection, channel: str, address: str) -> list[Suppression]:
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM suppressions WHERE channel = :c AND address = :a ORDER BY category"),
        {"c": channel, "a": address},
    )
    return [_row(r) for r in result]


async def remove(conn: AsyncConnection, channel: str, address: str) -> int:
    result = await conn.execute(
        text("DELETE FROM suppressions WHERE channel = :c AND address = :a"), {"c": channel, "a": address}
    )
    return int(result.rowcount)


async def list_page(
    conn: AsyncConnection, *, channel: str | None, reason: str | None, before: int | None, limit: int
) -> list[Suppression]:
    """Newest first, keyset-paginated on `id`: a deep page costs what the first does."""
    clauses, params = [], {"limit": limit}
    if channel:
        clauses.append("channel = :channel")
        params["channel"] = channel  # type: ignore[assignment]
    if reason:
        clauses.append("reason = :reason")
        params["reason"] = reason  # type: ignore[assignment]
    if before is not None:
        clauses.append("id < :before")
        params["before"] = before
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM suppressions {where} ORDER BY id DESC LIMIT :limit"), params
    )
    return [_row(r) for r in result]


async def counts(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    """(channel, reason, entries), for /metrics."""
    result = await conn.execute(
        text("SELECT channel, reason, count(*) AS n FROM suppressions GROUP BY channel, reason ORDER BY 1, 2")
    )
    return [(r.channel, r.reason, r.n) for r in result]


async def lift(conn: AsyncConnection, channel: str, reason: str, keep: Sequence[str]) -> int:
    """Remove `reason` entries of `channel` whose address is not in `keep` (the provider's current list)."""
    result = await conn.execute(
        text(
            "DELETE FROM suppressions WHERE channel = :c AND reason = :r AND NOT (address = ANY(CAST(:keep AS text[])))"
        ),
        {"c": channel, "r": reason, "keep": list(keep)},
    )
    return int(result.rowcount)
