"""The whole flow against real PostgreSQL, Redis and arq workers."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests.conftest import wait_for
from tests.harness import assert_counters_match, campaign_row, running_worker, status_counts


async def test_campaign_is_delivered_and_counters_match_rows(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    r = await client.post("/campaigns", json={"name": "Launch", "recipientCount": 1200}, headers=auth)
    assert r.status_code == 202, r.text
    campaign = r.json()
    assert r.headers["location"] == f"/campaigns/{campaign['id']}"
    assert campaign["totalMessages"] == 1200
    assert campaign["progress"]["queued"] == 1200

    async with running_worker(settings.with_(mock_failure_rate=0.3)):

        async def done() -> dict[str, object] | None:
            body = (await client.get(f"/campaigns/{campaign['id']}", headers=auth)).json()
            return body if body["status"] not in ("pending", "processing") else None

        final = await wait_for(done, within=60)

    counts = await status_counts(engine, campaign["id"])
    assert_counters_match(await campaign_row(engine, campaign["id"]), counts)
    assert final["sentCount"] == counts.get("sent", 0)
    assert final["failedCount"] == counts.get("failed", 0)
    assert final["sentCount"] + final["failedCount"] == 1200
    # 30% failure per attempt, four attempts: about 1200 * 0.3**4 ≈ 10 fail for good.
    assert 0 < final["failedCount"] < 60
    assert final["status"] == "completed_with_failures"
    assert final["completedAt"] is not None
