"""Push notifications through Firebase Cloud Messaging's HTTP v1 API, with httpx.

FCM accepts short-lived OAuth2 access tokens. A service account gets one by signing a JWT
with its private key and trading it at Google's token endpoint (the two-legged "JWT
bearer" grant); the token is cached until shortly before it expires and fetched by one
coroutine at a time, so a burst of sends costs a single token request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

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

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # Google's maximum for the signed assertion
REFRESH_MARGIN = 60.0  # seconds before expiry at which a cached access token is replaced
PERMANENT_FCM_CODES = frozenset({"UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH"})
# The token itself is dead (the app was uninstalled, the token rotated): it is removed from its subscriber
# and suppressed. INVALID_ARGUMENT also covers a bad payload, so it counts only when FCM's message says the
# registration token is invalid. SENDER_ID_MISMATCH is not among them: it usually means *our* credentials
# are another Firebase project's (a staging key in production), and would otherwise wipe every token.
DEAD_TOKEN_FCM_CODES = frozenset({"UNREGISTERED"})
THROTTLE_FCM_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE"})
_PROJECT_ID = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")  # optional legacy "domain:" prefix
_FIELDS = ("project_id", "private_key_id", "private_key", "client_email", "token_uri")


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key_id: str
    token_uri: str
    private_key: RSAPrivateKey = field(repr=False)


def load_service_account(path: str | os.PathLike[str]) -> ServiceAccount:
    """Read and check a Google service-account JSON file; a problem raises ConfigError naming it."""
    where = f"FCM credentials file {str(path)!r}"
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where} is unreadable: {exc}") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f"{where} is not a service-account key (type service_account)")
    missing = [name for name in _FIELDS if not isinstance(info.get(name), str) or not info[name]]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    if not _PROJECT_ID.fullmatch(info["project_id"]):
        raise ConfigError(f"{where} has an invalid project_id {info['project_id']!r}")
    if not info["token_uri"].startswith(("https://", "http://")):
        raise ConfigError(f"{where} has a token_uri that is not an http(s) URL")
    try:
        key = load_pem_private_key(info["private_key"].encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where} has an unusable private_key: {exc}") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(f"{where} must hold an RSA private key (RS256)")
    return ServiceAccount(
        project_id=info["project_id"], client_email=info["client_email"], private_key_id=info["private_key_id"],
        token_uri=info["token_uri"], private_key=key,
    )  # fmt: skip


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _google_error(response: httpx.Response) -> tuple[str, str, str]:
    """(canonical status, FCM errorCode, message) from Google's JSON error body, '' where absent."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return "", "", response.text[:200]
    if not isinstance(error, dict):
        return "", "", str(error)[:200]
    fcm_code = ""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError"):
            fcm_code = str(detail.get("errorCode", ""))
    return str(error.get("status", "")), fcm_code, str(error.get("message", ""))


