"""SQL for the in-app inbox: listing, replay of un-ACKed notifications, and receipts (ACK / READ) in batches.

Served by the partial index `messages_by_subscriber (subscriber_id, id)` (migration 0006).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db.transitions import sql_in
from notifq.vocabulary import Channel, Event, MessageStatus

S = MessageStatus
# What a client can have received: the fan-out happens before the worker records `sent`,
# so an ACK may arrive while the message is still `sending` (or queued again after a failed record).
_RECEIVABLE = sql_in((S.SENDING, S.SENT, S.QUEUED))
_INBOX = f"subscriber_id = :s AND channel = '{Channel.INAPP}'"
_UNACKED = f"status = '{S.SENT}' AND delivered_at IS NULL"  # what a connect replays


@dataclass(frozen=True)
class InboxItem:
    id: int
    category: str | None
    subject: str | None
    body: str | None
    data: dict[str, Any] | None
    created_at: datetime
    delivered_at: datetime | None
    read_at: datetime | None


_COLUMNS = "id, category, subject, body, data, created_at, delivered_at, read_at"


def _item(r: Any) -> InboxItem:
    return InboxItem(r.id, r.category, r.subject, r.body, r.data, r.created_at, r.delivered_at, r.read_at)


async def unacked(conn: AsyncConnection, subscriber_id: str, *, after_id: int, skip: Sequence[int], limit: int
                  ) -> list[InboxItem]:  # fmt: skip
    """Sent and not ACKed, oldest first, past `after_id`, leaving out `skip` (already in the Redis buffer)."""
    result = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM messages WHERE {_INBOX} AND {_UNACKED} "
            "AND id > :after AND NOT (id = ANY(CAST(:skip AS bigint[]))) ORDER BY id LIMIT :limit"
        ),
        {"s": subscriber_id, "after": after_id, "skip": list(skip), "limit": limit},
    )
    return [_item(r) for r in result]


async def admit(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """Per subscriber that exists: its token key, and whether it has anything un-ACKed (what `unacked` finds)."""
    result = await conn.execute(
        text(
            "SELECT s.id, s.token_key, EXISTS (SELECT 1 FROM messages WHERE subscriber_id = s.id AND channel = "
            f"'{Channel.INAPP}' AND {_UNACKED}) AS unacked FROM subscribers s WHERE s.id = ANY(CAST(:ids AS text[]))"
        ),
        {"ids": list(ids)},
    )
    return {r.id: (str(r.token_key), bool(r.unacked)) for r in result}


async def page(conn: AsyncConnection, subscriber_id: str, *, unread: bool | None, before_id: int | None, limit: int
               ) -> list[InboxItem]:  # fmt: skip
    """Newest first: what was sent (or is being sent) to this subscriber's inbox."""
    where = [_INBOX, f"status IN ({sql_in((S.SENDING, S.SENT))})"]
    if unread is True:
        where.append("read_at IS NULL")
    elif unread is False:
        where.append("read_at IS NOT NULL")
    if before_id is not None:
        where.append("id < :before")
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM messages WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit"),
        {"s": subscriber_id, "before": before_id, "limit": limit},
    )
    return [_item(r) for r in result]


async def unread_count(conn: AsyncConnection, subscriber_id: str) -> int:
    result = await conn.execute(
        text(f"SELECT count(*) FROM messages WHERE {_INBOX} AND status IN ({sql_in((S.SENDING, S.SENT))}) "
             "AND read_at IS NULL"),
        {"s": subscriber_id},
    )  # fmt: skip
    return int(result.scalar_one())


# Receipts: one statement for a whole batch of ACK/READ frames from any number of subscribers.
# Each message is touched once (frames for it are merged first), only by its own subscriber,
# and only if something changes; a READ implies delivery. A field set by this statement
# equals its transaction's now(), which is how the events for what changed are chosen.
_RECEIPTS = text(
    f"""
    WITH r AS (
        SELECT id, sub, bool_or(is_read) AS is_read
        FROM unnest(CAST(:ids AS bigint[]), CAST(:subs AS text[]), CAST(:reads AS boolean[])) AS x(id, sub, is_read)
        GROUP BY id, sub
    ),
    moved AS (
        UPDATE messages m SET delivered_at = COALESCE(m.delivered_at, now()),
            read_at = CASE WHEN r.is_read THEN COALESCE(m.read_at, now()) ELSE m.read_at END
        FROM r
        WHERE m.id = r.id AND m.subscriber_id = r.sub AND m.channel = '{Channel.INAPP}' AND m.status IN ({_RECEIVABLE})
          AND (m.delivered_at IS NULL OR (r.is_read AND m.read_at IS NULL))
        RETURNING m.id, m.delivered_at = now() AS delivered, m.read_at = now() AS was_read
    ),
    ev AS (
        INSERT INTO message_events (message_id, event)
        SELECT id, '{Event.DELIVERED}' FROM moved WHERE delivered
        UNION ALL
        SELECT id, '{Event.READ}' FROM moved WHERE was_read
    )
    SELECT count(*) FROM moved
    """
)


async def record_receipts(conn: AsyncConnection, receipts: Sequence[tuple[int, str, bool]]) -> int:
    """(message id, subscriber id, read?) triples; returns how many messages changed."""
    if not receipts:
        return 0
    result = await conn.execute(
        _RECEIPTS,
        {"ids": [r[0] for r in receipts], "subs": [r[1] for r in receipts], "reads": [r[2] for r in receipts]},
    )
    return int(result.scalar_one())


_READ_ALL = text(
    f"""
    WITH moved AS (
        UPDATE messages SET read_at = now(), delivered_at = COALESCE(delivered_at, now())
        WHERE {_INBOX} AND status IN ({_RECEIVABLE}) AND read_at IS NULL
        RETURNING id, delivered_at = now() AS delivered
    ),
    ev AS (
        INSERT INTO message_events (message_id, event)
        SELECT id, '{Event.DELIVERED}' FROM moved WHERE delivered
        UNION ALL
        SELECT id, '{Event.READ}' FROM moved
    )
    SELECT count(*) FROM moved
    """
)


async def read_all(conn: AsyncConnection, subscriber_id: str) -> int:
    return int((await conn.execute(_READ_ALL, {"s": subscriber_id})).scalar_one())


async def get_item(conn: AsyncConnection, subscriber_id: str, message_id: int) -> InboxItem | None:
    r = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM messages WHERE {_INBOX} AND id = :id AND status IN ({_RECEIVABLE})"),
            {"s": subscriber_id, "id": message_id},
        )
    ).first()
    return _item(r) if r else None
