"""Writing delivery outcomes: retries get new batches, then one statement records everything.

Shared by the delivery job and the reconciler so both move messages, campaign counters,
per-channel counts and the audit trail the same way, and both count in the worker's
metrics exactly the transitions PostgreSQL applied.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from notifq.db import messages_repo
from notifq.db.engine import retry_deadlocks
from notifq.db.messages_repo import Outcome
from notifq.queue import BatchJob, enqueue_batches
from notifq.vocabulary import Lane
from notifq.worker.deps import WorkerDeps


@dataclass(frozen=True)
class Retry:
    """A retryable outcome waiting for its batch number; `delay` is its backoff in seconds."""

    outcome: Outcome
    delay: float
    campaign_id: uuid.UUID | None
    lane: str = Lane.BULK


async def record(deps: WorkerDeps, final: Sequence[Outcome], retries: Sequence[Retry]) -> messages_repo.RecordResult:
    """Persist outcomes (autocommit, one statement), count them, then enqueue the retry batches with their backoff.

    Retries are grouped into one batch per campaign, lane and delay, so a chunk of 500 with
    100 failures costs one or a few jobs, not 100.
    """
    batch_size = deps.settings.job_batch_size
    groups: dict[tuple[uuid.UUID | None, float, str], list[Outcome]] = defaultdict(list)
    for r in retries:
        groups[(r.campaign_id, r.delay, r.lane)].append(r.outcome)
    chunks = [(delay, lane, outs[i : i + batch_size]) for (_, delay, lane), outs in groups.items()
              for i in range(0, len(outs), batch_size)]  # fmt: skip
    outcomes = list(final)
    delays: dict[int, float] = {}
    async with deps.engine.connect() as conn:
        job_ids = await messages_repo.reserve_job_ids(conn, len(chunks))
        for job_id, (delay, _, outs) in zip(job_ids, chunks, strict=True):
            delays[job_id] = delay
            outcomes.extend(replace(o, retry_job_id=job_id) for o in outs)
        # Losing these outcomes would mean sending the messages again: a deadlock is retried.
        result = await retry_deadlocks(lambda: messages_repo.record_outcomes(conn, outcomes))
    deps.metrics.recorded(result.recorded, result.stale)
    await deps.metrics.flush(deps.redis, deps.keys)
    if result.requeued_jobs:
        await enqueue_batches(
            deps.redis, deps.keys,
            (BatchJob(j, delays.get(j, 0.0), lane) for j, lane in sorted(result.requeued_jobs.items())),
        )  # fmt: skip
    return result
