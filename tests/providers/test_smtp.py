"""SmtpProvider against a real aiosmtpd server: what arrives, TLS and AUTH, reply codes, the pool."""

# ruff: noqa: F811  (the fixtures imported below are parameters of the tests)

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from notifq.errors import ConfigError, PermanentError, ProviderConfigError, ThrottledError, TransientError
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.providers.smtp import SmtpProvider, classify, classify_reply
from tests.loop_probe import loop_ticks
from tests.smtp_server import (  # noqa: F401  (fixtures)
    DROP,
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpTestServer,
    TlsFiles,
    check_password,
    free_port,
    smtp_server,
    smtp_tls,
    start_smtp_server,
)

MakeSmtp = Callable[..., SmtpProvider]
SENDER = "campaigns@mail.notifq.test"


def outgoing(recipient: str = "reader@elsewhere.test", subject: str = "Hello", body: str = "Body",
             message_id: int = 1, attempt: int = 1) -> OutgoingMessage:  # fmt: skip
    return OutgoingMessage(message_id=message_id, attempt=attempt, recipient=recipient, subject=subject, body=body)


@pytest.fixture
async def make_smtp() -> AsyncIterator[MakeSmtp]:
    """Builds SmtpProviders (plain SMTP, short timeout unless told) and closes them after the test."""
    made: list[SmtpProvider] = []

    def make(server: SmtpTestServer | None = None, **kwargs: Any) -> SmtpProvider:
        if server is not None:
            kwargs.setdefault("host", server.host)
            kwargs.setdefault("port", server.port)
        kwargs.setdefault("from_email", SENDER)
        kwargs.setdefault("security", "none")
        kwargs.setdefault("timeout", 5.0)
        kwargs.setdefault("local_hostname", "worker.notifq.test")
        made.append(SmtpProvider(**kwargs))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


# --- what the server receives -------------------------------------------------------------


async def test_email_arrives_with_headers_body_and_exact_envelope(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp
) -> None:
    """The server gets From/To/Subject/Date/Message-ID, a UTF-8 text body, and exactly one envelope recipient."""
    provider = make_smtp(smtp_server)
    subject, body = "Grüße, ✓ launch day", "Line one\nLine two — ünïcode\n"

    result = await provider.send(outgoing("reader@elsewhere.test", subject, body, message_id=42, attempt=2))

    assert isinstance(result, SendResult)
    assert result.provider == "smtp"
    [got] = smtp_server.received
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["reader@elsewhere.test"]
    msg = got.message
    assert msg["From"] == SENDER
    assert msg["To"] == "reader@elsewhere.test"
    assert msg["Subject"] == subject
    assert msg["Message-ID"] == result.provider_message_id
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("<") and result.provider_message_id.endswith("@mail.notifq.test>")
    assert ".42.2@" in result.provider_message_id  # names notifq's message and attempt
    assert str(msg["Date"]).endswith("+0000")
    sent_at = email.utils.parsedate_to_datetime(str(msg["Date"]))
    assert abs(time.time() - sent_at.timestamp()) < 60
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert got.body == body
    assert got.tls is False
    assert got.login is None


