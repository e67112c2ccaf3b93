"""The circuit breaker, throttling, and per-recipient templates, with real PostgreSQL, Redis and arq workers."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.errors import ThrottledError, TransientError
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.settings import Settings
from tests.api.support import assert_error, row_counts
from tests.conftest import wait_for
from tests.harness import (
    assert_counters_match,
    campaign_row,
    finished_campaign,
    get_json,
    post_json,
    running_worker_with,
    status_counts,
)


@pytest.fixture
def auth(fast_auth: dict[str, str]) -> dict[str, str]:
    """Tokens here come from a directly inserted admin (tests/fast_auth.py): no bcrypt work."""
    return fast_auth


@dataclass(frozen=True)
class Call:
    message_id: int
    attempt: int
    at: float
    recipient: str
    subject: str
    body: str
    ok: bool


class SwitchableProvider:
    """Raises `TransientError` while `healthy` is False (at once, like a refused connection); records calls."""

    name = "switchable"

    def __init__(self) -> None:
        self.healthy = False
        self.calls: list[Call] = []

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.calls.append(Call(message.message_id, message.attempt, time.monotonic(), message.recipient,
                               message.subject, message.body, self.healthy))  # fmt: skip
        if not self.healthy:
            raise TransientError("503 service unavailable")
        return SendResult(provider=self.name, provider_message_id=f"sw-{message.message_id}")

    async def aclose(self) -> None:
        return None


class ThrottleOnceProvider:
    """Answers each message's first call with "slow down, retry after `retry_after` s", then accepts it."""

    name = "throttling"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self.calls: dict[int, list[tuple[int, float]]] = defaultdict(list)

    async def send(self, message: OutgoingMessage) -> SendResult:
        first = message.message_id not in self.calls
        self.calls[message.message_id].append((message.attempt, time.monotonic()))
        if first:
            raise ThrottledError("429 too many requests", retry_after=self.retry_after)
        return SendResult(provider=self.name, provider_message_id=f"t-{message.message_id}")

    async def aclose(self) -> None:
        return None


class RenderingRecorder:
    name = "recorder"

    def __init__(self) -> None:
        self.sent: dict[str, OutgoingMessage] = {}

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent[message.recipient] = message
        return SendResult(provider=self.name)

    async def aclose(self) -> None:
        return None


