"""Verification of Amazon SNS HTTP(S) messages (SignatureVersion 1 and 2), before anything acts on them.

Anyone can POST a JSON envelope that looks like SNS to a public endpoint, so nothing in it is believed
until its RSA signature checks out against a certificate fetched from a URL on AWS's own SNS hosts
(a configurable regex), for a topic we subscribed to, recently enough that a captured message cannot be
replayed forever. The canonical string signed follows AWS's "Verifying the signatures of Amazon SNS
messages" and the key order of aws/aws-php-sns-message-validator. Certificates are cached in memory
until they expire and fetched once for concurrent requests, so a burst of bounces costs one fetch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEFAULT_CERT_URL_REGEX = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
MAX_CERT_BYTES = 64 * 1024  # an SNS signing certificate is ~2 KiB; anything much bigger is not one
MAX_CACHED_CERTS = 32  # SNS uses one certificate per region at a time: a few entries suffice
# How old a message the API accepts: SNS retries a delivery that got a 5xx (our outage) for as long as
# its delivery policy says, which can be hours; a replay inside the window is a no-op anyway (each
# MessageId is remembered 14 days, feedback.py), so the window only has to end before that memory does.
MAX_MESSAGE_AGE = 7 * 86400.0
FUTURE_SKEW = 300.0  # seconds a Timestamp may be ahead of our clock before it looks forged

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
_CONFIRMATIONS = frozenset({SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


class Rejection(StrEnum):
    """Why a message was refused; the API answers 403 for all but the retryable ones (503, so SNS retries)."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNTRUSTED_CERT_URL = "untrusted_cert_url"
    UNTRUSTED_URL = "untrusted_url"
    BAD_SIGNATURE = "bad_signature"
    BAD_CERTIFICATE = "bad_certificate"
    EXPIRED = "expired"
    FOREIGN_TOPIC = "foreign_topic"
    CERT_UNAVAILABLE = "cert_unavailable"
    CONFIRM_FAILED = "confirm_failed"


_RETRYABLE = frozenset({Rejection.CERT_UNAVAILABLE, Rejection.CONFIRM_FAILED})


class SnsRejected(Exception):
    """A refused message; `retryable` only when our network or AWS failed, never for what the sender sent."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: str = Rejection(code)
        self.message = message
        self.retryable = self.code in _RETRYABLE


@dataclass(frozen=True)
class SnsMessage:
    """The envelope's strings exactly as SNS sent them: the signature is over these bytes, not a normalised form."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: str
    signature_version: str | None
    signature: str | None
    signing_cert_url: str | None
    subject: str | None = None
    subscribe_url: str | None = None
    token: str | None = None
    unsubscribe_url: str | None = None


