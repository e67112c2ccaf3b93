"""SQL for the admins table and the revoked tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class AdminRow:
    id: uuid.UUID
    email: str
    password_hash: str
    token_generation: int


async def by_email(conn: AsyncConnection, email: str) -> AdminRow | None:
    result = await conn.execute(
        text("SELECT id, email, password_hash, token_generation FROM admins WHERE email = :e"), {"e": email.lower()}
    )
    r = result.first()
    if r is None:
        return None
    return AdminRow(id=r.id, email=r.email, password_hash=r.password_hash, token_generation=r.token_generation)


async def upsert(conn: AsyncConnection, email: str, password_hash: str) -> uuid.UUID:
    """Create the admin, or set its password; a new password revokes its tokens (the generation moves)."""
    result = await conn.execute(
        text(
            "INSERT INTO admins (email, password_hash) VALUES (:e, :h) "
            "ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
            "token_generation = admins.token_generation + 1, updated_at = now() "
            "RETURNING id"
        ),
        {"e": email.lower(), "h": password_hash},
    )
    return result.scalar_one()  # type: ignore[no-any-return]


async def set_password(conn: AsyncConnection, email: str, password_hash: str) -> bool:
    """Set an existing admin's password and revoke its tokens; False when there is no such admin."""
    result = await conn.execute(
        text(
            "UPDATE admins SET password_hash = :h, token_generation = token_generation + 1, updated_at = now() "
            "WHERE email = :e RETURNING id"
        ),
        {"e": email.lower(), "h": password_hash},
    )
    return result.first() is not None


async def delete(conn: AsyncConnection, email: str) -> bool:
    """Delete the admin (its campaigns keep `created_by = NULL`); False when there is no such admin."""
    result = await conn.execute(text("DELETE FROM admins WHERE email = :e RETURNING id"), {"e": email.lower()})
    return result.first() is not None


async def exists_id(conn: AsyncConnection, admin_id: uuid.UUID) -> bool:
    result = await conn.execute(text("SELECT 1 FROM admins WHERE id = :id"), {"id": admin_id})
    return result.first() is not None


async def exists(conn: AsyncConnection, email: str) -> bool:
    return await by_email(conn, email) is not None


async def generation(conn: AsyncConnection, admin_id: uuid.UUID) -> int | None:
    """The admin's token generation; None when there is no such admin."""
    result = await conn.execute(text("SELECT token_generation FROM admins WHERE id = :id"), {"id": admin_id})
    value = result.scalar_one_or_none()
    return None if value is None else int(value)


async def generations(conn: AsyncConnection) -> dict[uuid.UUID, int]:
    """Every admin's token generation (admins are few)."""
    result = await conn.execute(text("SELECT id, token_generation FROM admins"))
    return {r.id: int(r.token_generation) for r in result}


async def revoked(conn: AsyncConnection) -> set[str]:
    """The token ids revoked by a logout that have not expired yet."""
    result = await conn.execute(text("SELECT jti FROM revoked_tokens WHERE expires_at > now()"))
    return {str(r.jti) for r in result}


async def revoke(conn: AsyncConnection, jti: str, admin_id: uuid.UUID, expires_at: datetime) -> None:
    """Record a logout, and prune the revocations of tokens that have expired since (one statement)."""
    await conn.execute(
        text(
            "WITH pruned AS (DELETE FROM revoked_tokens WHERE expires_at <= now()) "
            "INSERT INTO revoked_tokens (jti, admin_id, expires_at) "
            "SELECT CAST(:jti AS text), id, CAST(:exp AS timestamptz) FROM admins WHERE id = :a "
            "ON CONFLICT (jti) DO NOTHING"
        ),
        {"jti": jti, "a": admin_id, "exp": expires_at},
    )
