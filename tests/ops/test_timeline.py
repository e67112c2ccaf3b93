"""GET /campaigns/{id}/timeline: attempts and retries from the audit trail beside finished messages, real worker."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests.api.support import create_campaign
from tests.conftest import wait_for
from tests.harness import finished_campaign, running_worker

FLAKY = {"mock_failure_rate": 0.3, "max_attempts": 3, "retry_delays": (0.1, 0.2)}


async def _event_counts(engine: AsyncEngine, campaign_id: str) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.event, count(*) FROM message_events e JOIN messages m ON m.id = e.message_id "
                "WHERE m.campaign_id = :c GROUP BY 1"
            ),
            {"c": campaign_id},
        )
        return {r[0]: r[1] for r in rows}


async def _timeline(client: httpx.AsyncClient, auth: dict[str, str], campaign_id: str) -> dict[str, Any]:
    r = await client.get(f"/campaigns/{campaign_id}/timeline", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _sums(timeline: dict[str, Any]) -> dict[str, int]:
    return {k: sum(p[k] for p in timeline["points"]) for k in ("sent", "failed", "attempts", "retried")}


async def test_timeline_counts_attempts_and_retries_from_the_audit_trail(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    campaign = await create_campaign(client, fast_auth, name="flaky", recipientCount=300)
    async with running_worker(settings.with_(rate_limit=300.0, **FLAKY)):
        final = await wait_for(lambda: finished_campaign(client, fast_auth, campaign["id"]), within=60)
    timeline = await _timeline(client, fast_auth, campaign["id"])
    assert all(set(p) == {"at", "sent", "failed", "attempts", "retried"} for p in timeline["points"])
    assert [p["at"] for p in timeline["points"]] == sorted(p["at"] for p in timeline["points"])
    events = await _event_counts(engine, campaign["id"])
    sums = _sums(timeline)
    assert sums == {"sent": final["sentCount"], "failed": final["failedCount"], "attempts": events["attempt"],
                    "retried": events["retry"]}  # fmt: skip
    assert sums["retried"] > 0 and sums["failed"] > 0
    # Every attempt ended in exactly one of sent, failed or a retry (nothing was throttled or lost).
    assert sums["attempts"] == sums["sent"] + sums["failed"] + sums["retried"]


async def test_timeline_leaves_out_other_messages_inside_the_campaigns_id_range(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """Sends made while a campaign is being written take ids inside its range: their events are not its own."""
    first = await create_campaign(client, fast_auth, name="first", recipientCount=60)
    single = await client.post("/notifications", json={"to": "s@example.com", "body": "hi"}, headers=fast_auth)
    assert single.status_code == 202
    second = await create_campaign(client, fast_auth, name="second", recipientCount=60)
    # Hand one message from the middle of the first campaign's ids to the second, counters and all:
    # now each campaign's id range holds messages of the other (and the second's the single one).
    async with engine.begin() as conn:
        moved = (await conn.execute(text("SELECT min(id) + 30 FROM messages WHERE campaign_id = :c"),
                                    {"c": first["id"]})).scalar_one()  # fmt: skip
        await conn.execute(text("UPDATE messages SET campaign_id = :c WHERE id = :m"), {"c": second["id"], "m": moved})
        for campaign_id, delta in ((first["id"], -1), (second["id"], 1)):
            await conn.execute(
                text("UPDATE campaigns SET total_messages = total_messages + :d, queued_count = queued_count + :d "
                     "WHERE id = :c"),
                {"c": campaign_id, "d": delta},
            )  # fmt: skip
    async with running_worker(settings.with_(**FLAKY)):
        for campaign in (first, second):
            await wait_for(lambda c=campaign: finished_campaign(client, fast_auth, c["id"]), within=60)
    for campaign in (first, second):
        events = await _event_counts(engine, campaign["id"])
        sums = _sums(await _timeline(client, fast_auth, campaign["id"]))
        assert (sums["attempts"], sums["retried"]) == (events["attempt"], events.get("retry", 0))
        assert sums["sent"] + sums["failed"] == (59 if campaign is first else 61)
