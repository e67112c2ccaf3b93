"""Email through any SMTP server (aiosmtplib), over a small pool of persistent connections.

Opening an SMTP session costs several round trips (greeting, EHLO, STARTTLS, EHLO again,
AUTH) before the first MAIL FROM, so connections are kept and reused across messages; at
most `pool_size` are ever open, which also caps how hard one worker leans on the relay.

Two safety rules hold for every send: the envelope recipient is passed explicitly (so
aiosmtplib never derives recipients from headers), and a recipient or subject that could
inject headers or extra recipients (CR/LF, a comma in the address) is refused up front.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPResponse

from notifq.errors import (
    ConfigError,
    DeliveryError,
    PermanentError,
    ProviderConfigError,
    RecipientRejected,
    ThrottledError,
    TransientError,
)
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.vocabulary import FeedbackKind

SECURITY_MODES = ("starttls", "tls", "none")
# 5xx replies about our session (authentication, encryption), not the message: every message
# would fail alike, so they are configuration errors and the worker holds the provider.
SESSION_REPLY_CODES = frozenset({530, 534, 535, 538})
SESSION_SETTINGS = "NOTIFQ_SMTP_USERNAME, NOTIFQ_SMTP_PASSWORD and NOTIFQ_SMTP_SECURITY"
THROTTLE_HINTS = ("rate", "too many", "throttl", "limit exceeded", "slow down")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # CR, LF and the other control characters
# Errors after which aiosmtplib has reset the session (RSET), so the connection can serve the next message.
_SESSION_INTACT = (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPNotSupported,
                   ValueError)  # fmt: skip


def classify_reply(code: int, text: str) -> DeliveryError:
    """Map one SMTP reply to notifq's outcome: 4xx retry (throttled when it says so), 5xx fail."""
    message = f"SMTP {code} {text}".strip()
    if 400 <= code < 500:
        lowered = text.lower()
        if any(hint in lowered for hint in THROTTLE_HINTS):
            return ThrottledError(message)
        return TransientError(message)
    if code in SESSION_REPLY_CODES:
        return ProviderConfigError(f"{message} (check {SESSION_SETTINGS})")
    if 500 <= code < 600:
        return PermanentError(message)
    return TransientError(message)


# RFC 3463 enhanced status codes that say the address itself is bad: no such mailbox or domain (5.1.x), or a
# disabled mailbox (5.2.1). 5.7.x (policy, blocklists, authentication) and the rest are about the sender or
# the message: the message fails, but the address is not suppressed.
_ENHANCED_STATUS = re.compile(r"\b5\.\d{1,3}\.\d{1,3}\b")
_NOT_THE_ADDRESS = ("relay", "block", "spam", "policy", "reputation", "denied", "rejected for policy")


def is_hard_bounce(code: int, text: str) -> bool:
    """A 5xx refusal of RCPT TO that means the recipient does not exist (so never sending to it again is right)."""
    status = _ENHANCED_STATUS.search(text)
    if status is not None:
        return status.group(0).startswith("5.1.") or status.group(0) == "5.2.1"
    return code in (550, 551, 553) and not any(hint in text.lower() for hint in _NOT_THE_ADDRESS)


def _relay_denied(text: str) -> bool:
    """ "554 5.7.1 Relay access denied" and friends: the server refuses every outside recipient, not this one."""
    lowered = text.lower()
    return "relay" in lowered and any(word in lowered for word in ("denied", "not permitted", "not allowed"))


