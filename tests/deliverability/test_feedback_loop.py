"""Provider answers and recipients feed the suppression list, through real servers: aiosmtpd (a 550 for the
recipient), the fake FCM server (UNREGISTERED), moto (SES raw MIME, SNS's opted-out numbers), a client
with no credentials using the unsubscribe link, and a campaign paused by its guard."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from notifq.worker.opt_outs import sync_opt_outs
from tests.api.support import app_and_client, assert_error
from tests.aws import unique_address
from tests.conftest import wait_for
from tests.fcm_server import FakeFcmServer
from tests.harness import finished_campaign, running_worker
from tests.smtp_server import SmtpTestServer

SENDER = "news@mail.notifq.test"
ONE_CLICK = "List-Unsubscribe=One-Click"


def smtp(settings: Settings, relay: SmtpTestServer, **changes: Any) -> Settings:
    return settings.with_(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=relay.port, smtp_security="none",
                          from_email=SENDER, public_url="http://notifq.test", **changes)  # fmt: skip


async def campaign(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> str:
    r = await client.post("/campaigns", headers=auth, json={"name": "c", "subject": "News", "body": "Hello", **body})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def suppressions(client: httpx.AsyncClient, auth: dict[str, str]) -> list[tuple[str, str, str, str | None]]:
    items = (await client.get("/suppressions", headers=auth)).json()["items"]
    return [(e["channel"], e["address"], e["reason"], e["category"]) for e in items]


async def test_smtp_550_for_the_recipient_is_a_hard_bounce(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings,
    start_smtp_server: Callable[..., SmtpTestServer],
) -> None:  # fmt: skip
    relay = start_smtp_server()
    relay.reply_next("RCPT", "550 5.1.1 <gone@mail.test>: no such user")
    first = await campaign(client, auth, recipients=["gone@Mail.Test"])
    async with running_worker(smtp(settings, relay)):
        await wait_for(lambda: finished_campaign(client, auth, first), within=30)
        # Recorded just after the outcome (which finishes the campaign), in the same chunk's work.
        done = await wait_for(lambda: _bounced(client, auth, first), within=10)
        assert done["failedCount"] == 1
        assert await suppressions(client, auth) == [("email", "gone@mail.test", "hard_bounce", None)]
        message = (await client.get(f"/campaigns/{first}/messages", headers=auth)).json()["items"][0]
        trail = (await client.get(f"/notifications/{message['id']}", headers=auth)).json()
        assert trail["bouncedAt"] and [e["event"] for e in trail["events"]][-2:] == ["failed", "bounced"]
        # Transactional or not, nothing more goes to a mailbox that does not exist.
        r = await client.post("/notifications", headers=auth, json={"to": "gone@mail.test", "body": "Your code"})
        single = r.json()["id"]
        await wait_for(lambda: _status(client, auth, single, "skipped"), within=15)
    assert relay.received == []


async def _bounced(client: httpx.AsyncClient, auth: dict[str, str], campaign_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get(f"/campaigns/{campaign_id}", headers=auth)).json()
    return body if body["deliverability"]["bounces"] == 1 else None


async def _status(client: httpx.AsyncClient, auth: dict[str, str], message_id: str, status: str) -> bool:
    return bool((await client.get(f"/notifications/{message_id}", headers=auth)).json()["status"] == status)


async def test_a_refusal_suppresses_the_address_the_message_went_to(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings,
    start_smtp_server: Callable[..., SmtpTestServer],
) -> None:  # fmt: skip
    """The profile changed between the campaign's acceptance and its send: the new address is the one refused."""
    relay = start_smtp_server()
    await client.put("/subscribers/u-1", headers=auth, json={"email": "old@mail.test"})
    sent = await campaign(client, auth, subscribers=["u-1"])
    await client.put("/subscribers/u-1", headers=auth, json={"email": "new@mail.test"})
    relay.reply_next("RCPT", "550 5.1.1 no such user")
    async with running_worker(smtp(settings, relay)):
        await wait_for(lambda: finished_campaign(client, auth, sent), within=30)
        await wait_for(lambda: _bounced(client, auth, sent), within=10)
    assert await suppressions(client, auth) == [("email", "new@mail.test", "hard_bounce", None)]


