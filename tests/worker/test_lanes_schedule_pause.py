"""Priority lanes, scheduled sends and pause/resume with real PostgreSQL, Redis and in-process arq workers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.providers.base import OutgoingMessage, SendResult
from notifq.settings import Settings
from tests.api.support import assert_error
from tests.conftest import wait_for
from tests.harness import assert_counters_match, campaign_row, get_json, post_json, running_worker_with, status_counts


@pytest.fixture
def auth(fast_auth: dict[str, str]) -> dict[str, str]:
    """Tokens here come from a directly inserted admin (tests/fast_auth.py): no bcrypt work."""
    return fast_auth


@dataclass(frozen=True)
class Call:
    attempt: int
    at: float  # time.monotonic()
    wall: float  # time.time()
    recipient: str


class RecordingProvider:
    """Accepts everything and records when each message reached it; optionally waits on `gate` first."""

    name = "recording"

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.calls: dict[int, list[Call]] = defaultdict(list)
        self.count = 0

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.calls[message.message_id].append(Call(message.attempt, time.monotonic(), time.time(), message.recipient))
        self.count += 1
        if self.gate is not None:
            await self.gate.wait()
        return SendResult(provider=self.name, provider_message_id=f"r-{message.message_id}")

    async def aclose(self) -> None:
        return None


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _redis_jobs(redis: Redis, settings: Settings) -> int:
    return int(await redis.zcard(settings.queue_name)) + int(await redis.zcard(settings.queue_name + ":transactional"))


async def _attempts(engine: AsyncEngine, campaign_id: str) -> dict[int, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT attempts, count(*) FROM messages WHERE campaign_id = :c GROUP BY 1"),
                                  {"c": campaign_id})  # fmt: skip
        return {r[0]: r[1] for r in rows}


def _status_is(client: httpx.AsyncClient, auth: dict[str, str], path: str, *statuses: str) -> Any:
    async def check() -> dict[str, Any] | None:
        body = await get_json(client, auth, path)
        return body if body["status"] in statuses else None

    return check


# --- priority lanes -------------------------------------------------------------------------------


async def test_transactional_send_overtakes_a_running_campaign(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    """An OTP posted while a 20,000-message campaign is being delivered at 2,000/s reaches the provider
    within a fraction of a second, long before the campaign's backlog is through."""
    provider = RecordingProvider()
    campaign = await post_json(client, auth, "/campaigns", {"name": "newsletter", "recipientCount": 20_000})
    async with running_worker_with(settings.with_(rate_limit=2000.0), provider):

        async def campaign_running() -> bool:
            return provider.count >= 1500

        await wait_for(campaign_running, within=15, interval=0.01)
        posted = time.monotonic()
        otp = await post_json(client, auth, "/notifications",
                          {"channel": "sms", "to": "+15550001234", "body": "code 123456"})  # fmt: skip
        otp_id = int(otp["id"])

        async def otp_sent() -> bool:
            return otp_id in provider.calls

        await wait_for(otp_sent, within=5, interval=0.005)
        reached = provider.calls[otp_id][0].at
        campaign_calls_before = sum(1 for mid, calls in provider.calls.items() if mid != otp_id
                                    and calls[0].at <= reached)  # fmt: skip
        progress = await get_json(client, auth, f"/campaigns/{campaign['id']}")
    latency = reached - posted
    report = f"latency {latency:.3f}s, {campaign_calls_before} campaign sends before it, progress {progress}"
    assert latency < 2.0, report
    assert progress["status"] == "processing", report
    assert campaign_calls_before < 15_000, report
    assert progress["progress"]["queued"] > 5_000, report
    view = await get_json(client, auth, f"/notifications/{otp_id}")
    assert view["priority"] == "transactional"


