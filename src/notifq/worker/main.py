"""A worker process: arq Workers for its lanes, and the express lane, sharing one set of connections and limits.

Transactional batches due now (every single send) go through the express lane
(worker/express.py): many at a time, woken by a push. The transactional arq queue, with its
own job slots, carries what waits first (retries after their backoff).
Both share the process's rate limit (transactional sends take their tokens first),
in-flight cap and breakers. NOTIFQ_WORKER_LANES picks the lanes: `all` (bulk work gives
way while transactional traffic is active), `transactional`, or `bulk`.

SIGTERM/SIGINT: both lanes stop taking jobs; running jobs see `draining`, finish the chunk
in flight, write its outcomes, hand the unclaimed rest of their batch to a new job and
return; after `worker_drain_seconds` whatever still runs is cancelled (its leases expire
and the reconciler takes the messages back).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from arq import Worker
from arq.worker import func
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.campaigns import CampaignService
from notifq.db import workers_repo
from notifq.db.engine import COMMAND_TIMEOUT_SECONDS, create_engine
from notifq.feedback import FeedbackService
from notifq.keys import RedisKeys
from notifq.providers.factory import ProviderFactory
from notifq.queue import DELIVER_FUNCTION, LANES, redis_client
from notifq.redis_connect import arq_connection
from notifq.settings import Settings
from notifq.unsubscribe_links import link_key, link_problem
from notifq.vocabulary import Lane
from notifq.worker.breaker import CircuitBreaker
from notifq.worker.delivery import deliver_batch
from notifq.worker.deps import WorkerDeps
from notifq.worker.express import run_express
from notifq.worker.failover import Failover
from notifq.worker.fleet_limit import FleetLimits
from notifq.worker.heartbeat import run_heartbeat, say_goodbye
from notifq.worker.liveness import register, run_liveness
from notifq.worker.metrics import WorkerMetrics
from notifq.worker.opt_outs import run_opt_out_sync
from notifq.worker.rate_limit import RateLimiter
from notifq.worker.reconciler import run_reconciler
from notifq.worker.scheduler import run_scheduler
from notifq.worker.webhooks import WebhookDispatcher

log = logging.getLogger("notifq.worker")
TRANSACTIONAL_JOBS = 16
# Connections for the transactional lane: its jobs hold one only for a claim or a record, so
# 8 serve 16 jobs; beyond that a job waits for a pooled connection (never opens a new one).
# +5: the scheduler, the reconciler and the liveness check (the last two record outcomes while holding their locks).
TRANSACTIONAL_DB_SLOTS = 8
# The transactional arq queue only holds batches that wait (retries after their backoff of 1 s or more,
# throttle holds): its due ones go to the express lane. Polled like bulk, not every 10 ms: 100 polls a
# second per worker cost ~3 % of a core for nothing.
WEBHOOK_DB_SLOTS = 4  # the outbox round, and the endpoints being worked (a page holds one only to read or record)
POLL_DELAY = {Lane.TRANSACTIONAL: 0.05, Lane.BULK: 0.05}


class WorkerRuntime:
    def __init__(self, settings: Settings, providers: Callable[[Settings], ProviderFactory] = ProviderFactory) -> None:
        if not settings.database_url or not settings.redis_url:
            raise ValueError("the worker needs settings.database_url and settings.redis_url")
        self.settings = settings
        self.providers = providers
        self.workers: dict[str, Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._express: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.deps: WorkerDeps | None = None
        self._feedback_engine: AsyncEngine | None = None
        self._webhook_engine: AsyncEngine | None = None

    async def start(self) -> None:
        s = self.settings
        assert s.database_url and s.redis_url
        redis, keys, providers = redis_client(s.redis_url), RedisKeys.from_settings(s), self.providers(s)
        breaker, metrics = CircuitBreaker(s.breaker_failures, s.breaker_cooldown), WorkerMetrics()
        fleet = FleetLimits(s, redis, keys)
        self.deps = deps = WorkerDeps(
            settings=s,
            # Autocommit: each hot-path statement is its own transaction (see db/transitions.py).
            engine=create_engine(s.database_url, pool_size=s.worker_jobs + TRANSACTIONAL_DB_SLOTS + 5,
                                 pool_timeout=COMMAND_TIMEOUT_SECONDS + 30, role="worker", autocommit=True,
                                 pre_ping=True, keepalive=True),
            redis=redis,
            keys=keys,
            providers=providers,
            limiter=RateLimiter(s.rate_limit),
            in_flight=asyncio.Semaphore(s.worker_max_in_flight),
            breaker=breaker,
            fleet=fleet,
            failover=Failover(providers, breaker, fleet, redis, keys, metrics.id),
            metrics=metrics,
        )  # fmt: skip
        # Registered before the first claim: its number marks what it claims (worker/liveness.py).
        await register(deps)
        # Rare, multi-statement work (provider refusals, the guard's pause) needs real transactions.
        self._feedback_engine = create_engine(s.database_url, pool_size=2, pool_timeout=COMMAND_TIMEOUT_SECONDS + 30,
                                              role="worker-feedback", pre_ping=True, keepalive=True)  # fmt: skip
        deps.feedback = FeedbackService(self._feedback_engine, CampaignService(self._feedback_engine, deps.redis, s), s)
        deps.unsubscribe_key = link_key(s)
        if (problem := link_problem(s)) is not None and s.email_provider in ("ses", "smtp"):
            log.warning("%s", problem)
        for lane in lanes_served(s):
            self.workers[lane] = Worker(
                functions=[func(deliver_batch, name=DELIVER_FUNCTION, max_tries=1000)],
                queue_name=deps.keys.lane_queue(lane),
                **arq_connection(s.redis_url),
                ctx={"deps": deps, "lane": lane},
                max_jobs=TRANSACTIONAL_JOBS if lane == Lane.TRANSACTIONAL else s.worker_jobs,
                job_timeout=s.job_timeout,
                keep_result=0,
                poll_delay=POLL_DELAY[lane],
                handle_signals=False,
                log_results=False,
                health_check_interval=5,
            )
        self._tasks = [asyncio.create_task(w.async_run(), name=f"arq-{lane}") for lane, w in self.workers.items()]
        self._tasks.append(asyncio.create_task(run_reconciler(deps), name="notifq-reconciler"))
        self._tasks.append(asyncio.create_task(run_scheduler(deps), name="notifq-scheduler"))
        self._tasks.append(asyncio.create_task(run_liveness(deps), name="notifq-liveness"))
        if Lane.TRANSACTIONAL in self.workers:
            self._express = asyncio.create_task(run_express(deps), name="notifq-express")
        if deps.yields_to_express:
            self._tasks.append(asyncio.create_task(deps.gate.watch(deps.redis, deps.keys, deps.draining),
                                                   name="notifq-priority"))  # fmt: skip
        # Not among self._tasks: it beats until the worker has deregistered (stop()), so the liveness check never
        # takes a stopping worker's last chunks for a dead worker's.
        self._heartbeat = asyncio.create_task(run_heartbeat(deps), name="notifq-heartbeat")
        self._tasks.append(asyncio.create_task(run_opt_out_sync(deps), name="notifq-opt-outs"))
        # Outbound webhooks (worker/webhooks.py): its own small transactional pool, so a slow receiver's
        # pages never hold a connection the hot path needs.
        self._webhook_engine = create_engine(s.database_url, pool_size=WEBHOOK_DB_SLOTS,
                                             pool_timeout=COMMAND_TIMEOUT_SECONDS + 30, role="worker-webhooks",
                                             pre_ping=True, keepalive=True)  # fmt: skip
        dispatcher = WebhookDispatcher(self._webhook_engine, s, deps.metrics.id, deps.draining)
        self._tasks.append(asyncio.create_task(dispatcher.run(), name="notifq-webhooks"))
        self._tasks.append(asyncio.create_task(check_providers(deps.providers, s.provider_timeout),
                                               name="notifq-provider-check"))  # fmt: skip
        log.info("worker %s started: lanes %s, rate limit %s msg/s, %d bulk jobs at once%s",
                 deps.metrics.id, ", ".join(self.workers), s.rate_limit or "unlimited", s.worker_jobs,
                 "; fleet-wide limits " + ", ".join(f"{n} {r:g}/s" for n, r, _ in s.provider_rates)
                 if s.provider_rates else "", extra={"worker_id": deps.metrics.id})  # fmt: skip

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop taking jobs, let running ones finish their chunk (up to the drain time), then close."""
        deps = self.deps
        if deps is None:
            return
        deps.draining.set()
        for w in self.workers.values():
            w.allow_pick_jobs = False
        wait = self.settings.worker_drain_seconds if drain_seconds is None else drain_seconds
        deadline = time.monotonic() + wait
        # Looked at again after each wait: arq may start a job it had already read from the queue after the drain
        # began. That job sees `draining` and hands its batch over at once; cancelled midway (after moving its
        # messages, before enqueueing their new job), the batch would wait for the reconciler's grace period.
        while running := self._running_jobs():
            if (left := deadline - time.monotonic()) <= 0:
                break
            await asyncio.wait(running, timeout=left)
        background = [*self._tasks, *([self._express] if self._express else [])]
        deps.stopped.set()
        for task in background:
            task.cancel()
        await _settle(background, deps.metrics.id)
        self._express = None
        for w in self.workers.values():
            # Finish arq's job tasks ourselves: its close() gathers them without return_exceptions,
            # and a cancelled one would abort close() before it closes arq's Redis pool.
            for job in w.tasks.values():
                job.cancel()
            await asyncio.gather(*w.tasks.values(), return_exceptions=True)
            w.tasks.clear()
            await w.close()
        await _deregister(deps)
        deps.gone.set()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await _settle([self._heartbeat], deps.metrics.id)
            self._heartbeat = None
        await say_goodbye(deps)
        await deps.fleet.aclose()
        await deps.failover.aclose()
        await deps.providers.aclose()
        await deps.redis.aclose()
        await deps.engine.dispose()
        if self._feedback_engine is not None:
            await self._feedback_engine.dispose()
        if self._webhook_engine is not None:
            await self._webhook_engine.dispose()
        log.info("worker %s stopped: %s, %d stale outcomes", deps.metrics.id, dict(deps.metrics.totals),
                 deps.metrics.stale, extra={"worker_id": deps.metrics.id})  # fmt: skip
        self.deps = None

    def _running_jobs(self) -> list[asyncio.Task[None]]:
        running: list[asyncio.Task[None]] = [t for w in self.workers.values() for t in w.tasks.values() if not t.done()]
        if self._express is not None and not self._express.done():
            running.append(self._express)  # it stops popping and finishes its chunks in flight
        return running

    async def run_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        lanes = self._tasks[: len(self.workers)]
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([*lanes, stopped], return_when="FIRST_COMPLETED")
        crashed = [t for t in lanes if t.done()]
        stopped.cancel()
        await self.stop()
        for task in crashed:  # a lane died (e.g. Redis gone): exit non-zero so a supervisor restarts us
            if not task.cancelled() and task.exception() is not None:
                raise SystemExit(f"notifq worker: a lane stopped: {task.exception()!r}")


