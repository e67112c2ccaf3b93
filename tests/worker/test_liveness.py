"""Crash recovery in seconds (worker/liveness.py): a dead worker's claims and jobs, and a Redis that lost its data.

The settings here make the old, slow paths useless on purpose: a 120 s lease, a 60 s job slice (so arq's
in-progress claim on a dead worker's job lasts over 90 s) and a 300 s reconcile grace. Whatever finishes
within seconds was repaired by the liveness check.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import messages_repo, workers_repo
from notifq.db.engine import create_engine
from notifq.db.messages_repo import Outcome
from notifq.keys import RedisKeys
from notifq.providers.factory import ProviderFactory
from notifq.settings import Settings
from notifq.telemetry import LIVENESS_SECONDS
from notifq.vocabulary import Lane, MessageStatus
from notifq.worker.breaker import CircuitBreaker
from notifq.worker.deps import WorkerDeps
from notifq.worker.failover import Failover
from notifq.worker.fleet_limit import FleetLimits
from notifq.worker.liveness import JUDGE_AFTER_SECONDS, Liveness, LivenessReport
from notifq.worker.metrics import WorkerMetrics
from notifq.worker.rate_limit import RateLimiter
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

SLOW_PATHS = {"lease_seconds": 120.0, "job_slice_seconds": 60.0, "reconcile_grace": 300.0}


@pytest.fixture
def slow_paths(settings: Settings) -> Settings:
    return settings.with_(**SLOW_PATHS)


@pytest.fixture
async def deps(slow_paths: Settings, redis: Redis) -> AsyncIterator[WorkerDeps]:
    """A worker's shared parts without its loops: the test runs the liveness check by hand."""
    assert slow_paths.database_url and slow_paths.redis_url
    engine = create_engine(slow_paths.database_url, pool_size=4, autocommit=True)
    client = Redis.from_url(slow_paths.redis_url)
    keys = RedisKeys.from_settings(slow_paths)
    providers, breaker, metrics = ProviderFactory(slow_paths), CircuitBreaker(5, 30), WorkerMetrics()
    fleet = FleetLimits(slow_paths, client, keys)
    failover = Failover(providers, breaker, fleet, client, keys, metrics.id)
    yield WorkerDeps(settings=slow_paths, engine=engine, redis=client, keys=keys, providers=providers,
                     limiter=RateLimiter(0), in_flight=asyncio.Semaphore(100), breaker=breaker, fleet=fleet,
                     failover=failover, metrics=metrics)  # fmt: skip
    await fleet.aclose()
    await providers.aclose()
    await client.aclose()
    await engine.dispose()


async def _create(client: httpx.AsyncClient, auth: dict[str, str], count: int) -> str:
    r = await client.post("/campaigns", json={"name": "liveness", "recipientCount": count}, headers=auth)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _ghost(deps: WorkerDeps, name: str) -> int:
    """A registered worker that started a minute ago (old enough to be judged)."""
    async with deps.engine.connect() as conn:
        number = await workers_repo.register(conn, name, "test-host", 1)
        await conn.execute(text("UPDATE workers SET started_at = now() - interval '1 minute' WHERE id = :i"),
                           {"i": number})  # fmt: skip
    return number


async def _steady(deps: WorkerDeps) -> Liveness:
    """A liveness check that has watched the same epoch and Redis server, with no gap, for long enough to judge;
    its own worker beating."""
    epoch = await deps.redis.get(deps.keys.epoch)
    if epoch is None:
        await deps.redis.set(deps.keys.epoch, b"test-epoch")
        epoch = b"test-epoch"
    await _beat(deps, deps.metrics.id)
    run_id = str((await deps.redis.info("server"))["run_id"])
    return Liveness(_epoch=epoch, _run_id=run_id, _steady_since=time.monotonic() - 2 * JUDGE_AFTER_SECONDS,
                    _last_ok=time.monotonic())  # fmt: skip


async def _judged(liveness: Liveness, deps: WorkerDeps) -> LivenessReport:
    """Two rounds: a worker is given up for dead only when silent in both."""
    first = await liveness.check(deps)
    assert first.lost_workers == (), first
    return await liveness.check(deps)


