"""SQL for outbound webhook endpoints as operators manage them, and their delivery log (migration 0009).

Delivery itself (the outbox, leases, the queue) is db/webhook_outbox_repo.py; this module only
creates, changes and deletes endpoints, and reads what was delivered to them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Everything an operator sees, the queue's length included (an index-only count on its primary key).
_COLUMNS = """e.id, e.url, e.description, e.events, e.batch, e.enabled, e.disabled_reason, e.disabled_at,
    e.failing_since, e.last_success_at, e.last_failure_at, e.last_error, e.created_at, e.updated_at,
    (SELECT count(*) FROM webhook_queue q WHERE q.endpoint_id = e.id) AS pending"""
# Creations take this transaction-level lock, so the cap on endpoints holds under concurrent POSTs.
_CREATE_LOCK = 0x6E71_7768_6B73  # "nqwhks"


@dataclass(frozen=True)
class Endpoint:
    id: uuid.UUID
    url: str
    description: str
    events: list[str]
    batch: bool
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    pending: int = 0
    secret: str | None = None  # only returned by `insert` (creation shows it once)


def _row(r: Any, secret: str | None = None) -> Endpoint:
    return Endpoint(r.id, r.url, r.description, list(r.events), r.batch, r.enabled, r.disabled_reason, r.disabled_at,
                    r.failing_since, r.last_success_at, r.last_failure_at, r.last_error, r.created_at, r.updated_at,
                    int(r.pending), secret)  # fmt: skip


async def insert(conn: AsyncConnection, *, url: str, description: str, events: Sequence[str], secret: str,
                 batch: bool, created_by: uuid.UUID | None, max_endpoints: int) -> Endpoint | None:  # fmt: skip
    """A new endpoint, or None when there are `max_endpoints` already. Must run inside a transaction."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
    result = await conn.execute(
        text(f"""
            INSERT INTO webhook_endpoints AS e (id, url, description, events, secret, batch, created_by)
            SELECT CAST(:id AS uuid), CAST(:url AS text), CAST(:description AS text), CAST(:events AS text[]),
                   CAST(:secret AS text), CAST(:batch AS boolean), CAST(:created_by AS uuid)
            WHERE (SELECT count(*) FROM webhook_endpoints) < :max
            RETURNING {_COLUMNS}"""),
        {"id": uuid.uuid4(), "url": url, "description": description, "events": list(events), "secret": secret,
         "batch": batch, "created_by": created_by, "max": max_endpoints},
    )  # fmt: skip
    row = result.first()
    return None if row is None else _row(row, secret)


async def get(conn: AsyncConnection, endpoint_id: uuid.UUID) -> Endpoint | None:
    row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM webhook_endpoints e WHERE e.id = :id"),
                              {"id": endpoint_id})).first()  # fmt: skip
    return None if row is None else _row(row)


async def list_all(conn: AsyncConnection) -> list[Endpoint]:
    """Every endpoint, newest first (there are at most a few dozen: see `insert`)."""
    result = await conn.execute(text(f"SELECT {_COLUMNS} FROM webhook_endpoints e ORDER BY e.created_at DESC, e.id"))
    return [_row(r) for r in result]


# One statement, so concurrent changes serialise on the row and each sees the last one's result: turning
# an endpoint off records who did it and when (unless it was off already, keeping the first reason);
# turning a disabled one on forgets its failures, so it is tried at once. An enabled endpoint that is
# failing keeps its backoff when `enabled: true` is sent again.
_UPDATE = f"""
UPDATE webhook_endpoints e SET
    url = COALESCE(CAST(:url AS text), e.url),
    description = COALESCE(CAST(:description AS text), e.description),
    events = COALESCE(CAST(:events AS text[]), e.events),
    batch = COALESCE(CAST(:batch AS boolean), e.batch),
    enabled = COALESCE(CAST(:enabled AS boolean), e.enabled),
    disabled_reason = CASE
        WHEN CAST(:enabled AS boolean) THEN NULL
        WHEN NOT CAST(:enabled AS boolean) AND e.enabled THEN
            'disabled by ' || COALESCE((SELECT a.email FROM admins a WHERE a.id = CAST(:admin AS uuid)), 'an operator')
        ELSE e.disabled_reason END,
    disabled_at = CASE
        WHEN CAST(:enabled AS boolean) THEN NULL
        WHEN NOT CAST(:enabled AS boolean) AND e.enabled THEN now()
        ELSE e.disabled_at END,
    failing_since = CASE WHEN CAST(:enabled AS boolean) AND NOT e.enabled THEN NULL ELSE e.failing_since END,
    failures = CASE WHEN CAST(:enabled AS boolean) AND NOT e.enabled THEN 0 ELSE e.failures END,
    retry_at = CASE WHEN CAST(:enabled AS boolean) AND NOT e.enabled THEN NULL ELSE e.retry_at END,
    updated_at = now()
WHERE e.id = :id
RETURNING {_COLUMNS}
"""


