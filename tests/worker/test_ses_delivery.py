"""A campaign to real addresses goes through the worker to SES (boto3 against moto's server); a wrong SES
configuration (no credentials, an unverified sender) holds it instead of failing it."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import text
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


# --- a wrong configuration holds SES instead of dead-lettering the campaign -----------------------

# Before the fix: failed after 2 attempts in ~1 s. A roomy timeout: the first call makes the boto3 client.
HELD_SETTINGS = {"breaker_cooldown": 0.5, "max_attempts": 2, "provider_timeout": 10.0}


async def _trail(engine: AsyncEngine) -> dict[int, list[tuple[str, str | None]]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT message_id, event, detail FROM message_events ORDER BY id"))
        out: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
        for r in rows:
            out[r.message_id].append((r.event, r.detail))
        return out


async def _held_long_enough(engine: AsyncEngine, campaign_id: str) -> bool:
    """Every message was taken at least 3 times (past its 2 attempts) and none is in flight, or one ended."""
    counts = await status_counts(engine, campaign_id)
    if counts.get("failed") or counts.get("sent"):
        return True
    trail = await _trail(engine)
    taken = len(trail) == 2 and all(sum(e == "attempt" for e, _ in events) >= 3 for events in trail.values())
    return taken and counts == {"queued": 2}


async def _assert_held(engine: AsyncEngine, campaign_id: str, reason: str) -> None:
    """Nothing failed, every message waits in the queue with no attempt used, and the trail says why.

    Read between the held provider's tries: each cool-down the worker takes the messages again
    (`sending`, the attempt counted) and gives them back, so a read that lands inside such a try
    is read again."""

    async def between_tries() -> list[Any] | None:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, status, attempts, last_error FROM messages "
                                            "WHERE campaign_id = :c"), {"c": campaign_id})).all()  # fmt: skip
        return None if any(r.status == "sending" for r in rows) else list(rows)

    rows = await wait_for(between_tries, within=10, interval=0.02)
    trail = await _trail(engine)
    assert [(r.status, r.attempts) for r in rows] == [("queued", 0)] * 2, (rows, trail)
    assert all(r.last_error and r.last_error.startswith("configuration error: ") and reason in r.last_error
               for r in rows), rows  # fmt: skip
    for r in rows:
        events = [e for e, _ in trail[r.id]]
        assert "config_error" in events and "failed" not in events and "retry" not in events, trail[r.id]


async def _send_two(client: httpx.AsyncClient, auth: dict[str, str]) -> tuple[str, list[str]]:
    real = [unique_address("ana"), unique_address("li")]
    r = await client.post("/campaigns", json={"name": "Held", "subject": "Hi", "body": "Hello", "recipients": real},
                          headers=auth)  # fmt: skip
    assert r.status_code == 202, r.text
    return str(r.json()["id"]), real


def _errors_naming(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and all(w in r.getMessage() for w in words)]  # fmt: skip


async def test_ses_without_credentials_holds_the_campaign_until_credentials_appear(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, moto_server: str,
    verified_sender: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The README's SES example with no AWS credentials: the messages wait (no attempt used, an ERROR
    naming SES and the missing credentials, a counter in /metrics), then go out once credentials
    exist, without restarting the worker."""
    campaign_id, real = await _send_two(client, auth)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup on this host
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3's shared session caches earlier tests' credentials
    caplog.set_level(logging.INFO, logger="notifq")
    ses = settings.with_(ses_endpoint_url=moto_server, from_email=verified_sender, **HELD_SETTINGS)
    async with running_worker(ses):
        await wait_for(lambda: _held_long_enough(engine, campaign_id), within=20)
        await _assert_held(engine, campaign_id, "NoCredentialsError")
        assert _errors_naming(caplog, "ses", "credentials"), [r.getMessage() for r in caplog.records]
        metrics = (await client.get("/metrics")).text
        assert 'notifq_messages_config_error_total{channel="email",provider="ses"}' in metrics, metrics

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=20)
    assert final["status"] == "completed" and final["sentCount"] == 2
    sent = [m for m in await moto_sent_messages(moto_server) if m["source"] == verified_sender]
    assert sorted(d for m in sent for d in m["destinations"]["ToAddresses"]) == sorted(real)
    counts = await status_counts(engine, campaign_id)
    assert counts == {"sent": 2}
    async with engine.connect() as conn:
        attempts = (await conn.execute(text("SELECT attempts FROM messages WHERE campaign_id = :c"),
                                       {"c": campaign_id})).scalars().all()  # fmt: skip
    assert attempts == [1, 1]  # the held tries were given back: only the successful one counts
    assert_counters_match(await campaign_row(engine, campaign_id), counts)


async def test_unverified_ses_sender_holds_the_campaign_until_it_is_verified(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, moto_server: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """SES refusing our sender (not verified, no authority to send from it) is about our configuration, not the
    recipients: the messages wait, and go out once the sender is verified."""
    campaign_id, real = await _send_two(client, auth)
    sender = unique_address("unverified")
    caplog.set_level(logging.INFO, logger="notifq")
    ses = settings.with_(ses_endpoint_url=moto_server, from_email=sender, **HELD_SETTINGS)
    async with running_worker(ses):
        await wait_for(lambda: _held_long_enough(engine, campaign_id), within=20)
        # A Simple send says "not verified"; moto refuses a Raw one (bulk email: List-Unsubscribe) as "Did not
        # have authority to send from"; both name the sender and are held alike.
        await _assert_held(engine, campaign_id, "verify the sender FROM_EMAIL")
        assert _errors_naming(caplog, "ses", "verify the sender FROM_EMAIL"), [r.getMessage() for r in caplog.records]

        identities = boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server)
        identities.create_email_identity(EmailIdentity=sender)
        identities.close()
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=20)
    assert final["status"] == "completed" and final["sentCount"] == 2
    sent = [m for m in await moto_sent_messages(moto_server) if m["source"] == sender]
    assert sorted(d for m in sent for d in m["destinations"]["ToAddresses"]) == sorted(real)
