"""Redis through Sentinel: clients follow a failover, and a campaign delivered across one loses nothing.

Real servers (tests/deploy/sentinels.py): a master, a replica and three sentinels on loopback,
started per test. A failover is forced two ways: `SENTINEL FAILOVER` (planned: the old master
keeps running and is demoted seconds later) and SIGKILL of the master (the sentinels agree it is
down after DOWN_AFTER_MS, then promote the replica).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq import queue
from notifq.redis_connect import arq_connection, redis_from_url
from notifq.settings import Settings
from tests.conftest import wait_for
from tests.deploy.sentinels import SERVICE, SentinelGroup, start_group
from tests.harness import assert_counters_match, campaign_row, running_worker, status_counts

FOLLOW_WITHIN = 5.0  # seconds from the failover's start to the client writing on the new master


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    started = start_group(tmp_path / "sentinel")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def through_sentinel(group: SentinelGroup) -> AsyncIterator[Redis]:
    client = redis_from_url(group.url(db=2), socket_connect_timeout=3, socket_timeout=10)
    yield client
    await client.aclose()


def _fail_over(group: SentinelGroup, how: str) -> int:
    """Start a failover; returns the old master's port."""
    old = group.master_port()
    if how == "failover":
        with group.sentinels[0].client() as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE) in (b"OK", "OK", True)
    else:
        process = group.node_on(old).process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(5)
    return old


async def _acknowledged_writes(client: Redis, n: int) -> None:
    """n keys written, and the replica has them (WAIT 1): a failover must not lose them."""
    async with client.pipeline(transaction=False) as pipe:
        for i in range(n):
            pipe.set(f"acked:{i}", i)
        await pipe.execute()
    assert await client.execute_command("WAIT", 1, 5000) >= 1


async def _all_kept(client: Redis, n: int) -> None:
    values = await client.mget([f"acked:{i}" for i in range(n)])
    assert values == [str(i).encode() for i in range(n)]


@pytest.mark.parametrize("how", ["failover", "kill"])
async def test_a_client_follows_the_failover_and_keeps_acknowledged_writes(
    group: SentinelGroup, through_sentinel: Redis, how: str
) -> None:
    """Writes acknowledged by the replica survive; within seconds every write goes to the new master."""
    await _acknowledged_writes(through_sentinel, 2000)
    started = time.monotonic()
    old = _fail_over(group, how)
    # Keep writing through the failover, as a worker would: each command either lands or retries.
    while True:
        await through_sentinel.incr("during")
        address = through_sentinel.connection_pool.master_address
        if address is not None and address[1] != old:
            break
        assert time.monotonic() - started < FOLLOW_WITHIN, f"still on the old master after {FOLLOW_WITHIN}s"
        await asyncio.sleep(0.01)
    followed = time.monotonic() - started
    new = group.master_port()
    assert new != old and address == ("127.0.0.1", new), (address, new)
    await through_sentinel.set("after", "x")
    with group.node_on(new).client() as direct:
        assert direct.info("replication")["role"] == "master"
        direct.select(2)  # type: ignore[no-untyped-call]
        assert direct.get("after") == b"x"  # the write went to the new master, not the old one
    await _all_kept(through_sentinel, 2000)
    print(f"{group.kind} {how}: writing on the new master {followed:.2f}s after the failover started")


async def test_arq_pool_through_sentinel_follows_a_failover(group: SentinelGroup) -> None:
    """The pool `arq_connection` gives the worker's arq lanes survives the failover too."""
    pool = arq_connection(group.url(db=3))["redis_pool"]
    try:
        assert await pool.enqueue_job("noop", _job_id="before", _queue_name="q") is not None
        assert await pool.execute_command("WAIT", 1, 5000) >= 1
        _fail_over(group, "kill")
        assert await pool.enqueue_job("noop", _job_id="after", _queue_name="q") is not None  # waits for the master
        assert sorted(job.job_id for job in await pool.queued_jobs(queue_name="q")) == ["after", "before"]
    finally:
        await pool.aclose()


async def test_closing_a_client_closes_its_sentinel_connections(group: SentinelGroup) -> None:
    """The clients to the sentinels close with the master's client (else: ResourceWarnings, open sockets)."""
    client = redis_from_url(group.url())
    await client.ping()
    sentinels = client.connection_pool.sentinel_manager.sentinels
    assert any(s.connection_pool._available_connections for s in sentinels)
    await client.aclose()
    assert not any(c.is_connected for s in sentinels for c in s.connection_pool._available_connections)


def _wired() -> bool:
    """The Sentinel wiring is in (queue.redis_client and the worker's arq pools use notifq.redis_connect)."""
    try:
        queue.redis_client("redis+sentinel://127.0.0.1:1/x")
    except ValueError:
        return False
    return True


@pytest.fixture
def settings(base_settings: Settings, group: SentinelGroup) -> Settings:
    """The API and workers of this module reach Redis only through the sentinels (PostgreSQL is the suite's)."""
    return base_settings.with_(redis_url=group.url(), rate_limit=1500.0)


async def _sent(engine: AsyncEngine, campaign_id: str) -> int:
    return (await status_counts(engine, campaign_id)).get("sent", 0)


async def _complete(engine: AsyncEngine, campaign_id: str) -> bool:
    return (await campaign_row(engine, campaign_id))["status"] in ("completed", "completed_with_failures")


@pytest.mark.skipif(not _wired(), reason="needs notifq.redis_connect wired into queue.py, worker/main.py, fanout.py "
                    "and providers/inapp.py (docs/deployment.md, 'Redis through Sentinel')")  # fmt: skip
@pytest.mark.parametrize("how", ["failover", "kill"])
async def test_a_campaign_is_delivered_across_a_failover_without_a_lost_message(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    group: SentinelGroup, how: str,
) -> None:  # fmt: skip
    """The master fails over mid-campaign: every message ends sent exactly once, and the lanes never stop."""
    total = 9000
    r = await client.post("/campaigns", json={"name": f"sentinel {how}", "recipientCount": total}, headers=auth)
    assert r.status_code == 202, r.text
    campaign_id = str(r.json()["id"])
    async with running_worker(settings) as worker:
        await wait_for(lambda: _sent_at_least(engine, campaign_id, 1500), within=30)
        started = time.monotonic()
        _fail_over(group, how)
        await wait_for(lambda: _complete(engine, campaign_id), within=90, interval=0.3)
        took = time.monotonic() - started
        crashed = [t.get_name() for t in worker._tasks[: len(worker.workers)] if t.done()]
    counts = await status_counts(engine, campaign_id)
    assert counts == {"sent": total}, counts
    assert_counters_match(await campaign_row(engine, campaign_id), counts)
    assert not crashed, f"arq lanes stopped during the failover: {crashed}"
    async with engine.connect() as conn:
        resent = (await conn.execute(text("SELECT count(*) FROM messages WHERE campaign_id = :c AND attempts > 1"),
                                     {"c": campaign_id})).scalar_one()  # fmt: skip
    print(
        f"{group.kind} {how}: the campaign finished {took:.1f}s after the failover started; {resent} messages "
        "took more than one attempt"
    )


async def _sent_at_least(engine: AsyncEngine, campaign_id: str, n: int) -> bool:
    return await _sent(engine, campaign_id) >= n
