"""Releases scheduled messages (`sendAt`) when their time comes.

PostgreSQL holds them as `pending` with their `send_at`; Redis only ever holds work that
is due. So a flushed Redis cannot send anything early, and cancelling a scheduled send is
a status change in PostgreSQL. Every worker runs this loop; an advisory lock lets one act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text

from notifq.db import lifecycle
from notifq.queue import enqueue_released
from notifq.worker.deps import WorkerDeps

log = logging.getLogger("notifq.scheduler")
ADVISORY_LOCK_KEY = 0x6E6F7473  # "nots"
RELEASE_LIMIT = 50_000
INTERVAL_SECONDS = 0.5


async def release_once(deps: WorkerDeps) -> int:
    async with deps.engine.connect() as conn:
        locked = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})).scalar()
        if not locked:
            return 0
        try:
            released = await lifecycle.release_due(conn, RELEASE_LIMIT)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
    if released:
        await enqueue_released(deps.redis, deps.keys, released)
    return len(released)


async def run_scheduler(deps: WorkerDeps) -> None:
    while not deps.draining.is_set():
        try:
            await release_once(deps)
        except asyncio.CancelledError:
            raise
        except Exception:  # PostgreSQL or Redis down: the messages stay pending; try again
            log.warning("scheduler round failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deps.draining.wait(), INTERVAL_SECONDS)
