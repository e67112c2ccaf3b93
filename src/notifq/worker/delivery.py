"""The arq job: deliver one batch of messages, a chunk at a time, each message on its own schedule.

A job carries only its batch number. It claims open messages of that batch (a
conditional UPDATE, so a message is never claimed twice), sends them concurrently
within the worker's in-flight and rate limits, and writes all outcomes with one
statement per chunk. Failed attempts move to a new batch enqueued with the 1 s / 2 s /
4 s backoff; the job itself never sleeps on a retry. A job works for at most
`job_slice_seconds`, then hands what is left to a fresh batch, which keeps arq's
in-progress claim short (a killed worker's job is picked up again quickly) and lets
other workers share a large batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from notifq.db import messages_repo
from notifq.db.messages_repo import ClaimedMessage, Outcome
from notifq.errors import PermanentError
from notifq.providers.base import OutgoingMessage
from notifq.queue import BatchJob, enqueue_batches
from notifq.worker.deps import WorkerDeps
from notifq.worker.recording import Retry, record

log = logging.getLogger("notifq.worker")


def _error_text(exc: BaseException) -> str:
    text_ = str(exc) or type(exc).__name__
    return text_[:1000]


async def send_one(deps: WorkerDeps, message: ClaimedMessage, subject: str, body: str) -> Outcome | Retry:
    provider = deps.providers.for_recipient(message.recipient)
    outgoing = OutgoingMessage(message.id, message.attempts, message.recipient, subject, body)
    async with deps.in_flight:
        try:
            await provider.send(outgoing)
        except PermanentError as exc:
            return Outcome(message.id, message.attempts, "failed", _error_text(exc))
        except Exception as exc:  # transient, throttled, or a provider bug: all retryable
            return failed_attempt(deps, message, _error_text(exc))
    return Outcome(message.id, message.attempts, "sent")


def failed_attempt(deps: WorkerDeps, message: ClaimedMessage, error: str) -> Outcome | Retry:
    """Retry on the 1 s / 2 s / 4 s schedule, or fail for good after the last attempt."""
    settings = deps.settings
    if message.attempts >= settings.max_attempts:
        return Outcome(message.id, message.attempts, "failed", error)
    delay = settings.retry_delays[min(message.attempts, len(settings.retry_delays)) - 1]
    return Retry(Outcome(message.id, message.attempts, "queued", error), delay, message.campaign_id)


async def send_chunk(deps: WorkerDeps, claimed: list[ClaimedMessage]) -> tuple[list[Outcome], list[Retry]]:
    """Send a chunk concurrently; one timer for the chunk (not one per message) bounds slow providers."""
    contents = {cid: await deps.campaign_content(cid) for cid in {m.campaign_id for m in claimed}}
    tasks = [asyncio.ensure_future(send_one(deps, m, *contents[m.campaign_id])) for m in claimed]
    done, pending = await asyncio.wait(tasks, timeout=deps.settings.provider_timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    final: list[Outcome] = []
    retries: list[Retry] = []
    for message, task in zip(claimed, tasks, strict=True):
        result = task.result() if task in done else failed_attempt(deps, message, "provider timed out")
        if isinstance(result, Retry):
            retries.append(result)
        else:
            final.append(result)
    return final, retries


async def claim_chunk(deps: WorkerDeps, job_id: int, limit: int) -> list[ClaimedMessage]:
    async with deps.engine.connect() as conn:
        return await messages_repo.claim(conn, job_id, limit, deps.settings.lease_seconds)


async def hand_over(deps: WorkerDeps, job_id: int) -> int | None:
    """Move the batch's unclaimed messages to a new batch and enqueue it; None if nothing is left."""
    async with deps.engine.connect() as conn:
        new_id = (await messages_repo.reserve_job_ids(conn, 1))[0]
        if not await messages_repo.move_queued(conn, job_id, new_id):
            return None
    await enqueue_batches(deps.redis, deps.settings.queue_name, [BatchJob(new_id)])
    return new_id


async def deliver_batch(ctx: dict[str, Any], job_id: int) -> dict[str, int]:
    deps: WorkerDeps = ctx["deps"]
    settings = deps.settings
    deadline = time.monotonic() + settings.job_slice_seconds
    totals = {"sent": 0, "failed": 0, "retried": 0}
    while True:
        if deps.draining.is_set() or time.monotonic() >= deadline:
            await hand_over(deps, job_id)
            break
        granted = await deps.limiter.acquire(deps.chunk_size, deadline)
        if granted == 0:  # the slice ends before the next token: hand the rest on (never spin)
            await hand_over(deps, job_id)
            break
        claimed = await claim_chunk(deps, job_id, granted)
        deps.limiter.refund(granted - len(claimed))
        if not claimed:
            break
        final, retries = await send_chunk(deps, claimed)
        result = await record(deps.engine, deps.redis, settings.queue_name, final, retries, settings.job_batch_size)
        sent = sum(1 for o in final if o.status == "sent")
        totals["sent"] += sent
        totals["failed"] += len(final) - sent
        totals["retried"] += len(retries)
        deps.stats["sent"] += sent
        deps.stats["failed"] += len(final) - sent
        deps.stats["retried"] += len(retries)
        deps.stats["stale"] += result.stale
        if result.stale:
            log.warning("job %s: %d outcomes arrived after another claim or a terminal state", job_id, result.stale)
    return totals
