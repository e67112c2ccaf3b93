"""Writing delivery outcomes: one transaction per batch of outcomes, then the retry jobs.

Shared by the delivery job and the reconciler so both move messages, campaign counters
and campaign completion the same way.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifq.db import campaigns_repo, messages_repo
from notifq.db.messages_repo import Deltas, Outcome
from notifq.queue import BatchJob, enqueue_batches


@dataclass(frozen=True)
class Retry:
    """A retryable outcome waiting for its batch number; `delay` is its backoff in seconds."""

    outcome: Outcome
    delay: float
    campaign_id: uuid.UUID


async def apply_deltas_and_complete(conn: AsyncConnection, deltas: Deltas) -> None:
    for campaign_id in sorted(deltas):
        await campaigns_repo.apply_deltas(conn, campaign_id, deltas[campaign_id])
        await campaigns_repo.complete_if_done(conn, campaign_id)


async def record(
    engine: AsyncEngine, redis: Redis, queue_name: str, final: Sequence[Outcome], retries: Sequence[Retry],
    batch_size: int,
) -> messages_repo.RecordResult:  # fmt: skip
    """Persist outcomes; retries get new batches (one per campaign and delay) enqueued with their backoff."""
    async with engine.begin() as conn:
        result, delays = await record_in(conn, final, retries, batch_size)
    if result.requeued_jobs:
        await enqueue_batches(redis, queue_name, (BatchJob(j, delays[j]) for j in sorted(result.requeued_jobs)))
    return result


async def record_in(
    conn: AsyncConnection, final: Sequence[Outcome], retries: Sequence[Retry], batch_size: int
) -> tuple[messages_repo.RecordResult, dict[int, float]]:
    groups: dict[tuple[uuid.UUID, float], list[Outcome]] = defaultdict(list)
    for r in retries:
        groups[(r.campaign_id, r.delay)].append(r.outcome)
    chunks = [(delay, outs[i : i + batch_size]) for (_, delay), outs in groups.items()
              for i in range(0, len(outs), batch_size)]  # fmt: skip
    job_ids = await messages_repo.reserve_job_ids(conn, len(chunks))
    delays: dict[int, float] = {}
    outcomes = list(final)
    for job_id, (delay, outs) in zip(job_ids, chunks, strict=True):
        delays[job_id] = delay
        outcomes.extend(replace(o, retry_job_id=job_id) for o in outs)
    result = await messages_repo.record_outcomes(conn, outcomes)
    await apply_deltas_and_complete(conn, result.deltas)
    return result, delays