async def update(conn: AsyncConnection, endpoint_id: uuid.UUID, *, admin_id: uuid.UUID | None, url: str | None = None,
                 description: str | None = None, events: Sequence[str] | None = None, batch: bool | None = None,
                 enabled: bool | None = None) -> Endpoint | None:  # fmt: skip
    """Change the fields given (None: unchanged); None when there is no such endpoint."""
    row = (await conn.execute(text(_UPDATE), {
        "id": endpoint_id, "admin": admin_id, "url": url, "description": description,
        "events": None if events is None else list(events), "batch": batch, "enabled": enabled,
    })).first()  # fmt: skip
    return None if row is None else _row(row)


async def delete(conn: AsyncConnection, endpoint_id: uuid.UUID) -> bool:
    """Its queue and delivery log go with it (ON DELETE CASCADE)."""
    result = await conn.execute(text("DELETE FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id})
    return bool(result.rowcount)


@dataclass(frozen=True)
class Target:
    """What a POST to an endpoint needs."""

    url: str
    secret: str
    batch: bool


async def target(conn: AsyncConnection, endpoint_id: uuid.UUID) -> Target | None:
    row = (await conn.execute(text("SELECT url, secret, batch FROM webhook_endpoints WHERE id = :id"),
                              {"id": endpoint_id})).first()  # fmt: skip
    return None if row is None else Target(row.url, row.secret, row.batch)


@dataclass(frozen=True)
class Delivery:
    """One POST (or one give-up) in an endpoint's log."""

    id: int
    event_ids: list[int]
    outcome: str
    response_status: int | None
    error: str | None
    duration_ms: int | None
    at: datetime


_DELIVERY_COLUMNS = "id, event_ids, outcome, response_status, error, duration_ms, at"


def _delivery(r: Any) -> Delivery:
    return Delivery(r.id, list(r.event_ids), r.outcome, r.response_status, r.error, r.duration_ms, r.at)


async def record_delivery(conn: AsyncConnection, endpoint_id: uuid.UUID, event_ids: Sequence[int], outcome: str,
                          status: int | None, error: str | None, duration_ms: int) -> Delivery | None:  # fmt: skip
    """Log one POST; None when the endpoint is gone (deleted meanwhile)."""
    row = (await conn.execute(text(f"""
        INSERT INTO webhook_deliveries (endpoint_id, event_ids, outcome, response_status, error, duration_ms)
        SELECT e.id, CAST(:ids AS bigint[]), CAST(:outcome AS text), CAST(:status AS integer), CAST(:error AS text),
               CAST(:ms AS integer)
        FROM webhook_endpoints e WHERE e.id = :id
        RETURNING {_DELIVERY_COLUMNS}"""), {
        "id": endpoint_id, "ids": list(event_ids), "outcome": outcome, "status": status, "error": error,
        "ms": duration_ms,
    })).first()  # fmt: skip
    return None if row is None else _delivery(row)


async def deliveries(conn: AsyncConnection, endpoint_id: uuid.UUID, *, before: int | None, outcome: str | None,
                     limit: int) -> list[Delivery]:  # fmt: skip
    """Newest first, keyset-paginated on `id` (the index on (endpoint_id, id) serves every page alike)."""
    clauses, params = ["endpoint_id = :id"], {"id": endpoint_id, "limit": limit}
    if before is not None:
        clauses.append("id < :before")
        params["before"] = before
    if outcome is not None:
        clauses.append("outcome = :outcome")
        params["outcome"] = outcome
    result = await conn.execute(
        text(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {' AND '.join(clauses)} "
             "ORDER BY id DESC LIMIT :limit"), params)  # fmt: skip
    return [_delivery(r) for r in result]


async def exists(conn: AsyncConnection, endpoint_id: uuid.UUID) -> bool:
    found = await conn.execute(text("SELECT 1 FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id})
    return found.first() is not None