def classify(error: BaseException) -> DeliveryError:
    """Map an aiosmtplib (or socket) error raised while sending one message. A 5xx for the recipient
    (RCPT TO refused for good) is a hard bounce: the address goes on the suppression list."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        refused = error.recipients[0]
        outcome = classify_reply(refused.code, refused.message)
        if type(outcome) is PermanentError:
            if _relay_denied(refused.message):
                return ProviderConfigError(f"{outcome} (the server will not relay for us: check NOTIFQ_SMTP_HOST "
                                           f"and {SESSION_SETTINGS})")  # fmt: skip
            if is_hard_bounce(refused.code, refused.message):
                return RecipientRejected(str(outcome), FeedbackKind.HARD_BOUNCE)
        return outcome
    if isinstance(error, aiosmtplib.SMTPSenderRefused) and 500 <= error.code < 600:
        # MAIL FROM refused for good: the relay will not send as FROM_EMAIL, whatever the message.
        return ProviderConfigError(f"SMTP {error.code} {error.message}: the server refuses the sender "
                                   f"{error.sender} (check FROM_EMAIL and the account's rights)")  # fmt: skip
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return classify_reply(error.code, error.message)
    if isinstance(error, aiosmtplib.SMTPNotSupported):  # e.g. a non-ASCII address without SMTPUTF8
        return PermanentError(f"SMTP server cannot carry this message: {error.message}")
    if isinstance(error, ValueError):  # aiosmtplib refused an address it cannot put on a command line
        return PermanentError(f"SMTP refused the address: {error}")
    return TransientError(f"SMTP unreachable: {type(error).__name__}: {error}")


def check_address(value: str, what: str) -> str:
    """A bare addr-spec only: no display name, brackets, commas or control characters."""
    if _CONTROL.search(value) or "," in value:
        raise PermanentError(f"{what} must not contain line breaks, control characters or commas")
    if "@" not in value or email.utils.parseaddr(value)[1] != value:
        raise PermanentError(f"{what} must be a single bare email address")
    return value


def compose(message: OutgoingMessage, from_email: str, domain: str) -> EmailMessage:
    """The RFC 5322 message: plain UTF-8 text, with a Message-ID that names notifq's message (SMTP, and SES
    when the message needs headers of its own)."""
    recipient = check_address(message.recipient, "the recipient")
    if _CONTROL.search(message.subject):
        raise PermanentError("the subject must not contain line breaks or control characters")
    msg = EmailMessage()
    try:
        msg["From"] = from_email
        msg["To"] = recipient
        msg["Subject"] = message.subject
        msg["Date"] = email.utils.format_datetime(datetime.now(UTC))  # "+0000", not obsolete "GMT"
        msg["Message-ID"] = email.utils.make_msgid(f"{message.message_id}.{message.attempt}", domain)
        add_unsubscribe_headers(msg, message.unsubscribe_url)
        msg.set_content(message.body, charset="utf-8")
    except (ValueError, TypeError) as exc:
        raise PermanentError(f"cannot build the email: {exc}") from exc
    return msg


def add_unsubscribe_headers(msg: EmailMessage, url: str | None) -> None:
    """RFC 8058 one-click unsubscribe: mailbox providers (Gmail, Yahoo) require both headers on bulk mail
    and POST `List-Unsubscribe=One-Click` to the URL; the URL is ours, so it carries no CR/LF."""
    if url:
        msg["List-Unsubscribe"] = f"<{url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


class PooledSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, remembering whether the current transaction reached DATA.

    Before DATA the server has accepted nothing, so a send on a connection the server had
    silently dropped can be repeated on a fresh one without risking a duplicate email.
    """

    data_started = False
    sends = 0

    async def data(self, *args: Any, **kwargs: Any) -> SMTPResponse:
        self.data_started = True
        return await super().data(*args, **kwargs)


