"""One count: /metrics, /stats and GET /workers report the same sent/failed figures as PostgreSQL.

Workers count the transitions their record statements applied, in one set of counters,
and publish the metrics hash, the per-second sent series and their heartbeats from it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import messages_repo
from notifq.settings import Settings
from notifq.vocabulary import Event, MessageStatus
from notifq.worker.metrics import WorkerMetrics, outcome_of
from tests.conftest import wait_for
from tests.harness import finished_campaign, get_json, post_json, running_worker


async def _postgres(engine: AsyncEngine, campaign_id: str) -> dict[str, int]:
    async with engine.connect() as conn:
        statuses = dict(
            (await conn.execute(
                text("SELECT status, count(*) FROM messages WHERE campaign_id = :c GROUP BY status"), {"c": campaign_id}
            )).all()
        )  # fmt: skip
        retries = (await conn.execute(
            text("SELECT count(*) FROM message_events WHERE event = :e"), {"e": Event.RETRY}
        )).scalar_one()  # fmt: skip
    return {"sent": statuses.get("sent", 0), "failed": statuses.get("failed", 0), "retried": retries}


async def _metrics(client: httpx.AsyncClient) -> dict[str, float]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            for outcome in ("sent", "failed", "retried"):
                if sample.name == f"notifq_messages_{outcome}_total":
                    totals[outcome] += sample.value
    return dict(totals)


async def _figures(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    workers = (await get_json(client, auth, "/workers"))["workers"]
    stats = await get_json(client, auth, "/stats")
    return {
        "metrics": await _metrics(client),
        "workers": {o: sum(w[o] for w in workers) for o in ("sent", "failed", "retried")},
        "stats": {"sent": stats["byStatus"].get("sent", 0), "failed": stats["byStatus"].get("failed", 0)},
        "sentLastMinute": stats["sentLastMinute"],
    }


async def test_metrics_stats_and_workers_agree_with_postgresql(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """Two workers, a mock provider that fails half the time, three attempts: some messages fail for good."""
    flaky = settings.with_(mock_failure_rate=0.5, max_attempts=3, retry_delays=(0.05,))
    campaign = await post_json(client, auth, "/campaigns", {"name": "counts", "recipientCount": 400})
    async with running_worker(flaky), running_worker(flaky):
        await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=60)
        expected = await _postgres(engine, campaign["id"])
        assert expected["failed"] > 0 and expected["sent"] > 0 and expected["retried"] > 0

        async def agreed() -> dict[str, Any] | None:  # heartbeats publish once a second
            figures = await _figures(client, auth)
            want = {
                "metrics": expected,
                "workers": expected,
                "stats": {"sent": expected["sent"], "failed": expected["failed"]},
                "sentLastMinute": expected["sent"],  # the campaign took well under a minute
            }
            return figures if figures == want else None

        try:
            await wait_for(agreed, within=10, interval=0.2)
        except AssertionError:
            raise AssertionError(f"PostgreSQL {expected}, published {await _figures(client, auth)}") from None


async def test_a_dead_workers_messages_failed_by_the_reconciler_are_counted_too(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """A worker died holding leases on its last attempt: the reconciler fails the messages (`lost`),
    and the worker whose reconciler did it counts them like any other failure."""
    campaign = await post_json(client, auth, "/campaigns", {"name": "lost", "recipientCount": 5})
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        (job,) = (await conn.execute(
            text("SELECT DISTINCT job_id FROM messages WHERE campaign_id = :c"), {"c": campaign["id"]}
        )).scalars().all()  # fmt: skip
        assert len(await messages_repo.claim(conn, job, 5, 0.1)) == 5  # the dead worker's claim
    async with running_worker(settings.with_(max_attempts=1)):
        await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=30)
        expected = {"sent": 0, "failed": 5, "retried": 0}
        assert await _postgres(engine, campaign["id"]) == expected

        async def agreed() -> bool:
            figures = await _figures(client, auth)
            return figures["metrics"].get("failed") == 5 and figures["workers"]["failed"] == 5

        await wait_for(agreed, within=10, interval=0.2)


def test_outcomes_are_named_from_what_was_recorded() -> None:
    assert outcome_of(MessageStatus.SENT, Event.SENT) == "sent"
    assert outcome_of(MessageStatus.FAILED, Event.LOST) == "failed"  # a lost worker's last attempt
    assert outcome_of(MessageStatus.QUEUED, Event.RETRY) == "retried"
    assert outcome_of(MessageStatus.QUEUED, Event.LOST) == "retried"
    assert outcome_of(MessageStatus.QUEUED, Event.THROTTLED) == "throttled"
    assert outcome_of(MessageStatus.QUEUED, Event.DEFERRED) == "deferred"
    metrics = WorkerMetrics()
    totals = metrics.recorded({("sent", "sent", "email", "mock"): 3, ("queued", "deferred", "sms", None): 2}, stale=1)
    assert totals == {"sent": 3, "deferred": 2}
    assert metrics.totals == {"sent": 3}  # the heartbeat's sent / failed / retried
    assert metrics.stale == 1