async def _beat(deps: WorkerDeps, name: str) -> None:
    await deps.redis.hset(deps.keys.worker(name), mapping={"id": name})
    await deps.redis.expire(deps.keys.worker(name), int(LIVENESS_SECONDS))


async def _job_of(deps: WorkerDeps, campaign_id: str) -> int:
    async with deps.engine.connect() as conn:
        return int((await conn.execute(text("SELECT min(job_id) FROM messages WHERE campaign_id = :c"),
                                       {"c": campaign_id})).scalar_one())  # fmt: skip


async def test_a_dead_workers_claims_come_back_and_a_slow_workers_late_outcomes_are_stale(
    client: httpx.AsyncClient, auth: dict[str, str], deps: WorkerDeps, engine: AsyncEngine
) -> None:
    """Worker A claims and stops beating: its claims are taken back at once (not after the 120 s lease) and its
    running job restarted. B claims them again; A's late outcomes for the taken-back attempt are stale, except
    a `sent` (the provider took it), so every message still ends `sent` exactly once."""
    campaign_id = await _create(client, auth, 10)
    job = await _job_of(deps, campaign_id)
    a, b = await _ghost(deps, "ghost-a"), await _ghost(deps, "ghost-b")
    await _beat(deps, "ghost-b")
    await deps.redis.sadd(deps.keys.worker_jobs("ghost-a"), job)
    await deps.redis.set(in_progress_key_prefix + deps.keys.job_id(job), b"1", ex=300)
    async with deps.engine.connect() as conn:
        claimed = await messages_repo.claim(conn, job, 10, 120.0, a)
    assert len(claimed) == 10

    report = await _judged(await _steady(deps), deps)

    assert report.lost_workers == ("ghost-a",)
    assert (report.released, report.taken_back, report.restarted_jobs) == (10, 10, 1)
    assert not await deps.redis.exists(in_progress_key_prefix + deps.keys.job_id(job))  # arq may run it now
    counts = await status_counts(engine, campaign_id)
    assert counts == {"queued": 10}, counts
    async with engine.connect() as conn:
        lost = (await conn.execute(text("SELECT lost_at IS NOT NULL FROM workers ORDER BY id"))).scalars().all()
        events = (await conn.execute(text("SELECT count(*) FROM message_events WHERE event = 'lost'"))).scalar_one()
    assert lost == [True, False] and events == 10

    async with deps.engine.connect() as conn:
        job = await _job_of(deps, campaign_id)  # taken back into a new batch, as a retry
        again = await messages_repo.claim(conn, job, 10, 120.0, b)
        assert {m.attempts for m in again} == {2}
        late = [Outcome(m.id, 1, MessageStatus.FAILED, "A's late failure") for m in claimed[1:]]
        late.append(Outcome(claimed[0].id, 1, MessageStatus.SENT, provider="mock"))
        result = await messages_repo.record_outcomes(conn, late)
        assert result.stale == 9  # only A's `sent` counts
        result = await messages_repo.record_outcomes(conn, [Outcome(m.id, 2, MessageStatus.SENT, provider="mock")
                                                            for m in again])  # fmt: skip
        assert result.stale == 1  # the one A sent
    counts = await status_counts(engine, campaign_id)
    assert counts == {"sent": 10}, counts
    assert_counters_match(await campaign_row(engine, campaign_id), counts)


async def test_no_verdict_until_the_epoch_has_been_steady_and_a_returning_worker_is_found(
    deps: WorkerDeps, engine: AsyncEngine
) -> None:
    """Right after Redis lost its data every heartbeat is missing: nobody is judged until the epoch has been
    watched for JUDGE_AFTER_SECONDS. A worker given up for dead whose heartbeat returns is marked found."""
    await _ghost(deps, "ghost-c")
    fresh = Liveness()
    report = await fresh.check(deps)
    assert report.ran and report.lost_workers == ()
    assert await deps.redis.get(deps.keys.epoch) is not None  # set by the check

    steady = await _steady(deps)
    await deps.redis.delete(deps.keys.worker(deps.metrics.id))
    assert (await steady.check(deps)).lost_workers == ()  # its own heartbeat gone: Redis is what failed
    assert (await steady.check(deps)).lost_workers == ()
    steady = await _steady(deps)
    assert (await _judged(steady, deps)).lost_workers == ("ghost-c",)
    await deps.redis.delete(deps.keys.epoch)  # Redis lost its data again: watch before judging
    assert (await steady.check(deps)).lost_workers == ()

    await _beat(deps, "ghost-c")
    await (await _steady(deps)).check(deps)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT lost_at FROM workers WHERE name = 'ghost-c'"))).scalar_one() is None


