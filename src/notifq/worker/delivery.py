"""The arq job: deliver one batch of messages, a chunk at a time, each message on its own schedule.

A job carries only its batch number. It claims open messages of that batch (a
conditional UPDATE, so a message is never claimed twice), sends them concurrently
within the worker's in-flight and rate limits, and writes all outcomes with one
statement per chunk. Failed attempts move to a new batch enqueued with the 1 s / 2 s /
4 s backoff; the job itself never sleeps on a retry. A job works for at most
`job_slice_seconds`, then hands what is left to a fresh batch, which keeps arq's
in-progress claim short (a killed worker's job is picked up again quickly) and lets
other workers share a large batch.

Before its provider call a message goes through failover (worker/failover.py: which of the
channel's providers) and, for a fleet-limited provider, takes a token of the fleet's rate
(worker/fleet_limit.py), waiting a bounded time; one that gets none is deferred like a
breaker hold, its attempt given back. The chunk's provider timer starts once every message
has its token: waiting for the fleet is not the provider being slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from notifq.db import messages_repo
from notifq.db.engine import retry_deadlocks
from notifq.db.messages_repo import ClaimedMessage, Outcome, RecordResult
from notifq.errors import PermanentError, ProviderConfigError, RecipientRejected, ThrottledError
from notifq.feedback import Report
from notifq.providers.base import OutgoingMessage, Provider
from notifq.queue import BatchJob, enqueue_batches
from notifq.templates import render
from notifq.unsubscribe_links import link_for
from notifq.vocabulary import Channel, Event, FeedbackKind, Lane, MessageStatus
from notifq.worker.audience import screen
from notifq.worker.breaker import CONFIG_ERROR
from notifq.worker.deps import WorkerDeps
from notifq.worker.metrics import outcome_of
from notifq.worker.recording import Retry, record

log = logging.getLogger("notifq.worker")


DEFAULT_THROTTLE_SECONDS = 1.0
# A message whose provider is held or throttled while its channel has another provider: back at once
# (no attempt used), and failover sends it through the next one instead of waiting out the hold.
FAILOVER_RETRY_SECONDS = 0.1


def _error_text(exc: BaseException) -> str:
    text_ = str(exc) or type(exc).__name__
    return text_[:1000]


class TokenPhase:
    """Counts a chunk's messages past their fleet token (taken, given up, or not needed)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.over = asyncio.Event()

    def passed(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.over.set()


def _rounded(seconds: float) -> float:
    """Rounded up to 0.1 s, so the messages deferred together share one retry batch."""
    return math.ceil(seconds * 10) / 10


async def send_one(deps: WorkerDeps, message: ClaimedMessage, subject: str, body: str,
                   phase: TokenPhase | None = None) -> Outcome | Retry:  # fmt: skip
    try:
        first = deps.providers.for_message(message.channel, message.recipient)
        chosen = deps.failover.choose(message.channel, message.recipient, first)
        if chosen is None:  # one provider, or none of the channel's may be tried: wait on the first
            provider, switched = first, None
            wait = deps.breaker.wait_for(provider.name)
            if wait > 0:  # circuit open, throttled or held: wait without using up an attempt
                problem = deps.breaker.problem(provider.name)
                why = (f"{CONFIG_ERROR}{problem}; provider {provider.name} held, not attempted" if problem
                       else f"provider {provider.name} paused; not attempted")  # fmt: skip
                return deferred(message, why, _rounded(wait), Event.DEFERRED)
        else:
            provider, switched = chosen
        if deps.fleet.limited(provider.name) and (wait := await deps.fleet.take(provider.name)) > 0:
            why = f"fleet rate limit of {provider.name}: no token within {deps.fleet.wait_bound:g} s; not attempted"
            return deferred(message, why, _rounded(wait), Event.THROTTLED, provider.name)
    finally:
        if phase is not None:
            phase.passed()
    bulk_mail = (message.priority == Lane.BULK and deps.unsubscribe_key
                 and getattr(provider, "takes_unsubscribe_url", False))  # fmt: skip
    unsubscribe = link_for(deps.settings, deps.unsubscribe_key, message.id) if bulk_mail else None
    outgoing = OutgoingMessage(message.id, message.attempts, message.recipient, subject, body, message.channel,
                               message.data, message.category, message.created_at, unsubscribe)  # fmt: skip
    metrics = deps.metrics
    # A subscriber's message records the address it went to (resolved from the profile at claim): a refusal
    # must suppress that address, not the one the profile had when the message was accepted.
    sent_to = message.recipient if message.subscriber_id else None
    async with deps.in_flight:
        metrics.in_flight += 1
        started = time.perf_counter()
        try:
            result = await provider.send(outgoing)
        except RecipientRejected as exc:  # a hard bounce, a dead token, an opt-out: the address is suppressed
            deps.breaker.refused(provider.name)
            return Outcome(message.id, message.attempts, MessageStatus.FAILED, _error_text(exc), provider=provider.name,
                           feedback=FeedbackKind(exc.kind), recipient=sent_to)  # fmt: skip
        except PermanentError as exc:
            deps.breaker.refused(provider.name)  # the message is the problem, not the provider
            return Outcome(message.id, message.attempts, MessageStatus.FAILED, _error_text(exc), provider=provider.name,
                           recipient=sent_to)  # fmt: skip
        except ProviderConfigError as exc:
            retry = misconfigured(deps, message, provider.name, _error_text(exc))
            return replace(retry, delay=FAILOVER_RETRY_SECONDS) if _fails_over(deps, message, first) else retry
        except ThrottledError as exc:
            hold = exc.retry_after if exc.retry_after and exc.retry_after > 0 else DEFAULT_THROTTLE_SECONDS
            if deps.fleet.limited(provider.name):  # the whole fleet backs off (and holds for a Retry-After)
                deps.fleet.throttled(provider.name, exc.retry_after)
            else:
                deps.breaker.hold(provider.name, hold)
            delay = FAILOVER_RETRY_SECONDS if _fails_over(deps, message, first) else hold
            return deferred(message, _error_text(exc), delay, Event.THROTTLED, provider.name)
        except Exception as exc:  # transient, or a provider bug: retryable
            deps.breaker.failure(provider.name)
            return failed_attempt(deps, message, _error_text(exc), provider.name)
        finally:
            metrics.in_flight -= 1
            metrics.latency(message.channel, provider.name, time.perf_counter() - started)
    if (problem := deps.breaker.success(provider.name)) is not None:
        log.info("provider %s works again (it was held by: %s)", provider.name, problem,
                 extra={"provider": provider.name})  # fmt: skip
    # `switched`: the sent event's detail says the failover (the message's lastError is kept as it was).
    return Outcome(message.id, message.attempts, MessageStatus.SENT, switched, provider=result.provider,
                   provider_message_id=result.provider_message_id, recipient=sent_to)  # fmt: skip


def _fails_over(deps: WorkerDeps, message: ClaimedMessage, first: Provider) -> bool:
    return bool(deps.providers.backups(message.channel, message.recipient, first))


def misconfigured(deps: WorkerDeps, message: ClaimedMessage, provider: str, problem: str) -> Retry:
    """A configuration error: hold the provider (one try per cool-down) and give the attempt back;
    said once in an ERROR line (again if it changes, or every few minutes while it lasts)."""
    if deps.breaker.misconfigured(provider, problem):
        log.error("provider %s held: %s%s; its messages wait (no attempt used) and it is tried again every %g s",
                  provider, CONFIG_ERROR, problem, deps.breaker.cooldown,
                  extra={"provider": provider, "message_id": message.id,
                         "campaign_id": message.campaign_id})  # fmt: skip
    return deferred(message, f"{CONFIG_ERROR}{problem}", deps.breaker.cooldown, Event.CONFIG_ERROR, provider)


def deferred(message: ClaimedMessage, error: str, delay: float, event: Event, provider: str | None = None) -> Retry:
    """Try again after `delay` with the attempt given back (the provider asked us to wait, or is held)."""
    outcome = Outcome(message.id, message.attempts, MessageStatus.QUEUED, error, provider=provider, refund=True,
                      event=event)  # fmt: skip
    return Retry(outcome, delay, message.campaign_id, message.priority)


def failed_attempt(deps: WorkerDeps, message: ClaimedMessage, error: str, provider: str | None = None
                   ) -> Outcome | Retry:  # fmt: skip
    """Retry on the 1 s / 2 s / 4 s schedule, or fail for good after the last attempt."""
    settings = deps.settings
    if message.attempts >= settings.max_attempts:
        return Outcome(message.id, message.attempts, MessageStatus.FAILED, error, provider=provider)
    delay = settings.retry_delays[min(message.attempts, len(settings.retry_delays)) - 1]
    outcome = Outcome(message.id, message.attempts, MessageStatus.QUEUED, error, provider=provider)
    return Retry(outcome, delay, message.campaign_id, message.priority)


async def content(deps: WorkerDeps, message: ClaimedMessage) -> tuple[str, str]:
    """A campaign message renders its campaign's templates with its variables; a single one has its own."""
    if message.campaign_id is None:
        return message.subject or "", message.body or ""
    subject, body = await deps.campaign_content(message.campaign_id)
    return render(subject, message.vars, message.recipient), render(body, message.vars, message.recipient)


async def send_chunk(deps: WorkerDeps, claimed: list[ClaimedMessage]) -> tuple[list[Outcome], list[Retry]]:
    """Send a chunk concurrently; one timer for the chunk (not one per message) bounds slow providers.

    With fleet limits the timer starts once every message is past its token (each waits at most
    `fleet.wait_bound`): the lease covers both (FleetLimits sizes the bound from it)."""
    if not claimed:
        return [], []
    phase = TokenPhase(len(claimed)) if deps.fleet.gates else None
    tasks = [asyncio.ensure_future(send_one(deps, m, *await content(deps, m), phase)) for m in claimed]
    if phase is not None:
        with contextlib.suppress(TimeoutError):  # a bound of its own, in case a message never says it passed
            await asyncio.wait_for(phase.over.wait(), deps.fleet.wait_bound + 1)
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
            if result.status == MessageStatus.FAILED:
                log.info("message failed permanently: %s", result.error,
                         extra={"message_id": message.id, "campaign_id": message.campaign_id,
                                "provider": result.provider, "attempt": result.attempts})  # fmt: skip
    return final, retries


async def claim_chunk(deps: WorkerDeps, job_id: int, limit: int) -> list[ClaimedMessage]:
    async def claim() -> list[ClaimedMessage]:
        async with deps.engine.connect() as conn:
            return await messages_repo.claim(conn, job_id, limit, deps.settings.lease_seconds, deps.worker_number)

    return await retry_deadlocks(claim)


async def hand_over(deps: WorkerDeps, job_id: int, lane: Lane) -> int | None:
    """Move the batch's unclaimed messages to a new batch and enqueue it; None if nothing is left."""
    async with deps.engine.connect() as conn:
        new_id = (await messages_repo.reserve_job_ids(conn, 1))[0]
        if not await messages_repo.move_queued(conn, job_id, new_id):
            return None
    await enqueue_batches(deps.redis, deps.keys, [BatchJob(new_id, lane=lane)])
    return new_id


async def deliver_batch(ctx: dict[str, Any], job_id: int) -> dict[str, int]:
    deps: WorkerDeps = ctx["deps"]
    running = deps.keys.worker_jobs(deps.metrics.id)
    # Listed before anything is claimed, so if this worker dies the liveness check restarts the job at once
    # (arq's own claim on it would last the job timeout plus 10 s). One round trip per batch, not per message.
    await deps.redis.sadd(running, job_id)  # type: ignore[misc]  # redis-py's union return type
    try:
        return await _deliver_batch(deps, ctx.get("lane", Lane.BULK), job_id)
    finally:
        with contextlib.suppress(Exception):  # Redis gone: the entry only costs a needless restart later
            await deps.redis.srem(running, job_id)  # type: ignore[misc]


async def _deliver_batch(deps: WorkerDeps, lane: Lane, job_id: int) -> dict[str, int]:
    settings = deps.settings
    deadline = time.monotonic() + settings.job_slice_seconds
    totals: Counter[str] = Counter()  # this job's share of the worker's counts (the job's result)
    transactional = lane == Lane.TRANSACTIONAL
    while True:
        if deps.draining.is_set() or time.monotonic() >= deadline:
            await hand_over(deps, job_id, lane)
            break
        if transactional:
            deps.gate.mark()
        yields = not transactional and deps.yields_to_express
        chunk = deps.gate.chunk_size(deps.chunk_size) if yields else deps.chunk_size
        granted = await deps.limiter.acquire(chunk, deadline, priority=transactional)
        if granted == 0:  # the slice ends before the next token: hand the rest on (never spin)
            await hand_over(deps, job_id, lane)
            break
        async with deps.gate.bulk_chunk() if yields else contextlib.nullcontext():
            claimed = await claim_chunk(deps, job_id, granted)
            if not claimed:
                deps.limiter.refund(granted)
                break
            result = await deliver_claimed(deps, claimed, granted)
        for (status, event, _, _), n in result.recorded.items():
            totals[outcome_of(status, event)] += n
        if result.stale:
            log.warning("job %s: %d outcomes arrived after another claim or a terminal state", job_id, result.stale)
    return dict(totals)


async def deliver_claimed(deps: WorkerDeps, claimed: list[ClaimedMessage], granted: int) -> RecordResult:
    """Screen, send and record one claimed chunk; `granted`: the rate-limit tokens taken for it."""
    screened = await screen(deps.redis, deps.keys, deps.settings, claimed)
    deps.limiter.refund(granted - len(screened.send))  # skipped messages (and unclaimed tokens) never use a send
    final, retries = await send_chunk(deps, screened.send)
    result = await record(deps, [*final, *screened.skipped], retries)
    refused = [o for o in final if o.feedback is not None]
    if refused:
        await report_refusals(deps, refused)
    return result


async def report_refusals(deps: WorkerDeps, refused: list[Outcome]) -> None:
    """Recipients a provider refused for good go on the suppression list (after their outcomes are
    recorded, so the message rows hold the address each went to). Never fails the chunk: the outcomes
    are safe, and a missed entry only means the next message to that address is refused again. The
    campaign guard is left to the reconciler's next round (a pause must not hold up this job)."""
    if deps.feedback is None:
        return
    # The channel is the message's own (Report.channel only names it for reports without a message).
    reports = [Report(FeedbackKind(o.feedback), Channel.EMAIL, message_id=o.message_id, detail=o.error,
                      provider=o.provider) for o in refused if o.feedback is not None]  # fmt: skip
    try:
        await deps.feedback.apply(reports)
    except Exception:
        log.exception("could not record %d refused recipients on the suppression list", len(reports))
