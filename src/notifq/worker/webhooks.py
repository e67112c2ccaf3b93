"""Outbound webhooks: queue new audit events for the endpoints that want them, and POST them.

Every worker runs a `WebhookDispatcher`; they share the work through PostgreSQL, not Redis:
- queueing: whichever worker holds the outbox cursor's row lock at that moment moves it (the
  others skip it), so each event is queued once per endpoint (db/webhook_outbox_repo.py);
- sending: an endpoint is worked by one worker at a time, under a lease on its row, renewed page by
  page. A page is the endpoint's oldest queued events: POSTed concurrently (up to
  NOTIFQ_WEBHOOK_CONCURRENCY at once; a batching endpoint gets them 100 to a POST), then logged, the
  delivered ones deleted, in one statement. A worker that dies mid-page leaves its events queued and
  its lease to expire, and another worker POSTs them again: at least once, never lost.

A failing endpoint (any non-2xx, timeout, refused address) is backed off as a whole, the wait doubling
from 1 s up to NOTIFQ_WEBHOOK_BACKOFF_MAX_SECONDS, rather than each event on its own schedule: a
receiver that is down for a minute gets one probe per step, not one POST per event, and all of its
events flow again as soon as a probe succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import webhook_outbox_repo as repo
from notifq.db.webhook_outbox_repo import Attempt, LeasedEndpoint, QueuedEvent
from notifq.settings import Settings
from notifq.vocabulary import WebhookOutcome
from notifq.webhook_http import PostResult, WebhookClient, body_of, envelope, event_id

log = logging.getLogger("notifq.webhooks")

BATCH_SIZE = 100  # events per POST for an endpoint that takes batches
POLL_SECONDS = 0.2  # how often new events are looked for while idle
MAX_ENDPOINTS = 8  # endpoints one worker works at once
MAINTENANCE_SECONDS = 60.0  # giving up old events, disabling dead endpoints, pruning the log
LOG_KEEP_DAYS = 30.0
WARN_EVERY_SECONDS = 30.0


def backoff(failures: int, cap: float) -> float:
    """Seconds before the next try after `failures` failures in a row: 1, 2, 4, … up to `cap`."""
    return float(min(cap, 2.0 ** max(0, failures - 1)))


class WebhookDispatcher:
    """One worker's share of webhook delivery; `run()` until `stop` is set."""

    def __init__(self, engine: AsyncEngine, settings: Settings, owner: str, stop: asyncio.Event,
                 client: WebhookClient | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.settings = settings
        self.owner = owner
        self.stop = stop
        self.client = client or WebhookClient(
            allow_private=settings.webhooks_allow_private,
            timeout=settings.webhook_timeout,
            connections=max(100, settings.webhook_concurrency * MAX_ENDPOINTS),
        )
        # Long enough for a page of POSTs that all time out (two waves), renewed after every page.
        self.lease_seconds = 2 * settings.webhook_timeout + 5
        self._working: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._maintained_at = 0.0
        self._warned_at = 0.0
        self.posted = 0  # events POSTed with a 2xx by this worker (for logs and tests)

    async def run(self) -> None:
        """Never raises (a PostgreSQL outage only delays webhooks); returns once `stop` is set and the pages
        in flight are done."""
        try:
            while not self.stop.is_set():
                try:
                    await self.round()
                except Exception as exc:
                    if time.monotonic() - self._warned_at > WARN_EVERY_SECONDS:
                        self._warned_at = time.monotonic()
                        log.warning("webhook round failed (tried again shortly): %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), POLL_SECONDS)
        finally:
            if self._working:
                await asyncio.wait(self._working.values())
            await self.client.aclose()

    async def round(self) -> None:
        async with self.engine.begin() as conn:
            await repo.queue_new_events(conn)
        self._working = {k: t for k, t in self._working.items() if not t.done()}
        while len(self._working) < MAX_ENDPOINTS and not self.stop.is_set():
            async with self.engine.begin() as conn:
                endpoint = await repo.lease_endpoint(conn, self.owner, self.lease_seconds, list(self._working))
            if endpoint is None:
                break
            self._working[endpoint.id] = asyncio.create_task(self.work(endpoint), name=f"webhook-{endpoint.id}")
        if time.monotonic() - self._maintained_at > MAINTENANCE_SECONDS:
            self._maintained_at = time.monotonic()
            await self.maintain()

    async def maintain(self) -> None:
        s = self.settings
        async with self.engine.begin() as conn:
            abandoned, disabled = await repo.give_up(conn, s.webhook_give_up_seconds, s.webhook_disable_after_seconds)
            await repo.prune_log(conn, LOG_KEEP_DAYS)
        if abandoned or disabled:
            log.warning("webhooks: %d events given up after %g s, %d endpoints disabled after failing %g s",
                        abandoned, s.webhook_give_up_seconds, disabled, s.webhook_disable_after_seconds)  # fmt: skip

    async def work(self, endpoint: LeasedEndpoint) -> None:
        """Deliver the endpoint's queue page by page while it answers and the lease stays ours."""
        full = BATCH_SIZE * min(8, self.settings.webhook_concurrency) if endpoint.batch \
            else 2 * self.settings.webhook_concurrency  # fmt: skip
        current: LeasedEndpoint | None = endpoint
        try:
            while current is not None and not self.stop.is_set():
                # A failing endpoint is probed with one POST; a success opens the full pages again.
                page = (BATCH_SIZE if current.batch else 1) if current.failures else full
                async with self.engine.connect() as conn:
                    events = await repo.next_events(conn, current.id, page)
                if not events:
                    break
                attempts = await self.post(current, events)
                wait = backoff(current.failures + 1, self.settings.webhook_backoff_max_seconds)
                try:
                    async with self.engine.begin() as conn:
                        down = await repo.record_attempts(conn, current.id, self.owner, attempts, wait)
                except Exception:
                    # The POSTs happened but their record did not (PostgreSQL away, or a value it refuses):
                    # back off all the same, or the same page would be POSTed again at once, forever.
                    async with self.engine.begin() as conn:
                        await repo.back_off(conn, current.id, self.owner, wait, "delivery results not recorded")
                    raise
                if down:
                    break
                if current.failures:
                    log.info("webhook endpoint %s works again", current.id)
                async with self.engine.begin() as conn:
                    current = await repo.renew_lease(conn, current.id, self.owner, self.lease_seconds)
        except Exception as exc:  # the events stay queued: tried again after the lease
            log.warning("webhook endpoint %s: delivery interrupted: %r", endpoint.id, exc)
        finally:
            with contextlib.suppress(Exception):
                async with self.engine.begin() as conn:
                    await repo.release_lease(conn, endpoint.id, self.owner)

    async def post(self, endpoint: LeasedEndpoint, events: Sequence[QueuedEvent]) -> list[Attempt]:
        """POST a page: one event per request, or BATCH_SIZE per request; concurrently, bounded."""
        groups = [list(events[i : i + BATCH_SIZE]) for i in range(0, len(events), BATCH_SIZE)] if endpoint.batch \
            else [[e] for e in events]  # fmt: skip
        gate = asyncio.Semaphore(self.settings.webhook_concurrency)

        async def one(group: list[QueuedEvent]) -> Attempt:
            ids = [event_id(e.event_id) for e in group]
            body = body_of([envelope(i, e.type, e.at, e.data) for i, e in zip(ids, group, strict=True)],
                           batch=endpoint.batch)  # fmt: skip
            async with gate:
                result = await self.client.post(endpoint.url, endpoint.secret, body, ",".join(ids))
            return Attempt([e.event_id for e in group], _outcome(result), result.status, result.error,
                           result.duration_ms)  # fmt: skip

        attempts = await asyncio.gather(*(one(g) for g in groups))
        self.posted += sum(len(a.event_ids) for a in attempts if a.outcome == WebhookOutcome.SUCCEEDED)
        return list(attempts)


def _outcome(result: PostResult) -> WebhookOutcome:
    if result.ok:
        return WebhookOutcome.SUCCEEDED
    return WebhookOutcome.REFUSED if result.refused else WebhookOutcome.FAILED
