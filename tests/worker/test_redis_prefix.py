"""NOTIFQ_REDIS_PREFIX: deployments that share one Redis database never see each other.

Two stacks (API + worker) with their own PostgreSQL databases and prefixes run on the same
Redis database: neither delivers, lists, counts or locks out anything of the other. And a
stack writes no key outside its prefix, apart from arq's own fixed namespaces, whose job
ids carry the prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.admins import set_admin
from notifq.db.engine import create_engine
from notifq.keys import RedisKeys
from notifq.migrate import upgrade_head
from notifq.queue import missing_jobs
from notifq.settings import Settings
from notifq.vocabulary import Lane
from tests import servers as test_servers
from tests.api.support import app_client
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, wait_for
from tests.harness import finished_campaign, get_json, post_json, running_worker, status_counts

ARQ_NAMESPACES = (job_key_prefix, in_progress_key_prefix, retry_key_prefix, result_key_prefix)


@pytest.fixture(scope="module")
async def other_database(servers: test_servers.TestServers) -> AsyncIterator[str]:
    """A second, migrated database on the same server: the other deployment's."""
    name = f"{servers.database}_other"
    admin = servers.admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        url = test_servers._with_database(servers.admin_url, name)
        await asyncio.to_thread(upgrade_head, url)
        yield url
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
async def other_engine(other_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(other_database, pool_size=2)
    async with engine.begin() as conn:
        tables = (await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        )).scalars().all()  # fmt: skip
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    yield engine
    await engine.dispose()


@dataclass
class Stack:
    settings: Settings
    keys: RedisKeys
    client: httpx.AsyncClient
    auth: dict[str, str]


@asynccontextmanager
async def stack(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Stack]:
    """An API over `settings` with a logged-in admin (its worker is started by the test)."""
    await set_admin(engine, ADMIN_EMAIL, ADMIN_PASSWORD)
    async with app_client(settings) as client:
        r = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        yield Stack(settings, RedisKeys.from_settings(settings), client, auth)


async def create_campaign(s: Stack, count: int) -> str:
    return str((await post_json(s.client, s.auth, "/campaigns", {"name": "prefix", "recipientCount": count}))["id"])


async def sent_total(s: Stack) -> float:
    """notifq_messages_sent_total summed over channels and providers, from GET /metrics."""
    r = await s.client.get("/metrics", headers=s.auth)
    assert r.status_code == 200, r.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
        if sample.name == "notifq_messages_sent_total"
    )


async def sent_is(s: Stack, expected: float) -> bool:
    return await sent_total(s) == expected


async def test_two_prefixes_on_one_redis_keep_apart(
    settings: Settings, engine: AsyncEngine, other_database: str, other_engine: AsyncEngine, redis: Redis
) -> None:
    alpha = settings.with_(redis_prefix="alpha")
    beta = settings.with_(redis_prefix="beta", database_url=other_database)
    async with stack(alpha, engine) as a, stack(beta, other_engine) as b:
        assert (a.keys.queue, b.keys.queue) == ("alpha:queue", "beta:queue")
        campaign_a = await create_campaign(a, 10)
        campaign_b = await create_campaign(b, 7)
        async with running_worker(alpha):
            await wait_for(lambda: finished_campaign(a.client, a.auth, campaign_a), within=30)
            # Beta's job waits in beta's queue: alpha's worker neither ran it nor re-enqueued it.
            assert await redis.zcard(b.keys.queue) == 1
            # Eventually: the campaign completes when its last outcome commits, a moment before arq removes the
            # finished job from alpha's queue (the job still SREMs its batch from the worker's running set).
            await wait_for(lambda: _queue_empty(redis, a.keys.queue), within=5)
            assert await status_counts(other_engine, campaign_b) == {"queued": 7}
            # Heartbeats and counters are alpha's alone.
            assert len((await get_json(a.client, a.auth, "/workers"))["workers"]) == 1
            assert (await get_json(b.client, b.auth, "/workers"))["workers"] == []
            await wait_for(lambda: sent_is(a, 10), within=5)
            assert (await get_json(a.client, a.auth, "/stats"))["sentLastMinute"] == 10
        assert await sent_total(b) == 0
        assert (await get_json(b.client, b.auth, "/stats"))["sentLastMinute"] == 0

        async with running_worker(beta):
            await wait_for(lambda: finished_campaign(b.client, b.auth, campaign_b), within=30)
            await wait_for(lambda: sent_is(b, 7), within=5)
            assert len((await get_json(b.client, b.auth, "/workers"))["workers"]) == 1
        assert await sent_total(a) == 10
        assert (await get_json(a.client, a.auth, "/stats"))["sentLastMinute"] == 10
        assert (await get_json(b.client, b.auth, "/stats"))["sentLastMinute"] == 7

        # A lockout on alpha (same email, same client address) leaves beta's logins alone.
        wrong = {"email": ADMIN_EMAIL, "password": "wrong password"}
        for _ in range(settings.login_max_failures):
            assert (await a.client.post("/auth/login", json=wrong)).status_code == 401
        assert (await a.client.post("/auth/login", json=wrong)).status_code == 429
        right = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        assert (await b.client.post("/auth/login", json=right)).status_code == 200