def classify(response: httpx.Response) -> DeliveryError:
    """An FCM messages:send error response to notifq's outcome (FCM's errorCode wins over the HTTP status)."""
    status, fcm_code, message = _google_error(response)
    code = response.status_code
    text = f"FCM {code} {fcm_code or status or response.reason_phrase}: {message}".strip()
    if fcm_code in DEAD_TOKEN_FCM_CODES or (fcm_code == "INVALID_ARGUMENT" and "registration token" in message.lower()):
        return RecipientRejected(text, FeedbackKind.INVALID_TOKEN)
    if fcm_code in PERMANENT_FCM_CODES:
        return PermanentError(text)
    if fcm_code in THROTTLE_FCM_CODES or code in (429, 503):
        return ThrottledError(text, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if code in (400, 404):
        return PermanentError(text)
    if code in (401, 403) and fcm_code != "THIRD_PARTY_AUTH_ERROR":
        # Our service account or project (after a fresh token): every push would be refused alike.
        return ProviderConfigError(f"{text} (check NOTIFQ_FCM_CREDENTIALS_FILE: the service account's project "
                                   "and its Firebase Cloud Messaging rights)")  # fmt: skip
    # 5xx, APNs/web-push credentials (only some devices), anything unexpected: retried.
    return TransientError(text)


class FcmProvider:
    name = "fcm"

    def __init__(
        self, *, credentials_file: str | os.PathLike[str] | None, endpoint_url: str = "https://fcm.googleapis.com",
        timeout: float = 30.0, max_connections: int = 100, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:  # fmt: skip
        if credentials_file is None:
            raise ConfigError("push through FCM needs NOTIFQ_FCM_CREDENTIALS_FILE (a service-account JSON)")
        # Read once, at construction: a bad file is an operator error to report now, not per message.
        self.account = load_service_account(credentials_file)
        project = quote(self.account.project_id, safe=":")
        self.send_url = f"{endpoint_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)), transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )  # fmt: skip
        self._token: str | None = None
        self._token_expires = 0.0  # time.monotonic() after which the cached token is not used
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    @staticmethod
    def build_payload(message: OutgoingMessage) -> dict[str, Any]:
        """The v1 request body: {"message": {"token", "notification": {"title", "body"}, "data"}}."""
        token = message.recipient
        if not token or len(token) > 4096 or any(c.isspace() or not c.isprintable() for c in token):
            raise PermanentError("the FCM registration token is empty, too long or contains whitespace")
        notification = {"title": message.subject, "body": message.body} if message.subject else {"body": message.body}
        body: dict[str, Any] = {"token": token, "notification": notification}
        if message.data:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in message.data.items()):
                raise PermanentError("FCM data must map strings to strings")
            body["data"] = dict(message.data)
        return {"message": body}

    async def send(self, message: OutgoingMessage) -> SendResult:
        payload = self.build_payload(message)
        for attempt in (1, 2):
            token = await self._access_token()
            headers = {"Authorization": f"Bearer {token}"}
            try:
                response = await self._http.post(self.send_url, json=payload, headers=headers)
            except httpx.HTTPError as exc:  # connect/read/write timeouts, refused connections, protocol errors
                raise unreachable("FCM", self.send_url, exc) from exc
            if response.status_code == 401 and attempt == 1 and _google_error(response)[1] != "THIRD_PARTY_AUTH_ERROR":
                self._forget(token)  # revoked or expired early: FCM never accepted the message, so retry once
                continue
            break
        if response.status_code != 200:
            raise classify(response)
        try:
            name = response.json().get("name")
        except (ValueError, AttributeError):
            name = None  # accepted all the same: never fail (and re-send) a delivered message
        return SendResult(provider=self.name, provider_message_id=str(name) if name else None)

    async def _access_token(self) -> str:
        if self._token is not None and time.monotonic() < self._token_expires:
            return self._token
        async with self._token_lock:  # one fetch for every send waiting on an expired token
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            token, lifetime = await self._fetch_token()
            self._token = token
            self._token_expires = time.monotonic() + lifetime - min(REFRESH_MARGIN, lifetime / 10)
            return token

    def _forget(self, token: str) -> None:
        if self._token == token:  # keep a newer token another send may have fetched meanwhile
            self._token = None

    def signed_assertion(self, now: int | None = None) -> str:
        issued = int(time.time()) if now is None else now
        account = self.account
        claims = {"iss": account.client_email, "scope": FCM_SCOPE, "aud": account.token_uri, "iat": issued,
                  "exp": issued + ASSERTION_LIFETIME}  # fmt: skip
        return jwt.encode(claims, account.private_key, algorithm="RS256", headers={"kid": account.private_key_id})

    async def _fetch_token(self) -> tuple[str, float]:
        form = {"grant_type": JWT_BEARER, "assertion": self.signed_assertion()}
        try:
            response = await self._http.post(self.account.token_uri, data=form)
        except httpx.HTTPError as exc:
            raise unreachable("FCM token endpoint", self.account.token_uri, exc) from exc
        self.token_fetches += 1
        if response.status_code in (429, 503):
            raise ThrottledError(f"FCM token endpoint busy ({response.status_code})",
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))  # fmt: skip
        try:
            body = response.json()
        except ValueError:
            body = {}
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = f"{body.get('error', '')}: {body.get('error_description', '')}" if isinstance(body, dict) else ""
            text = f"FCM token request refused ({response.status_code}) {error}".strip()
            if 400 <= response.status_code < 500:
                # invalid_grant and friends: the key (revoked, rotated) or the clock is wrong, not the message.
                raise ProviderConfigError(f"{text} (check NOTIFQ_FCM_CREDENTIALS_FILE and the host's clock)")
            raise TransientError(text)
        expires_in = body.get("expires_in", 3600)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600.0
        return token, lifetime

    async def check(self) -> None:
        """At worker start (the key file was read when this was built): Google takes the key for a token."""
        await self._access_token()

    async def aclose(self) -> None:
        await self._http.aclose()


def unreachable(what: str, url: str, exc: httpx.HTTPError) -> DeliveryError:
    """Could not connect (refused, DNS, TLS, connect timeout): nothing was sent, every push would fail
    alike, so the provider is held. Once connected, a timeout or a dropped answer is retried."""
    text = f"{what} unreachable: {type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.UnsupportedProtocol):
        return ProviderConfigError(f"{text} ({url}; check NOTIFQ_FCM_ENDPOINT_URL and the network)")
    return TransientError(text)
