"""GET /workers and GET /metrics against real workers (in-process and as killed subprocesses)."""

from __future__ import annotations

import signal
import socket
from collections import defaultdict

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.keys import RedisKeys
from notifq.settings import Settings
from notifq.telemetry import LIVENESS_SECONDS, live_workers, metric_counters
from notifq.worker.metrics import WorkerMetrics
from notifq.worker.rate_limit import RateLimiter
from tests.conftest import wait_for
from tests.harness import finished_campaign, running_worker, spawn_worker, status_counts, stop_process

KEYS = RedisKeys.for_prefix("notifq")


async def _workers(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, object]:
    r = await client.get("/workers", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_workers_lists_live_workers_and_forgets_stopped_ones(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    assert (await _workers(client, fast_auth))["workers"] == []
    async with running_worker(settings) as first, running_worker(settings) as second:
        assert first.deps and second.deps
        ids = {first.deps.metrics.id, second.deps.metrics.id}

        async def both_listed() -> dict[str, object] | None:
            body = await _workers(client, fast_auth)
            return body if {w["id"] for w in body["workers"]} == ids else None  # type: ignore[attr-defined]

        body = await wait_for(both_listed, within=5)
        worker = body["workers"][0]
        assert set(worker) == {"id", "host", "pid", "startedAt", "lastSeen", "ratePerSecond", "inFlight", "sent",
                               "failed", "retried"}  # fmt: skip
        assert set(body["queue"]) == {"bulkJobs", "transactionalJobs", "queuedMessages", "sendingMessages",
                                      "scheduledMessages"}  # fmt: skip

        r = await client.post("/campaigns", json={"name": "busy", "recipientCount": 300}, headers=fast_auth)
        campaign_id = r.json()["id"]
        await wait_for(lambda: finished_campaign(client, fast_auth, campaign_id), within=30)

        async def counted() -> int | None:
            workers = (await _workers(client, fast_auth))["workers"]
            total = sum(w["sent"] for w in workers)  # type: ignore[attr-defined]
            return total if total == 300 else None

        assert await wait_for(counted, within=5) == 300
    # A graceful stop says goodbye: both leave the list at once.
    assert (await _workers(client, fast_auth))["workers"] == []


async def test_a_killed_worker_disappears_within_the_liveness_window(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    proc = spawn_worker(settings)
    try:

        async def listed() -> list[object] | None:
            workers: list[dict[str, object]] = (await _workers(client, fast_auth))["workers"]  # type: ignore[assignment]
            return workers if any(w["pid"] == proc.pid for w in workers) else None

        await wait_for(listed, within=30)
    finally:
        stop_process(proc, signal.SIGKILL)

    async def gone() -> bool:
        workers: list[dict[str, object]] = (await _workers(client, fast_auth))["workers"]  # type: ignore[assignment]
        return not any(w["pid"] == proc.pid for w in workers)

    # Its hash expires LIVENESS_SECONDS after the last beat; the margin absorbs a loaded CI machine.
    await wait_for(gone, within=LIVENESS_SECONDS + 10)


async def test_workers_needs_a_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/workers")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_metrics_parse_as_prometheus_and_match_the_database(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    r = await client.post("/campaigns", json={"name": "metered", "recipientCount": 400}, headers=fast_auth)
    campaign_id = r.json()["id"]
    # Every first attempt fails about 30% of the time; two attempts, so some fail for good.
    async with running_worker(settings.with_(mock_failure_rate=0.3, max_attempts=2, retry_delays=(0.2,))) as worker:
        await wait_for(lambda: finished_campaign(client, fast_auth, campaign_id), within=30)
        assert worker.deps
        metrics = worker.deps.metrics

        async def published() -> bool:  # the heartbeat publishes once a second
            body = (await client.get("/metrics")).text
            return f'notifq_messages_sent_total{{channel="email",provider="mock"}} {metrics.totals["sent"]}.0' in body

        await wait_for(published, within=5)
        r = await client.get("/metrics")  # public, like /health: scrapers carry no token
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in families.values():
        for sample in family.samples:
            values[sample.name][tuple(sorted(sample.labels.items()))] = sample.value

    counts = await status_counts(engine, campaign_id)
    mock = (("channel", "email"), ("provider", "mock"))
    assert values["notifq_messages_sent_total"][mock] == counts["sent"]
    assert values["notifq_messages_failed_total"][mock] == counts["failed"] > 0
    # Every failure of a first attempt was retried once.
    retried = values["notifq_messages_retried_total"][mock]
    assert retried >= counts["failed"]
    attempts = counts["sent"] + counts["failed"] + retried
    assert families["notifq_provider_latency_seconds"].type == "histogram"
    assert values["notifq_provider_latency_seconds_count"][mock] == attempts
    assert values["notifq_provider_latency_seconds_bucket"][tuple(sorted((*mock, ("le", "+Inf"))))] == attempts
    assert values["notifq_messages"][(("channel", "email"), ("status", "sent"))] == counts["sent"]
    assert values["notifq_queue_depth"][()] == 0
    assert values["notifq_in_flight"][()] == 0
    assert set(values["notifq_queue_jobs"]) == {(("lane", "bulk"),), (("lane", "transactional"),)}
    assert "notifq_rate_limit_waits_total" in values and "notifq_rate_limit_wait_seconds_total" in values


async def test_rate_limit_waits_are_counted(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    r = await client.post("/campaigns", json={"name": "slow", "recipientCount": 60}, headers=fast_auth)
    campaign_id = r.json()["id"]
    async with running_worker(settings.with_(rate_limit=40.0)):
        await wait_for(lambda: finished_campaign(client, fast_auth, campaign_id), within=30)

        async def waits() -> float | None:
            """The waited seconds once past 0.5: a worker publishes its counters with its heartbeat, so the
            campaign's last waits may reach /metrics a beat after it finishes (an early read is partial)."""
            for family in text_string_to_metric_families((await client.get("/metrics")).text):
                for sample in family.samples:
                    if sample.name == "notifq_rate_limit_wait_seconds_total" and sample.value > 0.5:
                        return sample.value
            return None

        waited = await wait_for(waits, within=5)
    assert 0.5 < waited < 10  # 60 messages at 40/s with a 10-message burst: about 1.25 s of waiting


async def test_counters_survive_a_failed_publish(redis: Redis) -> None:
    """A heartbeat that cannot reach Redis keeps its increments for the next one: nothing is lost."""
    metrics = WorkerMetrics()
    limiter = RateLimiter(0)
    metrics.outcome("sent", "sms", "sns")
    metrics.latency("sms", "sns", 0.003)
    unreachable = Redis(host="127.0.0.1", port=_closed_port(), socket_connect_timeout=0.5)
    try:
        with pytest.raises(RedisConnectionError):
            await metrics.publish(unreachable, KEYS, limiter)
    finally:
        await unreachable.aclose()
    metrics.outcome("sent", "sms", "sns")
    await metrics.publish(redis, KEYS, limiter)
    counters = await metric_counters(redis, KEYS)
    assert counters["count|sent|sms|sns"] == 2
    assert counters["bucket|sms|sns|2"] == 1  # 3 ms falls in the (2.5 ms, 5 ms] bucket
    assert counters["latency_sum|sms|sns"] == pytest.approx(0.003)
    assert [b.id for b in await live_workers(redis, KEYS)] == [metrics.id]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