async def test_a_flushed_redis_is_refilled_at_once(
    client: httpx.AsyncClient, auth: dict[str, str], deps: WorkerDeps, redis: Redis
) -> None:
    """Every open batch is enqueued again in the first round after the flush, without the 300 s grace."""
    await _create(client, auth, 3000)
    queue = deps.keys.lane_queue(Lane.BULK)
    before = await redis.zcard(queue)
    assert before > 0
    await redis.flushdb()
    report = await Liveness().check(deps)
    assert report.refilled == before
    assert await redis.zcard(queue) == before
    assert (await Liveness().check(deps)).refilled == 0  # the epoch is back: nothing more to do

    # Another Redis server with the epoch but without the jobs (restored from an older snapshot, a Sentinel
    # failover to a replica that had not caught up): the run id changed, so the queue is refilled too.
    epoch = await redis.get(deps.keys.epoch)
    await redis.delete(queue, *[k async for k in redis.scan_iter("arq:job:*")])
    report = await Liveness(_epoch=epoch, _run_id="an-older-server").check(deps)
    assert report.refilled == before and await redis.zcard(queue) == before


async def test_worker_killed_mid_campaign_is_replaced_within_seconds(
    client: httpx.AsyncClient, auth: dict[str, str], slow_paths: Settings, engine: AsyncEngine
) -> None:
    """SIGKILL one of two `notifq worker` processes mid-campaign: with a 120 s lease and a 60 s job slice, the
    campaign still completes within seconds of the kill, every message sent once in PostgreSQL, and the resends
    are at most what the victim had claimed."""
    # Sends of 0.5-1.5 s (the provider timeout is 2 s): the victim has claimed messages in flight when killed.
    slow = slow_paths.with_(mock_latency_ms=(500, 1500), rate_limit=500.0)
    campaign_id = await _create(client, auth, 6000)
    victim, survivor = spawn_worker(slow), spawn_worker(slow)
    try:
        await wait_for(lambda: sent_at_least(engine, campaign_id, 800), within=60)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # Not a speed check: without the liveness check the victim's claims wait out the 120 s lease and its
        # jobs arq's in-progress claim (over 90 s), so this bound only tells the two paths apart.
        done = await _completes(engine, campaign_id, within=60)
    finally:
        stop_process(victim, signal.SIGKILL)
        log = stop_process(survivor)
    assert done, (await status_counts(engine, campaign_id), await _jobs_left(engine, campaign_id), log[-4000:])
    counts = await status_counts(engine, campaign_id)
    assert counts == {"sent": 6000}, (counts, log[-2000:])
    assert_counters_match(await campaign_row(engine, campaign_id), counts)
    async with engine.connect() as conn:
        lost = (await conn.execute(text(
            "SELECT count(*) FROM message_events e JOIN messages m ON m.id = e.message_id "
            "WHERE m.campaign_id = :c AND e.event = 'lost'"), {"c": campaign_id})).scalar_one()  # fmt: skip
        workers = (await conn.execute(text("SELECT count(*) FROM workers WHERE lost_at IS NOT NULL"))).scalar_one()
        resent = (await conn.execute(text("SELECT count(*) FROM messages WHERE campaign_id = :c AND attempts > 1"),
                                     {"c": campaign_id})).scalar_one()  # fmt: skip
    assert workers == 1 and lost > 0, log[-2000:]
    assert resent == lost  # sent again: only what the victim held when it died
    assert "stopped beating" in log, log[-2000:]


