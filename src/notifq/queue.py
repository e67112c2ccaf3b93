"""The Redis side of delivery: the client, and arq jobs that each name one batch of messages.

A job's only argument is its batch number (`messages.job_id`), so the payload stays a
few bytes whatever the batch size, and PostgreSQL stays the one place that knows which
messages a job covers. Jobs are written with arq's own key layout (job key + queue ZADD,
exactly what `ArqRedis.enqueue_job` writes) but pipelined a thousand at a time: one
`enqueue_job` costs three round trips (~2,000 jobs/s), a pipeline ~70,000 jobs/s.
Every key name comes from `RedisKeys` (keys.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from notifq.keys import RedisKeys
from notifq.redis_connect import redis_from_url
from notifq.vocabulary import Lane

DELIVER_FUNCTION = "deliver_batch"
JOB_EXPIRY_MS = 7 * 24 * 3600 * 1000  # a backlog may wait long; the reconciler covers expiry anyway
PIPELINE_SIZE = 1000
LANES = tuple(Lane)
TRANSACTIONAL_ACTIVE_MS = 1000  # the flag outlives the last transactional send by this much


def redis_client(url: str) -> Redis:
    """The API's and the workers' client: bounded connect and command times, idle connections checked."""
    client: Redis = redis_from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)
    return client


@dataclass(frozen=True)
class BatchJob:
    job_id: int
    defer_seconds: float = 0.0
    lane: Lane = Lane.BULK


class Due(Protocol):
    """A batch that now has queued messages (db.lifecycle.Released)."""

    @property
    def job_id(self) -> int: ...

    @property
    def priority(self) -> Lane: ...


def is_express(job: BatchJob) -> bool:
    """A transactional batch due now goes to the ready list (worker/express.py), not to arq: one list
    entry instead of arq's job key, ZADD and ~16 commands in the worker, and claimed with others."""
    return job.lane == Lane.TRANSACTIONAL and job.defer_seconds <= 0


async def enqueue_batches(redis: Redis, keys: RedisKeys, jobs: Iterable[BatchJob]) -> int:
    """Write arq jobs in pipelines, each to its lane's queue; an existing job key is kept (SET NX), as arq does.

    Transactional batches due now are pushed onto the ready list instead (`is_express`)."""
    now_ms = int(time.time() * 1000)
    count = 0
    pipe = redis.pipeline(transaction=False)
    pending = 0
    for job in jobs:
        if is_express(job):
            pipe.rpush(keys.ready, job.job_id)
            pending += 1
            count += 1
            continue
        name = keys.job_id(job.job_id)
        score = now_ms + int(job.defer_seconds * 1000)
        payload = serialize_job(DELIVER_FUNCTION, (job.job_id,), {}, None, now_ms)
        pipe.set(job_key_prefix + name, payload, px=JOB_EXPIRY_MS + (score - now_ms), nx=True)
        pipe.zadd(keys.lane_queue(job.lane), {name: score}, nx=True)
        pending += 1
        count += 1
        if pending >= PIPELINE_SIZE:
            await pipe.execute()
            pending = 0
    if pending:
        await pipe.execute()
    return count


async def enqueue_released(redis: Redis, keys: RedisKeys, released: Iterable[Due]) -> int:
    """Jobs for batches a transition queued (resumed, released at their sendAt, retried, redriven)."""
    return await enqueue_batches(redis, keys, (BatchJob(r.job_id, lane=r.priority) for r in released))


async def missing_jobs(redis: Redis, keys: RedisKeys, job_ids: Sequence[int]) -> list[int]:
    """The batches that have neither a queued job, a running one, nor a place on the ready list in Redis."""
    if not job_ids:
        return []
    pipe = redis.pipeline(transaction=False)
    pipe.lrange(keys.ready, 0, -1)
    for job_id in job_ids:
        name = keys.job_id(job_id)
        pipe.exists(job_key_prefix + name, in_progress_key_prefix + name)
    ready, *found = await pipe.execute()
    listed = {int(j) for j in ready}
    return [job_id for job_id, n in zip(job_ids, found, strict=True) if not n and job_id not in listed]


async def pop_ready(redis: Redis, keys: RedisKeys, count: int, wait_seconds: float) -> list[int]:
    """Up to `count` ready transactional batches, oldest first, waiting up to `wait_seconds` for the first.

    BLMPOP (Redis 7 / Valkey): one round trip takes many, and each push wakes one waiting worker."""
    popped = await redis.execute_command(  # type: ignore[no-untyped-call]  # redis-py 5 has no typed blmpop
        "BLMPOP", wait_seconds, 1, keys.ready, "LEFT", "COUNT", count
    )
    if not popped:
        return []
    return [int(j) for j in popped[1]]


async def give_back_ready(redis: Redis, keys: RedisKeys, job_ids: Sequence[int]) -> None:
    """Batches popped but not finished (a claim that filled its chunk): back to the list's head."""
    if job_ids:
        await redis.lpush(keys.ready, *reversed(job_ids))  # type: ignore[misc]  # redis-py's union return type


async def queue_depth(redis: Redis, keys: RedisKeys) -> dict[Lane, int]:
    """Batches waiting per lane: arq jobs, plus the transactional ready list."""
    pipe = redis.pipeline(transaction=False)
    for lane in LANES:
        pipe.zcard(keys.lane_queue(lane))
    pipe.llen(keys.ready)
    *queued, ready = (int(n) for n in await pipe.execute())
    depth = dict(zip(LANES, queued, strict=True))
    depth[Lane.TRANSACTIONAL] += ready
    return depth


async def announce_transactional(redis: Redis, keys: RedisKeys) -> None:
    """Called for every due transactional send: workers' bulk work gives way while the flag lives
    (worker/priority.py). Also the send's check that Redis answers, before anything is written."""
    await redis.set(keys.transactional_active, b"1", px=TRANSACTIONAL_ACTIVE_MS)
