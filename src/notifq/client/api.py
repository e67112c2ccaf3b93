"""A small synchronous client for the notifq API that turns every outcome into data or one of two exceptions.

Commands then only need to map `ApiError` (the API answered no) and `Unreachable` (no answer
at all) to exit codes. The token travels in the Authorization header only, never in a URL,
and is never part of an exception message.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from notifq import __version__
from notifq.validation import IDEMPOTENCY_KEY_MAX_LENGTH, is_idempotency_key


class ClientError(Exception):
    """Something a command reports on stderr before exiting non-zero."""


class UsageError(ClientError):
    """The operator's input is unusable before any request is made (exit 2, like argparse's own errors)."""


class Unreachable(ClientError):
    """No HTTP answer: connection refused, DNS failure, timeout, TLS failure."""


class ApiError(ClientError):
    """The API answered with an error status; the fields come from its `{"error": {...}}` envelope."""

    def __init__(self, status: int, code: str, message: str, details: Any = None, retry_after: str | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


def check_url(url: str) -> str:
    """Refused early so a typo is a usage error rather than a confusing transport error (or a traceback)."""
    shape = f"the API URL must look like http://host:port, not {url!r}"
    stripped = url.strip()
    if not stripped.isprintable() or any(c.isspace() for c in stripped):
        raise UsageError(shape)
    try:
        # urlsplit raises ValueError for `http://[::1` (an unclosed IPv6 bracket); `.port` for `h:notaport`
        # or a port outside 0-65535. Both would otherwise escape as tracebacks.
        parts = urlsplit(stripped)
        parts.port  # noqa: B018 - evaluated for its validation only
    except ValueError:
        raise UsageError(shape) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(shape)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError("the API URL must not carry a query, fragment or credentials")
    return stripped.rstrip("/")


# The server's rule (notifq.validation, no database imports), checked before sending: httpx cannot send
# other characters in a header anyway (non-ASCII raises UnicodeEncodeError, control characters
# LocalProtocolError, which would look like an unreachable API).
def check_idempotency_key(key: str) -> str:
    if not is_idempotency_key(key):
        raise UsageError(f"--idempotency-key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters")
    return key


# notifq.api_keys.KEY_PREFIX, spelled out: the client imports none of the server's services.
API_KEY_PREFIX = "nq_"


def check_token(token: str) -> str:
    """A token pasted with a stray newline or quote would otherwise fail deep inside httpx."""
    token = token.strip()
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise UsageError("the API token is malformed (expected the `token` returned by POST /auth/login, or an API "
                         "key, nq_…)")  # fmt: skip
    return token


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    envelope = body.get("error") if isinstance(body, dict) else None
    retry_after = response.headers.get("retry-after")
    if isinstance(envelope, dict) and isinstance(envelope.get("code"), str):
        message = envelope.get("message")
        return ApiError(
            response.status_code, envelope["code"], str(message or ""), envelope.get("details"), retry_after
        )
    # Not notifq's envelope: a proxy, or the URL points at another service.
    snippet = " ".join(response.text.split())[:200]
    return ApiError(response.status_code, f"http_{response.status_code}", snippet or response.reason_phrase,
                    retry_after=retry_after)  # fmt: skip


class ApiClient:
    def __init__(self, base_url: str, *, timeout: float = 120.0, transport: httpx.BaseTransport | None = None):
        self.base_url = check_url(base_url)
        try:
            # Redirects are not followed: a redirect to another host would carry the bearer token there.
            self._http = httpx.Client(
                base_url=self.base_url,
                timeout=httpx.Timeout(timeout, connect=5.0),
                headers={"User-Agent": f"notifq-cli/{__version__}", "Accept": "application/json"},
                follow_redirects=False,
                transport=transport,
            )
        except httpx.InvalidURL as exc:  # whatever check_url let through but httpx's stricter parser does not
            raise UsageError(f"the API URL is invalid: {exc}") from None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def use_token(self, token: str) -> None:
        self._http.headers["Authorization"] = f"Bearer {check_token(token)}"

    def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, timeout: float | None = None) -> Any:  # fmt: skip
        """`timeout` (seconds) replaces the client's for this request only."""
        limit = httpx.Timeout(timeout, connect=min(5.0, timeout)) if timeout is not None else self._http.timeout
        try:
            response = self._http.request(method, path, json=body, params=params, headers=headers, timeout=limit)
        except UnicodeEncodeError:
            # A command-line value that is not valid UTF-8 (Python keeps undecodable bytes as lone surrogates).
            raise UsageError("a value given on the command line is not valid UTF-8 text") from None
        except httpx.TimeoutException:
            raise Unreachable(f"the API at {self.base_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the API at {self.base_url}: {exc or type(exc).__name__}") from None
        if response.is_redirect or response.status_code >= 400:
            raise _error(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "bad_response", f"{self.base_url} did not answer JSON") from None

    def login(self, email: str, password: str) -> str:
        answer = self.request("POST", "/auth/login", body={"email": email, "password": password})
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise ApiError(200, "bad_response", "the login answer holds no token")
        return token

    def create_campaign(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": check_idempotency_key(idempotency_key)} if idempotency_key is not None else None
        return _object(self.request("POST", "/campaigns", body=body, headers=headers))

    def campaign(self, campaign_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        return _object(self.request("GET", _campaign_path(campaign_id), timeout=timeout))

    def messages(self, campaign_id: str, *, status: str | None = None, limit: int | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("status", status), ("limit", limit)) if v is not None}
        return _object(self.request("GET", f"{_campaign_path(campaign_id)}/messages", params=params))

    def retry(self, campaign_id: str) -> dict[str, Any]:
        return _object(self.request("POST", f"{_campaign_path(campaign_id)}/retry"))

    def campaigns(self, *, status: str | None = None, limit: int | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("status", status), ("limit", limit)) if v is not None}
        return _object(self.request("GET", "/campaigns", params=params))

    def workers(self) -> dict[str, Any]:
        return _object(self.request("GET", "/workers"))


def _campaign_path(campaign_id: str) -> str:
    # Quoted whole, so an id like `../auth/login` cannot address another endpoint; surrogateescape sends
    # undecodable command-line bytes as they were typed (the API then answers 404) instead of raising.
    return f"/campaigns/{quote(campaign_id, safe='', errors='surrogateescape')}"


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(200, "bad_response", "expected a JSON object from the API")
    return value