def _epoch(timestamp: str) -> float | None:
    """SNS sends ISO 8601 in UTC with a Z; a time without a zone would be read in ours, so it is refused."""
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def parse(body: bytes) -> SnsMessage:
    """Decode the POST body (SNS sends JSON as text/plain), refusing any shape SNS would not send."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise SnsRejected(Rejection.MALFORMED, "the body is not JSON") from exc
    if not isinstance(doc, dict):
        raise SnsRejected(Rejection.MALFORMED, "the body is not a JSON object")
    kind = doc.get("Type")
    if kind not in (NOTIFICATION, *_CONFIRMATIONS):
        raise SnsRejected(Rejection.MALFORMED, f"unknown Type {kind!r}")
    required = ["MessageId", "TopicArn", "Message", "Timestamp"]
    if kind in _CONFIRMATIONS:
        required += ["SubscribeURL", "Token"]

    def field(key: str, *, needed: bool = False) -> str | None:
        # Only the keys we read are checked: SNS adds others (e.g. MessageAttributes, an object).
        value: Any = doc.get(key)
        if value is None and not needed:
            return None
        if not isinstance(value, str):
            raise SnsRejected(Rejection.MALFORMED, f"{key} is missing or not a string")
        return value

    got = {key: field(key, needed=True) or "" for key in required}
    if _epoch(got["Timestamp"]) is None:
        raise SnsRejected(Rejection.MALFORMED, "Timestamp is not an ISO 8601 time with a zone")
    return SnsMessage(
        type=kind,
        message_id=got["MessageId"],
        topic_arn=got["TopicArn"],
        message=got["Message"],
        timestamp=got["Timestamp"],
        signature_version=field("SignatureVersion"),
        signature=field("Signature"),
        signing_cert_url=field("SigningCertURL"),
        subject=field("Subject") if kind == NOTIFICATION else None,
        subscribe_url=field("SubscribeURL"),
        token=field("Token"),
        unsubscribe_url=field("UnsubscribeURL"),
    )


def string_to_sign(msg: SnsMessage) -> bytes:
    """AWS's canonical form: fixed keys in byte order, each "Key\\nValue\\n"; Subject only when sent."""
    if msg.type == NOTIFICATION:
        pairs = [("Message", msg.message), ("MessageId", msg.message_id), ("Subject", msg.subject)]
        pairs += [("Timestamp", msg.timestamp), ("TopicArn", msg.topic_arn), ("Type", msg.type)]
    else:
        pairs = [("Message", msg.message), ("MessageId", msg.message_id), ("SubscribeURL", msg.subscribe_url)]
        pairs += [("Timestamp", msg.timestamp), ("Token", msg.token), ("TopicArn", msg.topic_arn), ("Type", msg.type)]
    return "".join(f"{key}\n{value}\n" for key, value in pairs if value is not None).encode()


def _is_plain_url(url: str) -> bool:
    """Printable ASCII only, and short: anything else is no URL SNS sends (and would make httpx raise)."""
    return 0 < len(url) <= 2048 and all(32 < ord(c) < 127 for c in url)


def _is_cert_url(regex: re.Pattern[str], url: str) -> bool:
    """Matches the operator's pattern, and is the shape of SNS's certificate URLs: a `.pem` path with no query
    (so query-string variants of one URL cannot flood the certificate cache or make us fetch on demand)."""
    if not (_is_plain_url(url) and regex.match(url)):
        return False
    parts = urlsplit(url)
    return bool(parts.hostname) and parts.path.endswith(".pem") and not parts.query and not parts.fragment


