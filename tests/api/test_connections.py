"""The single-send hot path's shortcuts keep their promises.

The API skips SQLAlchemy's pre-ping (a pooled connection the server closed is swapped at
checkout for free) and skips a Redis PING while Redis answered within the last second.
These tests pin what that may and may not cost: a server-side disconnect costs no request,
and a Redis outage costs at most the sends already committed, which the reconciler enqueues.
"""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.api.app import create_app
from notifq.queue import lane_queue
from notifq.settings import Settings
from tests.api.support import assert_error, row_counts
from tests.conftest import wait_for

OTP = {"channel": "sms", "to": "+15550001111", "body": "Your code is 123456"}


async def _api_sessions(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = 'notifq-api' AND pid <> pg_backend_pid()")
        )
        return [r.pid for r in rows]


async def test_connections_closed_by_the_server_are_replaced_without_failing_a_request(
    settings: Settings, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifq.test") as c:
            keyed = {**fast_auth, "Idempotency-Key": "first-keyed-send"}
            assert (await c.post("/notifications", json=OTP, headers=fast_auth)).status_code == 202
            assert (await c.post("/notifications", json=OTP, headers=keyed)).status_code == 202
            pids = await _api_sessions(engine)
            assert len(pids) >= 2  # the autocommit pool (the send) and the transactional one (the keyed send)
            async with engine.connect() as conn:  # what a server restart or an idle timeout does to them
                await conn.execute(text("SELECT pg_terminate_backend(p) FROM unnest(CAST(:p AS int[])) p"), {"p": pids})
            await wait_for(lambda: _no_sessions(engine))
            await asyncio.sleep(0.05)  # the API's loop reads the servers' goodbyes

            sent = await c.post("/notifications", json=OTP, headers=fast_auth)
            sent_keyed = await c.post("/notifications", json=OTP, headers={**fast_auth, "Idempotency-Key": "second"})
            listed = await c.get("/campaigns", headers=fast_auth)
    assert sent.status_code == 202, sent.text
    assert sent_keyed.status_code == 202, sent_keyed.text
    assert listed.status_code == 200, listed.text
    assert await row_counts(engine) == (0, 4)


async def _no_sessions(engine: AsyncEngine) -> bool:
    return not await _api_sessions(engine)


async def test_a_redis_outage_costs_at_most_sends_the_reconciler_will_enqueue(
    settings: Settings, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis
) -> None:
    """Redis answered < 1 s ago: the send is committed (202) though its enqueue fails; the next one is a 503."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifq.test") as c:
            first = await c.post("/notifications", json=OTP, headers=fast_auth)
            assert first.status_code == 202
            service = app.state.notifications
            healthy = service.redis
            service.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
            try:
                during = await c.post("/notifications", json=OTP, headers=fast_auth)
                after = await c.post("/notifications", json=OTP, headers=fast_auth)
            finally:
                await service.redis.aclose()
                service.redis = healthy
    assert during.status_code == 202, during.text
    assert_error(after, 503, "service_unavailable")
    assert await row_counts(engine) == (0, 2)  # the refused one wrote nothing
    async with engine.connect() as conn:
        status = (await conn.execute(text("SELECT status FROM messages WHERE id = :i"), {"i": int(during.json()["id"])}
                                     )).scalar_one()  # fmt: skip
    # Committed: the reconciler enqueues it (test_resilience.py::test_crash_between_commit_and_enqueue_is_repaired).
    assert status == "queued"
    assert await redis.zcard(lane_queue(settings.queue_name, "transactional")) == 1  # only the first one's job
