"""The single-send hot path's shortcuts keep their promises.

The API skips SQLAlchemy's pre-ping (a pooled connection the server closed is swapped at
checkout for free) and writes a single send with one autocommit statement. These tests pin
what that may and may not cost: a server-side disconnect costs no request in any of the
API's three pools, Redis is still checked before anything is written, and a send whose
enqueue fails after its commit is answered 202 and delivered once the reconciler enqueues it.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq import notifications
from notifq.settings import Settings
from tests.api.support import app_and_client, app_client, assert_error, row_counts
from tests.conftest import wait_for
from tests.harness import running_worker

OTP = {"channel": "sms", "to": "+15550001111", "body": "Your code is 123456"}
POOLS = {"notifq-api", "notifq-api-send", "notifq-api-read"}


async def _api_sessions(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid, application_name AS app FROM pg_stat_activity "
                "WHERE application_name LIKE 'notifq-api%' AND pid <> pg_backend_pid()"
            )
        )
        return {r.pid: r.app for r in rows}


async def _no_sessions(engine: AsyncEngine) -> bool:
    return not await _api_sessions(engine)


async def test_connections_closed_by_the_server_are_replaced_without_failing_a_request(
    settings: Settings, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    async with app_client(settings) as c:

        async def one_of_each(key: str) -> list[httpx.Response]:
            return [
                await c.post("/notifications", json=OTP, headers=fast_auth),  # the send pool
                await c.post("/notifications", json=OTP, headers={**fast_auth, "Idempotency-Key": key}),
                await c.get("/campaigns", headers=fast_auth),  # the read pool
            ]

        assert [r.status_code for r in await one_of_each("first")] == [202, 202, 200]
        sessions = await _api_sessions(engine)
        assert set(sessions.values()) == POOLS
        async with engine.connect() as conn:  # what a server restart or an idle timeout does to them
            await conn.execute(
                text("SELECT pg_terminate_backend(p) FROM unnest(CAST(:p AS int[])) p"), {"p": list(sessions)}
            )
        await wait_for(lambda: _no_sessions(engine))
        await asyncio.sleep(0.05)  # the API's loop reads the servers' goodbyes

        after = await one_of_each("second")
        assert [r.status_code for r in after] == [202, 202, 200], [r.text for r in after]
        assert set((await _api_sessions(engine)).values()) == POOLS  # fresh ones, in every pool
    assert await row_counts(engine) == (0, 4)


async def test_redis_gone_after_a_send_makes_the_next_one_a_503_that_writes_nothing(
    settings: Settings, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    async with app_and_client(settings) as (app, c):
        assert (await c.post("/notifications", json=OTP, headers=fast_auth)).status_code == 202
        service = app.state.notifications
        healthy, service.redis = service.redis, Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
        try:
            refused = await c.post("/notifications", json=OTP, headers=fast_auth)
            bulk = await c.post("/notifications", json={**OTP, "priority": "bulk"}, headers=fast_auth)
        finally:
            await service.redis.aclose()
            service.redis = healthy
    assert_error(refused, 503, "service_unavailable")
    assert_error(bulk, 503, "service_unavailable")
    assert await row_counts(engine) == (0, 1)


async def test_a_send_whose_enqueue_fails_after_commit_is_delivered_by_the_reconciler(
    settings: Settings,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis answered the check, then failed the enqueue: 202 (committed), a warning, and the OTP is sent."""

    async def enqueue_fails(*args: object, **kwargs: object) -> int:
        raise ConnectionError("Redis went away between the check and the enqueue")

    async with app_client(settings) as c:
        with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, "notifq.api"):
            patch.setattr(notifications, "enqueue_batches", enqueue_fails)
            r = await c.post("/notifications", json=OTP, headers=fast_auth)
    assert r.status_code == 202, r.text
    assert any("failed after commit" in rec.getMessage() for rec in caplog.records)
    message_id = int(r.json()["id"])
    assert await redis.llen(f"{settings.queue_name}:transactional:ready") == 0  # nothing reached the queue

    assert await _status(engine, message_id) == "queued"
    async with running_worker(settings):  # its reconciler finds the batch without a job
        await wait_for(lambda: _is_sent(engine, message_id), within=30, interval=0.2)


async def _status(engine: AsyncEngine, message_id: int) -> str:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT status FROM messages WHERE id = :i"), {"i": message_id})
        return str(found.scalar_one())


async def _is_sent(engine: AsyncEngine, message_id: int) -> bool:
    return await _status(engine, message_id) == "sent"