async def test_batches_of_a_cancelled_campaign_do_not_hold_up_the_next_one(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    """After a cancel, the cancelled campaign's remaining arq jobs find nothing to claim. Each must end at
    once, not after waiting a full chunk's worth of rate-limit time (1/4 s at 2,000/s) for tokens it then
    gives back: with 8 jobs queueing for the limiter, 16 empty batches would hold a new campaign for ~4 s."""
    provider = RecordingProvider()
    big = await post_json(client, auth, "/campaigns", {"name": "big", "recipientCount": 10_000})  # 20 batches
    async with running_worker_with(settings.with_(rate_limit=2000.0), provider):

        async def started() -> bool:
            return provider.count >= 1000

        await wait_for(started, within=15, interval=0.01)
        assert (await client.post(f"/campaigns/{big['id']}/cancel", headers=auth)).status_code == 202
        created = time.monotonic()
        small = await post_json(client, auth, "/campaigns", {"name": "small", "recipients": ["a@example.com"]})
        await wait_for(_status_is(client, auth, f"/campaigns/{small['id']}", "completed"), within=20, interval=0.02)
        took = time.monotonic() - created
    assert took < 1.5, f"a 1-message campaign took {took:.2f}s behind a cancelled campaign's empty batches"


async def test_bulk_single_notification_is_delivered_from_the_bulk_lane(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, redis: Redis
) -> None:
    provider = RecordingProvider()
    bulk = await post_json(client, auth, "/notifications",
                       {"channel": "push", "to": "mock-abc", "body": "weekly digest", "priority": "bulk"})  # fmt: skip
    assert await redis.zcard(settings.queue_name) == 1
    assert await redis.zcard(settings.queue_name + ":transactional") == 0
    async with running_worker_with(settings, provider):
        await wait_for(_status_is(client, auth, f"/notifications/{bulk['id']}", "sent"), within=10)
    assert [c.attempt for c in provider.calls[int(bulk["id"])]] == [1]


# --- scheduling -----------------------------------------------------------------------------------


async def test_scheduled_notification_is_held_then_sent_after_send_at(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, redis: Redis, engine: AsyncEngine
) -> None:
    provider = RecordingProvider()
    send_at = datetime.now(UTC) + timedelta(seconds=1.5)
    body = {"channel": "email", "to": "x@example.com", "body": "later", "sendAt": _iso(send_at)}
    data = await post_json(client, auth, "/notifications", body)
    assert data["status"] == "pending"
    assert datetime.fromisoformat(data["sendAt"]) == send_at
    assert await _redis_jobs(redis, settings) == 0  # Redis only holds work that is due
    assert await redis.dbsize() == 0
    async with running_worker_with(settings, provider):
        await asyncio.sleep(0.6)
        assert provider.count == 0
        assert (await get_json(client, auth, f"/notifications/{data['id']}"))["status"] == "pending"
        view = await wait_for(_status_is(client, auth, f"/notifications/{data['id']}", "sent"), within=10)
    [call] = provider.calls[int(data["id"])]
    assert call.wall >= send_at.timestamp(), (call.wall, send_at.timestamp())
    assert call.wall < send_at.timestamp() + 2.0  # released within a few scheduler rounds
    assert [e["event"] for e in view["events"]] == ["accepted", "released", "attempt", "sent"]
    assert view["attempts"] == 1


async def test_scheduled_campaign_waits_then_processes_and_completes(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, redis: Redis, engine: AsyncEngine
) -> None:
    gate = asyncio.Event()
    provider = RecordingProvider(gate)
    send_at = datetime.now(UTC) + timedelta(seconds=1.5)
    recipients = [f"s{i}@example.com" for i in range(5)]
    campaign = await post_json(client, auth, "/campaigns",
                           {"name": "later", "recipients": recipients, "sendAt": _iso(send_at)})  # fmt: skip
    assert campaign["status"] == "scheduled"
    assert campaign["progress"]["pending"] == campaign["totalMessages"] == 5
    assert campaign["progress"]["queued"] == 0
    assert await _redis_jobs(redis, settings) == 0
    path = f"/campaigns/{campaign['id']}"
    async with running_worker_with(settings, provider):
        await asyncio.sleep(0.6)
        assert (await get_json(client, auth, path))["status"] == "scheduled"
        assert provider.count == 0
        processing = await wait_for(_status_is(client, auth, path, "processing"), within=10, interval=0.02)
        assert time.time() >= send_at.timestamp()
        assert processing["progress"]["pending"] == 0
        gate.set()
        done = await wait_for(_status_is(client, auth, path, "completed", "completed_with_failures"), within=10)
    assert done["status"] == "completed" and done["sentCount"] == 5
    assert min(c.wall for calls in provider.calls.values() for c in calls) >= send_at.timestamp()
    assert sorted(c.recipient for calls in provider.calls.values() for c in calls) == recipients
    assert_counters_match(await campaign_row(engine, campaign["id"]), await status_counts(engine, campaign["id"]))


async def test_cancelled_scheduled_campaign_sends_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    provider = RecordingProvider()
    send_at = datetime.now(UTC) + timedelta(seconds=0.8)
    campaign = await post_json(client, auth, "/campaigns",
                           {"name": "x", "recipientCount": 50, "sendAt": _iso(send_at)})  # fmt: skip
    r = await client.post(f"/campaigns/{campaign['id']}/cancel", headers=auth)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled" and r.json()["progress"]["cancelled"] == 50
    async with running_worker_with(settings, provider):
        await asyncio.sleep(max(0.0, send_at.timestamp() - time.time()) + 1.2)
    assert provider.count == 0
    after = await get_json(client, auth, f"/campaigns/{campaign['id']}")
    assert after["status"] == "cancelled" and after["progress"]["cancelled"] == 50 and after["sentCount"] == 0
    assert_counters_match(await campaign_row(engine, campaign["id"]), await status_counts(engine, campaign["id"]))


async def test_paused_scheduled_campaign_is_held_past_send_at_until_resumed(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    provider = RecordingProvider()
    send_at = datetime.now(UTC) + timedelta(seconds=0.5)
    campaign = await post_json(client, auth, "/campaigns",
                           {"name": "x", "recipientCount": 10, "sendAt": _iso(send_at)})  # fmt: skip
    path = f"/campaigns/{campaign['id']}"
    paused = await post_json(client, auth, f"{path}/pause", None)
    assert paused["status"] == "paused"
    async with running_worker_with(settings, provider):
        await asyncio.sleep(max(0.0, send_at.timestamp() - time.time()) + 1.0)
        assert provider.count == 0
        assert (await get_json(client, auth, path))["status"] == "paused"
        resumed = await post_json(client, auth, f"{path}/resume", None)
        assert resumed["status"] == "processing"
        done = await wait_for(_status_is(client, auth, path, "completed"), within=10)
    assert done["sentCount"] == 10 and provider.count == 10


# --- pause / resume -------------------------------------------------------------------------------


async def test_pause_stops_sends_and_resume_finishes_without_duplicates(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    provider = RecordingProvider()
    campaign = await post_json(client, auth, "/campaigns", {"name": "big", "recipientCount": 3000})
    path = f"/campaigns/{campaign['id']}"
    async with running_worker_with(settings.with_(rate_limit=500.0), provider):

        async def some_sent() -> bool:
            return provider.count >= 300

        await wait_for(some_sent, within=15, interval=0.01)
        r = await client.post(f"{path}/pause", headers=auth)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "paused"
        await asyncio.sleep(0.3)  # the chunk in flight at the pause lands
        settled = provider.count
        await asyncio.sleep(1.0)
        assert provider.count == settled, "sends continued while paused"
        paused = await get_json(client, auth, path)
        assert paused["status"] == "paused"
        assert paused["progress"]["pending"] > 0
        assert paused["progress"]["queued"] == 0 and paused["progress"]["sending"] == 0
        assert paused["sentCount"] == settled < 3000
        assert_error(await client.post(f"{path}/pause", headers=auth), 409, "conflict")

        r = await client.post(f"{path}/resume", headers=auth)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "processing"
        assert_error(await client.post(f"{path}/resume", headers=auth), 409, "conflict")
        done = await wait_for(_status_is(client, auth, path, "completed", "completed_with_failures"), within=30)
    assert done["status"] == "completed" and done["sentCount"] == 3000
    assert len(provider.calls) == 3000
    assert all(len(calls) == 1 for calls in provider.calls.values())
    assert await _attempts(engine, campaign["id"]) == {1: 3000}
    assert_counters_match(await campaign_row(engine, campaign["id"]), await status_counts(engine, campaign["id"]))
    assert_error(await client.post(f"{path}/pause", headers=auth), 409, "conflict")


async def test_pause_and_resume_of_an_unstarted_campaign(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Without a worker: pause moves every queued message to pending; resume puts them back, nothing else."""
    campaign = await post_json(client, auth, "/campaigns", {"name": "x", "recipientCount": 7})
    path = f"/campaigns/{campaign['id']}"
    paused = await post_json(client, auth, f"{path}/pause", None)
    assert paused["status"] == "paused"
    assert paused["progress"]["pending"] == 7 and paused["progress"]["queued"] == 0
    assert paused["completedAt"] is None, "a paused campaign is not completed"
    resumed = await post_json(client, auth, f"{path}/resume", None)
    assert resumed["status"] == "processing" and resumed["progress"]["queued"] == 7
    assert resumed["completedAt"] is None
    assert_counters_match(await campaign_row(engine, campaign["id"]), await status_counts(engine, campaign["id"]))


async def test_resume_before_send_at_returns_to_scheduled(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=1)
    campaign = await post_json(client, auth, "/campaigns", {"name": "x", "recipientCount": 4, "sendAt": _iso(send_at)})
    path = f"/campaigns/{campaign['id']}"
    assert (await post_json(client, auth, f"{path}/pause", None))["status"] == "paused"
    resumed = await post_json(client, auth, f"{path}/resume", None)
    assert resumed["status"] == "scheduled"
    assert resumed["progress"]["pending"] == 4 and resumed["progress"]["queued"] == 0
    assert await _redis_jobs(redis, settings) == 0
    assert resumed["completedAt"] is None, "a scheduled campaign is not completed"


async def test_pause_and_resume_answer_409_404_422(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    provider = RecordingProvider()
    campaign = await post_json(client, auth, "/campaigns", {"name": "x", "recipientCount": 3})
    path = f"/campaigns/{campaign['id']}"
    assert_error(await client.post(f"{path}/resume", headers=auth), 409, "conflict")  # not paused
    async with running_worker_with(settings, provider):
        await wait_for(_status_is(client, auth, path, "completed"), within=10)
    error = assert_error(await client.post(f"{path}/pause", headers=auth), 409, "conflict")
    assert error["details"] == {"status": "completed"}
    assert_error(await client.post(f"{path}/resume", headers=auth), 409, "conflict")
    cancelled = await post_json(client, auth, "/campaigns", {"name": "y", "recipientCount": 3})
    assert (await client.post(f"/campaigns/{cancelled['id']}/cancel", headers=auth)).status_code == 202
    assert_error(await client.post(f"/campaigns/{cancelled['id']}/pause", headers=auth), 409, "conflict")
    assert_error(await client.post(f"/campaigns/{uuid.uuid4()}/pause", headers=auth), 404, "not_found")
    assert_error(await client.post("/campaigns/nope/resume", headers=auth), 422, "validation_error")
    assert_error(await client.post(f"{path}/pause"), 401, "unauthorized")