async def test_each_message_gets_its_own_message_id(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    provider = make_smtp(smtp_server)
    results = [await provider.send(outgoing(message_id=7)) for _ in range(3)]
    assert len({r.provider_message_id for r in results}) == 3
    assert [m.message["Message-ID"] for m in smtp_server.received] == [r.provider_message_id for r in results]


class HeaderRecipientsProvider(SmtpProvider):
    """Adds Cc/Bcc/extra To headers, as a template bug or a future feature might."""

    def build_email(self, message: OutgoingMessage) -> EmailMessage:
        msg = super().build_email(message)
        msg["Cc"] = "copy@elsewhere.test"
        msg["Bcc"] = "hidden@elsewhere.test"
        return msg


async def test_envelope_recipients_never_come_from_headers(smtp_server: SmtpTestServer) -> None:
    """Even with Cc/Bcc headers present, the only RCPT TO is the message's recipient (and Bcc is not sent)."""
    provider = HeaderRecipientsProvider(host=smtp_server.host, port=smtp_server.port, from_email=SENDER,
                                        security="none", timeout=5)  # fmt: skip
    try:
        await provider.send(outgoing("reader@elsewhere.test", body="To: other@elsewhere.test\nBcc: x@elsewhere.test"))
    finally:
        await provider.aclose()
    [got] = smtp_server.received
    assert got.rcpt_tos == ["reader@elsewhere.test"]
    assert got.message["Cc"] == "copy@elsewhere.test"
    assert got.message["Bcc"] is None


async def test_a_comma_in_the_subject_is_fine(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    """Commas only matter in address headers; "Hello, Alice" is an ordinary subject."""
    await make_smtp(smtp_server).send(outgoing(subject="Hello, Alice"))
    assert smtp_server.received[0].message["Subject"] == "Hello, Alice"


@pytest.mark.parametrize("recipient", [
    "reader@elsewhere.test\r\nBcc: evil@elsewhere.test", "reader@elsewhere.test\nRCPT TO:<evil@elsewhere.test>",
    "reader@elsewhere.test, evil@elsewhere.test", "reader@elsewhere.test,evil@elsewhere.test",
    "Reader <reader@elsewhere.test>", "<reader@elsewhere.test>", "reader@elsewhere.test\x00", "no-at-sign", "",
    "reader @elsewhere.test",
])  # fmt: skip
async def test_injected_recipients_are_refused_before_connecting(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp, recipient: str
) -> None:
    """Line breaks, commas, display names and other non-bare addresses fail permanently; nothing is sent."""
    with pytest.raises(PermanentError):
        await make_smtp(smtp_server).send(outgoing(recipient))
    assert smtp_server.connections == 0
    assert smtp_server.received == []


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: evil@elsewhere.test", "Hi\nX-Injected: 1", "Hi\rthere", "Hi\x00"])
async def test_subjects_with_line_breaks_are_refused(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp, subject: str
) -> None:
    with pytest.raises(PermanentError, match="subject"):
        await make_smtp(smtp_server).send(outgoing(subject=subject))
    assert smtp_server.connections == 0


# --- AUTH and TLS ---------------------------------------------------------------------------


async def test_auth_plain_connection(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    """With credentials the session authenticates before sending."""
    provider = make_smtp(smtp_server, username=SMTP_USER, password=SMTP_PASSWORD)
    await provider.send(outgoing())
    assert smtp_server.received[0].login == SMTP_USER


async def test_wrong_password_is_a_configuration_error_and_sends_nothing(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp
) -> None:
    """535 concerns our account, not the message: ProviderConfigError, so the worker holds the provider."""
    provider = make_smtp(smtp_server, username=SMTP_USER, password="wrong")
    with pytest.raises(ProviderConfigError, match="535") as info:
        await provider.send(outgoing())
    assert isinstance(info.value.__cause__, aiosmtplib.SMTPAuthenticationError)
    assert f"{smtp_server.host}:{smtp_server.port}" in str(info.value) and "NOTIFQ_SMTP_PASSWORD" in str(info.value)
    assert "wrong" not in str(info.value)  # the password itself is never in an error
    assert smtp_server.received == []
    with pytest.raises(ProviderConfigError, match="535"):
        await provider.check()


async def test_check_logs_in_and_quits_without_sending(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    provider = make_smtp(smtp_server, username=SMTP_USER, password=SMTP_PASSWORD)
    await provider.check()
    assert smtp_server.connections == 1
    assert smtp_server.received == []


async def test_starttls_then_auth(
    start_smtp_server: Callable[..., SmtpTestServer], smtp_tls: TlsFiles, make_smtp: MakeSmtp
) -> None:
    """STARTTLS with a verified certificate, then AUTH (which the server only allows over TLS)."""
    server = start_smtp_server(tls_context=smtp_tls.server_context, require_starttls=True,
                               authenticator=check_password, auth_required=True)  # fmt: skip
    provider = make_smtp(server, security="starttls", tls_context=smtp_tls.client_context, username=SMTP_USER,
                         password=SMTP_PASSWORD)  # fmt: skip
    await provider.send(outgoing(body="over TLS"))
    [got] = server.received
    assert got.tls is True
    assert got.login == SMTP_USER
    assert got.body == "over TLS\n"


async def test_implicit_tls(
    start_smtp_server: Callable[..., SmtpTestServer], smtp_tls: TlsFiles, make_smtp: MakeSmtp
) -> None:
    server = start_smtp_server(ssl_context=smtp_tls.server_context)
    await make_smtp(server, security="tls", tls_context=smtp_tls.client_context).send(outgoing())
    assert server.received[0].tls is True


async def test_untrusted_certificate_is_refused(
    start_smtp_server: Callable[..., SmtpTestServer], smtp_tls: TlsFiles, make_smtp: MakeSmtp
) -> None:
    """Certificates are verified: a self-signed one the client does not trust fails (a configuration error)."""
    server = start_smtp_server(tls_context=smtp_tls.server_context, require_starttls=True)
    provider = make_smtp(server, security="starttls", tls_context=ssl.create_default_context(cafile=None))
    with pytest.raises(ProviderConfigError, match="connect"):
        await provider.send(outgoing())
    assert server.received == []


async def test_starttls_is_never_silently_skipped(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    """security=starttls against a server without STARTTLS fails instead of sending in clear text."""
    with pytest.raises(ProviderConfigError, match="STARTTLS"):
        await make_smtp(smtp_server, security="starttls").send(outgoing())
    assert smtp_server.received == []


# --- reply codes --------------------------------------------------------------------------


async def test_rejected_recipient_is_permanent_and_the_connection_is_kept(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp
) -> None:
    """550 on RCPT fails the message at once; the session was reset and serves the next message."""
    provider = make_smtp(smtp_server)
    smtp_server.reply_next("RCPT", "550 5.1.1 No such user")
    with pytest.raises(PermanentError, match=r"550 5\.1\.1 No such user") as info:
        await provider.send(outgoing("ghost@elsewhere.test"))
    assert isinstance(info.value.__cause__, aiosmtplib.SMTPRecipientsRefused)
    await provider.send(outgoing("reader@elsewhere.test"))
    assert [m.rcpt_tos for m in smtp_server.received] == [["reader@elsewhere.test"]]
    assert smtp_server.connections == 1


@pytest.mark.parametrize("reply", ["554 5.7.1 Message rejected as spam", "552 5.3.4 Message too big"])
async def test_rejected_content_is_permanent(smtp_server: SmtpTestServer, make_smtp: MakeSmtp, reply: str) -> None:
    smtp_server.reply_next("DATA", reply)
    with pytest.raises(PermanentError, match=reply.split()[0]):
        await make_smtp(smtp_server).send(outgoing())


async def test_451_on_data_is_transient(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    smtp_server.reply_next("DATA", "451 4.3.0 Local error in processing")
    with pytest.raises(TransientError, match="451") as info:
        await make_smtp(smtp_server).send(outgoing())
    assert type(info.value) is TransientError
    assert isinstance(info.value.__cause__, aiosmtplib.SMTPDataError)
    assert smtp_server.received == []


async def test_rate_limit_reply_is_throttled(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    smtp_server.reply_next("RCPT", "450 4.7.1 Rate limit exceeded, slow down")
    with pytest.raises(ThrottledError, match="450") as info:
        await make_smtp(smtp_server).send(outgoing())
    assert info.value.retry_after is None


@pytest.mark.parametrize(("code", "text", "expected"), [
    (421, "4.3.2 Service shutting down", TransientError), (450, "4.2.0 Mailbox busy", TransientError),
    (451, "4.4.1 Try again", TransientError), (452, "4.3.1 Insufficient system storage", TransientError),
    (452, "4.5.3 Too many recipients", ThrottledError), (421, "4.7.28 Unusual rate of mail", ThrottledError),
    (550, "5.1.1 No such user", PermanentError), (553, "5.1.3 Bad address syntax", PermanentError),
    (554, "5.7.1 Rejected", PermanentError), (552, "5.2.2 Mailbox full", PermanentError),
    (535, "5.7.8 Authentication credentials invalid", ProviderConfigError),
    (530, "5.7.0 Must issue STARTTLS", ProviderConfigError),
    (-1, "Malformed reply", TransientError),
])  # fmt: skip
def test_classify_reply(code: int, text: str, expected: type[Exception]) -> None:
    error = classify_reply(code, text)
    assert type(error) is expected
    assert str(code) in str(error) and text in str(error)


# --- transport failures -------------------------------------------------------------------


def test_sender_refused_for_good_is_a_configuration_error() -> None:
    """MAIL FROM refused with 5xx: the relay will not send as FROM_EMAIL, whatever the message."""
    error = classify(aiosmtplib.SMTPSenderRefused(553, "5.7.1 Sender address rejected: not owned by user", SENDER))
    assert type(error) is ProviderConfigError
    assert SENDER in str(error) and "FROM_EMAIL" in str(error)
    assert type(classify(aiosmtplib.SMTPSenderRefused(451, "4.3.0 try later", SENDER))) is TransientError


async def test_server_down_is_a_configuration_error(make_smtp: MakeSmtp) -> None:
    """Nothing listens (a wrong host or port, or the relay is not running): nothing was sent, hold."""
    port = free_port()
    provider = make_smtp(host="127.0.0.1", port=port)
    with pytest.raises(ProviderConfigError, match="connect") as info:
        await provider.send(outgoing())
    assert isinstance(info.value.__cause__, aiosmtplib.SMTPConnectError)
    assert f"127.0.0.1:{port}" in str(info.value) and "NOTIFQ_SMTP_PORT" in str(info.value)


async def test_busy_greeting_is_transient(make_smtp: MakeSmtp) -> None:
    """421 at the greeting ("too many connections") is the server's passing state, not our configuration."""

    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 4.7.0 Too many connections, try later\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(busy, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(TransientError, match="421") as info:
            await make_smtp(host="127.0.0.1", port=port).send(outgoing())
        assert type(info.value) in (TransientError, ThrottledError)
    finally:
        server.close()
        await server.wait_closed()


class MuteServer:
    """Accepts connections into the backlog and never says a word (no SMTP greeting)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])


@pytest.fixture
def mute_server() -> Iterator[MuteServer]:
    server = MuteServer()
    yield server
    server.sock.close()


async def test_silent_server_times_out_without_blocking_the_loop(mute_server: MuteServer, make_smtp: MakeSmtp) -> None:
    provider = make_smtp(host="127.0.0.1", port=mute_server.port, timeout=0.3)
    started = time.monotonic()
    async with loop_ticks() as ticks:
        with pytest.raises(ProviderConfigError, match="connect"):  # no greeting: e.g. plain SMTP to a TLS port
            await provider.send(outgoing())
    assert time.monotonic() - started >= 0.25
    assert ticks.count >= 4


async def test_server_vanishing_during_data_is_not_resent(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    """Once DATA began the server may have the message: no silent resend, a TransientError for the worker."""
    provider = make_smtp(smtp_server)
    await provider.send(outgoing(message_id=1))
    smtp_server.reply_next("DATA", DROP)
    with pytest.raises(TransientError):
        await provider.send(outgoing(message_id=2))
    assert smtp_server.connections == 1  # no second connection: nothing was retried
    assert provider.stale_retries == 0
    assert len(smtp_server.received) == 1


# --- the connection pool ------------------------------------------------------------------


async def test_sequential_sends_share_one_connection(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    provider = make_smtp(smtp_server, pool_size=4)
    for i in range(5):
        await provider.send(outgoing(f"r{i}@elsewhere.test", message_id=i))
    assert smtp_server.connections == 1
    assert provider.connections_opened == 1
    assert len({m.peer for m in smtp_server.received}) == 1
    assert [m.rcpt_tos for m in smtp_server.received] == [[f"r{i}@elsewhere.test"] for i in range(5)]


async def test_concurrent_sends_open_at_most_pool_size_connections(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp
) -> None:
    """30 concurrent sends through a pool of 3: all delivered once each, over at most 3 connections, reused later."""
    provider = make_smtp(smtp_server, pool_size=3)
    await asyncio.gather(*(provider.send(outgoing(f"r{i}@elsewhere.test", message_id=i)) for i in range(30)))
    opened = smtp_server.connections
    assert 1 <= opened <= 3
    assert sorted(m.rcpt_tos[0] for m in smtp_server.received) == sorted(f"r{i}@elsewhere.test" for i in range(30))
    assert len({m.peer for m in smtp_server.received}) <= 3

    await asyncio.gather(*(provider.send(outgoing(f"s{i}@elsewhere.test", message_id=100 + i)) for i in range(10)))
    assert smtp_server.connections == opened == provider.connections_opened
    assert len(smtp_server.received) == 40


async def test_connection_closed_by_the_server_is_replaced(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    """An idle connection the server closed (and the client noticed) is swapped for a new one."""
    provider = make_smtp(smtp_server)
    await provider.send(outgoing(message_id=1))
    assert smtp_server.drop_connections() == 1
    await asyncio.sleep(0.1)  # the client's loop sees the close
    await provider.send(outgoing(message_id=2))
    assert smtp_server.connections == 2
    assert len(smtp_server.received) == 2
    assert provider.stale_retries == 0  # found closed at check-out, not by a failed command


async def test_connection_closed_just_before_a_send_is_replaced_without_duplicates(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp
) -> None:
    """The close races the next send (the client has not noticed yet): the send fails before DATA and is
    repeated once on a fresh connection; the server receives the message exactly once."""
    provider = make_smtp(smtp_server)
    await provider.send(outgoing(message_id=1))
    smtp_server.drop_connections()  # blocks this loop until the server closed its side: no time to notice
    result = await provider.send(outgoing("late@elsewhere.test", message_id=2))
    assert provider.stale_retries == 1
    assert smtp_server.connections == 2
    assert [m.rcpt_tos for m in smtp_server.received] == [["reader@elsewhere.test"], ["late@elsewhere.test"]]
    assert smtp_server.received[1].message["Message-ID"] == result.provider_message_id


async def test_a_cancelled_send_does_not_return_its_connection(
    smtp_server: SmtpTestServer, make_smtp: MakeSmtp
) -> None:
    """Cancelled mid-DATA (the worker's chunk timer), the session is in an unknown state: closed, not pooled."""
    provider = make_smtp(smtp_server)
    smtp_server.handler.data_delay = 2.0
    task = asyncio.create_task(provider.send(outgoing(message_id=1)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider._idle == []
    smtp_server.handler.data_delay = 0.0
    await provider.send(outgoing("next@elsewhere.test", message_id=2))
    assert smtp_server.connections == 2
    assert smtp_server.received[-1].rcpt_tos == ["next@elsewhere.test"]


async def test_aiosmtplib_still_reports_the_data_stage(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    """The safe-retry rule relies on aiosmtplib's send_message() calling SMTP.data(): guard it on upgrades."""
    provider = make_smtp(smtp_server)
    await provider.send(outgoing())
    [conn] = provider._idle
    assert conn.data_started is True
    assert conn.sends == 1


async def test_aclose_quits_and_refuses_further_sends(smtp_server: SmtpTestServer, make_smtp: MakeSmtp) -> None:
    provider = make_smtp(smtp_server)
    await provider.send(outgoing())
    await provider.aclose()
    assert provider._idle == []
    with pytest.raises(TransientError, match="closed"):
        await provider.send(outgoing())


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"security": "ssl"}, "security"), ({"pool_size": 0}, "pool size"),
    ({"from_email": "a@b.test\r\nBcc: c@d.test"}, "FROM_EMAIL"), ({"from_email": "Team <a@b.test>"}, "FROM_EMAIL"),
])  # fmt: skip
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"host": "127.0.0.1", "port": 25, "from_email": SENDER, **kwargs}
    with pytest.raises(ConfigError, match=match):
        SmtpProvider(**options)