async def test_redis_restarted_empty_mid_campaign_is_refilled_without_the_grace(
    client: httpx.AsyncClient, auth: dict[str, str], slow_paths: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    throttled = slow_paths.with_(rate_limit=1000.0)
    campaign_id = await _create(client, auth, 5000)
    async with running_worker(throttled):
        await wait_for(lambda: sent_at_least(engine, campaign_id, 500), within=30)
        await redis.flushdb()
        # Within the bound only by the liveness check's refill: the reconciler would wait its 300 s grace.
        await wait_for(lambda: campaign_completed(engine, campaign_id), within=40, interval=0.3)
    counts = await status_counts(engine, campaign_id)
    assert counts == {"sent": 5000}, counts


async def _completes(engine: AsyncEngine, campaign_id: str, within: float) -> bool:
    try:
        await wait_for(lambda: campaign_completed(engine, campaign_id), within=within, interval=0.3)
    except AssertionError:
        return False
    return True


async def _jobs_left(engine: AsyncEngine, campaign_id: str) -> list[tuple[object, ...]]:
    """What is still open, by batch and status (shown when a campaign does not complete)."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT job_id, status, claimed_by, count(*) FROM messages WHERE campaign_id = :c "
            "AND status IN ('queued', 'sending') GROUP BY 1, 2, 3 ORDER BY 1"), {"c": campaign_id})  # fmt: skip
        return [tuple(r) for r in rows]


async def test_a_late_sent_after_the_last_attempt_was_given_up_ends_sent(
    client: httpx.AsyncClient, auth: dict[str, str], deps: WorkerDeps, engine: AsyncEngine
) -> None:
    """A worker taken for dead during a message's last attempt: the message fails "outcome unknown"; when the
    worker (only slow) then reports `sent`, the message ends `sent` after all, once, and the counters follow."""
    campaign_id = await _create(client, auth, 3)
    job = await _job_of(deps, campaign_id)
    slow = await _ghost(deps, "ghost-slow")
    async with deps.engine.connect() as conn:
        await conn.execute(text("UPDATE messages SET attempts = :n WHERE campaign_id = :c"),
                           {"n": deps.settings.max_attempts - 1, "c": campaign_id})  # fmt: skip
        claimed = await messages_repo.claim(conn, job, 3, 120.0, slow)
    report = await _judged(await _steady(deps), deps)
    assert report.lost_workers == ("ghost-slow",) and report.taken_back == 3
    assert await status_counts(engine, campaign_id) == {"failed": 3}

    async with deps.engine.connect() as conn:
        late = [Outcome(m.id, m.attempts, MessageStatus.SENT, provider="mock") for m in claimed[:2]]
        assert (await messages_repo.record_outcomes(conn, late)).stale == 0
        again = await messages_repo.record_outcomes(conn, late)  # a repeat changes nothing
        assert again.stale == 2
    counts = await status_counts(engine, campaign_id)
    assert counts == {"sent": 2, "failed": 1}, counts
    assert_counters_match(await campaign_row(engine, campaign_id), counts)


async def test_express_batches_a_dead_worker_had_popped_are_enqueued_again_at_once(
    client: httpx.AsyncClient, auth: dict[str, str], deps: WorkerDeps, engine: AsyncEngine
) -> None:
    """A worker pops transactional batch numbers off the ready list, claims part of them and dies: its claims
    come back, and the unclaimed rest, in no queue now, is put back on the ready list at once (not after the
    300 s grace)."""
    sends = [{"channel": "email", "to": f"otp{i}@example.com", "subject": "code", "body": str(i)} for i in range(4)]
    for send in sends:
        assert (await client.post("/notifications", json=send, headers=auth)).status_code == 202
    popped = [int(j) for j in await deps.redis.lrange(deps.keys.ready, 0, -1)]
    await deps.redis.delete(deps.keys.ready)  # popped by the worker below
    ghost = await _ghost(deps, "ghost-express")
    async with deps.engine.connect() as conn:
        claimed = await messages_repo.claim_batches(conn, popped, 2, 120.0, ghost)
    assert len(claimed) == 2

    report = await _judged(await _steady(deps), deps)

    assert report.lost_workers == ("ghost-express",) and report.taken_back == 2
    assert report.reenqueued >= 1
    listed = {int(j) for j in await deps.redis.lrange(deps.keys.ready, 0, -1)}
    async with engine.connect() as conn:
        queued_jobs = set((await conn.execute(text("SELECT DISTINCT job_id FROM messages WHERE status = 'queued'")))
                          .scalars().all())  # fmt: skip
    assert queued_jobs and queued_jobs <= listed  # every batch with queued messages waits on the ready list again
