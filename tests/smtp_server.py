"""A real SMTP server for the tests (aiosmtpd in its own thread), which keeps what it receives.

Fixtures (register this module as a pytest plugin to use them elsewhere):
- `smtp_server`: plain SMTP on 127.0.0.1, AUTH offered (not required) for SMTP_USER / SMTP_PASSWORD.
- `start_smtp_server`: builds servers with other options (STARTTLS, implicit TLS, required AUTH).
- `smtp_tls`: a self-signed certificate for 127.0.0.1 with matching server and client SSL contexts.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SMTP_USER = "notifq"
SMTP_PASSWORD = "correct horse"
SERVER_NAME = "smtp.notifq.test"  # also spares aiosmtpd a getfqdn() per connection
DROP = "<close the connection without replying>"  # a scripted reply: the server vanishes mid-command


@dataclass(frozen=True)
class ReceivedEmail:
    """One accepted message: the envelope as the server saw it and the parsed content."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    peer: tuple[Any, ...]  # (host, port) of the client's side of the connection
    tls: bool  # STARTTLS or implicit TLS
    login: str | None

    @property
    def body(self) -> str:
        """The decoded text with SMTP's CRLF line ends turned back into LF."""
        return str(self.message.get_content()).replace("\r\n", "\n")


class RecordingHandler:
    """Stores accepted envelopes; tests can script the next RCPT or DATA replies."""

    def __init__(self) -> None:
        self.received: list[ReceivedEmail] = []
        self.replies: dict[str, list[str]] = {"RCPT": [], "DATA": []}
        self.data_delay = 0.0  # seconds handle_DATA waits before answering (a slow relay)
        self.lock = threading.Lock()

    def _scripted(self, stage: str) -> str | None:
        with self.lock:
            return self.replies[stage].pop(0) if self.replies[stage] else None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self._scripted("RCPT")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        reply = self._scripted("DATA")
        if reply == DROP and server.transport is not None:
            server.transport.close()
            return "421 4.3.0 closing"  # never reaches the client
        if reply is not None:
            return reply
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        received = ReceivedEmail(
            mail_from=str(envelope.mail_from), rcpt_tos=list(envelope.rcpt_tos), message=message, raw=raw,
            peer=tuple(session.peer or ()), tls=tls, login=login,
        )  # fmt: skip
        with self.lock:
            self.received.append(received)
        return "250 2.0.0 Message accepted for delivery"


def check_password(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    expected = (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == expected
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _RecordingController(Controller):
    """Controller that remembers every server-side session, so tests can count or drop them."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sessions: list[SMTP] = []

    def factory(self) -> SMTP:
        smtp: SMTP = super().factory()  # type: ignore[no-untyped-call]
        self.sessions.append(smtp)
        return smtp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpTestServer:
    """aiosmtpd on 127.0.0.1 and a free port, with what it received and how many connections it saw."""

    def __init__(self, **smtp_options: Any) -> None:
        self.handler = RecordingHandler()
        self.host = "127.0.0.1"
        for _ in range(5):  # another process may grab the port between free_port() and bind
            self.port = free_port()
            controller = _RecordingController(
                self.handler, hostname=self.host, port=self.port, server_hostname=SERVER_NAME, **smtp_options
            )
            try:
                controller.start()
            except (OSError, RuntimeError):
                continue
            break
        else:
            raise RuntimeError("could not start the test SMTP server")
        self.controller = controller
        controller.sessions.clear()  # forget the readiness probe Controller.start() made

    @property
    def received(self) -> list[ReceivedEmail]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def connections(self) -> int:
        """Client connections accepted since the server started."""
        return len(self.controller.sessions)

    def reply_next(self, stage: str, reply: str, times: int = 1) -> None:
        """Answer the next `times` RCPT or DATA commands with `reply` ("550 5.1.1 No such user", or DROP)."""
        with self.handler.lock:
            self.handler.replies[stage].extend([reply] * times)

    def drop_connections(self) -> int:
        """Close every open session from the server's side (as an idle timeout would); returns how many."""

        async def drop() -> int:
            open_sessions = [s for s in self.controller.sessions if s.transport is not None]
            for smtp in open_sessions:
                assert smtp.transport is not None
                smtp.transport.close()
            while any(s.transport is not None for s in open_sessions):  # noqa: ASYNC110  (aiosmtpd has no event)
                await asyncio.sleep(0.005)
            return len(open_sessions)

        return asyncio.run_coroutine_threadsafe(drop(), self.controller.loop).result(timeout=5)

    def stop(self) -> None:
        self.controller.stop()


@dataclass(frozen=True)
class TlsFiles:
    cert_pem: bytes
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext  # trusts only the test certificate, hostname checked


def make_tls(directory: Path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 / localhost (EC P-256: quick to generate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifq test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cadata=cert_pem.decode())
    return TlsFiles(cert_pem=cert_pem, server_context=server_context, client_context=client_context)


@pytest.fixture(scope="session")
def smtp_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def start_smtp_server() -> Iterator[Callable[..., SmtpTestServer]]:
    """Starts SmtpTestServers with the given aiosmtpd options; stops them after the test."""
    started: list[SmtpTestServer] = []

    def start(**smtp_options: Any) -> SmtpTestServer:
        started.append(SmtpTestServer(**smtp_options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp_server(start_smtp_server: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    """Plain SMTP; AUTH is offered without TLS (test only) but not required."""
    return start_smtp_server(authenticator=check_password, auth_require_tls=False)
