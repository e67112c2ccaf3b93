"""Outbound webhook endpoints as operators manage them (docs/webhooks.md).

Create one (its signing secret is shown in that answer only), change or delete it, read its
delivery log, and POST it a `webhook.test` event now. Delivering the audit trail's events is the
worker's job (worker/webhooks.py); this service never touches an endpoint's queue or backoff,
except that turning a disabled endpoint back on forgets its failures.

A URL is checked here for its syntax and, resolved now, against the address policy
(webhook_http.url_problem: no loopback, private, link-local or metadata address unless
NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1); every connection is checked again when it is made.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import webhook_endpoints_repo as repo
from notifq.db.webhook_endpoints_repo import Delivery, Endpoint
from notifq.errors import Conflict, NotFound, ValidationError
from notifq.settings import Settings
from notifq.vocabulary import SUBSCRIBABLE_WEBHOOK_EVENTS, WebhookEventType, WebhookOutcome
from notifq.webhook_http import (
    PostResult,
    WebhookClient,
    body_of,
    envelope,
    new_secret,
    url_problem,
    url_syntax_problem,
)

# Each endpoint gets its own copy of every event it subscribes to (webhook_queue): the cap bounds that
# fan-out, and no deployment needs more receivers than this (Stripe allows 16 per account).
MAX_ENDPOINTS = 50
MAX_DESCRIPTION = 500
MAX_ID = 2**63 - 1  # delivery ids (and cursors) are PostgreSQL bigints; a larger cursor reads as the largest
TEST_MESSAGE = "A test event from notifq. If your endpoint checked its signature and answered 2xx, it is ready."


class EndpointStatus(StrEnum):
    """How an endpoint is doing, as operators see it."""

    ACTIVE = "active"  # enabled, its last delivery succeeded (or none was made yet)
    FAILING = "failing"  # enabled, backing off after failed deliveries (`failingSince`)
    DISABLED = "disabled"  # receives nothing: turned off by an operator, or after failing too long


def status_of(endpoint: Endpoint) -> EndpointStatus:
    if not endpoint.enabled:
        return EndpointStatus.DISABLED
    return EndpointStatus.FAILING if endpoint.failing_since is not None else EndpointStatus.ACTIVE


def checked_events(events: Sequence[str]) -> list[str]:
    """A non-empty list of distinct subscribable event types, or a 422."""
    allowed = {str(t) for t in SUBSCRIBABLE_WEBHOOK_EVENTS}
    if not events:
        raise ValidationError("`events` must name at least one event type", {"field": "events"})
    for i, name in enumerate(events):
        if name not in allowed:
            raise ValidationError(f"`events[{i}]` is not an event type you can subscribe to (see docs/webhooks.md)",
                                  {"field": f"events[{i}]", "allowed": sorted(allowed)})  # fmt: skip
    if len(set(events)) != len(events):
        raise ValidationError("`events` names an event type twice", {"field": "events"})
    return list(events)


def _checked_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise ValidationError(f"`description` must be at most {MAX_DESCRIPTION} characters, without NUL",
                              {"field": "description"})  # fmt: skip
    return description


def outcome_of(result: PostResult) -> WebhookOutcome:
    if result.ok:
        return WebhookOutcome.SUCCEEDED
    return WebhookOutcome.REFUSED if result.refused else WebhookOutcome.FAILED


@dataclass(frozen=True)
class TestSent:
    """The `webhook.test` event POSTed, and its line in the delivery log."""

    event_id: str
    delivery: Delivery


class WebhookService:
    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, settings: Settings, client: WebhookClient) -> None:
        self.engine = engine
        self.reads = reads
        self.settings = settings
        self.client = client

    async def _check_url(self, url: str) -> str:
        if (problem := url_syntax_problem(url)) is not None:
            raise ValidationError(f"`url` {problem}", {"field": "url"})
        if (problem := await url_problem(url, allow_private=self.settings.webhooks_allow_private)) is not None:
            raise ValidationError(f"`url` is refused: {problem}", {"field": "url"})
        return url

    async def create(self, *, url: str, events: Sequence[str], description: str = "", batch: bool = False,
                     admin_id: uuid.UUID | None = None) -> Endpoint:  # fmt: skip
        """The new endpoint, its `secret` included (the only answer that holds it)."""
        events = checked_events(events)
        description = _checked_description(description)
        await self._check_url(url)
        async with self.engine.begin() as conn:
            created = await repo.insert(conn, url=url, description=description, events=events, secret=new_secret(),
                                        batch=batch, created_by=admin_id, max_endpoints=MAX_ENDPOINTS)  # fmt: skip
        if created is None:
            raise Conflict(f"there are {MAX_ENDPOINTS} webhook endpoints already, the most allowed; delete one first",
                           {"max": MAX_ENDPOINTS})  # fmt: skip
        return created

    async def list_all(self) -> list[Endpoint]:
        async with self.reads.connect() as conn:
            return await repo.list_all(conn)

    async def get(self, endpoint_id: uuid.UUID) -> Endpoint:
        async with self.reads.connect() as conn:
            found = await repo.get(conn, endpoint_id)
        if found is None:
            raise _not_found(endpoint_id)
        return found

    async def update(self, endpoint_id: uuid.UUID, *, admin_id: uuid.UUID | None, url: str | None = None,
                     events: Sequence[str] | None = None, description: str | None = None, batch: bool | None = None,
                     enabled: bool | None = None) -> Endpoint:  # fmt: skip
        """Change what is given (None: unchanged). `enabled: false` records who turned it off; `enabled: true`
        on a disabled endpoint clears its failures, so it is tried at once."""
        if events is not None:
            events = checked_events(events)
        if description is not None:
            description = _checked_description(description)
        if url is not None:
            await self._check_url(url)
        async with self.engine.begin() as conn:
            changed = await repo.update(conn, endpoint_id, admin_id=admin_id, url=url, description=description,
                                        events=events, batch=batch, enabled=enabled)  # fmt: skip
        if changed is None:
            raise _not_found(endpoint_id)
        return changed

    async def delete(self, endpoint_id: uuid.UUID) -> None:
        """The endpoint, its queued events and its delivery log."""
        async with self.engine.begin() as conn:
            if not await repo.delete(conn, endpoint_id):
                raise _not_found(endpoint_id)

    async def deliveries(self, endpoint_id: uuid.UUID, *, cursor: str | None, outcome: WebhookOutcome | None,
                         limit: int) -> tuple[list[Delivery], str | None]:  # fmt: skip
        """One page of the endpoint's log, newest first, and the cursor of the next (None: the last page)."""
        before = min(int(cursor), MAX_ID) if cursor else None
        async with self.reads.connect() as conn:
            if not await repo.exists(conn, endpoint_id):
                raise _not_found(endpoint_id)
            rows = await repo.deliveries(conn, endpoint_id, before=before, outcome=outcome, limit=limit + 1)
        return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)

    async def send_test(self, endpoint_id: uuid.UUID) -> TestSent:
        """POST a `webhook.test` event now, signed as any other (a disabled endpoint too: check a fix before
        turning it back on). Logged like any delivery; the endpoint's own state is left alone."""
        async with self.reads.connect() as conn:
            target = await repo.target(conn, endpoint_id)
        if target is None:
            raise _not_found(endpoint_id)
        event_id = f"evt_test_{secrets.token_hex(8)}"
        event = envelope(event_id, WebhookEventType.WEBHOOK_TEST, datetime.now(UTC),
                         {"endpointId": str(endpoint_id), "message": TEST_MESSAGE})  # fmt: skip
        result = await self.client.post(target.url, target.secret, body_of([event], batch=target.batch), event_id)
        try:
            async with self.engine.begin() as conn:
                logged = await repo.record_delivery(conn, endpoint_id, [], outcome_of(result), result.status,
                                                    result.error, result.duration_ms)  # fmt: skip
        except sa_exc.IntegrityError:  # deleted while the POST was in flight
            logged = None
        if logged is None:
            raise _not_found(endpoint_id)
        return TestSent(event_id, logged)


def _not_found(endpoint_id: uuid.UUID) -> NotFound:
    return NotFound("no webhook endpoint with that id", {"id": str(endpoint_id)})