async def test_bulk_email_carries_one_click_unsubscribe_and_transactional_does_not(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings,
    start_smtp_server: Callable[..., SmtpTestServer], moto_server: str, verified_sender: str,
) -> None:  # fmt: skip
    relay = start_smtp_server()
    bulk = await campaign(client, auth, recipients=["reader@mail.test"], category="newsletter")
    async with running_worker(smtp(settings, relay)):
        await wait_for(lambda: finished_campaign(client, auth, bulk), within=30)
        r = await client.post("/notifications", headers=auth, json={"to": "reader@mail.test", "body": "Code 1234"})
        await wait_for(lambda: _status(client, auth, r.json()["id"], "sent"), within=15)
    by_body = {m.body.strip(): m.message for m in relay.received}
    news, otp = by_body["Hello"], by_body["Code 1234"]
    link = str(news["List-Unsubscribe"])
    assert link.startswith("<http://notifq.test/u/") and link.endswith(">")
    assert news["List-Unsubscribe-Post"] == ONE_CLICK
    assert otp["List-Unsubscribe"] is None and otp["List-Unsubscribe-Post"] is None

    # SES (moto) gets the same headers, in the raw MIME notifq builds for bulk mail.
    address = unique_address("ses-reader")
    on_ses = await campaign(client, auth, recipients=[address])
    ses = settings.with_(ses_endpoint_url=moto_server, from_email=verified_sender, public_url="https://n.example")
    async with running_worker(ses):
        await wait_for(lambda: finished_campaign(client, auth, on_ses), within=30)
    raw = [m for m in await moto_raw_messages(moto_server) if address in m["destinations"]]
    assert len(raw) == 1
    parsed = email.message_from_string(raw[0]["raw_data"], policy=email.policy.default)
    assert str(parsed["List-Unsubscribe"]).startswith("<https://n.example/u/")
    assert parsed["List-Unsubscribe-Post"] == ONE_CLICK and parsed["To"] == address


async def moto_raw_messages(endpoint: str) -> list[dict[str, Any]]:
    """What moto's SES kept of raw (MIME) sends."""
    async with httpx.AsyncClient(base_url=endpoint) as http:
        return list((await http.get("/moto-api/data.json")).json().get("ses", {}).get("RawMessage", []))


