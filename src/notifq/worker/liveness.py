"""Crash recovery in seconds: a dead worker's claims, and a Redis that lost its data, repaired within seconds.

The reconciler (worker/reconciler.py) repairs both too, but only by waiting: a message a
worker claimed stays `sending` until its lease ends (60 s), the job it ran is claimed by
arq until the job timeout plus 10 s, and a batch whose arq job vanished is re-enqueued only
after the grace period (30 s) that protects a batch the API is enqueueing right now. Every
worker already says it is alive once a second (worker/heartbeat.py; its Redis hash expires
after `LIVENESS_SECONDS`), and PostgreSQL knows who holds each claim (`messages.claimed_by`,
migration 0011), so this check, once a second on one worker at a time (an advisory lock):
- finds registered workers whose heartbeat has expired, ends the leases of the messages
  they hold and takes them back at once (the reconciler's expiry path), and deletes arq's
  in-progress claim on the jobs they were running, so any worker picks those up now;
- notices a Redis without the `epoch` key (flushed, or restarted without persistence) and
  enqueues every open batch from PostgreSQL at once, without the grace period (a batch the
  API enqueues at the same moment is written once: job keys are SET NX).

Safe against a worker that was only slow or cut off: its outcomes for the attempt that was
taken back are stale (the record statement's guard: same attempt, still `sending`), except a
`sent`, which is still accepted because the provider did take the message. So each message
still ends in exactly one terminal state; what a wrong verdict costs is a second send of the
messages that worker had in flight. Heartbeats are judged only after Redis has kept the same
epoch and answered every round for `JUDGE_AFTER_SECONDS`: after a flush or an outage every
worker looks dead until its next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field

from arq.constants import in_progress_key_prefix
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.db import workers_repo
from notifq.telemetry import HEARTBEAT_SECONDS, LIVENESS_SECONDS
from notifq.worker.deps import WorkerDeps
from notifq.worker.reconciler import enqueue_lost, take_back_expired

log = logging.getLogger("notifq.liveness")
ADVISORY_LOCK_KEY = 0x6E6F746A  # the reconciler's is 0x6E6F7469
CHECK_SECONDS = HEARTBEAT_SECONDS
# A heartbeat is judged only once Redis has answered every round with the same epoch for this long: after a flush,
# a restart or an outage every worker's hash is gone until its next beat (one a second).
JUDGE_AFTER_SECONDS = LIVENESS_SECONDS + 2 * HEARTBEAT_SECONDS


@dataclass(frozen=True)
class LivenessReport:
    lost_workers: tuple[str, ...] = ()
    released: int = 0  # messages whose leases were ended (the dead workers' claims)
    taken_back: int = 0  # messages put back in the queue (or failed as unknown) this round
    restarted_jobs: int = 0  # arq in-progress claims deleted
    refilled: int = 0  # batches enqueued again after Redis lost its data
    ran: bool = True


@dataclass
class Liveness:
    """Per process: the epoch this worker last saw, and since when it has seen it without a gap."""

    _epoch: bytes | None = None
    _steady_since: float = field(default_factory=time.monotonic)
    _last_ok: float = -1.0

    async def check(self, deps: WorkerDeps) -> LivenessReport:
        async with deps.engine.connect() as conn:
            locked = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})).scalar()
            if not locked:
                return LivenessReport(ran=False)
            try:
                report = await self._check(deps, conn)
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
        self._last_ok = time.monotonic()
        return report

    async def _check(self, deps: WorkerDeps, conn: AsyncConnection) -> LivenessReport:
        now = time.monotonic()
        epoch = await deps.redis.get(deps.keys.epoch)
        refilled = 0
        if epoch is None:
            refilled = await refill(deps, conn)
            await deps.redis.set(deps.keys.epoch, uuid.uuid4().hex, nx=True)
            epoch = await deps.redis.get(deps.keys.epoch)
        # A new epoch, or a gap in this process's rounds (Redis or PostgreSQL did not answer, or another worker held
        # the lock): watch again before judging, since heartbeats may be missing for that reason alone.
        if epoch != self._epoch or now - self._last_ok > 3 * CHECK_SECONDS:
            self._epoch, self._steady_since = epoch, now
        if now - self._steady_since < JUDGE_AFTER_SECONDS:
            return LivenessReport(refilled=refilled)
        return await self._judge(deps, conn, refilled)

    async def _judge(self, deps: WorkerDeps, conn: AsyncConnection, refilled: int) -> LivenessReport:
        registered = await workers_repo.running(conn, LIVENESS_SECONDS)
        if not registered:
            return LivenessReport(refilled=refilled)
        pipe = deps.redis.pipeline(transaction=False)
        for w in registered:
            pipe.exists(deps.keys.worker(w.name))
        alive = [bool(n) for n in await pipe.execute()]
        dead = [w for w, beats in zip(registered, alive, strict=True) if not beats and not w.lost]
        back = [w.number for w, beats in zip(registered, alive, strict=True) if beats and w.lost]
        if back:
            await workers_repo.mark_found(conn, back)
            log.warning("%d worker(s) given up for dead are beating again (a partition healed?)", len(back))
        if not dead:
            return LivenessReport(refilled=refilled)
        numbers = [w.number for w in dead]
        released = await workers_repo.release_claims(conn, numbers)
        jobs = set(released.jobs)
        pipe = deps.redis.pipeline(transaction=False)
        for w in dead:
            pipe.smembers(deps.keys.worker_jobs(w.name))
            pipe.delete(deps.keys.worker_jobs(w.name))
        for members in (await pipe.execute())[::2]:
            jobs.update(int(j) for j in members)
        restarted = 0
        if jobs:
            restarted = int(await deps.redis.delete(*(in_progress_key_prefix + deps.keys.job_id(j) for j in jobs)))
        await workers_repo.mark_lost(conn, numbers)
        taken_back, failed = await take_back_expired(deps, conn)
        names = tuple(w.name for w in dead)
        log.warning("worker(s) %s stopped beating for %g s: %d claimed messages taken back (%d failed as unknown), "
                    "%d running jobs restarted", ", ".join(names), LIVENESS_SECONDS, taken_back, failed, restarted,
                    extra={"lost_workers": list(names), "released": released.messages})  # fmt: skip
        return LivenessReport(names, released.messages, taken_back, restarted, refilled)


async def refill(deps: WorkerDeps, conn: AsyncConnection) -> int:
    """Redis has no epoch: every open batch without a job is enqueued again now (no grace period)."""
    lost = await enqueue_lost(deps, conn, 0.0)
    if lost:
        log.warning("Redis lost its data (no epoch key): %d batches enqueued again from PostgreSQL", len(lost))
    else:
        log.info("Redis has no epoch yet: set (nothing to enqueue again)")
    return len(lost)


async def register(deps: WorkerDeps) -> None:
    """Give this worker its number (claims made before it carry none and come back only when their lease ends).
    Never raises: PostgreSQL down at start is tried again by every liveness round."""
    try:
        async with deps.engine.connect() as conn:
            deps.worker_number = await workers_repo.register(conn, deps.metrics.id, deps.metrics.host, os.getpid())
    except Exception as exc:
        log.warning("worker %s could not register (tried again each second): %r", deps.metrics.id, exc)


async def run_liveness(deps: WorkerDeps) -> None:
    liveness = Liveness()
    while not deps.draining.is_set():
        try:
            if deps.worker_number is None:
                await register(deps)
            await liveness.check(deps)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis or PostgreSQL down: the next round tries again (and waits before judging)
            log.warning("liveness check failed: %r", exc, exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deps.draining.wait(), CHECK_SECONDS)
