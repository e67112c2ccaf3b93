"""SQL for API keys (migration 0010): create, list, revoke, the active keys' hashes, last use."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# What an operator sees: never the hash.
_COLUMNS = "id, name, scopes, prefix, created_by, created_by_key, created_at, expires_at, last_used_at, revoked_at"
# Creations and revocations take this transaction-level lock: the cap on active keys holds under concurrent
# POSTs, and a key created by a key being revoked at the same moment is revoked with it (the revocation's
# statement starts after the creation committed, or the creation sees its parent revoked).
_LOCK = 0x6E71_6170_696B  # "nqapik"


@dataclass(frozen=True)
class ApiKeyRow:
    id: uuid.UUID
    name: str
    scopes: list[str]
    prefix: str
    created_by: uuid.UUID
    created_by_key: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class ActiveRow:
    """What an API process keeps of each usable key to authenticate requests."""

    id: uuid.UUID
    secret_hash: bytes
    scopes: list[str]
    created_by: uuid.UUID
    expires_at: datetime | None


def _row(r: Any) -> ApiKeyRow:
    return ApiKeyRow(r.id, r.name, list(r.scopes), r.prefix, r.created_by, r.created_by_key, r.created_at,
                     r.expires_at, r.last_used_at, r.revoked_at)  # fmt: skip


async def lock(conn: AsyncConnection) -> None:
    """Serialise creations and revocations (see `_LOCK`). Inside a transaction."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})


async def count_active(conn: AsyncConnection) -> int:
    result = await conn.execute(
        text("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())")
    )
    return int(result.scalar_one())


async def insert(conn: AsyncConnection, *, name: str, scopes: Sequence[str], prefix: str, secret_hash: bytes,
                 created_by: uuid.UUID, created_by_key: uuid.UUID | None, expires_at: datetime | None
                 ) -> ApiKeyRow | None:  # fmt: skip
    """The new key; None when its admin is gone, or the key creating it is no longer usable."""
    result = await conn.execute(
        text(f"""
            INSERT INTO api_keys (id, name, scopes, prefix, secret_hash, created_by, created_by_key, expires_at)
            SELECT CAST(:id AS uuid), CAST(:name AS text), CAST(:scopes AS text[]), CAST(:prefix AS text),
                   CAST(:hash AS bytea), a.id, CAST(:parent AS uuid), CAST(:expires_at AS timestamptz)
            FROM admins a
            WHERE a.id = :created_by
              AND (CAST(:parent AS uuid) IS NULL OR EXISTS (
                  SELECT 1 FROM api_keys p WHERE p.id = CAST(:parent AS uuid) AND p.revoked_at IS NULL
                     AND (p.expires_at IS NULL OR p.expires_at > now())))
            RETURNING {_COLUMNS}"""),
        {"id": uuid.uuid4(), "name": name, "scopes": list(scopes), "prefix": prefix, "hash": secret_hash,
         "created_by": created_by, "parent": created_by_key, "expires_at": expires_at},
    )  # fmt: skip
    row = result.first()
    return None if row is None else _row(row)


async def get(conn: AsyncConnection, key_id: uuid.UUID) -> ApiKeyRow | None:
    row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM api_keys WHERE id = :id"), {"id": key_id})).first()
    return None if row is None else _row(row)


async def list_all(conn: AsyncConnection) -> list[ApiKeyRow]:
    """Every key, revoked ones included, newest first."""
    result = await conn.execute(text(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"))
    return [_row(r) for r in result]


async def revoke(conn: AsyncConnection, key_id: uuid.UUID) -> list[uuid.UUID] | None:
    """Revoke the key and every key created from it (at any depth); None when there is no such key.

    Returns the ids revoked by this call (a key revoked before keeps its `revoked_at`).
    """
    if (await conn.execute(text("SELECT 1 FROM api_keys WHERE id = :id"), {"id": key_id})).first() is None:
        return None
    result = await conn.execute(
        text("""
            WITH RECURSIVE tree AS (
                SELECT CAST(:id AS uuid) AS id
                UNION
                SELECT k.id FROM api_keys k JOIN tree t ON k.created_by_key = t.id
            )
            UPDATE api_keys SET revoked_at = now()
            WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL
            RETURNING id"""),
        {"id": key_id},
    )
    return [r.id for r in result]


async def active(conn: AsyncConnection) -> list[ActiveRow]:
    """Every key that may authenticate now: not revoked, not expired."""
    result = await conn.execute(
        text(
            "SELECT id, secret_hash, scopes, created_by, expires_at FROM api_keys "
            "WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
        )
    )
    return [ActiveRow(r.id, bytes(r.secret_hash), list(r.scopes), r.created_by, r.expires_at) for r in result]


async def record_use(conn: AsyncConnection, used: Mapping[uuid.UUID, datetime]) -> None:
    """One statement for a batch of keys' last use; an older time never overwrites a newer one."""
    if not used:
        return
    await conn.execute(
        text("""
            UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
            FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) AS u(id, at)
            WHERE k.id = u.id"""),
        {"ids": list(used), "ats": list(used.values())},
    )
