"""GET /workers/history and GET /overview: the series real workers write with their heartbeats and metrics."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from notifq.keys import RedisKeys
from notifq.settings import Settings
from notifq.telemetry import HISTORY_SECONDS, SERIES_STEP_SECONDS, rate_sample
from tests.api.support import assert_error, create_campaign
from tests.conftest import wait_for
from tests.harness import finished_campaign, running_worker

KEYS = RedisKeys.for_prefix("notifq")


async def _get(client: httpx.AsyncClient, auth: dict[str, str], path: str) -> dict[str, Any]:
    r = await client.get(path, headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


# --- workers' history ---------------------------------------------------------------------------


async def test_a_workers_rate_history_outlives_the_worker(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, redis: Redis
) -> None:
    assert await _get(client, fast_auth, "/workers/history") == {"bucketSeconds": 10, "workers": []}
    campaign = await create_campaign(client, fast_auth, name="busy", recipientCount=400)
    async with running_worker(settings.with_(rate_limit=200.0)) as worker:
        assert worker.deps
        worker_id, host = worker.deps.metrics.id, worker.deps.metrics.host
        await wait_for(lambda: finished_campaign(client, fast_auth, campaign["id"]), within=30)

        async def busy_seconds() -> dict[str, Any] | None:
            body = await _get(client, fast_auth, "/workers/history?minutes=5")
            (series,) = body["workers"]
            return body if sum(p["ratePerSecond"] > 0 for p in series["points"]) >= 2 else None

        during = await wait_for(busy_seconds, within=10)
    assert during["bucketSeconds"] == 1
    (series,) = during["workers"]
    assert (series["id"], series["host"], series["live"]) == (worker_id, host, True)
    assert set(series["points"][0]) == {"at", "ratePerSecond"}
    ats = [_epoch(p["at"]) for p in series["points"]]
    assert ats == sorted(ats) and len(set(ats)) == len(ats) and all(at == int(at) for at in ats)
    assert max(p["ratePerSecond"] for p in series["points"]) <= 200 * 1.5  # the rate limit, with the window's slack

    # Stopped (gracefully: it leaves /workers at once), its last hour is still there.
    after = await _get(client, fast_auth, "/workers/history?minutes=5")
    (stopped,) = after["workers"]
    assert (stopped["id"], stopped["live"]) == (worker_id, False)
    assert stopped["points"][: len(series["points"])] == series["points"]
    assert 0 < await redis.ttl(KEYS.history(worker_id)) <= HISTORY_SECONDS
    # Once its series expires (an hour after its last beat) it is forgotten.
    await redis.delete(KEYS.history(worker_id))
    assert (await _get(client, fast_auth, "/workers/history"))["workers"] == []
    assert await redis.hgetall(KEYS.history_hosts) == {}


async def test_history_is_averaged_into_at_most_360_buckets_and_trimmed_to_the_hour(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, redis: Redis
) -> None:
    now = time.time()
    # An hour and a half of samples, one per second, rate = the second's position in its 10 s bucket.
    old_id = "elsewhere-1-abcdef"
    samples: dict[str, float] = {}
    for second in range(int(now) - 5400, int(now)):
        samples.update(rate_sample(second, second % 10))
    await redis.zadd(KEYS.history(old_id), samples)
    await redis.hset(KEYS.history_hosts, old_id, "elsewhere")
    await redis.expire(KEYS.history(old_id), 60)
    body = await _get(client, fast_auth, "/workers/history?minutes=60")
    assert body["bucketSeconds"] == 10
    (series,) = body["workers"]
    assert (series["host"], series["live"]) == ("elsewhere", False)
    points = series["points"]
    assert 355 <= len(points) <= 360
    assert _epoch(points[0]["at"]) > now - 3600
    assert all(p["ratePerSecond"] == 4.5 for p in points[:-1])  # the mean of 0..9; the last bucket is partial

    # A live worker's own beats trim its series to the last hour.
    async with running_worker(settings) as worker:
        assert worker.deps
        key = KEYS.history(worker.deps.metrics.id)
        await redis.zadd(key, rate_sample(now - HISTORY_SECONDS - 60, 1.0))

        async def trimmed() -> bool:
            return bool(await redis.zcount(key, "-inf", now - HISTORY_SECONDS) == 0 and await redis.zcard(key) > 0)

        await wait_for(trimmed, within=5)
        listed = await _get(client, fast_auth, "/workers/history?minutes=5")
        assert {(w["host"], w["live"]) for w in listed["workers"]} == {("elsewhere", False),
                                                                       (worker.deps.metrics.host, True)}  # fmt: skip


# --- overview -----------------------------------------------------------------------------------


async def test_overview_counts_outcomes_over_time_from_every_worker_once(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    campaign = await create_campaign(client, fast_auth, name="flaky", recipientCount=600)
    single = await client.post("/notifications", json={"channel": "sms", "to": "+15550001234", "body": "hi"},
                               headers=fast_auth)  # fmt: skip
    assert single.status_code == 202
    flaky = settings.with_(mock_failure_rate=0.3, max_attempts=2, retry_delays=(0.1,))
    async with running_worker(flaky) as first, running_worker(flaky) as second:
        await wait_for(lambda: finished_campaign(client, fast_auth, campaign["id"]), within=60)
        assert first.deps and second.deps
        workers = (first.deps.metrics, second.deps.metrics)

        async def published() -> dict[str, Any] | None:
            body = await _get(client, fast_auth, "/overview?minutes=5")
            sent = sum(p["sent"] for p in body["points"])
            return body if sent == sum(m.totals["sent"] for m in workers) else None

        body = await wait_for(published, within=10)
    stats = await _get(client, fast_auth, "/stats")
    assert body["totals"] == {"byChannel": stats["byChannel"], "byStatus": stats["byStatus"]}
    assert sum(body["totals"]["byChannel"]["sms"].values()) == 1
    assert body["bucketSeconds"] == SERIES_STEP_SECONDS and len(body["points"]) == 30
    assert set(body["points"][0]) == {"at", "sent", "failed", "retried"}
    sums = {k: sum(p[k] for p in body["points"]) for k in ("sent", "failed", "retried")}
    # Both workers wrote into the same buckets; each increment counted once: the series equals the counters.
    assert sums == {k: sum(m.totals[k] for m in workers) for k in ("sent", "failed", "retried")}
    assert sums["sent"] + sums["failed"] == 601 and sums["retried"] > 0
    ats = [_epoch(p["at"]) for p in body["points"]]
    assert ats == sorted(ats) and all(b - a == SERIES_STEP_SECONDS for a, b in itertools.pairwise(ats))
    assert ats[-1] <= time.time() < ats[-1] + SERIES_STEP_SECONDS + 5


async def test_a_day_of_overview_is_360_buckets(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    body = await _get(client, fast_auth, "/overview?minutes=1440")
    assert body["bucketSeconds"] == 240 and len(body["points"]) == 360
    assert body["totals"] == {"byChannel": {}, "byStatus": {}}
    assert all((p["sent"], p["failed"], p["retried"]) == (0, 0, 0) for p in body["points"])
    assert datetime.fromisoformat(body["points"][0]["at"]).tzinfo == UTC


@pytest.mark.parametrize("path", ["/workers/history", "/overview"])
@pytest.mark.parametrize("minutes", ["0", "-1", "x", "", "1e2", "99999"])
async def test_bad_minutes_is_422(
    client: httpx.AsyncClient, fast_auth: dict[str, str], path: str, minutes: str
) -> None:
    error = assert_error(await client.get(f"{path}?minutes={minutes}", headers=fast_auth), 422, "validation_error")
    assert error["details"]["field"] == "minutes"


async def test_the_workers_history_goes_back_an_hour_at_most(
    client: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    assert_error(await client.get("/workers/history?minutes=61", headers=fast_auth), 422, "validation_error")
    assert (await client.get("/overview?minutes=61", headers=fast_auth)).status_code == 200


async def test_history_needs_a_token(client: httpx.AsyncClient) -> None:
    for path in ("/workers/history", "/overview"):
        assert_error(await client.get(path), 401, "unauthorized")
