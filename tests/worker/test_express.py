"""The express lane (worker/express.py): single transactional sends claimed many batches at a time, woken by
a push, with real PostgreSQL, Redis and in-process workers; and the lanes a worker serves (NOTIFQ_WORKER_LANES)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import messages_repo
from notifq.db.messages_repo import ClaimedMessage
from notifq.keys import RedisKeys
from notifq.queue import missing_jobs
from notifq.settings import Settings
from tests.conftest import wait_for
from tests.harness import post_json, running_worker_with
from tests.worker.test_lanes_schedule_pause import RecordingProvider


@pytest.fixture
def auth(fast_auth: dict[str, str]) -> dict[str, str]:
    return fast_auth


def _otp(i: int) -> dict[str, Any]:
    return {"channel": "sms", "to": f"+1555{i:07d}", "body": f"code {i:06d}"}


async def _post_many(client: httpx.AsyncClient, auth: dict[str, str], numbers: range) -> list[int]:
    answers = await asyncio.gather(*(client.post("/notifications", json=_otp(i), headers=auth) for i in numbers))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers if a.status_code != 202][:3]
    return [int(a.json()["id"]) for a in answers]


async def _statuses(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        return Counter(dict((await conn.execute(text("SELECT status, count(*) FROM messages GROUP BY 1"))).all()))


async def test_a_burst_of_single_sends_is_claimed_in_chunks_without_arq_jobs(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """1,500 single sends posted at once while a worker runs: each reaches the provider exactly once, no arq
    job is written for any of them, and far fewer claim statements than messages take them."""
    claims: list[int] = []  # messages per express claim statement (the real statement runs)
    real_claim = messages_repo.claim_batches

    async def counted(*args: Any, **kwargs: Any) -> list[ClaimedMessage]:
        claimed = await real_claim(*args, **kwargs)
        claims.append(len(claimed))
        return claimed

    monkeypatch.setattr(messages_repo, "claim_batches", counted)
    provider = RecordingProvider()
    n = 1500
    async with running_worker_with(settings, provider):
        ids = await _post_many(client, auth, range(n))

        async def all_sent() -> bool:
            return (await _statuses(engine)).get("sent", 0) == n

        await wait_for(all_sent, within=60, interval=0.1)
        arq_jobs = [k async for k in redis.scan_iter("arq:job:*")]
    assert sorted(provider.calls) == sorted(ids)
    assert all(len(calls) == 1 for calls in provider.calls.values())
    assert arq_jobs == [], "a single send became an arq job"
    assert sum(claims) == n
    assert len(claims) < n / 5, f"{n} sends took {len(claims)} claim statements: {claims[:20]}"


async def test_a_lone_send_is_delivered_while_the_lane_is_idle(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """No traffic, no polling: the push of its batch number wakes a waiting worker."""
    provider = RecordingProvider()
    async with running_worker_with(settings, provider):
        await asyncio.sleep(1.5)  # past one BLMPOP timeout: the worker is waiting, not just started
        otp = await post_json(client, auth, "/notifications", _otp(1))

        async def sent() -> bool:
            return int(otp["id"]) in provider.calls

        await wait_for(sent, within=5, interval=0.005)
    assert (await _statuses(engine)) == Counter({"sent": 1})


async def test_a_send_posted_mid_burst_waits_only_for_what_came_before_it(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """At 1,000 sends/s, 800 sends, one more, then 800 more: the lone one is not held back until the
    burst is through; the sends posted after it mostly reach the provider after it (first come, first served)."""
    provider = RecordingProvider()
    async with running_worker_with(settings.with_(rate_limit=1000.0), provider):
        await _post_many(client, auth, range(800))
        lone = int((await post_json(client, auth, "/notifications", _otp(5000)))["id"])
        after = await _post_many(client, auth, range(10_000, 10_800))

        async def all_sent() -> bool:
            return (await _statuses(engine)).get("sent", 0) == 1601

        await wait_for(all_sent, within=60, interval=0.1)
    lone_at = provider.calls[lone][0].at
    later_first = sum(1 for i in after if provider.calls[i][0].at < lone_at)
    last_at = max(calls[0].at for calls in provider.calls.values())
    assert lone_at < last_at
    assert later_first < len(after) / 10, f"{later_first} of the sends posted after it went first"


async def test_batches_popped_and_lost_are_found_by_the_reconciler(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """A worker that popped batch numbers and died before its claim: the messages are still `queued` in
    PostgreSQL, and the reconciler enqueues them again after the grace period; nothing is sent twice."""
    keys = RedisKeys.from_settings(settings)
    ids = await _post_many(client, auth, range(5))
    assert await redis.llen(keys.ready) >= 1
    await redis.delete(keys.ready)  # as if popped by a worker that was then SIGKILLed
    provider = RecordingProvider()
    async with running_worker_with(settings, provider):

        async def all_sent() -> bool:
            return (await _statuses(engine)) == Counter({"sent": 5})

        await wait_for(all_sent, within=30, interval=0.1)
    assert sorted(provider.calls) == sorted(ids)
    assert all(len(calls) == 1 for calls in provider.calls.values())


async def test_a_batch_on_the_ready_list_is_not_missing(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """The reconciler does not enqueue again what waits on the ready list (it would only cost a claim)."""
    keys = RedisKeys.from_settings(settings)
    await _post_many(client, auth, range(3))
    async with engine.connect() as conn:
        jobs = [r[0] for r in await conn.execute(text("SELECT DISTINCT job_id FROM messages"))]
    assert await missing_jobs(redis, keys, jobs) == []
    await redis.delete(keys.ready)
    assert sorted(await missing_jobs(redis, keys, jobs)) == sorted(jobs)


async def test_worker_lanes_split_transactional_and_bulk_work(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """NOTIFQ_WORKER_LANES=bulk delivers the campaign and leaves the OTP queued; a transactional worker
    then delivers the OTP and never touches a campaign."""
    campaign = await post_json(client, auth, "/campaigns", {"name": "digest", "recipientCount": 300})
    otp = int((await post_json(client, auth, "/notifications", _otp(1)))["id"])
    bulk_provider = RecordingProvider()
    async with running_worker_with(settings.with_(worker_lanes="bulk"), bulk_provider):

        async def campaign_sent() -> bool:
            return bulk_provider.count >= 300

        await wait_for(campaign_sent, within=30, interval=0.05)
        await asyncio.sleep(0.5)
    assert otp not in bulk_provider.calls
    second = await post_json(client, auth, "/campaigns", {"name": "digest 2", "recipientCount": 50})
    express_provider = RecordingProvider()
    async with running_worker_with(settings.with_(worker_lanes="transactional"), express_provider):

        async def otp_sent() -> bool:
            return otp in express_provider.calls

        await wait_for(otp_sent, within=10, interval=0.02)
        await asyncio.sleep(0.5)
    assert list(express_provider.calls) == [otp]
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM messages WHERE campaign_id = :c AND status = 'queued'"),
                                   {"c": second["id"]})).scalar_one()  # fmt: skip
    assert left == 50, "a transactional-only worker took bulk work"
    assert campaign["id"] != second["id"]
