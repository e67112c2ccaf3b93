"""Once a second: tell the cluster this worker is alive, publish its counters and a sample of its rate
(the last hour of which GET /workers/history shows; notifq/telemetry.py)."""

from __future__ import annotations

import asyncio
import logging
import time

from notifq.telemetry import HEARTBEAT_SECONDS
from notifq.worker.deps import WorkerDeps

log = logging.getLogger("notifq.worker")
WARN_EVERY_SECONDS = 30.0
JOBS_KEPT_SECONDS = 3600


async def run_heartbeat(deps: WorkerDeps) -> None:
    """Never raises: a Redis outage only delays metrics (they are kept and sent with the next beat)."""
    warned_at = 0.0
    while not deps.gone.is_set():
        try:
            await deps.metrics.publish(deps.redis, deps.keys, deps.limiter)
            await publish_jobs(deps)
        except Exception as exc:
            if time.monotonic() - warned_at > WARN_EVERY_SECONDS:
                warned_at = time.monotonic()
                log.warning("heartbeat failed: %r", exc)
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def publish_jobs(deps: WorkerDeps) -> None:
    """Keep the set of batches this worker's arq jobs run (worker/delivery.py adds and removes them) an hour past
    the last beat: long enough for the liveness check to restart them if the worker dies."""
    await deps.redis.expire(deps.keys.worker_jobs(deps.metrics.id), JOBS_KEPT_SECONDS)


async def say_goodbye(deps: WorkerDeps) -> None:
    """The last counters, and leave /workers at once instead of after the liveness window."""
    try:
        await deps.metrics.publish(deps.redis, deps.keys, deps.limiter, alive=False)
    except Exception as exc:
        log.warning("could not publish the final heartbeat: %r", exc)
