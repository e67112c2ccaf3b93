"""A campaign to real addresses goes through the worker to SES (boto3 against moto's server)."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests.aws import moto_sent_messages, unique_address
from tests.conftest import wait_for
from tests.harness import assert_counters_match, campaign_row, finished_campaign, running_worker, status_counts


async def test_real_addresses_go_to_ses_and_example_com_to_the_mock(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    moto_server: str, verified_sender: str,
) -> None:  # fmt: skip
    """The factory routes by domain; SES receives exactly the real recipients with the campaign's content."""
    real = [unique_address("ana"), unique_address("li")]
    r = await client.post(
        "/campaigns",
        json={"name": "Mixed", "subject": "Statement ready", "body": "Your statement is ready.",
              "recipients": [*real, "load@example.com"]},
        headers=auth,
    )  # fmt: skip
    campaign_id = r.json()["id"]
    ses_settings = settings.with_(ses_endpoint_url=moto_server, from_email=verified_sender)
    async with running_worker(ses_settings):
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=30)
    assert final["status"] == "completed" and final["sentCount"] == 3
    sent = [m for m in await moto_sent_messages(moto_server) if m["source"] == verified_sender]
    assert sorted(d for m in sent for d in m["destinations"]["ToAddresses"]) == sorted(real)
    assert {(m["subject"], m["body"]) for m in sent} == {("Statement ready", "Your statement is ready.")}
    assert_counters_match(await campaign_row(engine, campaign_id), await status_counts(engine, campaign_id))


async def test_ses_rejection_fails_the_message_at_once(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, moto_server: str
) -> None:
    """An unverified sender is a permanent SES error: one attempt, failed, with SES's reason."""
    r = await client.post("/campaigns", json={"name": "Rejected", "recipients": [unique_address("bo")]}, headers=auth)
    campaign_id = r.json()["id"]
    rejected = settings.with_(ses_endpoint_url=moto_server, from_email=unique_address("unverified"))
    async with running_worker(rejected):
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=30)
    assert final["status"] == "completed_with_failures" and final["failedCount"] == 1
    message = (await client.get(f"/campaigns/{campaign_id}/messages", headers=auth)).json()["items"][0]
    assert message["status"] == "failed" and message["attempts"] == 1
    assert message["lastError"].startswith("SES MessageRejected")