class SnsVerifier:
    """One per process: it holds the certificate cache and the HTTP client that fills it."""

    def __init__(
        self,
        *,
        cert_url_regex: str,
        topics: Iterable[str],
        max_age: float = 3600.0,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if isinstance(topics, str):
            raise TypeError("topics must be an iterable of ARNs, not one string")
        self._url_regex = re.compile(cert_url_regex)
        self._topics = frozenset(topics)
        self._max_age = max_age
        self._timeout = timeout
        # No redirects: a 3xx from an AWS host must not lead the fetch to a host the regex did not vet.
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport)
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[x509.Certificate]] = {}
        self._verified: weakref.WeakSet[SnsMessage] = weakref.WeakSet()

    async def verify(self, msg: SnsMessage, *, now: float | None = None) -> None:
        """Cheap local checks first, so a forged or foreign message never makes us fetch anything."""
        now = time.time() if now is None else now
        if not (msg.signature and msg.signing_cert_url and msg.signature_version):
            raise SnsRejected(Rejection.UNSIGNED, "Signature, SigningCertURL and SignatureVersion are required")
        algorithm = _HASHES.get(msg.signature_version)
        if algorithm is None:
            raise SnsRejected(Rejection.UNSUPPORTED_VERSION, f"SignatureVersion {msg.signature_version!r}")
        if msg.topic_arn not in self._topics:
            raise SnsRejected(Rejection.FOREIGN_TOPIC, f"topic {msg.topic_arn!r} is not ours")
        if not _is_cert_url(self._url_regex, msg.signing_cert_url):
            raise SnsRejected(Rejection.UNTRUSTED_CERT_URL, "SigningCertURL is not an SNS certificate URL")
        sent = _epoch(msg.timestamp)
        if sent is None or now - sent > self._max_age or sent - now > FUTURE_SKEW:
            raise SnsRejected(Rejection.EXPIRED, "Timestamp is out of the accepted window")
        cert = await self._certificate(msg.signing_cert_url, now)
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRejected(Rejection.BAD_CERTIFICATE, "the certificate's key is not RSA")
        try:
            signature = base64.b64decode(msg.signature, validate=True)
            key.verify(signature, string_to_sign(msg), padding.PKCS1v15(), algorithm())
        except (binascii.Error, ValueError, InvalidSignature) as exc:  # ValueError: non-ASCII base64
            raise SnsRejected(Rejection.BAD_SIGNATURE, "the signature does not match the message") from exc
        self._verified.add(msg)

    async def confirm_subscription(self, msg: SnsMessage) -> None:
        """Visit SubscribeURL, which SNS requires before it delivers, but never for an unverified message."""
        if msg.type != SUBSCRIPTION_CONFIRMATION:
            raise SnsRejected(Rejection.MALFORMED, f"a {msg.type} has nothing to confirm")
        if msg not in self._verified:
            await self.verify(msg)
        url = msg.subscribe_url or ""
        if not self._url_regex.match(url):  # else we would GET any URL a signed message names
            raise SnsRejected(Rejection.UNTRUSTED_URL, "SubscribeURL is not an SNS URL")
        if not _is_plain_url(url):
            raise SnsRejected(Rejection.UNTRUSTED_URL, "SubscribeURL is not a plain URL")
        try:
            async with asyncio.timeout(self._timeout), self._client.stream("GET", url) as response:
                status = response.status_code
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, TimeoutError) as exc:
            raise SnsRejected(Rejection.CONFIRM_FAILED, f"SubscribeURL failed: {type(exc).__name__}") from exc
        if not 200 <= status < 300:
            raise SnsRejected(Rejection.CONFIRM_FAILED, f"SubscribeURL answered {status}")

    async def _certificate(self, url: str, now: float) -> x509.Certificate:
        cert = self._certs.get(url)
        if cert is not None and cert.not_valid_after_utc.timestamp() <= now:
            del self._certs[url]
            cert = None
        if cert is None:
            task = self._inflight.get(url)
            if task is None:
                task = self._inflight[url] = asyncio.create_task(self._load(url))
            # Shielded: one waiter giving up must not cancel the fetch the others are waiting for.
            cert = await asyncio.shield(task)
        if not cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp():
            raise SnsRejected(Rejection.BAD_CERTIFICATE, "the certificate is outside its validity window")
        return cert

    async def _load(self, url: str) -> x509.Certificate:
        """Fetch, parse and cache; a failure is not cached, so the next message (or SNS's retry) tries again."""
        try:
            pem = await self._fetch(url)
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError as exc:
                raise SnsRejected(Rejection.BAD_CERTIFICATE, "SigningCertURL is not a PEM certificate") from exc
            if cert.not_valid_after_utc.timestamp() > time.time():  # an expired one would only be refused again
                self._certs[url] = cert
            while len(self._certs) > MAX_CACHED_CERTS:
                self._certs.popitem(last=False)
            return cert
        finally:
            self._inflight.pop(url, None)

    async def _fetch(self, url: str) -> bytes:
        body = bytearray()
        try:
            # httpx's timeout bounds each read; this bounds a server that trickles bytes slowly.
            async with asyncio.timeout(self._timeout), self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise SnsRejected(Rejection.CERT_UNAVAILABLE, f"SigningCertURL answered {response.status_code}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_CERT_BYTES:
                        raise SnsRejected(Rejection.CERT_UNAVAILABLE, "SigningCertURL sent more than 64 KiB")
        except (httpx.InvalidURL, UnicodeError) as exc:  # passed the regex, but no URL httpx can fetch
            raise SnsRejected(Rejection.UNTRUSTED_CERT_URL, "SigningCertURL is not a valid URL") from exc
        except (httpx.HTTPError, TimeoutError) as exc:
            raise SnsRejected(Rejection.CERT_UNAVAILABLE, f"SigningCertURL failed: {type(exc).__name__}") from exc
        return bytes(body)

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self._client.aclose()
