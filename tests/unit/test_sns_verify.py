"""SNS message verification against a real certificate server: what passes, what is refused and why, and
how often the certificate is fetched."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from notifq.sns_verify import (
    DEFAULT_CERT_URL_REGEX,
    MAX_CACHED_CERTS,
    Rejection,
    SnsMessage,
    SnsRejected,
    SnsVerifier,
    parse,
    string_to_sign,
)
from tests.sns_support import (
    CERT_PATH,
    CONFIRM_PATH,
    TEST_CERT_URL_REGEX,
    CertServer,
    Signer,
    body,
    cert_server,
    expired_signer,
    foreign_signer,
    make_signer,
    ses_notification,
    signed_message,
    sns_timestamp,
    unused_port,
)

TOPIC = "arn:aws:sns:us-east-1:123456789012:notifq-ses-feedback"
OTHER_TOPIC = "arn:aws:sns:us-east-1:999999999999:someone-else"
REAL_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"


@pytest.fixture(autouse=True)
def clean() -> None:
    """Overrides the suite's autouse `clean`: these tests need no PostgreSQL or Redis, so none is started."""


@pytest.fixture(scope="module")
def signer() -> Signer:
    return make_signer()


@pytest.fixture
def server(signer: Signer) -> Iterator[CertServer]:
    with cert_server({CERT_PATH: signer.cert_pem, CONFIRM_PATH: b"<ConfirmSubscriptionResponse/>"}) as started:
        yield started


@pytest.fixture
async def verifier() -> AsyncIterator[SnsVerifier]:
    v = SnsVerifier(cert_url_regex=TEST_CERT_URL_REGEX, topics=[TOPIC])
    yield v
    await v.aclose()


def notification(signer: Signer, server: CertServer, **kw: Any) -> dict[str, Any]:
    kw.setdefault("message", ses_notification("Bounce", "0100018c-ses-id", ["jane@example.com"]))
    kw.setdefault("topic_arn", TOPIC)
    return signed_message(signer.key, kw.pop("cert_url", server.url(CERT_PATH)), **kw)


