"""The reconciler: PostgreSQL is the truth, and Redis may forget.

Every worker runs this loop; a PostgreSQL advisory lock lets one of them act per round.
It repairs three kinds of loss:
- a worker died mid-send (SIGKILL, OOM): messages sit in `sending` past their lease.
  They go back to the queue, or fail if that was their last attempt (the outcome is unknown);
- a batch whose arq job vanished (Redis flushed or restarted without persistence, a crash
  between the API's commit and its enqueue, arq's job expiry): it is enqueued again;
- a campaign left `pending` by such a crash is moved to `processing`.

It also deletes idempotency keys past their 24 h, SNS message ids past 14 days, and, when NOTIFQ_EVENT_RETENTION_DAYS is
set, audit events older than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db import campaigns_repo, feedback_repo, idempotency_repo, messages_repo, workers_repo
from notifq.db.messages_repo import Outcome
from notifq.idempotency import KEY_TTL_SECONDS
from notifq.queue import BatchJob, enqueue_batches, missing_jobs
from notifq.vocabulary import Event, MessageStatus
from notifq.worker.deps import WorkerDeps
from notifq.worker.recording import Retry, record

log = logging.getLogger("notifq.reconciler")
ADVISORY_LOCK_KEY = 0x6E6F7469  # "noti"
SCAN_LIMIT = 10_000
# SNS MessageIds applied (replays are no-ops) are kept this long: SNS stops retrying within hours.
PROVIDER_EVENT_DAYS = 14
PRUNE_BATCH = 5_000  # audit events deleted per statement when NOTIFQ_EVENT_RETENTION_DAYS is set
PRUNE_BATCHES_PER_ROUND = 10  # at most 50,000 per round (every NOTIFQ_RECONCILE_INTERVAL)


@dataclass(frozen=True)
class ReconcileReport:
    expired: int = 0
    failed_unknown: int = 0
    reenqueued_jobs: int = 0
    pruned_events: int = 0
    ran: bool = True


async def reconcile_once(deps: WorkerDeps) -> ReconcileReport:
    # A session-level lock (the worker's engine is autocommit): one reconciler acts per round.
    async with deps.engine.connect() as conn:
        locked = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})).scalar()
        if not locked:
            return ReconcileReport(ran=False)
        try:
            return await _repair(deps, conn)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})


async def take_back_expired(deps: WorkerDeps, conn: AsyncConnection) -> tuple[int, int]:
    """Messages whose lease has ended go back to the queue, or fail if that was their last attempt
    (the outcome is unknown); (taken back, failed). The outcome guard (same attempt, still `sending`)
    makes a concurrent second call a no-op, and a slow worker's late outcome for that attempt stale
    (only a late `sent` is still accepted: the provider did take the message)."""
    expired = await messages_repo.expired_leases(conn, SCAN_LIMIT)
    final: list[Outcome] = []
    retries: list[Retry] = []
    for m in expired:
        if m.attempts >= deps.settings.max_attempts:
            final.append(Outcome(m.id, m.attempts, MessageStatus.FAILED,
                                 "worker lost during the last attempt; outcome unknown", event=Event.LOST))  # fmt: skip
        else:
            lost_attempt = Outcome(m.id, m.attempts, MessageStatus.QUEUED, "worker lost during the attempt",
                                   event=Event.LOST)  # fmt: skip
            retries.append(Retry(lost_attempt, 0.0, m.campaign_id, m.priority))
    await record(deps, final, retries)
    return len(expired), len(final)


async def enqueue_lost(deps: WorkerDeps, conn: AsyncConnection, grace_seconds: float) -> list[int]:
    """Batches with queued messages but no job in Redis, untouched for `grace_seconds`, enqueued again.

    Ask Redis about every open batch (cheap, pipelined), then PostgreSQL only about the missing
    ones: a batch enqueued a moment ago is not yet "lost" (the grace period); after Redis lost
    its data (worker/liveness.py) there is none to wait for. Their campaigns are stamped
    `enqueued` (before workers can complete them).
    """
    missing = await missing_jobs(deps.redis, deps.keys, await messages_repo.open_jobs(conn, SCAN_LIMIT))
    lost = await messages_repo.stale_among(conn, missing, grace_seconds)
    if lost:
        await enqueue_batches(deps.redis, deps.keys, [BatchJob(j, lane=lane) for j, lane in lost.items()])
        if campaigns := await messages_repo.campaigns_of(conn, list(lost)):
            await campaigns_repo.mark_enqueued(conn, campaigns)
    return list(lost)


async def _repair(deps: WorkerDeps, conn: AsyncConnection) -> ReconcileReport:
    settings = deps.settings
    stale_campaigns = await campaigns_repo.stale_pending(conn, settings.reconcile_grace)
    expired, failed_unknown = await take_back_expired(deps, conn)
    lost = await enqueue_lost(deps, conn, settings.reconcile_grace)
    await workers_repo.forget_old(conn)
    await idempotency_repo.purge_older_than(conn, KEY_TTL_SECONDS)
    await feedback_repo.prune_events(conn, PROVIDER_EVENT_DAYS)
    if deps.feedback is not None:
        await deps.feedback.apply_pending()
        await deps.feedback.guard(await feedback_repo.guarded(conn))
    pruned = await _prune_events(conn, settings.event_retention_days)
    if stale_campaigns:
        await campaigns_repo.mark_enqueued(conn, stale_campaigns)
    if expired or lost:
        log.warning("reconciled: %d expired leases (%d failed as unknown), %d lost batches re-enqueued",
                    expired, failed_unknown, len(lost))  # fmt: skip
    return ReconcileReport(expired=expired, failed_unknown=failed_unknown, reenqueued_jobs=len(lost),
                           pruned_events=pruned)  # fmt: skip


async def _prune_events(conn: AsyncConnection, retention_days: float) -> int:
    """Audit events past NOTIFQ_EVENT_RETENTION_DAYS, in bounded batches (short statements, little WAL at once)."""
    if retention_days <= 0:
        return 0
    pruned = 0
    for _ in range(PRUNE_BATCHES_PER_ROUND):
        deleted = await messages_repo.prune_events(conn, retention_days * 86_400, PRUNE_BATCH)
        pruned += deleted
        if deleted < PRUNE_BATCH:
            break
    return pruned


async def run_reconciler(deps: WorkerDeps) -> None:
    while not deps.draining.is_set():
        try:
            await reconcile_once(deps)
        except asyncio.CancelledError:
            raise
        except Exception:  # PostgreSQL or Redis down: try again next round
            log.warning("reconcile round failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deps.draining.wait(), deps.settings.reconcile_interval)
