"""One-click unsubscribe links (RFC 8058): `{NOTIFQ_PUBLIC_URL}/u/{token}`, one per bulk email.

The token names the message (its id) and carries an HMAC of it, so it cannot be guessed or
altered, needs no storage and no expiry (an email read a year later must still unsubscribe),
and tells the API everything it needs: the message row gives the subscriber or address, the
channel and the category. 24 bytes in URL-safe base64: 32 characters.

The key is NOTIFQ_UNSUBSCRIBE_SECRET, or derived from the JWT secret when that is not set
(so a fresh install works); changing it invalidates every link already sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from notifq.settings import Settings

_CONTEXT = b"notifq unsubscribe link v1"
_MAC_BYTES = 16


def link_key(settings: Settings) -> bytes:
    """b"" when neither secret is set: no links can be made that the API would accept (the worker then
    sends bulk email without the headers, and says so at start)."""
    if settings.unsubscribe_secret:
        return settings.unsubscribe_secret.encode()
    if not settings.jwt_secret:
        return b""
    return hmac.new(settings.jwt_secret.encode(), _CONTEXT, hashlib.sha256).digest()


def link_problem(settings: Settings) -> str | None:
    """What is wrong with the links a worker would put in bulk email, said once at its start."""
    if not link_key(settings):
        return ("bulk email goes out without List-Unsubscribe: set NOTIFQ_JWT_SECRET (the API's) or "
                "NOTIFQ_UNSUBSCRIBE_SECRET on the workers too")  # fmt: skip
    if not settings.public_url:
        return (f"unsubscribe links point at {public_base(settings)}: set NOTIFQ_PUBLIC_URL (on the API and the "
                "workers) to the API's public https address")  # fmt: skip
    if not settings.public_url.startswith("https://"):
        return "NOTIFQ_PUBLIC_URL is not https: mailbox providers ignore one-click unsubscribe links over http"
    return None


def _mac(key: bytes, id_bytes: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + id_bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def token_for(key: bytes, message_id: int) -> str:
    id_bytes = message_id.to_bytes(8, "big")
    return base64.urlsafe_b64encode(id_bytes + _mac(key, id_bytes)).decode()


def message_of(key: bytes, token: str) -> int | None:
    """The message id a token was made for, or None if it is not one of ours (forged, altered, truncated)."""
    if len(token) != 32:
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    id_bytes, mac = raw[:8], raw[8:]
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, _mac(key, id_bytes)):
        return None
    return int.from_bytes(id_bytes, "big")


def public_base(settings: Settings) -> str:
    """Where recipients reach this API: NOTIFQ_PUBLIC_URL, or the address it listens on."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def link_for(settings: Settings, key: bytes, message_id: int) -> str:
    return f"{public_base(settings)}/u/{token_for(key, message_id)}"
