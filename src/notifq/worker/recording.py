"""Writing delivery outcomes: retries get new batches, then one statement records everything.

Shared by the delivery job and the reconciler so both move messages, campaign counters,
per-channel counts and the audit trail the same way.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import messages_repo
from notifq.db.engine import retry_deadlocks
from notifq.db.messages_repo import Outcome
from notifq.keys import RedisKeys
from notifq.queue import BatchJob, enqueue_batches
from notifq.vocabulary import Lane, MessageStatus


@dataclass(frozen=True)
class Retry:
    """A retryable outcome waiting for its batch number; `delay` is its backoff in seconds."""

    outcome: Outcome
    delay: float
    campaign_id: uuid.UUID | None
    lane: str = Lane.BULK


async def record(
    engine: AsyncEngine, redis: Redis, keys: RedisKeys, final: Sequence[Outcome], retries: Sequence[Retry],
    batch_size: int,
) -> messages_repo.RecordResult:  # fmt: skip
    """Persist outcomes (autocommit, one statement), then enqueue the retry batches with their backoff.

    Retries are grouped into one batch per campaign, lane and delay, so a chunk of 500 with
    100 failures costs one or a few jobs, not 100.
    """
    groups: dict[tuple[uuid.UUID | None, float, str], list[Outcome]] = defaultdict(list)
    for r in retries:
        groups[(r.campaign_id, r.delay, r.lane)].append(r.outcome)
    chunks = [(delay, lane, outs[i : i + batch_size]) for (_, delay, lane), outs in groups.items()
              for i in range(0, len(outs), batch_size)]  # fmt: skip
    outcomes = list(final)
    delays: dict[int, float] = {}
    async with engine.connect() as conn:
        job_ids = await messages_repo.reserve_job_ids(conn, len(chunks))
        for job_id, (delay, _, outs) in zip(job_ids, chunks, strict=True):
            delays[job_id] = delay
            outcomes.extend(replace(o, retry_job_id=job_id) for o in outs)
        # Losing these outcomes would mean sending the messages again: a deadlock is retried.
        result = await retry_deadlocks(lambda: messages_repo.record_outcomes(conn, outcomes))
    pipe = redis.pipeline(transaction=False)
    sent = sum(1 for o in final if o.status == MessageStatus.SENT)
    if sent:
        key = keys.sent_rate(int(time.time()))
        pipe.incrby(key, sent)
        pipe.expire(key, 120)
        await pipe.execute()
    if result.requeued_jobs:
        await enqueue_batches(
            redis, keys,
            (BatchJob(j, delays.get(j, 0.0), lane) for j, lane in sorted(result.requeued_jobs.items())),
        )  # fmt: skip
    return result
