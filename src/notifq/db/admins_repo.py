"""SQL for the admins table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class AdminRow:
    id: uuid.UUID
    email: str
    password_hash: str


async def by_email(conn: AsyncConnection, email: str) -> AdminRow | None:
    result = await conn.execute(
        text("SELECT id, email, password_hash FROM admins WHERE email = :e"), {"e": email.lower()}
    )
    r = result.first()
    return AdminRow(id=r.id, email=r.email, password_hash=r.password_hash) if r else None


async def upsert(conn: AsyncConnection, email: str, password_hash: str) -> uuid.UUID:
    result = await conn.execute(
        text(
            "INSERT INTO admins (email, password_hash) VALUES (:e, :h) "
            "ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = now() "
            "RETURNING id"
        ),
        {"e": email.lower(), "h": password_hash},
    )
    return result.scalar_one()  # type: ignore[no-any-return]


async def exists_id(conn: AsyncConnection, admin_id: uuid.UUID) -> bool:
    result = await conn.execute(text("SELECT 1 FROM admins WHERE id = :id"), {"id": admin_id})
    return result.first() is not None


async def exists(conn: AsyncConnection, email: str) -> bool:
    return await by_email(conn, email) is not None