async def test_unsubscribe_link_works_without_credentials_and_only_once(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    start_smtp_server: Callable[..., SmtpTestServer],
) -> None:  # fmt: skip
    relay = start_smtp_server()
    news = await campaign(client, auth, recipients=["Reader@Mail.Test"], category="newsletter")
    async with running_worker(smtp(settings, relay)):
        await wait_for(lambda: finished_campaign(client, auth, news), within=30)
    path = urlsplit(str(relay.received[0].message["List-Unsubscribe"]).strip("<>")).path
    token = path.rsplit("/", 1)[1]
    # A client with no credentials at all: the recipient's mail app.
    async with app_and_client(smtp(settings, relay)) as (_, anonymous):
        page = await anonymous.get(path)  # a mail scanner's prefetch: shows a page, changes nothing
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "newsletter" in page.text and 'method="post" action=""' in page.text
        assert "Reader@Mail.Test" not in page.text and "R***@Mail.Test" in page.text
        assert await suppressions(client, auth) == []
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        for bad in (forged, "x" * 32, "short", token[:31], "%00" * 3):
            assert_error(await anonymous.post(f"/u/{bad}", content=ONE_CLICK), 404)
            assert_error(await anonymous.get(f"/u/{bad}"), 404)
        empty = await anonymous.post(path)  # a body is not required
        assert empty.status_code == 200, empty.text
        clicks = await asyncio.gather(*(anonymous.post(path, content=ONE_CLICK,
                                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
                                        for _ in range(5)))  # fmt: skip
        assert [r.status_code for r in clicks] == [200] * 5 and "unsubscribed" in clicks[0].text
    assert await suppressions(client, auth) == [("email", "Reader@mail.test", "unsubscribed", "newsletter")]
    detail = (await client.get(f"/campaigns/{news}", headers=auth)).json()["deliverability"]
    assert detail["unsubscribes"] == 1
    # Another newsletter is skipped; other categories and transactional mail still arrive.
    # The domain is case-insensitive; the local part is kept as written (RFC 5321 lets it be case-sensitive).
    again = await campaign(client, auth, recipients=["Reader@MAIL.test"], category="newsletter")
    other = await campaign(client, auth, recipients=["Reader@mail.test"], category="billing")
    async with running_worker(smtp(settings, relay)):
        first = await wait_for(lambda: finished_campaign(client, auth, again), within=30)
        second = await wait_for(lambda: finished_campaign(client, auth, other), within=30)
        r = await client.post("/notifications", headers=auth, json={"to": "Reader@Mail.Test", "body": "OTP 9"})
        await wait_for(lambda: _status(client, auth, r.json()["id"], "sent"), within=15)
    assert (first["skippedCount"], second["sentCount"]) == (1, 1)
    assert len(relay.received) == 3


async def test_a_subscribers_unsubscribe_turns_the_category_off_in_preferences(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings,
    start_smtp_server: Callable[..., SmtpTestServer],
) -> None:  # fmt: skip
    relay = start_smtp_server()
    await client.put("/subscribers/u-7", headers=auth, json={"email": "ada@mail.test"})
    news = await campaign(client, auth, subscribers=["u-7"], category="offers")
    async with running_worker(smtp(settings, relay)):
        await wait_for(lambda: finished_campaign(client, auth, news), within=30)
    path = urlsplit(str(relay.received[0].message["List-Unsubscribe"]).strip("<>")).path
    async with app_and_client(smtp(settings, relay)) as (_, anonymous):
        assert (await anonymous.post(path, content=ONE_CLICK)).status_code == 200
    prefs = (await client.get("/subscribers/u-7/preferences", headers=auth)).json()
    assert prefs["categories"] == {"offers": {"email": False}}
    assert await suppressions(client, auth) == []


async def test_fcm_unregistered_token_is_removed_and_suppressed(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, fcm_server: FakeFcmServer,
) -> None:  # fmt: skip
    await client.put("/subscribers/u-9", headers=auth,
                     json={"pushTokens": ["live-token-1", "unregistered-token-2"]})  # fmt: skip
    push = settings.with_(push_provider="fcm", fcm_credentials_file=str(fcm_server.credentials_file),
                          fcm_endpoint_url=fcm_server.url)  # fmt: skip
    first = await campaign(client, auth, channel="push", subscribers=["u-9"])
    async with running_worker(push):
        done = await wait_for(lambda: finished_campaign(client, auth, first), within=30)
    assert done["failedCount"] == 1
    profile = (await client.get("/subscribers/u-9", headers=auth)).json()
    assert profile["pushTokens"] == ["live-token-1"]
    assert await suppressions(client, auth) == [("push", "unregistered-token-2", "invalid_token", None)]
    second = await campaign(client, auth, channel="push", subscribers=["u-9"])
    async with running_worker(push):
        done = await wait_for(lambda: finished_campaign(client, auth, second), within=30)
    assert done["sentCount"] == 1
    assert [m["message"]["token"] for m in fcm_server.sent] == ["live-token-1"]


async def test_sns_opted_out_numbers_are_copied_onto_the_list(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, moto_server: str,
) -> None:  # fmt: skip
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=moto_server)
    expected = sorted(sns.list_phone_numbers_opted_out()["phoneNumbers"])
    assert expected  # moto keeps a few opted-out numbers
    on_sns = settings.with_(sms_provider="sns", sns_endpoint_url=moto_server)
    async with engine.begin() as conn:  # one that opted back in since the last copy, and a manual entry
        await conn.execute(text(
            "INSERT INTO suppressions (channel, address, reason) VALUES "
            "('sms', '+15550001111', 'opted_out_sms'), ('sms', '+15550002222', 'manual')"
        ))  # fmt: skip
    async with running_worker(on_sns) as runtime:  # its own loop is off (NOTIFQ_SNS_OPT_OUT_SYNC_SECONDS=0)
        assert runtime.deps is not None
        assert await sync_opt_outs(runtime.deps) == len(expected)
        assert await sync_opt_outs(runtime.deps) == 0  # nothing new the second time
    entries = await suppressions(client, auth)
    assert sorted(e[1] for e in entries if e[2] == "opted_out_sms") == expected
    assert ("sms", "+15550002222", "manual", None) in entries and "+15550001111" not in str(entries)
    # Workers copy it by themselves, one of the fleet per period; a number on it is skipped.
    await client.delete("/suppressions/sms/" + expected[0].replace("+", "%2B"), headers=auth)
    looping = on_sns.with_(sns_opt_out_sync_seconds=3600)
    async with running_worker(looping):
        await wait_for(lambda: _sms_entries(client, auth, len(expected) + 1), within=15)
        r = await client.post("/notifications", headers=auth, json={"channel": "sms", "to": expected[0], "body": "x"})
        await wait_for(lambda: _status(client, auth, r.json()["id"], "skipped"), within=15)


