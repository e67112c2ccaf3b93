"""SQL for idempotency keys: claimed before the work, completed inside the work's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class KeyRow:
    request_hash: str
    state: str
    resource_kind: str | None
    resource_ids: list[str] | None
    response_status: int | None
    created_at: datetime
    age_seconds: float


async def try_insert(conn: AsyncConnection, admin_id: uuid.UUID, key: str, request_hash: str) -> bool:
    result = await conn.execute(
        text(
            "INSERT INTO idempotency_keys (admin_id, key, request_hash, state) VALUES (:a, :k, :h, 'in_progress') "
            "ON CONFLICT DO NOTHING RETURNING key"
        ),
        {"a": admin_id, "k": key, "h": request_hash},
    )
    return result.first() is not None


async def try_insert_many(
    conn: AsyncConnection, keys: Sequence[tuple[uuid.UUID, str, str]]
) -> set[tuple[uuid.UUID, str]]:
    """`try_insert` for many (admin, key, hash) at once, all distinct: the (admin, key) pairs claimed."""
    result = await conn.execute(
        text(
            "INSERT INTO idempotency_keys (admin_id, key, request_hash, state) "
            "SELECT a, k, h, 'in_progress' FROM unnest(CAST(:admins AS uuid[]), CAST(:keys AS text[]), "
            "CAST(:hashes AS text[])) AS u(a, k, h) ON CONFLICT DO NOTHING RETURNING admin_id, key"
        ),
        {"admins": [a for a, _, _ in keys], "keys": [k for _, k, _ in keys], "hashes": [h for _, _, h in keys]},
    )
    return {(r.admin_id, r.key) for r in result}


async def lock(conn: AsyncConnection, admin_id: uuid.UUID, key: str) -> KeyRow | None:
    r = (
        await conn.execute(
            text(
                "SELECT request_hash, state, resource_kind, resource_ids, response_status, created_at, "
                "extract(epoch FROM now() - created_at) AS age FROM idempotency_keys "
                "WHERE admin_id = :a AND key = :k FOR UPDATE"
            ),
            {"a": admin_id, "k": key},
        )
    ).first()
    if r is None:
        return None
    return KeyRow(r.request_hash, r.state, r.resource_kind, r.resource_ids, r.response_status, r.created_at,
                  float(r.age))  # fmt: skip


async def restart(conn: AsyncConnection, admin_id: uuid.UUID, key: str, request_hash: str) -> None:
    await conn.execute(
        text(
            "UPDATE idempotency_keys SET request_hash = :h, state = 'in_progress', resource_kind = NULL, "
            "resource_ids = NULL, response_status = NULL, created_at = now() WHERE admin_id = :a AND key = :k"
        ),
        {"a": admin_id, "k": key, "h": request_hash},
    )


async def complete(
    conn: AsyncConnection, admin_id: uuid.UUID, key: str, kind: str, ids: list[str], status: int
) -> None:
    await conn.execute(
        text(
            "UPDATE idempotency_keys SET state = 'done', resource_kind = :kind, resource_ids = :ids, "
            "response_status = :status WHERE admin_id = :a AND key = :k"
        ),
        {"a": admin_id, "k": key, "kind": kind, "ids": ids, "status": status},
    )


@dataclass(frozen=True)
class KeyCompletion:
    """A key whose request's resources were created in the current transaction."""

    admin_id: uuid.UUID
    key: str
    ids: list[str]


async def complete_many(conn: AsyncConnection, kind: str, completions: Sequence[KeyCompletion], status: int) -> None:
    """`complete` for a whole group commit in one statement (ids travel as JSON: unnest flattens nested arrays)."""
    if not completions:
        return
    await conn.execute(
        text(
            "UPDATE idempotency_keys k SET state = 'done', resource_kind = :kind, response_status = :status, "
            "resource_ids = ARRAY(SELECT jsonb_array_elements_text(u.ids)) "
            "FROM unnest(CAST(:admins AS uuid[]), CAST(:keys AS text[]), CAST(:ids AS jsonb[])) "
            "AS u(admin_id, key, ids) "
            "WHERE k.admin_id = u.admin_id AND k.key = u.key"
        ),
        {"kind": kind, "status": status, "admins": [c.admin_id for c in completions],
         "keys": [c.key for c in completions], "ids": [json.dumps(c.ids) for c in completions]},
    )  # fmt: skip


async def release(conn: AsyncConnection, admin_id: uuid.UUID, key: str) -> None:
    await conn.execute(
        text("DELETE FROM idempotency_keys WHERE admin_id = :a AND key = :k AND state = 'in_progress'"),
        {"a": admin_id, "k": key},
    )


async def purge_older_than(conn: AsyncConnection, seconds: float) -> int:
    result = await conn.execute(
        text("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => :s)"), {"s": seconds}
    )
    return int(result.rowcount)
