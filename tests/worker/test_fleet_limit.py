"""Fleet-wide provider limits (worker/fleet_limit.py): the Lua script's arithmetic on a fake clock against real
Redis, a worker's gate (single flight, grants given back, Redis away), three worker processes sharing one
rate, and the back-off on a throttling answer (FCM 429 with Retry-After) and its recovery."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.keys import RedisKeys
from notifq.settings import Settings
from notifq.telemetry import FleetLimit, provider_limits
from notifq.worker import fleet_limit
from notifq.worker.fleet_limit import FleetLimits, FleetScript, Limit
from tests.conftest import wait_for
from tests.fcm_server import FakeFcmServer
from tests.harness import get_json, running_worker, spawn_worker, stop_process
from tests.smtp_server import SmtpTestServer, free_port

LIMIT = Limit("ses", 100.0, 10.0)
RECOVERY = 30.0


@pytest.fixture
def keys(settings: Settings) -> RedisKeys:
    return RedisKeys.from_settings(settings)


@pytest.fixture
def script(redis: Redis, keys: RedisKeys) -> FleetScript:
    return FleetScript(redis, keys, RECOVERY)


async def _limits(redis: Redis, keys: RedisKeys, provider: str = "ses") -> FleetLimit:
    """What GET /workers shows for `provider` (configured at 100/s if no worker has used it yet)."""
    (state,) = await provider_limits(redis, keys, {provider: (100.0, 0.0)}, (provider,))
    return state


# --- the script's arithmetic (a fake clock: `now` stands in for Redis' TIME) ----------------------------


async def test_grants_up_to_the_burst_then_says_how_long_to_wait(script: FleetScript) -> None:
    assert (await script.take(LIMIT, 5, now=1000.0)).granted == 5
    assert (await script.take(LIMIT, 10, now=1000.0)).granted == 5  # what is left of the burst of 10
    empty = await script.take(LIMIT, 10, now=1000.0)
    assert empty.granted == 0 and empty.wait == pytest.approx(0.1)  # 10 tokens at 100/s
    assert (await script.take(LIMIT, 1, now=1000.0)).wait == pytest.approx(0.01)
    assert (await script.take(LIMIT, 10, now=1000.05)).granted == 5  # 50 ms later: 5 more


async def test_over_time_grants_never_exceed_the_rate_plus_the_burst(script: FleetScript) -> None:
    """Random callers asking for random amounts for 10 (fake) seconds: the rate holds, and is used."""
    rng = random.Random(7)
    now, granted = 1000.0, 0
    while now < 1010.0:
        granted += (await script.take(LIMIT, rng.randint(1, 8), now=now)).granted
        now += rng.uniform(0.0, 0.02)
    assert granted <= LIMIT.rate * 10 + LIMIT.burst
    assert granted >= LIMIT.rate * 10 * 0.97


async def test_tokens_given_back_can_be_granted_again(script: FleetScript) -> None:
    assert (await script.take(LIMIT, 10, now=1000.0)).granted == 10
    assert (await script.take(LIMIT, 10, now=1000.0)).granted == 0
    assert (await script.take(LIMIT, 10, given_back=4, now=1000.0)).granted == 4


async def test_a_retry_after_holds_the_provider_for_the_whole_fleet(script: FleetScript) -> None:
    held = await script.throttle(LIMIT, 3.0, now=1000.0)
    assert held.held == pytest.approx(3.0)
    answer = await script.take(LIMIT, 5, now=1001.0)
    assert answer.granted == 0 and answer.wait == pytest.approx(2.0) and answer.held == pytest.approx(2.0)
    assert (await script.take(LIMIT, 5, now=1003.01)).granted == 5


async def test_a_burst_of_throttling_answers_halves_the_rate_once_a_second_down_to_the_floor(
    script: FleetScript,
) -> None:
    cuts = [(await script.throttle(LIMIT, 0, now=1000.0)).granted for _ in range(100)]
    assert cuts.count(1) == 1  # 100 answers in one burst: one halving
    assert (await script.take(LIMIT, 0, now=1000.0)).rate == pytest.approx(50.0)
    assert (await script.throttle(LIMIT, 0, now=1000.5)).granted == 0  # within the second: no second cut
    assert (await script.throttle(LIMIT, 0, now=1001.0)).rate == pytest.approx((50 + 100 / 60) / 2)
    for second in range(1002, 1012):
        await script.throttle(LIMIT, 0, now=float(second))
    assert (await script.take(LIMIT, 0, now=1011.0)).rate == pytest.approx(LIMIT.rate * fleet_limit.FLOOR_SHARE)


async def test_the_rate_recovers_linearly_to_the_limit(script: FleetScript) -> None:
    await script.throttle(LIMIT, 0, now=1000.0)
    assert (await script.take(LIMIT, 0, now=1000.0 + RECOVERY / 2)).rate == pytest.approx(75.0)
    assert (await script.take(LIMIT, 0, now=1000.0 + RECOVERY)).rate == pytest.approx(100.0)
    assert (await script.take(LIMIT, 0, now=1000.0 + 2 * RECOVERY)).rate == pytest.approx(100.0)
    # While the rate is down, grants follow it: 10 (fake) seconds at 50/s after the burst.
    await script.throttle(LIMIT, 0, now=2000.0)
    slow = Limit("ses", 100.0, 10.0)
    granted, now = 0, 2000.0
    while now < 2001.0:
        granted += (await script.take(slow, 5, now=now)).granted
        now += 0.005
    assert granted <= 50 * 1.05 + 10 and granted >= 50 * 0.9


async def test_concurrent_callers_on_redis_time_never_exceed_the_rate(script: FleetScript) -> None:
    """Twenty callers on Redis' own clock, each asking again after the wait it was told, for ~1.5 s."""
    limit = Limit("fcm", 200.0, 10.0)
    granted = 0
    started = time.monotonic()

    async def caller() -> None:
        nonlocal granted
        while time.monotonic() - started < 1.5:
            answer = await script.take(limit, 5)
            granted += answer.granted
            if not answer.granted:
                await asyncio.sleep(answer.wait)

    await asyncio.gather(*(caller() for _ in range(20)))
    elapsed = time.monotonic() - started
    assert granted <= limit.rate * elapsed + limit.burst
    assert granted >= limit.rate * elapsed * 0.8