async def _sms_entries(client: httpx.AsyncClient, auth: dict[str, str], n: int) -> list[Any] | None:
    entries = [e for e in await suppressions(client, auth) if e[0] == "sms"]
    return entries if len(entries) == n else None


async def test_guard_pauses_a_bouncing_campaign_and_resume_judges_what_follows(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    start_smtp_server: Callable[..., SmtpTestServer],
) -> None:  # fmt: skip
    relay = start_smtp_server()
    relay.reply_next("RCPT", "550 5.1.1 no such user", times=6)
    guarded = smtp(settings, relay, rate_limit=20.0, guard_min_sent=10, max_bounce_rate=0.05)
    big = await campaign(client, auth, recipients=[f"user{i}@mail.test" for i in range(120)])
    async with running_worker(guarded):
        paused = await wait_for(lambda: _paused(client, auth, big), within=30)
        reason = paused["deliverability"]["pausedReason"]
        assert reason.startswith("hard-bounce rate") and "NOTIFQ_MAX_BOUNCE_RATE" in reason
        assert paused["deliverability"]["bounces"] == 6 and paused["progress"]["pending"] > 0
        metrics = (await client.get("/metrics", headers=auth)).text
        assert f'notifq_campaign_bounces{{campaign_id="{big}",status="paused"}} 6.0' in metrics
        assert 'notifq_suppressions{channel="email",reason="hard_bounce"} 6.0' in metrics
        r = await client.post(f"/campaigns/{big}/resume", headers=auth)
        assert r.status_code == 202 and r.json()["deliverability"]["pausedReason"] is None
        done = await wait_for(lambda: finished_campaign(client, auth, big), within=60)
    assert done["sentCount"] == 114 and done["failedCount"] == 6
    async with engine.connect() as conn:
        events = (await conn.execute(text("SELECT count(*) FROM message_events WHERE event = 'paused'"))).scalar()
    assert events and events > 0


async def _paused(client: httpx.AsyncClient, auth: dict[str, str], campaign_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get(f"/campaigns/{campaign_id}", headers=auth)).json()
    return body if body["status"] == "paused" else None
