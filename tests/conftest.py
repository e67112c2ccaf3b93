"""Shared fixtures: real servers, a clean database per test, the app, an admin token."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.admins import set_admin
from notifq.db.engine import create_engine
from notifq.settings import Settings
from tests import servers as test_servers
from tests.api.support import app_client

pytest_plugins = ["tests.aws", "tests.smtp_server", "tests.fcm_server", "tests.fast_auth", "tests.live"]

ADMIN_EMAIL = "admin@notifq.dev"
ADMIN_PASSWORD = "correct horse battery staple"
JWT_SECRET = "t" * 48


@pytest.fixture(scope="session")
def servers() -> Iterator[test_servers.TestServers]:
    started = test_servers.start()
    try:
        yield started
    finally:
        test_servers.stop(started)


@pytest.fixture(scope="session")
def base_settings(servers: test_servers.TestServers, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Fast, deterministic settings: no mock latency or failures unless a test asks, short leases."""
    return Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        jwt_secret=JWT_SECRET,
        rate_limit=0,
        mock_latency_ms=(0, 0),
        mock_failure_rate=0.0,
        mock_seed=1234,
        max_campaign_size=200_000,
        max_body_bytes=8 * 1024 * 1024,
        reconcile_interval=0.3,
        reconcile_grace=1.0,
        lease_seconds=4.0,
        provider_timeout=2.0,
        job_slice_seconds=2.0,
        worker_drain_seconds=8.0,
        login_max_failures=3,
        # Tests whose provider fails on purpose must not trip the circuit breaker (tested on its own).
        breaker_failures=1_000_000,
        login_lockout_seconds=60,
        sns_opt_out_sync_seconds=0,  # on where a test asks (it would call SNS, which tests only have as moto)
        state_dir=Path(tmp_path_factory.mktemp("state")),
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings


@pytest.fixture(scope="session")
async def engine(servers: test_servers.TestServers) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(servers.database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def redis(servers: test_servers.TestServers) -> AsyncIterator[Redis]:
    client = Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def clean(engine: AsyncEngine, redis: Redis) -> None:
    """Every test starts from empty tables and an empty Redis db."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE messages, campaigns, admins, message_events, message_counts, idempotency_keys, subscribers, "
                "suppressions, provider_events, campaign_events, webhook_endpoints, workers, api_keys "
                "RESTART IDENTITY CASCADE"
            )
        )
    await redis.flushdb()


@pytest.fixture
async def admin_id(engine: AsyncEngine) -> uuid.UUID:
    await set_admin(engine, ADMIN_EMAIL, ADMIN_PASSWORD)
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT id FROM admins WHERE email = :e"), {"e": ADMIN_EMAIL})).scalar_one()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as c:
        yield c


@pytest.fixture
async def token(client: httpx.AsyncClient, admin_id: uuid.UUID) -> str:
    r = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_for(predicate: Callable[[], Awaitable[Any]], within: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(interval)
