"""Crashes and losses: PostgreSQL is the truth, so every accepted message still ends exactly once."""

from __future__ import annotations

import signal

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests.conftest import wait_for
from tests.harness import (
    assert_counters_match,
    campaign_completed,
    campaign_row,
    running_worker,
    sent_at_least,
    spawn_worker,
    status_counts,
    stop_process,
)

TERMINAL = ("sent", "failed", "cancelled")


async def _create(client: httpx.AsyncClient, auth: dict[str, str], count: int) -> str:
    r = await client.post("/campaigns", json={"name": "resilience", "recipientCount": count}, headers=auth)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _sent(engine: AsyncEngine, campaign_id: str) -> int:
    return (await status_counts(engine, campaign_id)).get("sent", 0)


async def _assert_each_message_terminal_once(engine: AsyncEngine, campaign_id: str, total: int) -> None:
    counts = await status_counts(engine, campaign_id)
    assert sum(counts.get(s, 0) for s in TERMINAL) == total, counts
    assert_counters_match(await campaign_row(engine, campaign_id), counts)


async def test_worker_killed_mid_campaign_loses_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """SIGKILL one of two workers mid-send: leases expire, the reconciler and arq hand its work on."""
    slow = settings.with_(mock_latency_ms=(50, 150))
    campaign_id = await _create(client, auth, 4000)
    victim, survivor = spawn_worker(slow), spawn_worker(slow)
    try:
        await wait_for(lambda: sent_at_least(engine, campaign_id, 600), within=30)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        await wait_for(lambda: campaign_completed(engine, campaign_id), within=120, interval=0.5)
    finally:
        stop_process(victim, signal.SIGKILL)
        log = stop_process(survivor)
    await _assert_each_message_terminal_once(engine, campaign_id, 4000)
    assert await _sent(engine, campaign_id) == 4000, log[-2000:]


async def test_redis_flushed_mid_campaign_is_finished_by_the_reconciler(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """Everything queued in Redis vanishes; the batches are rebuilt from PostgreSQL."""
    throttled = settings.with_(rate_limit=1000.0)
    campaign_id = await _create(client, auth, 5000)
    async with running_worker(throttled):
        await wait_for(lambda: sent_at_least(engine, campaign_id, 500), within=30)
        await redis.flushdb()
        assert await redis.zcard(settings.queue_name) == 0
        await wait_for(lambda: campaign_completed(engine, campaign_id), within=60, interval=0.3)
    await _assert_each_message_terminal_once(engine, campaign_id, 5000)
    assert await _sent(engine, campaign_id) == 5000


async def test_crash_between_commit_and_enqueue_is_repaired(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """A campaign committed but never enqueued (still `pending`) is enqueued and delivered."""
    campaign_id = await _create(client, auth, 1500)
    await redis.flushdb()  # as if the API died right after its commit
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE campaigns SET status = 'pending', enqueued_at = NULL WHERE id = :c"), {"c": campaign_id}
        )
    async with running_worker(settings):
        await wait_for(lambda: campaign_completed(engine, campaign_id), within=30, interval=0.3)
    await _assert_each_message_terminal_once(engine, campaign_id, 1500)
    row = await campaign_row(engine, campaign_id)
    assert row["enqueued_at"] is not None and row["status"] == "completed"


async def test_sigterm_drains_without_loss_or_duplicates(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """SIGTERM: the worker finishes its chunk in flight, writes statuses, hands back the rest, exits 0."""
    slow = settings.with_(mock_latency_ms=(100, 200), rate_limit=400.0)
    campaign_id = await _create(client, auth, 3000)
    worker = spawn_worker(slow)
    await wait_for(lambda: sent_at_least(engine, campaign_id, 300), within=30)
    log = stop_process(worker, signal.SIGTERM, timeout=slow.worker_drain_seconds + 10)
    assert worker.returncode == 0, log[-3000:]
    counts = await status_counts(engine, campaign_id)
    assert counts.get("sending", 0) == 0, counts  # nothing left claimed-but-unwritten
    assert 300 <= counts.get("sent", 0) < 3000
    # The unsent rest is in the queue again, in batches whose jobs exist in Redis.
    assert await redis.zcard(settings.queue_name) > 0

    async with running_worker(settings):
        await wait_for(lambda: campaign_completed(engine, campaign_id), within=30, interval=0.3)
    await _assert_each_message_terminal_once(engine, campaign_id, 3000)
    async with engine.connect() as conn:
        attempts = (await conn.execute(
            text("SELECT max(attempts) FROM messages WHERE campaign_id = :c"), {"c": campaign_id}
        )).scalar_one()  # fmt: skip
    assert attempts == 1  # no message was sent twice
