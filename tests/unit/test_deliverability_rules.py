"""The deliverability loop's pure rules: address keys, link tokens, SES event parsing, provider answers."""

from __future__ import annotations

import json
import random
import re

import aiosmtplib
import httpx
import pytest
from botocore.exceptions import ClientError

from notifq.addresses import LOOSE_PHONE_PATTERN, MAX_LOOSE_PHONE, suppression_key
from notifq.errors import PermanentError, ProviderConfigError, RecipientRejected, TransientError
from notifq.providers import fcm, smtp, sns
from notifq.ses_events import NotSesEvent, parse
from notifq.settings import Settings
from notifq.unsubscribe_links import link_for, link_key, message_of, token_for
from notifq.vocabulary import FeedbackKind


@pytest.fixture(autouse=True)
def clean() -> None:
    """Pure functions: no PostgreSQL or Redis to empty (overrides conftest's autouse `clean`)."""


@pytest.mark.parametrize(("channel", "raw", "key"), [
    ("email", "Ann.Lee@Example.ORG", "Ann.Lee@example.org"),
    ("email", " a@b.co", None),  # exactly what /openapi.json's pattern says: no spaces
    ("email", "not-an-address", None),
    ("email", "a@b", None),
    ("sms", "+44 20 7946 0958", "+442079460958"),
    ("sms", "0044 (20) 7946-0958", "+442079460958"),
    ("sms", "+1.555.010.9999", "+15550109999"),
    ("sms", "020 7946 0958", None),
    ("sms", "+0123456789", None),
    ("push", "fcm:token-1_x.y", "fcm:token-1_x.y"),
    ("push", "with space", None),
    ("inapp", "u-1", None),
])  # fmt: skip
def test_suppression_keys(channel: str, raw: str, key: str | None) -> None:
    assert suppression_key(channel, raw) == key


def test_the_served_phone_pattern_is_what_the_api_takes() -> None:
    """/openapi.json's pattern for a phone on POST /suppressions accepts exactly what suppression_key takes."""
    pattern = re.compile(LOOSE_PHONE_PATTERN)
    rng = random.Random(13)
    for _ in range(20_000):
        value = "".join(rng.choice("+0123456789 ().-/") for _ in range(rng.randint(0, 70)))
        served = pattern.fullmatch(value) is not None and len(value) <= MAX_LOOSE_PHONE  # pattern and maxLength
        assert served == (suppression_key("sms", value) is not None), value


def test_link_tokens_round_trip_and_refuse_forgeries() -> None:
    key = link_key(Settings(jwt_secret="s" * 40))
    other = link_key(Settings(jwt_secret="t" * 40))
    assert link_key(Settings(jwt_secret="s" * 40, unsubscribe_secret="u" * 32)) != key
    for message_id in (1, 42, 2**63 - 1):
        token = token_for(key, message_id)
        assert len(token) == 32 and message_of(key, token) == message_id
        assert message_of(other, token) is None
        flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
        assert message_of(key, flipped) is None
    for junk in ("", "x" * 32, "x" * 31, "é" * 32, "\x00" * 32, "====" * 8, token_for(key, 1) + "A"):
        assert message_of(key, junk) is None
    settings = Settings(jwt_secret="s" * 40, public_url="https://n.example/")
    assert link_for(settings, key, 7) == f"https://n.example/u/{token_for(key, 7)}"
    assert link_for(Settings(jwt_secret="s" * 40, host="0.0.0.0", port=9000), key, 7).startswith(
        "http://127.0.0.1:9000/u/"
    )