async def _queue_empty(redis: Redis, queue: str) -> bool:
    return await redis.zcard(queue) == 0


async def test_the_reconciler_finds_lost_jobs_under_the_prefix(
    settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """Jobs are `arq:job:<prefix>:b<batch>`: missing_jobs looks there, and a lost one is written again."""
    alpha = settings.with_(redis_prefix="alpha")
    async with stack(alpha, engine) as a:
        campaign = await create_campaign(a, 5)
        async with engine.connect() as conn:
            (job,) = (await conn.execute(
                text("SELECT DISTINCT job_id FROM messages WHERE campaign_id = :c"), {"c": campaign}
            )).scalars().all()  # fmt: skip
        assert await redis.exists(f"arq:job:alpha:b{job}")
        assert await missing_jobs(redis, a.keys, [job]) == []
        assert await missing_jobs(redis, RedisKeys.for_prefix("beta"), [job]) == [job]
        await redis.delete(f"arq:job:alpha:b{job}", a.keys.queue)  # Redis lost alpha's queue
        async with running_worker(alpha):
            await wait_for(lambda: finished_campaign(a.client, a.auth, campaign), within=30)
        assert await status_counts(engine, campaign) == {"sent": 5}


def _outside(key: str, prefix: str) -> bool:
    return not key.startswith(f"{prefix}:") and not any(key.startswith(f"{ns}{prefix}:") for ns in ARQ_NAMESPACES)


async def test_no_key_is_written_outside_the_prefix(settings: Settings, engine: AsyncEngine, redis: Redis) -> None:
    """A campaign with retries, a transactional send, a scheduled one and a failed login: every key
    seen while they run (scanned every 20 ms) and after is `gamma:…` or one of arq's `arq:…:gamma:…`."""
    gamma = settings.with_(redis_prefix="gamma", mock_failure_rate=0.3, rate_limit=500.0)
    seen: set[str] = set()
    stop = asyncio.Event()

    async def scan() -> None:
        while not stop.is_set():
            seen.update([k.decode() async for k in redis.scan_iter(count=1000)])
            await asyncio.sleep(0.02)

    scanner = asyncio.create_task(scan())
    try:
        async with stack(gamma, engine) as g:
            assert (
                await g.client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": "no"})
            ).status_code == 401
            async with running_worker(gamma):
                campaign = await create_campaign(g, 300)
                await post_json(g.client, g.auth, "/notifications",
                                {"channel": "email", "to": "otp@example.com", "subject": "code", "body": "1234",
                                 "priority": "transactional"})  # fmt: skip
                soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
                await post_json(g.client, g.auth, "/notifications",
                                {"channel": "sms", "to": "+15550000001", "body": "later", "sendAt": soon})  # fmt: skip
                await wait_for(lambda: finished_campaign(g.client, g.auth, campaign), within=60)
                await get_json(g.client, g.auth, "/stats")
                await g.client.get("/metrics", headers=g.auth)
                await asyncio.sleep(1.5)  # a heartbeat or two
    finally:
        stop.set()
        await scanner
    seen.update([k.decode() async for k in redis.scan_iter(count=1000)])
    assert any(k.startswith("arq:job:gamma:b") for k in seen)
    assert {"gamma:workers", "gamma:metrics", "gamma:queue", "gamma:transactional:active"} <= seen
    assert any(k.startswith("gamma:login:") for k in seen)
    assert any(k.startswith("gamma:rate:sent:") for k in seen)
    assert sorted(k for k in seen if _outside(k, "gamma")) == []


def test_the_queue_follows_the_prefix_unless_notifq_queue_names_one() -> None:
    base = Settings()
    assert RedisKeys.from_settings(base) == RedisKeys("notifq", "notifq:queue")
    assert RedisKeys.from_settings(base.with_(redis_prefix="acme")).queue == "acme:queue"
    assert RedisKeys.from_settings(base.with_(redis_prefix="acme", queue_name="jobs")).queue == "jobs"
    keys = RedisKeys.for_prefix("acme")
    assert keys.lane_queue(Lane.TRANSACTIONAL) == "acme:queue:transactional"
    assert keys.job_id(42) == "acme:b42"
