"""PostgreSQL or Redis unreachable: 503 service_unavailable, fast, and nothing half-written."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db.engine import create_engine
from notifq.settings import Settings
from tests.api.support import app_and_client, app_client, assert_error, bearer, row_counts, stateless_token
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.harness import campaign_row, status_counts

DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgresql://postgres@127.0.0.1:1/x"
FAST = 5.0  # seconds: a refused connection must not hang a request
CREATE_BODY = {"name": "During an outage", "recipients": ["ada@example.com", "grace@example.com"]}


def assert_unavailable(response: httpx.Response) -> None:
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) > 0


@pytest.fixture
async def no_redis(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a real PostgreSQL but a Redis that refuses connections."""
    async with app_client(settings.with_(redis_url=DEAD_REDIS)) as c:
        yield c


@pytest.fixture
async def no_postgres(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a real Redis but a PostgreSQL that refuses connections."""
    async with app_client(settings.with_(database_url=DEAD_POSTGRES)) as c:
        yield c


async def _timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = await request
    return response, time.monotonic() - start


# --- Redis down ----------------------------------------------------------------------------------


async def test_create_without_redis_is_503_and_writes_nothing(
    no_redis: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Redis is checked before the transaction, so an outage leaves no campaign waiting silently."""
    r, elapsed = await _timed(no_redis.post("/campaigns", json=CREATE_BODY, headers=fast_auth))
    assert_unavailable(r)
    assert elapsed < FAST
    assert await row_counts(engine) == (0, 0)
    assert await redis.zcard(settings.queue_name) == 0


async def test_ready_without_redis_is_503_naming_redis(no_redis: httpx.AsyncClient) -> None:
    """Readiness tells the operator which dependency is down."""
    r, elapsed = await _timed(no_redis.get("/ready"))
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"].startswith("unavailable")
    assert elapsed < FAST


async def test_health_without_redis_is_200(no_redis: httpx.AsyncClient) -> None:
    """Liveness must not fail because a dependency is down (or the orchestrator restarts a healthy process)."""
    assert (await no_redis.get("/health")).status_code == 200


async def test_reads_without_redis_still_work(
    client: httpx.AsyncClient, no_redis: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    """Reads only need PostgreSQL: a Redis outage does not hide campaigns or their messages."""
    r = await client.post("/campaigns", json=CREATE_BODY, headers=fast_auth)
    assert r.status_code == 202, r.text
    campaign_id = r.json()["id"]
    got = await no_redis.get(f"/campaigns/{campaign_id}", headers=fast_auth)
    assert got.status_code == 200, got.text
    assert got.json()["totalMessages"] == len(CREATE_BODY["recipients"])
    listed = await no_redis.get("/campaigns", headers=fast_auth)
    assert [c["id"] for c in listed.json()["items"]] == [campaign_id]
    messages = await no_redis.get(f"/campaigns/{campaign_id}/messages", headers=fast_auth)
    assert len(messages.json()["items"]) == len(CREATE_BODY["recipients"])


async def test_retry_without_redis_is_503_and_changes_nothing(
    client: httpx.AsyncClient,
    no_redis: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
) -> None:
    """Retry refuses up front while Redis is down, so failed messages are not moved to a queue nobody sees."""
    r = await client.post("/campaigns", json=CREATE_BODY, headers=fast_auth)
    campaign_id = r.json()["id"]
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE messages SET status = 'failed', attempts = 4 WHERE campaign_id = :c"),
                           {"c": campaign_id})  # fmt: skip
        await conn.execute(text("UPDATE campaigns SET queued_count = 0, failed_count = total_messages, "
                                "status = 'completed_with_failures' WHERE id = :c"), {"c": campaign_id})  # fmt: skip
    await redis.delete(settings.queue_name)
    before = await campaign_row(engine, campaign_id)
    assert_unavailable(await no_redis.post(f"/campaigns/{campaign_id}/retry", headers=fast_auth))
    assert await campaign_row(engine, campaign_id) == before
    assert await status_counts(engine, campaign_id) == {"failed": len(CREATE_BODY["recipients"])}


async def test_login_without_redis_is_503(no_redis: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings) -> None:
    """The login throttle lives in Redis; without it login is unavailable rather than unthrottled or a 500."""
    r = await no_redis.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert_unavailable(r)


# --- PostgreSQL down ------------------------------------------------------------------------------


async def test_get_without_postgres_is_503(no_postgres: httpx.AsyncClient, settings: Settings) -> None:
    """Tokens are stateless, so a request is authenticated and then gets 503 (not 500) from the dead database."""
    headers = bearer(stateless_token(settings, uuid.uuid4()))
    for path in (f"/campaigns/{uuid.uuid4()}", "/campaigns", f"/campaigns/{uuid.uuid4()}/messages"):
        r, elapsed = await _timed(no_postgres.get(path, headers=headers))
        assert_unavailable(r)
        assert elapsed < FAST, path


async def test_create_without_postgres_is_503_and_queues_nothing(
    no_postgres: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """No transaction, no jobs: a job must never point at a batch that was not committed."""
    r, elapsed = await _timed(
        no_postgres.post("/campaigns", json=CREATE_BODY, headers=bearer(stateless_token(settings)))
    )
    assert_unavailable(r)
    assert elapsed < FAST
    assert await redis.zcard(settings.queue_name) == 0
    assert await redis.keys("arq:*") == []


@pytest.mark.parametrize("action", ["retry", "cancel"])
async def test_campaign_actions_without_postgres_are_503(
    no_postgres: httpx.AsyncClient, redis: Redis, settings: Settings, action: str
) -> None:
    """Retry and cancel need the database; without it they are 503 and queue nothing."""
    headers = bearer(stateless_token(settings))
    assert_unavailable(await no_postgres.post(f"/campaigns/{uuid.uuid4()}/{action}", headers=headers))
    assert await redis.zcard(settings.queue_name) == 0


async def test_ready_without_postgres_is_503_naming_postgres(no_postgres: httpx.AsyncClient) -> None:
    """Readiness reports PostgreSQL as the failed dependency."""
    r, elapsed = await _timed(no_postgres.get("/ready"))
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"].startswith("unavailable")
    assert body["checks"]["redis"] == "ok"
    assert elapsed < FAST


async def test_login_without_postgres_is_503(no_postgres: httpx.AsyncClient, redis: Redis) -> None:
    """An outage is not a wrong password: 503, and no failed attempt is counted against the admin."""
    r = await no_postgres.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert_unavailable(r)
    assert await redis.keys("notifq:login:*") == []


async def test_bad_token_still_401_without_postgres(no_postgres: httpx.AsyncClient) -> None:
    """Authentication does not touch the database, so a bad token is 401 even during an outage."""
    r = await no_postgres.get(f"/campaigns/{uuid.uuid4()}", headers=bearer("not.a.token"))
    assert_error(r, 401, "unauthorized")


async def test_a_full_pool_is_a_503_and_ready_stays_green(settings: Settings, fast_auth: dict[str, str]) -> None:
    """Every pooled connection busy: requests wait `pool_timeout`, then 503 (not a 500); /ready is unaffected."""
    async with app_and_client(settings) as (app, c):
        await app.state.engine.dispose()
        app.state.engine = small = create_engine(settings.database_url or "", pool_size=1, pool_timeout=0.5)
        app.state.campaigns.engine = app.state.campaigns.reads = app.state.campaigns.replica = small
        try:
            async with small.connect():
                r, took = await _timed(c.get("/campaigns", headers=fast_auth))
                assert_unavailable(r)
                assert took < FAST
                assert (await c.get("/ready")).status_code == 200
        finally:  # even when an assertion fails: an undisposed pool's connection warns in a later test
            await small.dispose()