def confirmation(signer: Signer, server: CertServer, **kw: Any) -> dict[str, Any]:
    kw.setdefault("subscribe_url", server.url(CONFIRM_PATH) + f"?Action=ConfirmSubscription&TopicArn={TOPIC}")
    kw.setdefault("message", f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, ...")
    return notification(signer, server, type="SubscriptionConfirmation", **kw)


async def refused(verifier: SnsVerifier, envelope: dict[str, Any] | bytes, **kw: Any) -> SnsRejected:
    raw = envelope if isinstance(envelope, bytes) else body(envelope)
    with pytest.raises(SnsRejected) as caught:
        await verifier.verify(parse(raw), **kw)
    return caught.value


# --- what passes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification", ""])
async def test_a_signed_notification_verifies(
    verifier: SnsVerifier, signer: Signer, server: CertServer, version: str, subject: str | None
) -> None:
    msg = parse(body(notification(signer, server, version=version, subject=subject)))
    await verifier.verify(msg)
    assert msg.type == "Notification" and msg.topic_arn == TOPIC and msg.subject == subject
    assert json.loads(msg.message)["bounce"]["bouncedRecipients"][0]["emailAddress"] == "jane@example.com"
    assert server.count(CERT_PATH) == 1


@pytest.mark.parametrize("kind", ["Bounce", "Complaint", "Delivery"])
async def test_every_ses_notification_kind_verifies(
    verifier: SnsVerifier, signer: Signer, server: CertServer, kind: str
) -> None:
    # Non-ASCII and escapes in Message must be signed over their decoded UTF-8, as SNS does.
    text = ses_notification(kind, "id-1", ["zoë@exämple.com", "b@example.com"])
    msg = parse(body(notification(signer, server, message=text, version="2")))
    await verifier.verify(msg)
    assert json.loads(msg.message)["notificationType"] == kind


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_subscription_confirmation_verifies_and_is_confirmed(
    verifier: SnsVerifier, signer: Signer, server: CertServer, version: str
) -> None:
    msg = parse(body(confirmation(signer, server, version=version, token="tok-123")))
    await verifier.verify(msg)
    assert msg.token == "tok-123" and msg.subscribe_url is not None
    await verifier.confirm_subscription(msg)
    assert server.requests == [CERT_PATH, msg.subscribe_url.removeprefix(server.url(""))]
    assert server.count(CONFIRM_PATH) == 1


async def test_an_unsubscribe_confirmation_verifies(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    msg = parse(body(notification(signer, server, type="UnsubscribeConfirmation", message="You have chosen...")))
    await verifier.verify(msg)
    with pytest.raises(SnsRejected) as caught:
        await verifier.confirm_subscription(msg)  # only a SubscriptionConfirmation is confirmed
    assert caught.value.code == "malformed"
    assert server.count(CONFIRM_PATH) == 0


def test_the_canonical_string_is_awss() -> None:
    common: dict[str, Any] = dict(
        message_id="m-1",
        topic_arn=TOPIC,
        message="hi\nthere",
        timestamp="2026-12-01T12:00:00.000Z",
        signature_version="1",
        signature="x",
        signing_cert_url=REAL_CERT_URL,
    )
    note = SnsMessage(type="Notification", subject="S", unsubscribe_url="https://u", **common)
    assert string_to_sign(note) == (
        b"Message\nhi\nthere\nMessageId\nm-1\nSubject\nS\nTimestamp\n2026-12-01T12:00:00.000Z\n"
        b"TopicArn\n" + TOPIC.encode() + b"\nType\nNotification\n"
    )
    assert b"Subject" not in string_to_sign(SnsMessage(type="Notification", **common))
    conf = SnsMessage(type="SubscriptionConfirmation", subscribe_url="https://s", token="t", **common)
    assert string_to_sign(conf) == (
        b"Message\nhi\nthere\nMessageId\nm-1\nSubscribeURL\nhttps://s\nTimestamp\n2026-12-01T12:00:00.000Z\n"
        b"Token\nt\nTopicArn\n" + TOPIC.encode() + b"\nType\nSubscriptionConfirmation\n"
    )


def test_the_default_regex_accepts_aws_and_nothing_else() -> None:
    assert re.match(DEFAULT_CERT_URL_REGEX, REAL_CERT_URL)
    assert re.match(DEFAULT_CERT_URL_REGEX, "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem")
    assert re.match(DEFAULT_CERT_URL_REGEX, "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-x.pem")
    for url in UNTRUSTED_URLS:
        assert not re.match(DEFAULT_CERT_URL_REGEX, url), url


# --- tampering and forgery -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Message", '{"notificationType":"Bounce","forged":true}'),
        ("Subject", "Something else"),
        ("MessageId", "another-id"),
        ("Timestamp", None),  # replaced by a fresh (valid) timestamp below
        ("Type", "UnsubscribeConfirmation"),
    ],
)
async def test_a_tampered_field_breaks_the_signature(
    verifier: SnsVerifier, signer: Signer, server: CertServer, key: str, value: str | None
) -> None:
    envelope = notification(signer, server, subject="Original", timestamp=sns_timestamp(datetime.now(UTC)))
    if key == "Type":  # a confirmation needs its own fields to parse; signed over a different string
        envelope |= {"SubscribeURL": server.url(CONFIRM_PATH), "Token": "t"}
    envelope[key] = value if value is not None else sns_timestamp(datetime.now(UTC) - timedelta(seconds=7))
    assert (await refused(verifier, envelope)).code == Rejection.BAD_SIGNATURE


