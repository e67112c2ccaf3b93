"""GET /providers: outcomes, error rate and latency quantiles per provider, from what real workers publish."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.keys import RedisKeys
from notifq.settings import Settings
from notifq.telemetry import LATENCY_BUCKETS, bucket_field, count_field, histogram_quantile
from tests.api.support import assert_error, create_campaign
from tests.conftest import wait_for
from tests.harness import finished_campaign, running_worker, status_counts

KEYS = RedisKeys.for_prefix("notifq")


async def _providers(client: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, object]]:
    r = await client.get("/providers", headers=auth)
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


async def test_providers_counts_what_the_workers_recorded(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    assert await _providers(client, fast_auth) == []
    campaign = await create_campaign(client, fast_auth, name="flaky", recipientCount=300)
    async with running_worker(settings.with_(mock_failure_rate=0.3, max_attempts=2, retry_delays=(0.1,))) as worker:
        await wait_for(lambda: finished_campaign(client, fast_auth, campaign["id"]), within=60)
        assert worker.deps
        totals = worker.deps.metrics.totals

        async def published() -> list[dict[str, object]] | None:
            items = await _providers(client, fast_auth)
            return items if items and items[0]["sent"] == totals["sent"] else None

        (mock,) = await wait_for(published, within=5)
    counts = await status_counts(engine, campaign["id"])
    assert set(mock) == {"channel", "provider", "sent", "failed", "retried", "throttled", "deferred", "errorRate",
                         "latency"}  # fmt: skip
    assert (mock["channel"], mock["provider"]) == ("email", "mock")
    assert (mock["sent"], mock["failed"], mock["throttled"], mock["deferred"]) == (
        counts["sent"],
        counts["failed"],
        0,
        0,
    )
    retried = mock["retried"]
    assert isinstance(retried, int) and retried >= counts["failed"] > 0
    attempts = counts["sent"] + counts["failed"] + retried
    assert mock["errorRate"] == round((counts["failed"] + retried) / attempts, 4)
    latency = mock["latency"]
    assert isinstance(latency, dict) and latency["count"] == attempts
    # The mock answers at once: every quantile lies in the first bucket (0 to 1 ms).
    assert 0 <= latency["p50Seconds"] <= latency["p95Seconds"] <= latency["p99Seconds"] <= LATENCY_BUCKETS[0]


async def test_quantiles_are_interpolated_within_the_buckets(
    client: httpx.AsyncClient, fast_auth: dict[str, str], redis: Redis
) -> None:
    # 50 calls in (5 ms, 10 ms], 50 in (10 ms, 25 ms]; an sms provider with outcomes but no calls yet.
    await redis.hset(KEYS.metrics, mapping={
        bucket_field("email", "smtp", 3): 50, bucket_field("email", "smtp", 4): 50,
        count_field("sent", "email", "smtp"): 90, count_field("retried", "email", "smtp"): 10,
        count_field("deferred", "sms", "sns"): 4,
    })  # fmt: skip
    smtp, sns = await _providers(client, fast_auth)
    assert smtp == {
        "channel": "email", "provider": "smtp", "sent": 90, "failed": 0, "retried": 10, "throttled": 0,
        "deferred": 0, "errorRate": 0.1,
        "latency": {"count": 100, "p50Seconds": 0.01, "p95Seconds": 0.0235, "p99Seconds": 0.0247},
    }  # fmt: skip
    assert sns == {
        "channel": "sms", "provider": "sns", "sent": 0, "failed": 0, "retried": 0, "throttled": 0, "deferred": 4,
        "errorRate": 0.0, "latency": {"count": 0, "p50Seconds": None, "p95Seconds": None, "p99Seconds": None},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([10] + [0] * len(LATENCY_BUCKETS), 0.5, 0.0005),  # the first bucket starts at 0
        ([0] * len(LATENCY_BUCKETS) + [3], 0.99, LATENCY_BUCKETS[-1]),  # above the last bound: that bound
        ([1, 0, 0, 1] + [0] * (len(LATENCY_BUCKETS) - 3), 1.0, 0.01),  # empty buckets in between are skipped
    ],
)
def test_histogram_quantile(counts: list[float], q: float, expected: float) -> None:
    assert histogram_quantile(q, counts) == pytest.approx(expected)


async def test_providers_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/providers"), 401, "unauthorized")
