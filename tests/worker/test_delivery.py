"""Delivery semantics with real PostgreSQL, Redis and arq: retries, backoff, permanent errors."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.errors import PermanentError, TransientError
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.settings import Settings
from tests.conftest import wait_for
from tests.harness import assert_counters_match, campaign_row, finished_campaign, running_worker_with, status_counts
from tests.loop_probe import loop_ticks


class ScriptedProvider:
    """Fails each message's first `fail_first` attempts (transiently, or permanently) and records every call."""

    name = "scripted"

    def __init__(self, fail_first: int = 0, permanent_for: frozenset[str] = frozenset()) -> None:
        self.fail_first = fail_first
        self.permanent_for = permanent_for
        self.calls: dict[int, list[tuple[int, float]]] = defaultdict(list)

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.calls[message.message_id].append((message.attempt, time.monotonic()))
        if message.recipient in self.permanent_for:
            raise PermanentError("address rejected")
        if message.attempt <= self.fail_first:
            raise TransientError(f"temporary failure on attempt {message.attempt}")
        return SendResult(provider=self.name, provider_message_id=f"s-{message.message_id}")

    async def aclose(self) -> None:
        return None


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **body: object) -> str:
    r = await client.post("/campaigns", json={"name": "t", **body}, headers=auth)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_failed_attempts_are_retried_after_1_2_4_seconds(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """Each message keeps its own 1 s / 2 s / 4 s schedule and succeeds on its fourth attempt."""
    provider = ScriptedProvider(fail_first=3)
    campaign_id = await _create(client, auth, recipients=[f"r{i}@example.com" for i in range(20)])
    async with running_worker_with(settings, provider):
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=40)
    assert final["status"] == "completed" and final["sentCount"] == 20
    assert len(provider.calls) == 20
    for attempts in provider.calls.values():
        assert [a for a, _ in attempts] == [1, 2, 3, 4]
        gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
        for gap, expected in zip(gaps, (1.0, 2.0, 4.0), strict=True):
            assert expected - 0.05 <= gap < expected + 1.5, gaps
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT attempts, last_error FROM messages"))).all()
    assert all(r.attempts == 4 for r in rows)
    # The last failure stays visible on a message that was eventually sent.
    assert all(r.last_error == "temporary failure on attempt 3" for r in rows)


async def test_message_fails_after_four_attempts_and_counters_move(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """Four failed attempts make the message `failed` with its last error; failedCount counts it."""
    provider = ScriptedProvider(fail_first=99)
    campaign_id = await _create(client, auth, recipients=["a@example.com", "b@example.com"])
    async with running_worker_with(settings, provider):
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=40)
    assert final["status"] == "completed_with_failures"
    assert final["failedCount"] == 2 and final["sentCount"] == 0
    assert all(len(calls) == 4 for calls in provider.calls.values())
    page = (await client.get(f"/campaigns/{campaign_id}/messages?status=failed", headers=auth)).json()
    assert {m["lastError"] for m in page["items"]} == {"temporary failure on attempt 4"}
    assert {m["attempts"] for m in page["items"]} == {4}
    assert_counters_match(await campaign_row(engine, campaign_id), await status_counts(engine, campaign_id))


async def test_permanent_error_fails_at_once(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """A permanent rejection is not retried; the other recipients are unaffected."""
    provider = ScriptedProvider(permanent_for=frozenset({"bounce@example.com"}))
    campaign_id = await _create(client, auth, recipients=["ok@example.com", "bounce@example.com", "ok2@example.com"])
    async with running_worker_with(settings, provider):
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=20)
    assert final["sentCount"] == 2 and final["failedCount"] == 1
    assert len(provider.calls) == 3
    assert all(len(calls) == 1 for calls in provider.calls.values())
    page = (await client.get(f"/campaigns/{campaign_id}/messages?status=failed", headers=auth)).json()
    assert [(m["recipient"], m["attempts"], m["lastError"]) for m in page["items"]] == [
        ("bounce@example.com", 1, "address rejected")
    ]


