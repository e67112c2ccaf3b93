"""Crash recovery in seconds: a dead worker's claims, and a Redis that lost its data, repaired within seconds.

The reconciler (worker/reconciler.py) repairs both too, but only by waiting: a message a
worker claimed stays `sending` until its lease ends (60 s), the job it ran is claimed by
arq until the job timeout plus 10 s, and a batch whose arq job vanished is re-enqueued only
after the grace period (30 s) that protects a batch the API is enqueueing right now. Every
worker already says it is alive once a second (worker/heartbeat.py; its Redis hash expires
after `LIVENESS_SECONDS`), and PostgreSQL knows who holds each claim (`messages.claimed_by`,
migration 0011), so this check (every worker tries it once a second; an advisory lock lets one
act at a time):
- finds registered workers whose heartbeat has expired, ends the leases of the messages
  they hold and takes them back at once (the reconciler's expiry path), and deletes arq's
  in-progress claim on the jobs they were running, so any worker picks those up now;
- notices a Redis without the `epoch` key (flushed, or restarted without persistence), or
  another Redis server (its `run_id`: a restart from a snapshot, a Sentinel failover), and
  enqueues every open batch without a job from PostgreSQL at once, without the grace period (a
  batch the API enqueues at the same moment is written once: job keys are SET NX).

Safe against a worker that was only slow or cut off: its outcomes for the attempt that was
taken back are stale (the record statement's guard: same attempt, still `sending`), except a
`sent`, which is still accepted because the provider did take the message. So each message
still ends in exactly one terminal state; what a wrong verdict costs is a second send of the
messages that worker had in flight (and a message whose last attempt it was ends `sent`, not
`failed`: RECORD_SENT_AFTER_LOSS). So a verdict needs, all at once: Redis has kept the same
epoch and server and answered every round for `JUDGE_AFTER_SECONDS` (after a flush, a restart
or an outage every worker looks dead until its next beat); the epoch, the checker's own
heartbeat and everyone's are read in one MULTI (a flush between two reads would look like a
dead fleet); the checker's own heartbeat is there (if not, Redis is what failed); and the
worker was silent in two rounds in a row.
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
    reenqueued: int = 0  # batches the dead workers had taken off the queue (express lane) and not finished
    ran: bool = True


@dataclass
class Liveness:
    """Per process: what this worker last saw of Redis (its epoch and server run id), since when without a gap,
    and which workers it has already seen without a heartbeat (a verdict needs two rounds in a row)."""

    _epoch: bytes | None = None
    _run_id: str | None = None
    _steady_since: float = field(default_factory=time.monotonic)
    _last_ok: float = -1.0
    _missing: set[int] = field(default_factory=set)

    async def check(self, deps: WorkerDeps) -> LivenessReport:
        """Observe every round (so a round without the lock is no gap in what this process has seen), act only
        under the advisory lock, one worker at a time."""
        async with deps.engine.connect() as conn:
            registered = await workers_repo.running(conn, LIVENESS_SECONDS)
            why_refill, dead, back = await self._observe(deps, registered)
            if not (why_refill or dead or back):
                return LivenessReport()
            locked = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})).scalar()
            if not locked:
                return LivenessReport(ran=False)
            try:
                refilled = 0
                if why_refill:
                    refilled = await refill(deps, conn, why_refill)
                    await deps.redis.set(deps.keys.epoch, uuid.uuid4().hex, nx=True)
                    self._epoch = await deps.redis.get(deps.keys.epoch)
                if not (dead or back):
                    return LivenessReport(refilled=refilled)
                # Read again under the lock: another worker may have acted on the same verdict a moment ago.
                current = {w.number: w for w in await workers_repo.running(conn, LIVENESS_SECONDS)}
                return await self._act(deps, conn, [current[n] for n in dead if n in current and not current[n].lost],
                                       [n for n in back if n in current and current[n].lost], refilled)  # fmt: skip
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})

    async def _observe(self, deps: WorkerDeps, registered: list[workers_repo.RegisteredWorker]
                       ) -> tuple[str | None, list[int], list[int]]:  # fmt: skip
        """What this round saw: why to refill the queue (or None), the workers to give up, those back."""
        now = time.monotonic()
        # One snapshot (MULTI/EXEC): a flush or a restart between reading the epoch and the heartbeats would
        # otherwise show a healthy epoch beside a fleet without heartbeats.
        pipe = deps.redis.pipeline(transaction=True)
        pipe.get(deps.keys.epoch)
        pipe.info("server")
        pipe.exists(deps.keys.worker(deps.metrics.id))
        for w in registered:
            pipe.exists(deps.keys.worker(w.name))
        epoch, server, own, *beating = await pipe.execute()
        run_id = str(server.get("run_id", ""))
        # No epoch: Redis lost its data. Another server (a restart from a snapshot, a Sentinel failover): it may
        # lack what was enqueued after its snapshot or its last replication. Either way, refill at once.
        new_server = self._run_id is not None and run_id != self._run_id
        why_refill = "no epoch key" if epoch is None else "a new Redis server" if new_server else None
        # A new epoch or server, or a gap in this process's rounds (Redis or PostgreSQL did not answer): watch
        # again before judging, since heartbeats may be missing for that reason alone.
        if epoch != self._epoch or run_id != self._run_id or now - self._last_ok > 3 * CHECK_SECONDS:
            self._epoch, self._run_id, self._steady_since = epoch, run_id, now
            self._missing.clear()
        self._last_ok = now
        # Judged only by a process whose own heartbeat Redis shows: if even that is gone, Redis is what failed.
        if now - self._steady_since < JUDGE_AFTER_SECONDS or not own:
            return why_refill, [], []
        alive = [bool(n) for n in beating]
        silent = {w.number for w, beats in zip(registered, alive, strict=True) if not beats and not w.lost}
        # Dead: silent in this round and the one before (a heartbeat that expired between two beats of a busy
        # worker, or a clock step on the Redis host, is not enough).
        dead = sorted(silent & self._missing)
        self._missing = silent - set(dead)
        back = [w.number for w, beats in zip(registered, alive, strict=True) if beats and w.lost]
        return why_refill, dead, back

    async def _act(self, deps: WorkerDeps, conn: AsyncConnection, dead: list[workers_repo.RegisteredWorker],
                   back: list[int], refilled: int) -> LivenessReport:  # fmt: skip
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
        # Batch numbers the dead worker had popped from the express lane's ready list and not wholly claimed are
        # in no queue now: enqueued again at once, not after the reconciler's grace (job keys are SET NX).
        reenqueued = len(await enqueue_lost(deps, conn, 0.0))
        names = tuple(w.name for w in dead)
        log.warning("worker(s) %s stopped beating for %g s: %d claimed messages taken back (%d failed as unknown), "
                    "%d running jobs restarted, %d batches enqueued again", ", ".join(names), LIVENESS_SECONDS,
                    taken_back, failed, restarted, reenqueued,
                    extra={"lost_workers": list(names), "released": released.messages})  # fmt: skip
        return LivenessReport(names, released.messages, taken_back, restarted, refilled, reenqueued)


async def refill(deps: WorkerDeps, conn: AsyncConnection, why: str) -> int:
    """Redis may have lost data: every open batch without a job is enqueued again now (no grace period)."""
    lost = await enqueue_lost(deps, conn, 0.0)
    if lost:
        log.warning("Redis lost data (%s): %d batches enqueued again from PostgreSQL", why, len(lost))
    else:
        log.info("Redis: %s; nothing to enqueue again", why)
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