async def test_the_api_reads_what_the_script_keeps(script: FleetScript, redis: Redis, keys: RedisKeys) -> None:
    """Written 3 s ago on the fake clock, read now on Redis' clock: the measured rate, the back-off, the hold."""
    (seconds, _) = await redis.time()
    then = float(seconds) - 3.0
    assert (await script.take(LIMIT, 10, now=then)).granted == 10
    assert (await script.take(LIMIT, 10, now=then + 0.5)).granted == 10
    await script.throttle(LIMIT, 60.0, now=then + 0.6)
    state = await _limits(redis, keys)
    assert state.limit == 100 and state.burst == 10 and state.throttles == 1
    assert state.current == pytest.approx(20 / 5)  # 20 tokens in the last 5 whole seconds
    elapsed = float((await redis.time())[0]) - (then + 0.6)
    assert state.effective == pytest.approx(min(100, 50 + 100 / 60 * elapsed), abs=2)
    assert state.held_until == pytest.approx(then + 60.6, abs=0.01)
    configured = await provider_limits(redis, keys, {"sns": (20.0, 0.0)}, ("sns", "smtp"))
    assert [(s.provider, s.limit, s.burst, s.current) for s in configured] == [("sns", 20.0, 4.0, 0.0)]


async def test_workers_and_metrics_show_the_fleet_limits(
    client: httpx.AsyncClient, auth: dict[str, str], script: FleetScript
) -> None:
    ses = Limit("ses", 14.0, 2.8)
    await script.take(ses, 2)
    await script.throttle(ses, 30.0)
    (shown,) = (await get_json(client, auth, "/workers"))["providerLimits"]
    assert shown["provider"] == "ses" and shown["limitPerSecond"] == 14 and shown["burst"] == 2.8
    assert 7 <= shown["effectivePerSecond"] < 7.5 and shown["heldUntil"] and shown["throttledAt"]
    assert shown["throttleReports"] == 1 and shown["currentPerSecond"] >= 0
    metrics = (await client.get("/metrics")).text
    assert 'notifq_provider_rate_limit{provider="ses"} 14.0' in metrics
    assert 'notifq_provider_rate_effective{provider="ses"} 7.' in metrics
    assert 'notifq_provider_rate_current{provider="ses"}' in metrics


