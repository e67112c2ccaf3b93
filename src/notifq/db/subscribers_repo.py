"""SQL for subscribers (profiles and preferences) and their erasure. The caller owns the transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db.transitions import sql_in, transition
from notifq.vocabulary import Event, MessageStatus, SkipReason

ERASED = "[erased]"  # what an erased subscriber's addresses and texts read as afterwards


@dataclass(frozen=True)
class Profile:
    """The fields a caller sets with PUT (all of them: a PUT replaces the profile)."""

    email: str | None
    phone: str | None
    push_tokens: list[str]
    locale: str | None
    timezone: str | None
    data: dict[str, Any] | None


@dataclass(frozen=True)
class SubscriberRow:
    id: str
    profile: Profile
    preferences: dict[str, Any]
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id, email, phone, push_tokens, locale, timezone, data, preferences, created_at, updated_at"


def _row(r: Any) -> SubscriberRow:
    profile = Profile(r.email, r.phone, list(r.push_tokens or ()), r.locale, r.timezone, r.data)
    return SubscriberRow(r.id, profile, r.preferences or {}, r.created_at, r.updated_at)


async def upsert(conn: AsyncConnection, subscriber_id: str, p: Profile) -> tuple[SubscriberRow, bool]:
    """Create or replace the profile (preferences are kept); True if it was created.

    `xmax = 0` tells an inserted row from an updated one in the same statement, so two
    racing PUTs of a new id give one 201 and one 200, never an error.
    """
    result = await conn.execute(
        text(
            "INSERT INTO subscribers AS s (id, email, phone, push_tokens, locale, timezone, data) "
            "VALUES (:id, :email, :phone, :tokens, :locale, :tz, CAST(:data AS jsonb)) "
            "ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone, "
            "push_tokens = EXCLUDED.push_tokens, locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, "
            "data = EXCLUDED.data, updated_at = now() "
            f"RETURNING {_COLUMNS}, (xmax = 0) AS created"
        ),
        {"id": subscriber_id, "email": p.email, "phone": p.phone, "tokens": p.push_tokens, "locale": p.locale,
         "tz": p.timezone, "data": json.dumps(p.data) if p.data is not None else None},
    )  # fmt: skip
    r = result.one()
    return _row(r), bool(r.created)


async def get(conn: AsyncConnection, subscriber_id: str) -> SubscriberRow | None:
    r = (await conn.execute(text(f"SELECT {_COLUMNS} FROM subscribers WHERE id = :id"), {"id": subscriber_id})).first()
    return _row(r) if r else None


async def token_key(conn: AsyncConnection, subscriber_id: str) -> str | None:
    """The key this profile's tokens carry (a new one if the id is erased and created again)."""
    found = await conn.execute(text("SELECT token_key FROM subscribers WHERE id = :id"), {"id": subscriber_id})
    key = found.scalar_one_or_none()
    return str(key) if key is not None else None


async def unknown(conn: AsyncConnection, ids: Sequence[str], limit: int) -> list[str]:
    """Up to `limit` of `ids` that name no subscriber, in the order given."""
    result = await conn.execute(
        text(
            "SELECT u.id FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS u(id, n) "
            "WHERE NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.id = u.id) ORDER BY u.n LIMIT :limit"
        ),
        {"ids": list(ids), "limit": limit},
    )
    return [r.id for r in result]


async def list_page(conn: AsyncConnection, *, after: str | None, limit: int) -> list[SubscriberRow]:
    """In id order (the primary key): a cursor is the last id of a page."""
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM subscribers WHERE (CAST(:after AS text) IS NULL OR id > :after) "
             "ORDER BY id LIMIT :limit"),
        {"after": after, "limit": limit},
    )  # fmt: skip
    return [_row(r) for r in result]


async def set_preferences(conn: AsyncConnection, subscriber_id: str, preferences: dict[str, Any]) -> bool:
    result = await conn.execute(
        text("UPDATE subscribers SET preferences = CAST(:p AS jsonb), updated_at = now() WHERE id = :id"),
        {"id": subscriber_id, "p": json.dumps(preferences)},
    )
    return bool(result.rowcount)


S = MessageStatus
_ERASE_OPEN = text(
    transition(
        f"""
        UPDATE messages m SET status = '{S.SKIPPED}', skip_reason = '{SkipReason.ERASED}', updated_at = now()
        FROM (SELECT id, status FROM messages WHERE subscriber_id = :s AND status IN ({sql_in((S.PENDING, S.QUEUED))})
              FOR UPDATE) o
        WHERE m.id = o.id
        RETURNING m.id, m.campaign_id, m.channel, o.status AS old_status, m.status, m.attempts,
            '{Event.SKIPPED}'::text AS event, '{SkipReason.ERASED}'::text AS detail, NULL::text AS provider
        """
    )
)


async def erase(conn: AsyncConnection, subscriber_id: str) -> int | None:
    """Delete the profile and redact the subscriber's messages and their audit trail; None if unknown.

    Messages not yet started end `skipped` (`erased`) through the usual transition, so the
    campaign counters and per-channel counts stay right; every message keeps its status,
    channel, times and counters, but loses its address, texts, data and the subscriber id
    (a message in flight right now still finishes; its outcome cannot write the address
    back, because the record statement only sets it for messages that still name a subscriber).
    """
    deleted = await conn.execute(text("DELETE FROM subscribers WHERE id = :id RETURNING id"), {"id": subscriber_id})
    if deleted.first() is None:
        return None
    await conn.execute(_ERASE_OPEN, {"s": subscriber_id})
    redacted = await conn.execute(
        text(
            "UPDATE messages SET recipient = :erased, subject = NULL, body = NULL, data = NULL, vars = NULL, "
            "dedup_key = NULL, subscriber_id = NULL, last_error = CASE WHEN last_error IS NULL THEN NULL "
            "ELSE :erased END WHERE subscriber_id = :s RETURNING id"
        ),
        {"s": subscriber_id, "erased": ERASED},
    )
    ids = [r.id for r in redacted]
    if ids:
        await conn.execute(
            text(
                "UPDATE message_events SET detail = :erased WHERE message_id = ANY(CAST(:ids AS bigint[])) "
                f"AND detail IS NOT NULL AND event <> '{Event.SKIPPED}'"
            ),
            {"ids": ids, "erased": ERASED},
        )
    return len(ids)