async def test_retry_endpoint_resends_only_failures(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """POST /retry requeues failed messages with fresh attempts; sent ones are never sent again."""
    first = ScriptedProvider(permanent_for=frozenset({f"r{i}@example.com" for i in range(0, 30, 3)}))
    campaign_id = await _create(client, auth, recipients=[f"r{i}@example.com" for i in range(30)])
    async with running_worker_with(settings, first):
        done = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=20)
    assert done["failedCount"] == 10 and done["status"] == "completed_with_failures"

    r = await client.post(f"/campaigns/{campaign_id}/retry", headers=auth)
    assert r.status_code == 202 and r.json() == {"requeued": 10}
    assert (await client.get(f"/campaigns/{campaign_id}", headers=auth)).json()["status"] == "processing"
    second = ScriptedProvider()
    async with running_worker_with(settings, second):
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=20)
    assert final["status"] == "completed" and final["sentCount"] == 30 and final["failedCount"] == 0
    assert len(second.calls) == 10  # only the former failures
    assert_counters_match(await campaign_row(engine, campaign_id), await status_counts(engine, campaign_id))


async def test_cancel_stops_further_sends(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """After cancel, nothing more reaches the provider beyond what was already in flight."""
    slow = settings.with_(rate_limit=200.0)
    provider = ScriptedProvider()
    campaign_id = await _create(client, auth, recipientCount=3000)
    async with running_worker_with(slow, provider):
        await wait_for(lambda: _sent_at_least(engine, campaign_id, 100), within=20)
        r = await client.post(f"/campaigns/{campaign_id}/cancel", headers=auth)
        assert r.status_code == 202 and r.json()["status"] == "cancelled"
        calls_at_cancel = len(provider.calls)
        await wait_for(lambda: _settled(engine, campaign_id), within=20)
        calls_after = len(provider.calls)
    counts = await status_counts(engine, campaign_id)
    assert counts.get("queued", 0) == 0 and counts.get("sending", 0) == 0
    assert counts["cancelled"] > 2000
    # At most the chunk in flight when the cancel committed was still sent.
    assert calls_after - calls_at_cancel <= slow.job_batch_size
    assert counts.get("sent", 0) == calls_after
    row = await campaign_row(engine, campaign_id)
    assert row["status"] == "cancelled"
    assert_counters_match(row, counts)


async def _sent_at_least(engine: AsyncEngine, campaign_id: str, n: int) -> bool:
    return (await status_counts(engine, campaign_id)).get("sent", 0) >= n


async def _settled(engine: AsyncEngine, campaign_id: str) -> bool:
    counts = await status_counts(engine, campaign_id)
    return counts.get("queued", 0) == 0 and counts.get("sending", 0) == 0


async def test_worker_rate_limit_counts_messages(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    """NOTIFQ_RATE_LIMIT caps provider calls per second per worker, counted in messages (not jobs)."""
    rate = 40.0
    provider = ScriptedProvider()
    campaign_id = await _create(client, auth, recipientCount=200)
    async with running_worker_with(settings.with_(rate_limit=rate), provider):
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=30)
    assert final["sentCount"] == 200
    times = sorted(t for calls in provider.calls.values() for _, t in calls)
    burst = max(1.0, rate / 4)
    # In any one-second window, at most `rate` calls plus the bucket's burst.
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t - start < 1.0)
        assert in_window <= rate + burst, (in_window, rate)


async def test_throttled_job_never_starves_the_event_loop(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    """At 1 msg/s with a short job slice, the job waits or hands over; it must not busy-spin."""
    provider = ScriptedProvider()
    await _create(client, auth, recipientCount=20)
    worker = running_worker_with(settings.with_(rate_limit=1.0, job_slice_seconds=0.5), provider)
    async with worker, loop_ticks() as ticks:
        await asyncio.sleep(3)
    assert ticks.count >= 40, ticks.count  # ~60 expected; a spinning job starves the ticker to ~0
    assert 2 <= len(provider.calls) <= 6  # about one send per second
