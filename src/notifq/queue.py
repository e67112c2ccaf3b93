"""The Redis side of delivery: arq jobs that each name one batch of messages.

A job's only argument is its batch number (`messages.job_id`), so the payload stays a
few bytes whatever the batch size, and PostgreSQL stays the one place that knows which
messages a job covers. Jobs are written with arq's own key layout (job key + queue ZADD,
exactly what `ArqRedis.enqueue_job` writes) but pipelined a thousand at a time: one
`enqueue_job` costs three round trips (~2,000 jobs/s), a pipeline ~70,000 jobs/s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from notifq.vocabulary import Lane

DELIVER_FUNCTION = "deliver_batch"
SENT_RATE_KEY = "notifq:rate:sent:"  # + epoch second: workers INCRBY per chunk, GET /stats sums a minute
JOB_EXPIRY_MS = 7 * 24 * 3600 * 1000  # a backlog may wait long; the reconciler covers expiry anyway
PIPELINE_SIZE = 1000


def job_name(job_id: int) -> str:
    return f"nq{job_id}"


LANES = tuple(Lane)


def lane_queue(queue_name: str, lane: str) -> str:
    """Transactional sends have their own arq queue, which workers poll apart from bulk work."""
    return queue_name if lane == Lane.BULK else f"{queue_name}:{lane}"


@dataclass(frozen=True)
class BatchJob:
    job_id: int
    defer_seconds: float = 0.0
    lane: Lane = Lane.BULK


async def enqueue_batches(redis: Redis, queue_name: str, jobs: Iterable[BatchJob]) -> int:
    """Write arq jobs in pipelines; an existing job key is left alone (SET NX), as arq does.

    `queue_name` is the base name; each job goes to its lane's queue.
    """
    now_ms = int(time.time() * 1000)
    count = 0
    pipe = redis.pipeline(transaction=False)
    pending = 0
    for job in jobs:
        name = job_name(job.job_id)
        score = now_ms + int(job.defer_seconds * 1000)
        payload = serialize_job(DELIVER_FUNCTION, (job.job_id,), {}, None, now_ms)
        pipe.set(job_key_prefix + name, payload, px=JOB_EXPIRY_MS + (score - now_ms), nx=True)
        pipe.zadd(lane_queue(queue_name, job.lane), {name: score}, nx=True)
        pending += 1
        count += 1
        if pending >= PIPELINE_SIZE:
            await pipe.execute()
            pending = 0
    if pending:
        await pipe.execute()
    return count


async def missing_jobs(redis: Redis, job_ids: Sequence[int]) -> list[int]:
    """The batches that have neither a queued job nor a running one in Redis."""
    if not job_ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        name = job_name(job_id)
        pipe.exists(job_key_prefix + name, in_progress_key_prefix + name)
    found = await pipe.execute()
    return [job_id for job_id, n in zip(job_ids, found, strict=True) if not n]


async def queue_depth(redis: Redis, queue_name: str) -> dict[str, int]:
    pipe = redis.pipeline(transaction=False)
    for lane in LANES:
        pipe.zcard(lane_queue(queue_name, lane))
    return dict(zip(LANES, (int(n) for n in await pipe.execute()), strict=True))