async def test_dropping_the_subject_breaks_the_signature(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    envelope = notification(signer, server, subject="Original")
    del envelope["Subject"]
    assert (await refused(verifier, envelope)).code == Rejection.BAD_SIGNATURE


async def test_a_foreign_key_with_our_cert_url_is_refused(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    forged = notification(foreign_signer(), server)
    assert (await refused(verifier, forged)).code == Rejection.BAD_SIGNATURE


async def test_a_version_1_signature_does_not_pass_as_version_2(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    envelope = notification(signer, server, version="1")
    envelope["SignatureVersion"] = "2"
    assert (await refused(verifier, envelope)).code == Rejection.BAD_SIGNATURE


@pytest.mark.parametrize("garbage", ["not base64 at all!", "QUJD", "=" * 8])
async def test_a_garbage_signature_is_a_bad_signature(
    verifier: SnsVerifier, signer: Signer, server: CertServer, garbage: str
) -> None:
    envelope = notification(signer, server)
    envelope["Signature"] = garbage
    rejected = await refused(verifier, envelope)
    assert rejected.code == Rejection.BAD_SIGNATURE and not rejected.retryable


# --- refused before any fetch --------------------------------------------------------------------

UNTRUSTED_URLS = [
    "http://evil.example/SimpleNotificationService-x.pem",
    "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-x.pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
    "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-x.pem",
    "https://s3.amazonaws.com/attacker-bucket/SimpleNotificationService-x.pem",
    "https://evil.com/https://sns.us-east-1.amazonaws.com/x.pem",
]


@pytest.mark.parametrize("url", UNTRUSTED_URLS)
async def test_an_untrusted_cert_url_is_refused_without_a_fetch(signer: Signer, url: str) -> None:
    seen: list[httpx.Request] = []

    def tripwire(request: httpx.Request) -> httpx.Response:  # records a fetch that must not happen
        seen.append(request)
        return httpx.Response(500)

    v = SnsVerifier(cert_url_regex=DEFAULT_CERT_URL_REGEX, topics=[TOPIC], transport=httpx.MockTransport(tripwire))
    try:
        envelope = signed_message(signer.key, url, message="m", topic_arn=TOPIC)
        rejected = await refused(v, envelope)
    finally:
        await v.aclose()
    assert rejected.code == Rejection.UNTRUSTED_CERT_URL and not rejected.retryable
    assert seen == []


async def test_our_own_server_is_untrusted_under_the_default_regex(signer: Signer, server: CertServer) -> None:
    v = SnsVerifier(cert_url_regex=DEFAULT_CERT_URL_REGEX, topics=[TOPIC])
    try:
        rejected = await refused(v, notification(signer, server))
    finally:
        await v.aclose()
    assert rejected.code == Rejection.UNTRUSTED_CERT_URL
    assert server.requests == []


async def test_an_unknown_topic_is_foreign(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    rejected = await refused(verifier, notification(signer, server, topic_arn=OTHER_TOPIC))
    assert rejected.code == Rejection.FOREIGN_TOPIC
    assert server.requests == []


@pytest.mark.parametrize("shift", [timedelta(hours=-2), timedelta(minutes=10)])
async def test_a_stale_or_future_timestamp_is_expired(
    verifier: SnsVerifier, signer: Signer, server: CertServer, shift: timedelta
) -> None:
    stamped = notification(signer, server, timestamp=sns_timestamp(datetime.now(UTC) + shift))
    assert (await refused(verifier, stamped)).code == Rejection.EXPIRED
    assert server.requests == []


async def test_max_age_and_now_are_honoured(signer: Signer, server: CertServer) -> None:
    v = SnsVerifier(cert_url_regex=TEST_CERT_URL_REGEX, topics=[TOPIC], max_age=60)
    try:
        msg = parse(body(notification(signer, server, timestamp=sns_timestamp(datetime.now(UTC)))))
        await v.verify(msg)
        await v.verify(msg, now=time.time() + 50)
        with pytest.raises(SnsRejected, match="expired"):
            await v.verify(msg, now=time.time() + 70)
    finally:
        await v.aclose()


async def test_signature_version_3_is_unsupported(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    envelope = notification(signer, server)
    envelope["SignatureVersion"] = "3"
    assert (await refused(verifier, envelope)).code == Rejection.UNSUPPORTED_VERSION


@pytest.mark.parametrize("key", ["Signature", "SigningCertURL", "SignatureVersion"])
async def test_a_missing_signature_field_is_unsigned(
    verifier: SnsVerifier, signer: Signer, server: CertServer, key: str
) -> None:
    envelope = notification(signer, server)
    del envelope[key]
    assert (await refused(verifier, envelope)).code == Rejection.UNSIGNED
    assert server.requests == []


# --- malformed bodies ----------------------------------------------------------------------------


def _with(signer: Signer, **changes: Any) -> bytes:
    """A signed envelope, then changed: these tests are about shape, refused before any signature check."""
    envelope = signed_message(signer.key, "http://127.0.0.1:1/c.pem", message="m", topic_arn=TOPIC)
    for key, value in changes.items():
        if value is ...:
            del envelope[key]
        else:
            envelope[key] = value
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"Type=Notification&Message=hi", id="not-json"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b'"Notification"', id="string"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_body_that_is_not_an_object_is_malformed(raw: bytes) -> None:
    with pytest.raises(SnsRejected) as caught:
        parse(raw)
    assert caught.value.code == "malformed" and not caught.value.retryable


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"MessageId": 5}, id="number-in-a-field"),
        pytest.param({"Message": {"notificationType": "Bounce"}}, id="object-message"),
        pytest.param({"Subject": ["x"]}, id="list-subject"),
        pytest.param({"Signature": 12}, id="number-signature"),
        pytest.param({"TopicArn": ...}, id="no-topic"),
        pytest.param({"Message": ...}, id="no-message"),
        pytest.param({"Type": "Telegram"}, id="unknown-type"),
        pytest.param({"Type": ...}, id="no-type"),
        pytest.param({"Timestamp": "yesterday"}, id="bad-timestamp"),
        pytest.param({"Timestamp": "2026-12-01T12:00:00"}, id="zoneless-timestamp"),
        pytest.param({"Type": "SubscriptionConfirmation"}, id="confirmation-without-token"),
    ],
)
def test_a_wrongly_shaped_envelope_is_malformed(signer: Signer, changes: dict[str, Any]) -> None:
    with pytest.raises(SnsRejected) as caught:
        parse(_with(signer, **changes))
    assert caught.value.code == Rejection.MALFORMED


def test_a_null_subject_and_extra_keys_are_accepted(signer: Signer) -> None:
    msg = parse(_with(signer, Subject=None, MessageAttributes={"a": {"Type": "String", "Value": "b"}}))
    assert msg.subject is None and msg.unsubscribe_url is not None


# --- the certificate -----------------------------------------------------------------------------


async def test_an_expired_certificate_is_refused(verifier: SnsVerifier, server: CertServer) -> None:
    old = expired_signer()
    server.serve("/old.pem", old.cert_pem)
    rejected = await refused(verifier, signed_message(old.key, server.url("/old.pem"), message="m", topic_arn=TOPIC))
    assert rejected.code == Rejection.BAD_CERTIFICATE and not rejected.retryable


async def test_a_not_yet_valid_certificate_is_refused(verifier: SnsVerifier, server: CertServer) -> None:
    now = datetime.now(UTC)
    early = make_signer(valid_from=now + timedelta(hours=1), valid_until=now + timedelta(days=1))
    server.serve("/early.pem", early.cert_pem)
    envelope = signed_message(early.key, server.url("/early.pem"), message="m", topic_arn=TOPIC)
    assert (await refused(verifier, envelope)).code == Rejection.BAD_CERTIFICATE


async def test_a_body_that_is_not_a_certificate_is_refused(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    server.serve("/garbage.pem", b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    rejected = await refused(verifier, notification(signer, server, cert_url=server.url("/garbage.pem")))
    assert rejected.code == Rejection.BAD_CERTIFICATE


@pytest.mark.parametrize("status", [404, 500, 301])
async def test_a_failing_cert_url_is_retryable(
    verifier: SnsVerifier, signer: Signer, server: CertServer, status: int
) -> None:
    server.serve("/failing.pem", b"", status=status)
    rejected = await refused(verifier, notification(signer, server, cert_url=server.url("/failing.pem")))
    assert rejected.code == Rejection.CERT_UNAVAILABLE and rejected.retryable


async def test_a_closed_port_is_retryable(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    url = f"http://127.0.0.1:{unused_port()}{CERT_PATH}"
    rejected = await refused(verifier, notification(signer, server, cert_url=url))
    assert rejected.code == Rejection.CERT_UNAVAILABLE and rejected.retryable


async def test_a_slow_cert_url_times_out_as_retryable(signer: Signer, server: CertServer) -> None:
    server.serve("/slow.pem", signer.cert_pem, delay=1.0)
    v = SnsVerifier(cert_url_regex=TEST_CERT_URL_REGEX, topics=[TOPIC], timeout=0.2)
    try:
        rejected = await refused(v, notification(signer, server, cert_url=server.url("/slow.pem")))
    finally:
        await v.aclose()
    assert rejected.code == Rejection.CERT_UNAVAILABLE and rejected.retryable


async def test_an_oversized_cert_body_is_refused(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    server.serve("/huge.pem", signer.cert_pem + b"\n" * (64 * 1024))
    rejected = await refused(verifier, notification(signer, server, cert_url=server.url("/huge.pem")))
    assert rejected.code == Rejection.CERT_UNAVAILABLE and rejected.retryable


async def test_a_failed_fetch_is_not_cached(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    server.serve("/late.pem", b"", status=404)
    envelope = notification(signer, server, cert_url=server.url("/late.pem"))
    assert (await refused(verifier, envelope)).code == Rejection.CERT_UNAVAILABLE
    server.serve("/late.pem", signer.cert_pem)
    await verifier.verify(parse(body(envelope)))
    assert server.count("/late.pem") == 2


# --- the certificate cache -----------------------------------------------------------------------


async def test_the_certificate_is_fetched_once(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    for _ in range(2):
        await verifier.verify(parse(body(notification(signer, server))))
    assert server.count(CERT_PATH) == 1


async def test_concurrent_verifications_share_one_fetch(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    server.serve("/slowish.pem", signer.cert_pem, delay=0.2)
    messages = [parse(body(notification(signer, server, cert_url=server.url("/slowish.pem")))) for _ in range(20)]
    await asyncio.gather(*(verifier.verify(m) for m in messages))
    assert server.count("/slowish.pem") == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    server.serve("/slowish.pem", signer.cert_pem, delay=0.3)
    msg = parse(body(notification(signer, server, cert_url=server.url("/slowish.pem"))))
    first = asyncio.create_task(verifier.verify(msg))
    second = asyncio.create_task(verifier.verify(msg))
    await asyncio.sleep(0.1)
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert server.count("/slowish.pem") == 1


async def test_a_cached_certificate_is_dropped_when_it_expires(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    await verifier.verify(parse(body(notification(signer, server))))
    later = datetime.now(UTC) + timedelta(days=1, minutes=1)  # past the certificate's not_valid_after
    msg = parse(body(notification(signer, server, timestamp=sns_timestamp(later))))
    with pytest.raises(SnsRejected) as caught:
        await verifier.verify(msg, now=later.timestamp())
    assert caught.value.code == Rejection.BAD_CERTIFICATE
    assert server.count(CERT_PATH) == 2


async def test_the_cache_keeps_the_newest_entries(verifier: SnsVerifier, signer: Signer, server: CertServer) -> None:
    paths = [f"/cert-{i}.pem" for i in range(MAX_CACHED_CERTS + 1)]
    for path in paths:
        server.serve(path, signer.cert_pem)
        await verifier.verify(parse(body(notification(signer, server, cert_url=server.url(path)))))
    for path in (paths[0], paths[-1]):
        await verifier.verify(parse(body(notification(signer, server, cert_url=server.url(path)))))
    assert server.count(paths[0]) == 2  # the oldest was dropped
    assert server.count(paths[-1]) == 1


# --- confirming a subscription -------------------------------------------------------------------


async def test_a_subscribe_url_off_the_regex_is_not_visited(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    elsewhere = f"http://localhost:{server.port}{CONFIRM_PATH}?Token=t"  # same server, a host the regex refuses
    msg = parse(body(confirmation(signer, server, subscribe_url=elsewhere)))
    await verifier.verify(msg)  # the signature is fine: the URL is what is refused
    with pytest.raises(SnsRejected) as caught:
        await verifier.confirm_subscription(msg)
    assert caught.value.code == Rejection.UNTRUSTED_URL and not caught.value.retryable
    assert server.count(CONFIRM_PATH) == 0


async def test_an_unverified_confirmation_is_verified_before_visiting(
    verifier: SnsVerifier, signer: Signer, server: CertServer
) -> None:
    forged = confirmation(foreign_signer(), server)
    with pytest.raises(SnsRejected) as caught:
        await verifier.confirm_subscription(parse(body(forged)))
    assert caught.value.code == Rejection.BAD_SIGNATURE
    assert server.count(CONFIRM_PATH) == 0
    genuine = parse(body(confirmation(signer, server)))
    await verifier.confirm_subscription(genuine)  # not verified by the caller: confirm does it first
    assert server.count(CONFIRM_PATH) == 1


@pytest.mark.parametrize("status", [403, 500])
async def test_a_failing_subscribe_url_is_retryable(
    verifier: SnsVerifier, signer: Signer, server: CertServer, status: int
) -> None:
    server.serve("/confirm-fails", b"<Error/>", status=status)
    msg = parse(body(confirmation(signer, server, subscribe_url=server.url("/confirm-fails"))))
    await verifier.verify(msg)
    with pytest.raises(SnsRejected) as caught:
        await verifier.confirm_subscription(msg)
    assert caught.value.code == Rejection.CONFIRM_FAILED and caught.value.retryable


def test_only_fetch_failures_are_retryable() -> None:
    for code in Rejection:
        assert SnsRejected(code, "x").retryable == (code in {Rejection.CERT_UNAVAILABLE, Rejection.CONFIRM_FAILED})
    assert SnsRejected("malformed", "x").code == "malformed"
    with pytest.raises(ValueError):
        SnsRejected("no_such_code", "x")