class SmtpProvider:
    name = "smtp"
    takes_unsubscribe_url = True  # bulk emails carry List-Unsubscribe (RFC 8058)

    def __init__(
        self, *, host: str, port: int, from_email: str, security: str = "starttls", username: str | None = None,
        password: str | None = None, timeout: float = 30.0, pool_size: int = 4,
        tls_context: ssl.SSLContext | None = None, local_hostname: str | None = None,
    ) -> None:  # fmt: skip
        if security not in SECURITY_MODES:
            raise ConfigError(f"SMTP security must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
        if pool_size < 1:
            raise ConfigError(f"SMTP pool size must be at least 1, got {pool_size}")
        try:
            self.from_email = check_address(from_email, "the sender address")
        except PermanentError as exc:
            raise ConfigError(f"FROM_EMAIL {from_email!r}: {exc}") from None
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.timeout, self.pool_size = timeout, pool_size
        self.tls_context, self.local_hostname = tls_context, local_hostname
        # Message-IDs name the sender's domain: make_msgid() would otherwise call the blocking getfqdn().
        self.domain = self.from_email.rpartition("@")[2]
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[PooledSMTP] = []
        self._closed = False
        self.connections_opened = 0  # over the provider's life: what the pool saves is visible
        self.stale_retries = 0  # sends repeated because the server had dropped an idle connection

    def build_email(self, message: OutgoingMessage) -> EmailMessage:
        return compose(message, self.from_email, self.domain)

    async def send(self, message: OutgoingMessage) -> SendResult:
        msg = self.build_email(message)
        async with self._slots:
            for attempt in (1, 2):
                conn, reused = await self._checkout(fresh=attempt > 1)
                conn.data_started = False
                try:
                    await conn.send_message(msg, sender=self.from_email, recipients=[message.recipient])
                except BaseException as exc:
                    self._checkin(conn, exc)
                    if attempt == 1 and reused and _dropped_before_data(conn, exc):
                        self.stale_retries += 1
                        continue  # the server had closed this idle connection: nothing was sent
                    if isinstance(exc, Exception):
                        raise classify(exc) from exc
                    raise
                self._checkin(conn, None)
                break
        return SendResult(provider=self.name, provider_message_id=str(msg["Message-ID"]))

    async def _checkout(self, *, fresh: bool) -> tuple[PooledSMTP, bool]:
        """An idle live connection (True: reused), or a new one. The caller holds a pool slot."""
        if self._closed:
            raise TransientError("SMTP provider is closed")
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.is_connected:
                return conn, True
            conn.close()
        return await self._open(), False

    async def _open(self) -> PooledSMTP:
        conn = PooledSMTP(
            hostname=self.host, port=self.port, username=self.username, password=self.password,
            timeout=self.timeout, use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            tls_context=self.tls_context, local_hostname=self.local_hostname,
        )  # fmt: skip
        try:
            await conn.connect()
        except Exception as exc:
            conn.close()
            raise self._connect_error(exc) from exc
        self.connections_opened += 1
        return conn

    def _connect_error(self, exc: Exception) -> DeliveryError:
        """Connecting, the greeting, STARTTLS or AUTH failed: about the server or our settings, never
        the message, and nothing was sent. A 4xx reply (busy, too many connections) is the server's
        passing state; anything else (refused, DNS, TLS, 5xx, 535) holds the provider until it works."""
        where = f"{self.host}:{self.port}"
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            if 400 <= exc.code < 500:
                return classify_reply(exc.code, f"{exc.message} (connecting to {where})")
            login = f" as {self.username!r}" if self.username else ""
            return ProviderConfigError(f"SMTP {where} refused the session{login}: {exc.code} {exc.message} "
                                       f"(check {SESSION_SETTINGS})")  # fmt: skip
        return ProviderConfigError(f"cannot connect to the SMTP server {where} with security {self.security}: "
                                   f"{type(exc).__name__}: {exc} (check NOTIFQ_SMTP_HOST, NOTIFQ_SMTP_PORT and "
                                   "NOTIFQ_SMTP_SECURITY, and that the server runs)")  # fmt: skip

    async def check(self) -> None:
        """At worker start: connect, greet, STARTTLS and log in as a send would, then QUIT. Sends nothing."""
        async with self._slots:
            conn = await self._open()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.quit(), timeout=min(1.0, self.timeout))
            conn.close()

    def _checkin(self, conn: PooledSMTP, error: BaseException | None) -> None:
        """Keep a connection whose session is known good; close one whose state is in doubt."""
        conn.sends += 1
        # aiosmtplib sends RSET after a refusal; a timeout or a cancellation leaves the session mid-reply.
        reusable = error is None or isinstance(error, _SESSION_INTACT)
        if reusable and conn.is_connected and not self._closed:
            self._idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        """Say QUIT on idle connections (briefly); connections still in use close on check-in."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.quit(), timeout=min(1.0, self.timeout))
            conn.close()


def _dropped_before_data(conn: PooledSMTP, error: BaseException) -> bool:
    """The server had closed the connection before we handed over any message content."""
    return not conn.data_started and isinstance(error, ConnectionError)