CANCEL_WAIT_SECONDS = 10.0


async def _deregister(deps: WorkerDeps) -> None:
    """A graceful stop, once every job and chunk has ended: claims still unrecorded (chunks cancelled after the
    drain time) get their leases ended, for the reconciler to take back in its next round instead of after the
    lease, and the worker is marked stopped, so the liveness check does not take it for dead."""
    if deps.worker_number is None:
        return
    try:
        async with deps.engine.connect() as conn:
            released = await workers_repo.release_claims(conn, [deps.worker_number])
            await workers_repo.mark_stopped(conn, deps.worker_number)
        if released.messages:
            log.warning("worker %s stopped with %d claimed messages unrecorded (the drain time ran out): the "
                        "reconciler takes them back", deps.metrics.id, released.messages)  # fmt: skip
    except Exception as exc:  # PostgreSQL down: the lease (or the liveness check) brings them back later
        log.warning("could not record the stop of worker %s: %r", deps.metrics.id, exc)


async def _settle(tasks: list[asyncio.Task[None]], worker_id: str) -> None:
    """Wait for cancelled tasks to end, but not forever: a task that ignores its cancellation (stuck in
    a library call) is named in a warning, with where it is, and the stop goes on without it."""
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=CANCEL_WAIT_SECONDS)
    for task in stuck:
        where = "; ".join(f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno} {f.f_code.co_name}"
                          for f in task.get_stack(limit=8))  # fmt: skip
        log.warning("worker %s: task %s still running %g s after its cancellation (at %s); stopping without it",
                    worker_id, task.get_name(), CANCEL_WAIT_SECONDS, where, extra={"worker_id": worker_id})  # fmt: skip
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: an ended task's error was logged where it happened


def lanes_served(settings: Settings) -> tuple[Lane, ...]:
    """NOTIFQ_WORKER_LANES: a transactional worker also runs the express lane (worker/express.py)."""
    return LANES if settings.worker_lanes == "all" else (Lane(settings.worker_lanes),)


async def check_providers(providers: ProviderFactory, within: float) -> None:
    """At start, in the background: say what is wrong with each configured provider (a warning, not a
    crash: the mock and the other providers are served, and that provider's messages wait for the fix)."""
    for (channel, name), problem in (await providers.check_all(within)).items():
        if problem is None:
            log.info("provider %s (%s): configuration checked", name, channel, extra={"provider": name})
        else:
            then = ("go to the channel's other providers (or wait, not fail)" if len(providers.lists[channel]) > 1
                    else "wait (not fail)")  # fmt: skip
            log.warning("provider %s (%s) is not usable: %s; %s messages to real recipients will %s until this is "
                        "fixed", name, channel, problem, channel, then, extra={"provider": name})  # fmt: skip


def run_worker(settings: Settings) -> None:
    asyncio.run(WorkerRuntime(settings).run_until_signal())