async def _messages(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, recipient, status, attempts, job_id FROM messages ORDER BY id"))
        return [dict(r._mapping) for r in rows]


async def _events(engine: AsyncEngine) -> dict[int, list[str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT message_id, event FROM message_events ORDER BY id"))
        out: dict[int, list[str]] = defaultdict(list)
        for r in rows:
            out[r.message_id].append(r.event)
        return out


# --- circuit breaker ------------------------------------------------------------------------------


async def test_open_circuit_skips_the_provider_and_messages_wait_without_burning_attempts(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    provider = SwitchableProvider()
    campaign = await post_json(client, auth, "/campaigns",
                           {"name": "outage", "recipients": [f"r{i}@example.com" for i in range(20)]})  # fmt: skip
    async with running_worker_with(settings.with_(breaker_failures=3, breaker_cooldown=1.0), provider):

        async def three_failures() -> bool:
            return len(provider.calls) >= 3

        await wait_for(three_failures, within=10, interval=0.005)
        # The circuit is open: for most of the 1 s cool-down nothing reaches the provider.
        await asyncio.sleep(0.8)
        assert len(provider.calls) <= 3 + 2, [(c.message_id, c.attempt) for c in provider.calls]
        failed_ids = {c.message_id for c in provider.calls}
        rows = await _messages(engine)
        waiting = [r for r in rows if r["id"] not in failed_ids]
        assert waiting and all(r["status"] == "queued" and r["attempts"] == 0 for r in waiting), waiting
        assert all(r["status"] != "failed" for r in rows)
        events = await _events(engine)
        for r in waiting:
            assert "deferred" in events[r["id"]], (r, events[r["id"]])
        view = await get_json(client, auth, f"/notifications/{waiting[0]['id']}")
        deferred = [e for e in view["events"] if e["event"] == "deferred"]
        assert deferred and "not attempted" in deferred[0]["detail"]

        provider.healthy = True
        done = await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=15)
    assert done["status"] == "completed" and done["sentCount"] == 20
    unhealthy = [c for c in provider.calls if not c.ok]
    assert len(unhealthy) <= 5
    rows = await _messages(engine)
    assert all(r["status"] == "sent" for r in rows)
    # Only real failed attempts count: a message skipped by the open circuit ends with attempts == 1.
    for r in rows:
        expected = 1 + sum(1 for c in unhealthy if c.message_id == r["id"])
        assert r["attempts"] == expected, (r, expected)
    assert_counters_match(await campaign_row(engine, campaign["id"]), await status_counts(engine, campaign["id"]))


async def test_messages_deferred_by_an_open_circuit_share_batches(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """Retries are grouped into batches ("a chunk of 500 with 100 failures costs one or a few jobs, not 100").
    Messages skipped together by one open circuit must not each become an arq job of their own."""
    provider = SwitchableProvider()
    await post_json(
        client, auth, "/campaigns", {"name": "outage", "recipients": [f"r{i}@example.com" for i in range(50)]}
    )
    async with running_worker_with(settings.with_(breaker_failures=3, breaker_cooldown=2.0), provider):

        async def deferred_all() -> bool:
            rows = await _messages(engine)
            return (
                len(rows) == 50
                and all(r["status"] == "queued" and r["job_id"] is not None for r in rows)
                and (len(provider.calls) >= 3)
                and sum(1 for r in rows if r["attempts"] == 0) >= 40
            )

        await wait_for(deferred_all, within=10, interval=0.02)
        rows = await _messages(engine)
        provider.healthy = True
    skipped_jobs = {r["job_id"] for r in rows if r["attempts"] == 0}
    skipped = sum(1 for r in rows if r["attempts"] == 0)
    assert len(skipped_jobs) <= 3, f"{skipped} deferred messages in {len(skipped_jobs)} batches"


async def test_throttled_message_is_retried_after_the_hint_without_using_an_attempt(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    provider = ThrottleOnceProvider(retry_after=0.5)
    r = await client.post("/notifications", headers=auth, json=[
        {"channel": "sms", "to": f"+1555000000{i}", "body": "code"} for i in range(3)])  # fmt: skip
    assert r.status_code == 202, r.text
    ids = [int(i) for i in r.json()["ids"]]

    async def all_sent() -> bool:
        return all(m["status"] == "sent" for m in await _messages(engine))

    async with running_worker_with(settings, provider):
        await wait_for(all_sent, within=15, interval=0.05)
    events = await _events(engine)
    for mid in ids:
        calls = provider.calls[mid]
        assert [a for a, _ in calls] == [1, 1], calls  # the retry is the same attempt
        gap = calls[1][1] - calls[0][1]
        assert gap >= 0.5 - 0.01, gap
        assert "throttled" in events[mid], events[mid]
        assert events[mid][-1] == "sent"
        view = await get_json(client, auth, f"/notifications/{mid}")
        assert view["status"] == "sent" and view["attempts"] == 1 and view["providerMessageId"] == f"t-{mid}"
    # While a throttle hold lasts, the provider is not called for any other message either.
    holds = [calls[0][1] for calls in provider.calls.values()]
    others = [t for calls in provider.calls.values() for _, t in calls]
    assert len(others) == 6
    for start in holds:
        inside = [t for t in others if start < t < start + 0.5 - 0.01]
        assert not inside, (start, inside)


# --- templates ------------------------------------------------------------------------------------


async def test_templates_are_rendered_per_recipient(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    provider = RenderingRecorder()
    recipients = [
        {"to": "a@example.com", "vars": {"name": "Ana", "code": 1234}},
        {"to": "b@example.com", "vars": {"name": "Bo", "code": "X-9", "unused": "ignored"}},
        {"to": "c@example.com", "vars": {"name": "{{ to }} {{ code }}", "code": "0"}},  # values are not templates
    ]
    campaign = await post_json(client, auth, "/campaigns", {
        "name": "welcome", "subject": "Hi {{ name }}", "recipients": recipients,
        "body": "Dear {{name}}, your code is {{  code }}. Sent to {{ to }}. Literal: {{ 1x }} {{ }}",
    })  # fmt: skip
    async with running_worker_with(settings, provider):
        done = await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=10)
    assert done["status"] == "completed"
    got = {to: (m.subject, m.body) for to, m in provider.sent.items()}
    assert got == {
        "a@example.com": ("Hi Ana", "Dear Ana, your code is 1234. Sent to a@example.com. Literal: {{ 1x }} {{ }}"),
        "b@example.com": ("Hi Bo", "Dear Bo, your code is X-9. Sent to b@example.com. Literal: {{ 1x }} {{ }}"),
        "c@example.com": ("Hi {{ to }} {{ code }}",
                          "Dear {{ to }} {{ code }}, your code is 0. Sent to c@example.com. Literal: {{ 1x }} {{ }}"),
    }  # fmt: skip


async def test_templates_with_plain_recipients_and_other_channels(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    """`{{ to }}` is built in, so plain-string recipients and `recipientCount` may use it; sms renders too."""
    provider = RenderingRecorder()
    mixed = await post_json(client, auth, "/campaigns", {
        "name": "sms", "channel": "sms", "body": "Hello {{ name }} at {{ to }}",
        "recipients": [{"to": "+15550000001", "vars": {"name": "Ana"}}, {"to": "+15550000002", "vars": {"name": 7}}],
    })  # fmt: skip
    synthetic = await post_json(client, auth, "/campaigns",
                            {"name": "load", "recipientCount": 2, "subject": "For {{to}}", "body": "b"})  # fmt: skip
    plain = await post_json(
        client,
        auth,
        "/campaigns",
        {"name": "plain", "recipients": ["p@example.com"], "subject": "{{ to }}!", "body": "x"},
    )
    async with running_worker_with(settings, provider):
        for c in (mixed, synthetic, plain):
            await wait_for(functools.partial(finished_campaign, client, auth, c["id"]), within=10)
    assert provider.sent["+15550000001"].body == "Hello Ana at +15550000001"
    assert provider.sent["+15550000002"].body == "Hello 7 at +15550000002"
    assert provider.sent["+15550000001"].channel == "sms"
    assert provider.sent["user1@example.com"].subject == "For user1@example.com"
    assert provider.sent["user2@example.com"].subject == "For user2@example.com"
    assert provider.sent["p@example.com"].subject == "p@example.com!"


async def test_missing_variable_is_422_naming_the_recipient_and_writes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, redis: Redis
) -> None:
    body = {
        "name": "welcome", "subject": "Hi {{ name }}", "body": "Code {{ code }}",
        "recipients": [
            {"to": "a@example.com", "vars": {"name": "Ana", "code": "1"}},
            {"to": "b@example.com", "vars": {"code": "2"}},
            "c@example.com",
            {"to": "d@example.com"},
        ],
    }  # fmt: skip
    error = assert_error(await client.post("/campaigns", json=body, headers=auth), 422, "validation_error")
    assert error["details"]["field"] == "recipients"
    assert error["details"]["missingVariables"] == [
        {"index": 1, "to": "b@example.com", "variables": ["name"]},
        {"index": 2, "to": "c@example.com", "variables": ["code", "name"]},
        {"index": 3, "to": "d@example.com", "variables": ["code", "name"]},
    ]
    assert "#1" in error["message"] and "b@example.com" in error["message"]
    assert await row_counts(engine) == (0, 0)
    assert await redis.dbsize() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recipientCount": 5, "subject": "Hi {{ name }}"}, "recipientCount"),
        ({"recipientCount": 5, "body": "{{ to }} {{ code }}"}, "recipientCount"),
        ({"recipients": [{"to": "a@example.com", "vars": {"k": {"nested": 1}}}]}, "recipients[0].vars.k"),
        ({"recipients": [{"to": "a@example.com", "vars": {"k": True}}]}, "recipients[0].vars.k"),
        ({"recipients": [{"to": "a@example.com", "vars": ["k"]}]}, "recipients[0].vars"),
        ({"recipients": [{"to": "a@example.com", "vars": {"k": "a\u0000b"}}]}, "recipients[0].vars.k"),
        ({"recipients": [{"to": "a@example.com\r\nRCPT TO:<x@evil.test>"}]}, "recipients"),
        # A variable must not smuggle a line break into the one-line subject it is rendered into ...
        (
            {
                "subject": "Hi {{ name }}",
                "recipients": [{"to": "a@example.com", "vars": {"name": "Ana\r\nBcc: x@evil.test"}}],
            },
            "recipients[0].vars.name",
        ),
        (
            {
                "subject": "Hi {{name}}",
                "recipients": [{"to": "a@example.com", "vars": {"name": "Ana\nBcc: x@evil.test"}}],
            },
            "recipients[0].vars.name",
        ),
        # ... while the body may hold several lines.
        (
            {"subject": "Hi", "body": "{{ name }}", "recipients": [{"to": "a@example.com", "vars": {"name": "A\nB"}}]},
            None,
        ),
        ({"recipients": [{"vars": {"k": "v"}}]}, "recipients"),
        ({"recipients": ["a@example.com"], "subject": "Hi\r\nBcc: x@evil.test"}, "subject"),
        ({"recipients": ["+15550000001"], "channel": "sms"}, None),  # control: valid
        ({"recipients": ["5550000001"], "channel": "sms"}, "recipients"),
        ({"recipients": ["a@example.com"], "channel": "pigeon"}, "channel"),
    ],
)
async def test_bad_campaign_templates_and_recipients_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, body: dict[str, Any], field: str | None
) -> None:
    r = await client.post("/campaigns", json={"name": "x", **body}, headers=auth)
    if field is None:
        assert r.status_code == 202, r.text
        return
    error = assert_error(r, 422, "validation_error")
    assert error["details"]["field"] == field, error
    if field == "recipientCount":
        assert error["details"]["variables"]
    assert await row_counts(engine) == (0, 0)
