"""Test doubles for Amazon SNS over HTTP: signing keys and certificates, a certificate server, signed envelopes.

The signing here is written from AWS's documentation on its own, not with notifq.sns_verify's helpers, so a
test that verifies one of these messages checks the module against SNS's format rather than against itself.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

CERT_PATH = "/SimpleNotificationService-test.pem"
CONFIRM_PATH = "/confirm"
TEST_CERT_URL_REGEX = r"^http://127\.0\.0\.1:\d+/"


@dataclass(frozen=True)
class Signer:
    """A private key and the PEM of its self-signed certificate (what SNS keeps, and what it publishes)."""

    key: rsa.RSAPrivateKey
    cert_pem: bytes


def make_signer(
    *,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    common_name: str = "sns.amazonaws.com",
) -> Signer:
    """RSA 2048 and a self-signed X.509 certificate, by default valid from an hour ago to a day from now."""
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from or now - timedelta(hours=1))
        .not_valid_after(valid_until or now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return Signer(key=key, cert_pem=cert.public_bytes(serialization.Encoding.PEM))


def foreign_signer() -> Signer:
    """Someone else's key: a message it signs must not pass with our certificate URL."""
    return make_signer(common_name="attacker.example")


def expired_signer() -> Signer:
    now = datetime.now(UTC)
    return make_signer(valid_from=now - timedelta(days=2), valid_until=now - timedelta(days=1))


def unused_port() -> int:
    """A port nothing listens on (bound and released), for "the certificate host is down"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class _Route:
    body: bytes
    status: int = 200
    delay: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) is expected; anything else is still reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class CertServer:
    """A real HTTP server on 127.0.0.1 serving certificates (and SubscribeURL), recording every request."""

    def __init__(self, routes: dict[str, bytes] | None = None) -> None:
        self._routes: dict[str, _Route] = {path: _Route(body) for path, body in (routes or {}).items()}
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, path: str, body: bytes, *, status: int = 200, delay: float = 0.0) -> str:
        """Answer GET `path` (query ignored) with `body`; returns the path's full URL."""
        with self._lock:
            self._routes[path] = _Route(body, status, delay)
        return self.url(path)

    @property
    def requests(self) -> list[str]:
        """Every requested path, query included, in order."""
        with self._lock:
            return list(self._requests)

    def count(self, path: str) -> int:
        return sum(1 for seen in self.requests if urlsplit(seen).path == path)

    @property
    def port(self) -> int:
        assert self._server is not None, "CertServer is not started"
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> CertServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner._requests.append(self.path)
                    route = owner._routes.get(urlsplit(self.path).path)
                if route is None:
                    route = _Route(b"not found", 404)
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> CertServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def cert_server(routes: dict[str, bytes] | None = None) -> Iterator[CertServer]:
    """For a pytest fixture: `with cert_server({CERT_PATH: pem}) as server: yield server`."""
    with CertServer(routes) as server:
        yield server


def sns_timestamp(when: datetime | None = None) -> str:
    """SNS's format: UTC, milliseconds, a Z (e.g. 2026-12-01T12:00:00.000Z)."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def signed_message(
    key: rsa.RSAPrivateKey,
    cert_url: str,
    *,
    type: str = "Notification",
    message: str,
    topic_arn: str,
    version: str = "1",
    subject: str | None = None,
    timestamp: str | None = None,
    subscribe_url: str | None = None,
    token: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """The JSON envelope SNS POSTs, signed as SNS signs it (SHA1withRSA for version "1", SHA256withRSA else)."""
    message_id = message_id or str(uuid.uuid4())
    timestamp = timestamp or sns_timestamp()
    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else "us-east-1"
    envelope: dict[str, Any] = {"Type": type, "MessageId": message_id}
    if type == "Notification":
        envelope["TopicArn"] = topic_arn
        if subject is not None:
            envelope["Subject"] = subject
        envelope["Message"] = message
        envelope["Timestamp"] = timestamp
        # Canonical: Message, MessageId, Subject (if any), Timestamp, TopicArn, Type -- "name\nvalue\n" each.
        canonical = f"Message\n{message}\nMessageId\n{message_id}\n"
        if subject is not None:
            canonical += f"Subject\n{subject}\n"
        canonical += f"Timestamp\n{timestamp}\nTopicArn\n{topic_arn}\nType\n{type}\n"
    else:
        token = token or uuid.uuid4().hex * 4
        subscribe_url = subscribe_url or (
            f"https://sns.{region}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}"
        )
        envelope |= {"Token": token, "TopicArn": topic_arn, "Message": message, "SubscribeURL": subscribe_url}
        envelope["Timestamp"] = timestamp
        # Canonical: Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type.
        canonical = (
            f"Message\n{message}\nMessageId\n{message_id}\nSubscribeURL\n{subscribe_url}\n"
            f"Timestamp\n{timestamp}\nToken\n{token}\nTopicArn\n{topic_arn}\nType\n{type}\n"
        )
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical.encode("utf-8"), padding.PKCS1v15(), algorithm)
    envelope["SignatureVersion"] = version
    envelope["Signature"] = base64.b64encode(signature).decode("ascii")
    envelope["SigningCertURL"] = cert_url
    if type == "Notification":
        envelope["UnsubscribeURL"] = (
            f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:{uuid.uuid4()}"
        )
    return envelope


def body(envelope: dict[str, Any]) -> bytes:
    """What SNS actually sends: the envelope as JSON text (Content-Type: text/plain; charset=UTF-8)."""
    return json.dumps(envelope, indent=2).encode("utf-8")


def ses_notification(kind: str, message_id: str, recipients: list[str], *, bounce_type: str = "Permanent") -> str:
    """An SES feedback notification as SNS carries it in `Message` (shapes from AWS's SES developer guide)."""
    now = sns_timestamp()
    feedback_id = f"{uuid.uuid4().hex[:16]}-{uuid.uuid4()}-000000"
    mail = {"timestamp": now, "source": "sender@example.com", "messageId": message_id, "destination": recipients}
    doc: dict[str, Any]
    if kind == "Bounce":
        permanent = bounce_type == "Permanent"
        bounced = [
            {
                "emailAddress": address,
                "action": "failed",
                "status": "5.1.1" if permanent else "4.2.2",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown" if permanent else "smtp; 452 4.2.2 mailbox full",
            }
            for address in recipients
        ]
        doc = {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": bounced,
                "timestamp": now,
                "feedbackId": feedback_id,
                "reportingMTA": "dns; email.example.com",
            },
            "mail": mail,
        }
    elif kind == "Complaint":
        doc = {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": address} for address in recipients],
                "timestamp": now,
                "feedbackId": feedback_id,
                "complaintFeedbackType": "abuse",
                "userAgent": "ExampleCorp Feedback Loop (V0.01)",
                "arrivalDate": now,
            },
            "mail": mail,
        }
    elif kind == "Delivery":
        doc = {
            "notificationType": "Delivery",
            "delivery": {
                "timestamp": now,
                "processingTimeMillis": 546,
                "recipients": recipients,
                "smtpResponse": "250 ok:  Message 64111812 accepted",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
            "mail": mail,
        }
    else:
        raise ValueError(f"unknown SES notification kind {kind!r} (Bounce, Complaint or Delivery)")
    return json.dumps(doc, separators=(",", ":"))
