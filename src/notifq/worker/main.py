"""Wiring notifq's job into an arq Worker, and the worker process's lifecycle.

SIGTERM/SIGINT: arq stops picking jobs; our jobs see `draining`, finish the chunk in
flight, write its outcomes, hand the unclaimed rest of their batch to a new job and
return; arq waits up to `worker_drain_seconds` for that before cancelling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from arq import Worker
from arq.connections import RedisSettings
from arq.worker import func

from notifq.api.app import redis_client
from notifq.db.engine import create_engine
from notifq.providers.factory import ProviderFactory
from notifq.queue import DELIVER_FUNCTION
from notifq.settings import Settings
from notifq.worker.delivery import deliver_batch
from notifq.worker.deps import WorkerDeps
from notifq.worker.rate_limit import RateLimiter
from notifq.worker.reconciler import run_reconciler

log = logging.getLogger("notifq.worker")


class NotifqWorker(Worker):
    """arq's Worker, plus telling our jobs to drain when the stop signal arrives."""

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        deps: WorkerDeps | None = self.ctx.get("deps")
        if deps is not None:
            deps.draining.set()
        super().handle_sig_wait_for_completion(signum)


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    handle_signals: bool = True,
    providers: Callable[[Settings], ProviderFactory] = ProviderFactory,
) -> NotifqWorker:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("the worker needs settings.database_url and settings.redis_url")
    database_url, redis_url = settings.database_url, settings.redis_url
    tasks: list[asyncio.Task[None]] = []

    async def on_startup(ctx: dict[str, Any]) -> None:
        deps = WorkerDeps(
            settings=settings,
            # Autocommit: each hot-path statement is its own transaction (see messages_repo).
            engine=create_engine(database_url, pool_size=settings.worker_jobs + 2).execution_options(
                isolation_level="AUTOCOMMIT"
            ),
            redis=redis_client(redis_url),
            providers=providers(settings),
            limiter=RateLimiter(settings.rate_limit),
            in_flight=asyncio.Semaphore(settings.worker_max_in_flight),
        )
        ctx["deps"] = deps
        tasks.append(asyncio.create_task(run_reconciler(deps), name="notifq-reconciler"))
        log.info("worker %d started: rate limit %s msg/s, %d jobs at once", os.getpid(),
                 settings.rate_limit or "unlimited", settings.worker_jobs)  # fmt: skip

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        deps: WorkerDeps = ctx["deps"]
        deps.draining.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await deps.providers.aclose()
        await deps.redis.aclose()
        await deps.engine.dispose()
        log.info("worker %d stopped: %s", os.getpid(), deps.stats)

    return NotifqWorker(
        functions=[func(deliver_batch, name=DELIVER_FUNCTION, max_tries=1000)],
        queue_name=settings.queue_name,
        redis_settings=RedisSettings.from_dsn(redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        max_jobs=settings.worker_jobs,
        job_timeout=settings.job_timeout,
        keep_result=0,
        poll_delay=0.05,
        burst=burst,
        handle_signals=handle_signals,
        job_completion_wait=int(settings.worker_drain_seconds),
        log_results=False,
        health_check_interval=5,
    )


def run_worker(settings: Settings) -> None:
    worker = build_worker(settings)
    worker.run()
