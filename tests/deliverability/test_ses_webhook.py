"""`POST /webhooks/ses` with SNS messages signed by a test key, its certificate served by a local server.

The full loop runs through real parts: a campaign sent by the worker through SES (moto's server),
SES's bounce for it signed as SNS signs it, and a second campaign to the same address that is
skipped without an SES call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests.api.support import app_and_client, app_client, assert_error
from tests.aws import moto_sent_messages, unique_address
from tests.conftest import wait_for
from tests.harness import finished_campaign, running_worker
from tests.sns_support import (
    CERT_PATH,
    CONFIRM_PATH,
    TEST_CERT_URL_REGEX,
    CertServer,
    Signer,
    body,
    cert_server,
    foreign_signer,
    make_signer,
    ses_notification,
    signed_message,
    sns_timestamp,
)

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:someone-else"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return make_signer()


@pytest.fixture
def certs(signer: Signer) -> Iterator[CertServer]:
    with cert_server({CERT_PATH: signer.cert_pem}) as server:
        server.serve(CONFIRM_PATH, b"<ConfirmSubscriptionResponse/>")
        yield server


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.with_(sns_topics=(TOPIC,), sns_cert_url_regex=TEST_CERT_URL_REGEX)


@pytest.fixture
async def hook(hook_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(hook_settings) as c:
        yield c


def notification(signer: Signer, certs: CertServer, message: str, **kw: Any) -> dict[str, Any]:
    return signed_message(signer.key, certs.url(CERT_PATH), message=message, topic_arn=kw.pop("topic_arn", TOPIC),
                          **kw)  # fmt: skip


async def post(client: httpx.AsyncClient, envelope: dict[str, Any] | bytes) -> httpx.Response:
    raw = envelope if isinstance(envelope, bytes) else body(envelope)
    return await client.post("/webhooks/ses", content=raw, headers={"Content-Type": "text/plain; charset=UTF-8"})


async def written(engine: AsyncEngine) -> tuple[int, ...]:
    """(suppressions, provider events, audit events)."""
    async with engine.connect() as conn:
        counts = [(await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                  for t in ("suppressions", "provider_events", "message_events")]  # fmt: skip
    return tuple(int(n) for n in counts)


async def test_hard_bounce_suppresses_and_the_next_campaign_skips_the_address(
    client: httpx.AsyncClient, auth: dict[str, str], hook_settings: Settings, engine: AsyncEngine,
    moto_server: str, verified_sender: str, signer: Signer, certs: CertServer,
) -> None:  # fmt: skip
    address = unique_address("bounce")
    ses_settings = hook_settings.with_(ses_endpoint_url=moto_server, from_email=verified_sender)
    first = (await client.post("/campaigns", headers=auth, json={"name": "One", "subject": "Hi", "body": "Hello",
                                                                 "recipients": [address]})).json()["id"]  # fmt: skip
    async with running_worker(ses_settings):
        await wait_for(lambda: finished_campaign(client, auth, first), within=30)
    message = (await client.get(f"/campaigns/{first}/messages", headers=auth)).json()["items"][0]
    sent = (await client.get(f"/notifications/{message['id']}", headers=auth)).json()
    assert sent["provider"] == "ses" and sent["providerMessageId"]
    ses_calls = len(await moto_sent_messages(moto_server))

    async with app_client(ses_settings) as hook:
        envelope = notification(signer, certs, ses_notification("Bounce", sent["providerMessageId"], [address]),
                                version="2")  # fmt: skip
        r = await post(hook, envelope)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "applied", "eventType": "Bounce", "matched": 1,
                                                      "suppressed": 1}  # fmt: skip
        replay = await post(hook, envelope)  # SNS delivers at least once
        assert replay.json()["status"] == "duplicate"

    entries = (await client.get("/suppressions", headers=auth)).json()["items"]
    assert [(e["address"], e["reason"], e["messageId"]) for e in entries] == [(address, "hard_bounce", message["id"])]
    after = (await client.get(f"/notifications/{message['id']}", headers=auth)).json()
    assert after["bouncedAt"] is not None
    assert [e["event"] for e in after["events"]].count("bounced") == 1
    campaign = (await client.get(f"/campaigns/{first}", headers=auth)).json()
    assert campaign["deliverability"]["bounces"] == 1 and campaign["deliverability"]["bounceRate"] == 1.0

    # The same address, its domain in another case: skipped when claimed, SES never called.
    local, _, domain = address.rpartition("@")
    second = (await client.post("/campaigns", headers=auth, json={
        "name": "Two", "subject": "Hi", "body": "Again", "recipients": [f"{local}@{domain.upper()}"],
    })).json()["id"]  # fmt: skip
    async with running_worker(ses_settings):
        final = await wait_for(lambda: finished_campaign(client, auth, second), within=30)
    assert final["status"] == "completed" and final["skippedCount"] == 1 and final["sentCount"] == 0
    skipped = (await client.get(f"/campaigns/{second}/messages", headers=auth)).json()["items"][0]
    assert skipped["status"] == "skipped" and skipped["skipReason"] == "suppressed"
    trail = (await client.get(f"/notifications/{skipped['id']}", headers=auth)).json()["events"]
    assert (trail[-1]["event"], trail[-1]["detail"]) == ("skipped", "suppressed")
    assert len(await moto_sent_messages(moto_server)) == ses_calls


async def _sent_ses_message(engine: AsyncEngine, address: str, pmid: str, campaign: str | None = None) -> int:
    """A message as the worker records it after SES took it (for tests that are about the webhook only)."""
    async with engine.begin() as conn:
        return int((await conn.execute(text(
            "INSERT INTO messages (campaign_id, channel, recipient, status, attempts, provider, provider_message_id, "
            "priority) VALUES (:c, 'email', :a, 'sent', 1, 'ses', :p, 'bulk') RETURNING id"
        ), {"a": address, "p": pmid, "c": campaign})).scalar_one())  # fmt: skip


async def test_transient_bounce_complaint_and_delivery(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine,
    signer: Signer, certs: CertServer,
) -> None:  # fmt: skip
    soft = await _sent_ses_message(engine, "full@mailbox.example", "ses-soft")
    annoyed = await _sent_ses_message(engine, "Annoyed@Mail.Example", "ses-complaint")
    fine = await _sent_ses_message(engine, "fine@mail.example", "ses-delivered")
    r = await post(hook, notification(signer, certs, ses_notification("Bounce", "ses-soft", ["full@mailbox.example"],
                                                                      bounce_type="Transient")))  # fmt: skip
    assert r.json()["status"] == "applied" and r.json()["suppressed"] == 0
    r = await post(hook, notification(signer, certs, ses_notification("Complaint", "ses-complaint",
                                                                      ["Annoyed@Mail.Example"])))  # fmt: skip
    assert r.json()["suppressed"] == 1
    r = await post(hook, notification(signer, certs, ses_notification("Delivery", "ses-delivered",
                                                                      ["fine@mail.example"]), subject="x"))  # fmt: skip
    assert r.json()["matched"] == 1
    entries = (await client.get("/suppressions", headers=auth)).json()["items"]
    assert [(e["address"], e["reason"]) for e in entries] == [("Annoyed@mail.example", "complaint")]
    events = {m: [e["event"] for e in (await client.get(f"/notifications/{m}", headers=auth)).json()["events"]]
              for m in (soft, annoyed, fine)}  # fmt: skip
    assert events == {soft: ["accepted", "soft_bounced"], annoyed: ["accepted", "complained"],
                      fine: ["accepted", "delivered"]}  # fmt: skip
    assert (await client.get(f"/notifications/{fine}", headers=auth)).json()["deliveredAt"] is not None
    assert (await client.get(f"/notifications/{annoyed}", headers=auth)).json()["complainedAt"] is not None
    # An event about an email notifq does not know still suppresses the address it names.
    r = await post(hook, notification(signer, certs, ses_notification("Bounce", "not-ours", ["gone@else.example"])))
    assert r.json() == {"status": "applied", "eventType": "Bounce", "matched": 0,
                                                  "suppressed": 1}  # fmt: skip
    # Event types notifq does not act on are accepted (so a topic with more events does no harm).
    opened = json.dumps({"eventType": "Open", "mail": {"messageId": "ses-delivered"}, "open": {}})
    assert (await post(hook, notification(signer, certs, opened))).json()["status"] == "ignored"
    assert (await post(hook, notification(signer, certs, "not JSON at all"))).json()["status"] == "ignored"


async def test_a_report_before_the_worker_recorded_the_id_is_applied_later(
    hook_settings: Settings, client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine,
    signer: Signer, certs: CertServer,
) -> None:  # fmt: skip
    """SES can bounce within a second, before the worker's chunk (with the SES id) is recorded."""
    async with app_and_client(hook_settings) as (app, hook):
        r = await post(
            hook, notification(signer, certs, ses_notification("Bounce", "ses-early", ["early@mail.example"]))
        )
        assert r.json()["matched"] == 0 and r.json()["suppressed"] == 1  # the address at once
        message = await _sent_ses_message(engine, "early@mail.example", "ses-early")  # the worker records now
        applied = await app.state.feedback.apply_pending()  # what the reconciler's round does
        assert applied.matched == 1
        assert (await app.state.feedback.apply_pending()).matched == 0
    after = (await client.get(f"/notifications/{message}", headers=auth)).json()
    assert after["bouncedAt"] and [e["event"] for e in after["events"]] == ["accepted", "bounced"]
    assert len(await suppressions_of(client, auth)) == 1


