"""The express lane: transactional batches due now, claimed many at a time instead of one arq job each.

Why: an arq job costs a worker ~0.5-0.8 ms of CPU and ~16 Redis commands (FACTS.md), more
than the send itself, and every single send used to be its own job. The API now pushes the
batch numbers of its group commits onto one Redis list (queue.enqueue_batches); each worker
waits on that list with BLMPOP, takes up to POP_BATCHES numbers in one round trip, and
claims their messages with one statement (messages_repo.claim_batches). A lone OTP still
wakes a waiting worker at once (a push wakes exactly one waiter); a burst is delivered in
chunks the size of a campaign's.

Loss: numbers popped by a worker that dies before its claim commits are gone from Redis,
but their messages are still `queued` in PostgreSQL, and the reconciler enqueues them again
after NOTIFQ_RECONCILE_GRACE (queue.missing_jobs looks at the list too). Retries with a
delay and everything else keep going through arq's transactional queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from notifq.db import messages_repo
from notifq.db.engine import retry_deadlocks
from notifq.db.messages_repo import ClaimedMessage
from notifq.queue import give_back_ready, pop_ready
from notifq.worker.delivery import deliver_claimed
from notifq.worker.deps import WorkerDeps

log = logging.getLogger("notifq.worker")
POP_BATCHES = 64  # batch numbers taken per round trip (each is one group commit of the API, or one retry)
POP_TIMEOUT_SECONDS = 1.0  # how long one BLMPOP waits; also how soon a draining worker stops waiting
CHUNKS_IN_FLIGHT = 16  # express chunks a worker sends at once (as many as the arq lane had jobs: one slow
# provider call does not stall the lane)
ERROR_PAUSE_SECONDS = 1.0


async def run_express(deps: WorkerDeps) -> None:
    """Pop and claim one chunk at a time, send and record up to CHUNKS_IN_FLIGHT at once; returns once drained.

    Popping and claiming in turn (not in parallel) is what groups a moderate load: the batch
    numbers pushed while one claim runs are taken together by the next pop. A lone OTP waits
    for nothing (the pop returns at once), and a slow provider holds only its chunk's slot.
    """
    slots = asyncio.Semaphore(CHUNKS_IN_FLIGHT)
    chunks: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        chunks.discard(task)
        slots.release()

    try:
        while not deps.draining.is_set():
            await slots.acquire()
            try:
                job_ids = await pop_ready(deps.redis, deps.keys, POP_BATCHES, POP_TIMEOUT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the lanes notice too; the reconciler keeps the messages
                slots.release()
                log.warning("express lane: reading the ready list failed", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(deps.draining.wait(), ERROR_PAUSE_SECONDS)
                continue
            claimed = await claim_ready(deps, job_ids) if job_ids else None
            if claimed is None:
                slots.release()
                continue
            deps.gate.mark()  # this process's bulk work gives way (worker/priority.py)
            task = asyncio.create_task(_deliver(deps, *claimed))
            chunks.add(task)
            task.add_done_callback(finished)
    finally:
        if chunks:  # drained or cancelled: let the chunks in flight write their outcomes
            await asyncio.gather(*chunks, return_exceptions=True)


async def claim_ready(deps: WorkerDeps, job_ids: list[int]) -> tuple[list[ClaimedMessage], int] | None:
    """One chunk from these batches, with the rate-limit tokens taken for it; None if nothing was claimed.

    If the chunk filled up, the batches go back to the list's head for the rest."""
    settings = deps.settings
    granted = await deps.limiter.acquire(deps.chunk_size, time.monotonic() + settings.job_slice_seconds,
                                         priority=True)  # fmt: skip
    try:
        if granted == 0:
            await give_back_ready(deps.redis, deps.keys, job_ids)
            return None
        claimed = await _claim(deps, job_ids, granted)
    except Exception:  # nothing was claimed: the batches go back for another worker, or for later
        deps.limiter.refund(granted)
        with contextlib.suppress(Exception):
            await give_back_ready(deps.redis, deps.keys, job_ids)
        log.warning("express lane: claiming batches failed; they wait for the next round", exc_info=True)
        await asyncio.sleep(ERROR_PAUSE_SECONDS)
        return None
    if len(claimed) >= granted:
        with contextlib.suppress(Exception):  # if this fails, the reconciler finds the rest
            await give_back_ready(deps.redis, deps.keys, job_ids)  # more may be queued in them
    if not claimed:
        deps.limiter.refund(granted)
        return None
    return claimed, granted


async def _deliver(deps: WorkerDeps, claimed: list[ClaimedMessage], granted: int) -> None:
    try:
        result = await deliver_claimed(deps, claimed, granted)
        if result.stale:
            log.warning("express lane: %d outcomes arrived after another claim or a terminal state", result.stale)
    except Exception:
        # The claimed messages stay `sending` until their lease ends; then the reconciler takes
        # them back. Nothing is lost, only late.
        log.exception("express lane: a chunk of %d messages failed after its claim", len(claimed))


async def _claim(deps: WorkerDeps, job_ids: list[int], limit: int) -> list[ClaimedMessage]:
    async def claim() -> list[ClaimedMessage]:
        async with deps.engine.connect() as conn:
            return await messages_repo.claim_batches(
                conn, job_ids, limit, deps.settings.lease_seconds, deps.worker_number
            )

    return await retry_deadlocks(claim)