# --- a worker's gate ----------------------------------------------------------------------------


def _fleet(settings: Settings, redis: Redis, rate: float, burst: float = 0.0) -> FleetLimits:
    return FleetLimits(settings.with_(provider_rates=(("mock", rate, burst),)), redis,
                       RedisKeys.from_settings(settings))  # fmt: skip


async def test_concurrent_sends_share_one_refill_in_flight(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = _fleet(settings, redis, 1000.0)
    calls: list[int] = []
    real = FleetScript.take

    async def counted(self: FleetScript, limit: Limit, want: int, given_back: int = 0, now: float | None = None
                      ) -> Any:  # fmt: skip
        calls.append(want)
        return await real(self, limit, want, given_back, now)

    monkeypatch.setattr(FleetScript, "take", counted)
    waits = await asyncio.gather(*(fleet.take("mock") for _ in range(200)))
    assert waits == [0.0] * 200
    assert 4 <= len(calls) <= 10 and max(calls) == 50  # grants of 50 ms of 1,000/s, not one call per send
    assert await fleet.take("ses") == 0.0 and not fleet.limited("ses")  # not listed: not limited
    await fleet.aclose()


async def test_an_unspent_grant_is_given_back(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_limit, "GRANT_TTL_SECONDS", 0.05)
    fleet = _fleet(settings, redis, 100.0, 20.0)
    gate = fleet.gates["mock"]
    waits = await asyncio.gather(*(fleet.take("mock") for _ in range(5)))  # one grant of 5
    assert waits == [0.0] * 5
    gate._tokens += 3  # as if a grant of 8 had left 3 unspent
    await asyncio.sleep(0.1)
    assert await fleet.take("mock") == 0.0  # the 3 expired: they went back with the next call
    assert gate._tokens == 0 and gate._given_back == 0
    raw = await redis.hgetall(RedisKeys.from_settings(settings).fleet_limit("mock"))
    counted = sum(int(v) for k, v in raw.items() if k.decode()[0] == "c" and k.decode()[1:].isdigit())
    assert counted == 5 - 3 + 1  # the measured sends: granted, net of what came back
    await fleet.aclose()


async def test_without_redis_a_worker_limits_alone_and_says_so(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="notifq")
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    fleet = _fleet(settings, nowhere, 100.0, 10.0)
    started = time.monotonic()
    waits = await asyncio.gather(*(fleet.take("mock") for _ in range(30)))
    elapsed = time.monotonic() - started
    assert waits == [0.0] * 30
    assert 0.15 <= elapsed < 1.5  # 10 at once (the burst), 20 more at 100/s
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "limits mock to 100/s on its own" in warnings[0], warnings
    await fleet.aclose()
    await nowhere.aclose()


async def test_claims_follow_the_fleet_rate_while_a_limited_provider_is_in_use(
    settings: Settings, redis: Redis
) -> None:
    fleet = _fleet(settings, redis, 400.0)
    assert fleet.claim_cap(8) == 400 * fleet_limit.CLAIM_HORIZON_SECONDS / 8
    assert FleetLimits(settings, redis, RedisKeys.from_settings(settings)).claim_cap(8) is None  # nothing limited
    await fleet.aclose()


# --- three worker processes share one rate ------------------------------------------------------------

RATE = 200.0
WINDOW_SECONDS = 20.0


async def _sent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM messages WHERE status = 'sent'"))).scalar_one())


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_three_worker_processes_share_one_rate(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """The per-worker limit off, the mock at 0 ms: unlimited, three workers send thousands a second; with
    NOTIFQ_PROVIDER_RATES=mock=200 the fleet's rate, counted in PostgreSQL over 20 s, is 200/s (± 15 %)."""
    n = int(RATE * (WINDOW_SECONDS + 15))
    r = await client.post("/campaigns", headers=auth, json={"name": "fleet", "subject": "Hi", "body": "Hello",
                                                            "recipientCount": n})  # fmt: skip
    assert r.status_code == 202, r.text
    fleet = settings.with_(provider_rates=(("mock", RATE, 0.0),), rate_limit=0, lease_seconds=20.0)
    workers = [spawn_worker(fleet) for _ in range(3)]
    try:
        await wait_for(lambda: _sent(engine), within=30)
        await asyncio.sleep(3)  # past the start: every worker runs
        first, started = await _sent(engine), time.monotonic()
        await asyncio.sleep(WINDOW_SECONDS)
        last, elapsed = await _sent(engine), time.monotonic() - started
    finally:
        outputs = [stop_process(w) for w in workers]
    rate = (last - first) / elapsed
    assert last < n, "the campaign ran out before the window ended"
    assert RATE * 0.85 <= rate <= RATE * 1.15, (rate, outputs[0][-2000:])


# --- a throttling answer backs the fleet off, then it recovers ------------------------------------------


async def test_a_429_with_retry_after_holds_and_halves_the_fleet_rate_which_then_recovers(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis,
    keys: RedisKeys, fcm_server: FakeFcmServer,
) -> None:  # fmt: skip
    """FCM answers the first five sends 429 with Retry-After: 1. The fleet holds FCM for the second, halves
    its rate once (not five times), and climbs back to the limit over NOTIFQ_PROVIDER_RECOVERY_SECONDS;
    every push is sent in the end."""
    fcm_server.fail_next(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", retry_after="1", times=5)
    push = settings.with_(push_provider="fcm", fcm_credentials_file=str(fcm_server.credentials_file),
                          fcm_endpoint_url=fcm_server.url, provider_rates=(("fcm", 100.0, 0.0),),
                          provider_recovery_seconds=4.0)  # fmt: skip
    async with running_worker(push):
        r = await client.post(
            "/notifications",
            headers=auth,
            json=[{"channel": "push", "to": f"device-{i}", "body": "hi"} for i in range(40)],
        )
        assert r.status_code == 202, r.text

        async def throttled() -> FleetLimit | None:
            state = await _limits(redis, keys, "fcm")
            return state if state.throttles else None

        state = await wait_for(throttled, within=10, interval=0.02)
        assert state.held_until is not None
        assert 50 <= state.effective <= 65  # halved once, climbing back by 12.5/s
        await asyncio.sleep(0.5)
        later = await _limits(redis, keys, "fcm")
        assert later.effective > state.effective  # climbing back (no further cut: the answers came at once)

        async def recovered() -> bool:
            return (await _limits(redis, keys, "fcm")).effective == 100

        await wait_for(recovered, within=10)

        async def all_sent() -> bool:
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT status, count(*) FROM messages GROUP BY 1"))).all()
            return {status: n for status, n in rows} == {"sent": 40}

        await wait_for(all_sent, within=20)
    assert len(fcm_server.sent) == 40


async def test_a_454_maximum_sending_rate_exceeded_backs_the_fleet_off(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis,
    keys: RedisKeys, smtp_server: SmtpTestServer,
) -> None:  # fmt: skip
    """SES's SMTP interface answers `454 Throttling failure: Maximum sending rate exceeded` past the account's
    rate: the fleet's rate for the provider halves once for the burst of such answers, the messages wait with
    their attempt given back, and every one is sent once the rate has recovered."""
    smtp_server.reply_next("RCPT", "454 4.7.0 Throttling failure: Maximum sending rate exceeded.", times=6)
    mail = settings.with_(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                          smtp_security="none", provider_rates=(("smtp", 100.0, 0.0),),
                          provider_recovery_seconds=4.0)  # fmt: skip
    async with running_worker(mail):
        r = await client.post("/notifications", headers=auth,
                              json=[{"to": f"user{i}@bank.test", "body": "hi"} for i in range(30)])  # fmt: skip
        assert r.status_code == 202, r.text

        async def throttled() -> FleetLimit | None:
            state = await _limits(redis, keys, "smtp")
            return state if state.throttles else None

        state = await wait_for(throttled, within=10, interval=0.02)
        assert 50 <= state.effective <= 65, state  # halved once, not six times

        async def all_sent() -> bool:
            async with engine.connect() as conn:
                query = text("SELECT status, attempts, count(*) FROM messages GROUP BY 1, 2")
                rows = (await conn.execute(query)).all()
            return {(status, attempts) for status, attempts, _ in rows} == {("sent", 1)}

        await wait_for(all_sent, within=30)
    assert len(smtp_server.received) == 30
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM message_events WHERE event = 'throttled'")
        throttled_events = (await conn.execute(query)).scalar_one()
    assert throttled_events == 6