async def suppressions_of(client: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/suppressions", headers=auth)).json()["items"]
    return items


async def test_refused_messages_write_nothing(
    hook: httpx.AsyncClient, engine: AsyncEngine, signer: Signer, certs: CertServer
) -> None:
    await _sent_ses_message(engine, "victim@mail.example", "ses-1")
    before = await written(engine)
    bounce = ses_notification("Bounce", "ses-1", ["victim@mail.example"])
    tampered = notification(signer, certs, bounce)
    tampered["Message"] = tampered["Message"].replace("victim", "other")
    wrong_host = signed_message(signer.key, "http://evil.example/cert.pem", message=bounce, topic_arn=TOPIC)
    old = notification(signer, certs, bounce, timestamp=sns_timestamp(datetime.now(UTC) - timedelta(days=8)))
    unsigned = notification(signer, certs, bounce)
    del unsigned["Signature"]
    forged = signed_message(foreign_signer().key, certs.url(CERT_PATH), message=bounce, topic_arn=TOPIC)
    foreign = notification(signer, certs, bounce, topic_arn=FOREIGN_TOPIC)
    v3 = notification(signer, certs, bounce)
    v3["SignatureVersion"] = "3"
    cases = {"bad_signature": [tampered, forged], "untrusted_cert_url": [wrong_host], "expired": [old],
             "unsigned": [unsigned], "foreign_topic": [foreign], "unsupported_version": [v3]}  # fmt: skip
    for reason, envelopes in cases.items():
        for envelope in envelopes:
            error = assert_error(await post(hook, envelope), 403, "forbidden")
            assert error["details"] == {"reason": reason}
    for raw in (b"not json", b"[1]", b'{"Type": "Nope"}', b'{"Type": "\\ud800"}', b"{" * 10000,
                body({**bounce_envelope(signer, certs), "Timestamp": ""})):  # fmt: skip
        error = assert_error(await post(hook, raw), 403, "forbidden")
        assert error["details"] == {"reason": "malformed"}
    for empty in (b"", b" "):  # no body at all
        assert_error(await post(hook, empty), 422, "validation_error")
    assert_error(await post(hook, b"x" * (400 * 1024)), 413)
    assert await written(engine) == before
    assert all("evil" not in path for path in certs.requests)
    # Valid in every other way, but a certificate URL with a query or without `.pem`: never fetched.
    for odd in (certs.url(CERT_PATH) + "?v=2", certs.url("/cert.txt"), certs.url(CERT_PATH) + "\x7f"):
        envelope = signed_message(signer.key, odd, message=bounce, topic_arn=TOPIC)
        assert assert_error(await post(hook, envelope), 403)["details"] == {"reason": "untrusted_cert_url"}
    assert certs.count("/cert.txt") == 0


def bounce_envelope(signer: Signer, certs: CertServer) -> dict[str, Any]:
    return notification(signer, certs, ses_notification("Bounce", "ses-1", ["victim@mail.example"]))


async def test_cert_host_down_is_a_503_so_sns_retries(
    hook_settings: Settings, engine: AsyncEngine, signer: Signer
) -> None:
    with cert_server({}) as empty:  # answers 404 for the certificate
        async with app_client(hook_settings) as hook:
            envelope = signed_message(signer.key, empty.url(CERT_PATH), topic_arn=TOPIC,
                                      message=ses_notification("Bounce", "x", ["a@mail.example"]))  # fmt: skip
            assert_error(await post(hook, envelope), 503, "service_unavailable")
    assert (await written(engine))[:2] == (0, 0)


async def test_subscription_confirmation_only_for_known_topics(
    hook: httpx.AsyncClient, signer: Signer, certs: CertServer
) -> None:
    known = signed_message(signer.key, certs.url(CERT_PATH), type="SubscriptionConfirmation", topic_arn=TOPIC,
                           message="You have chosen to subscribe", subscribe_url=certs.url(CONFIRM_PATH) + "?t=1",
                           version="2")  # fmt: skip
    r = await post(hook, known)
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    assert certs.count(CONFIRM_PATH) == 1
    unknown = signed_message(
        signer.key,
        certs.url(CERT_PATH),
        type="SubscriptionConfirmation",
        topic_arn=FOREIGN_TOPIC,
        message="subscribe?",
        subscribe_url=certs.url(CONFIRM_PATH),
    )
    assert assert_error(await post(hook, unknown), 403)["details"] == {"reason": "foreign_topic"}
    off_pattern = signed_message(signer.key, certs.url(CERT_PATH), type="SubscriptionConfirmation", topic_arn=TOPIC,
                                 message="subscribe?", subscribe_url="https://attacker.example/confirm")  # fmt: skip
    assert assert_error(await post(hook, off_pattern), 403)["details"] == {"reason": "untrusted_url"}
    assert certs.count(CONFIRM_PATH) == 1


async def test_parallel_replays_apply_once(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine,
    signer: Signer, certs: CertServer,
) -> None:  # fmt: skip
    campaign = (await client.post("/campaigns", headers=auth, json={
        "name": "C", "subject": "s", "body": "b", "recipients": ["x@example.com"],
        "sendAt": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    })).json()["id"]  # fmt: skip
    message = await _sent_ses_message(engine, "twice@mail.example", "ses-twice", campaign)
    envelope = notification(signer, certs, ses_notification("Complaint", "ses-twice", ["twice@mail.example"]))
    other = notification(signer, certs, ses_notification("Complaint", "ses-twice", ["twice@mail.example"]))
    answers = await asyncio.gather(*(post(hook, e) for e in [envelope] * 6 + [other] * 6))
    assert sorted(r.json()["status"] for r in answers) == ["applied"] * 2 + ["duplicate"] * 10
    trail = (await client.get(f"/notifications/{message}", headers=auth)).json()["events"]
    assert [e["event"] for e in trail] == ["accepted", "complained", "complained"]
    assert (await client.get(f"/campaigns/{campaign}", headers=auth)).json()["deliverability"]["complaints"] == 1


async def test_complaints_past_the_limit_pause_the_campaign_after_the_answer(
    client: httpx.AsyncClient, auth: dict[str, str], hook_settings: Settings, engine: AsyncEngine,
    signer: Signer, certs: CertServer,
) -> None:  # fmt: skip
    """20 sent through SES, one still queued: a second complaint (10 % > 0.1 %, past a sample of 10) pauses it."""
    async with engine.begin() as conn:
        campaign = (await conn.execute(text(
            "INSERT INTO campaigns (name, subject, body, status, channel, total_messages, sent_count, queued_count) "
            "VALUES ('guarded', 's', 'b', 'processing', 'email', 21, 20, 1) RETURNING id"
        ))).scalar_one()  # fmt: skip
        await conn.execute(text(
            "INSERT INTO messages (campaign_id, channel, recipient, status, attempts, provider, provider_message_id) "
            "SELECT :c, 'email', 'r' || i || '@mail.example', 'sent', 1, 'ses', 'ses-' || i "
            "FROM generate_series(1, 20) i"
        ), {"c": campaign})  # fmt: skip
        await conn.execute(text("INSERT INTO messages (campaign_id, channel, recipient, status, job_id) "
                                "VALUES (:c, 'email', 'last@mail.example', 'queued', 1)"), {"c": campaign})  # fmt: skip
    strict = hook_settings.with_(guard_min_sent=10)
    async with app_client(strict) as hook:
        first = await post(
            hook, notification(signer, certs, ses_notification("Complaint", "ses-1", ["r1@mail.example"]))
        )
        assert first.json()["status"] == "applied"
        body = (await client.get(f"/campaigns/{campaign}", headers=auth)).json()
        assert body["status"] == "paused"  # 1 of 20 = 5 %: already over 0.1 %
        reason = body["deliverability"]["pausedReason"]
        assert reason.startswith("complaint rate 5.00% (1 of 20 sent)") and "NOTIFQ_MAX_COMPLAINT_RATE" in reason
        assert body["progress"]["pending"] == 1 and body["deliverability"]["complaintRate"] == 0.05
        resumed = await client.post(f"/campaigns/{campaign}/resume", headers=auth)
        assert resumed.status_code == 202 and resumed.json()["deliverability"]["pausedReason"] is None
        # Judged afresh after the resume: a late complaint about a message sent before the pause does not count.
        await post(hook, notification(signer, certs, ses_notification("Complaint", "ses-2", ["r2@mail.example"])))
        assert (await client.get(f"/campaigns/{campaign}", headers=auth)).json()["status"] == "processing"