def test_ses_events_are_read_from_both_publishers() -> None:
    bounce = {"notificationType": "Bounce", "mail": {"messageId": "m-1"}, "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "a@x.test", "status": "5.1.1", "diagnosticCode": "smtp; 550 gone"},
                              {"emailAddress": 7}]}}  # fmt: skip
    event = parse(json.dumps(bounce))
    assert event.ses_message_id == "m-1" and [(r.kind, r.address) for r in event.reports] == [
        (FeedbackKind.HARD_BOUNCE, "a@x.test")]  # fmt: skip
    assert event.reports[0].detail == "Permanent/General; 5.1.1; smtp; 550 gone"
    soft = {**bounce, "bounce": {**bounce["bounce"], "bounceType": "Transient"}}  # type: ignore[dict-item]
    assert parse(json.dumps(soft)).reports[0].kind == FeedbackKind.SOFT_BOUNCE
    recipients = [{"emailAddress": "b@x.test"}]
    complaint = {"eventType": "Complaint", "mail": {"messageId": "m-2"},
                 "complaint": {"complainedRecipients": recipients, "complaintFeedbackType": "abuse"}}  # fmt: skip
    assert [(r.kind, r.detail) for r in parse(json.dumps(complaint)).reports] == [(FeedbackKind.COMPLAINT, "abuse")]
    delivery = {"notificationType": "Delivery", "mail": {"messageId": "m-3"},
                "delivery": {"recipients": ["c@x.test"], "smtpResponse": "250 ok"}}  # fmt: skip
    assert parse(json.dumps(delivery)).reports[0].kind == FeedbackKind.DELIVERY
    assert parse(json.dumps({"eventType": "Open", "mail": {}})).reports == ()
    for bad in ("nope", "[]", '{"mail": {}}', '{"notificationType": "Bounce"}'):
        with pytest.raises(NotSesEvent):
            parse(bad)


def test_provider_answers_that_suppress() -> None:
    opted = ClientError({"Error": {"Code": "OptedOut", "Message": "opted out"}}, "Publish")
    outcome = sns.classify(opted)
    assert isinstance(outcome, RecipientRejected) and outcome.kind == FeedbackKind.OPTED_OUT_SMS
    assert not isinstance(sns.classify(ClientError({"Error": {"Code": "InvalidParameter"}}, "Publish")),
                          RecipientRejected)  # fmt: skip

    def fcm_answer(status: int, code: str, message: str) -> httpx.Response:
        body = {"error": {"status": "X", "message": message,
                          "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                       "errorCode": code}]}}  # fmt: skip
        return httpx.Response(status, json=body)

    mismatch = fcm.classify(fcm_answer(403, "SENDER_ID_MISMATCH", "other sender"))
    assert isinstance(mismatch, PermanentError) and not isinstance(mismatch, RecipientRejected)
    for status, code, message in ((404, "UNREGISTERED", "gone"),
                                  (400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration "
                                                            "token")):  # fmt: skip
        dead = fcm.classify(fcm_answer(status, code, message))
        assert isinstance(dead, RecipientRejected) and dead.kind == FeedbackKind.INVALID_TOKEN, code
    payload = fcm.classify(fcm_answer(400, "INVALID_ARGUMENT", "data must be strings"))
    assert isinstance(payload, PermanentError) and not isinstance(payload, RecipientRejected)

    refused = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "a@x")])
    bounce = smtp.classify(refused)
    assert isinstance(bounce, RecipientRejected) and bounce.kind == FeedbackKind.HARD_BOUNCE
    later = smtp.classify(aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "busy", "a@x")]))
    assert isinstance(later, TransientError)
    assert not isinstance(smtp.classify(aiosmtplib.SMTPResponseException(554, "content refused")), RecipientRejected)

    def rcpt(code: int, text: str) -> object:
        return smtp.classify(aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(code, text, "a@x")]))

    for code, text in ((550, "5.1.1 <a@x>: Recipient address rejected: User unknown"), (550, "No such user"),
                       (553, "5.1.3 bad address syntax"), (550, "5.2.1 mailbox disabled"),
                       (551, "user not local")):  # fmt: skip
        assert isinstance(rcpt(code, text), RecipientRejected), text
    for code, text in ((550, "5.7.1 Service unavailable; client host blocked using Spamhaus"),
                       (550, "5.7.606 Access denied, banned sending IP"), (552, "5.2.2 mailbox full"),
                       (550, "Message rejected for policy reasons")):  # fmt: skip
        outcome = rcpt(code, text)
        assert isinstance(outcome, PermanentError) and not isinstance(outcome, RecipientRejected), text
    assert isinstance(rcpt(554, "5.7.1 <a@x>: Relay access denied"), ProviderConfigError)
