"""Outbound webhook POSTs: the signature, the address policy (SSRF) and one pooled HTTP client.

The signature is Stripe's recipe, which receivers already know how to check:
`Notifq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed by the
endpoint's secret. The timestamp is signed, so a receiver can refuse old replays (5 minutes is
the usual tolerance); `Notifq-Event-Id` lets it drop repeats (delivery is at least once).

The address policy: a webhook URL is given by an API user, and notifq POSTs to it from inside the
operator's network, so a URL naming a loopback, private, link-local (the cloud metadata service at
169.254.169.254 among them), multicast or reserved address would let that user reach what only
notifq should. The URL is checked when the endpoint is created, and again at every connection: the
HTTP client resolves names only through `GuardedResolver`, so the addresses it checked are the ones
it connects to. A name that resolved to a public address at creation and to 127.0.0.1 later (DNS
rebinding) is refused then. Redirects are not followed (a 3xx is a failed delivery), and proxies from
the environment are not used.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from notifq.vocabulary import WebhookEventType

SIGNATURE_HEADER = "Notifq-Signature"
EVENT_ID_HEADER = "Notifq-Event-Id"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048
ERROR_TEXT_LIMIT = 500
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "notifq-webhooks/1"
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class AddressRefused(aiohttp.ClientConnectionError):
    """The URL's host resolved to an address the policy refuses (raised inside the client's connect)."""


def event_id(n: int) -> str:
    """The public id of audit-trail event `n` (message or campaign event: they share one sequence)."""
    return f"evt_{n}"


def envelope(id_: str, type_: WebhookEventType | str, created_at: dt.datetime, data: dict[str, object]
             ) -> dict[str, object]:  # fmt: skip
    """One event as receivers see it: `{"id", "type", "createdAt", "data"}`."""
    at = created_at.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {"id": id_, "type": str(type_), "createdAt": at, "data": data}


def body_of(events: list[dict[str, object]], *, batch: bool) -> bytes:
    """The POST body: the event itself, or `{"events": [...]}` for an endpoint that takes batches."""
    payload: object = {"events": events} if batch else events[0]
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def new_secret() -> str:
    """A signing secret: 32 random bytes, URL-safe text, recognisable by its prefix."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Notifq-Signature` header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    """A receiver's check (the one docs/webhooks.md shows), used by the tests as a receiver would."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches (mapped, 6to4, Teredo's client, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(address: str, *, allow_private: bool) -> str | None:
    """Why an IP address may not receive webhooks; None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if allow_private:
        return None
    inner = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if inner is not None and (problem := address_problem(str(inner), allow_private=False)) is not None:
        return f"{ip} carries the IPv4 address {inner}: {problem}"
    if ip in _METADATA:
        return f"{ip} is a cloud metadata address"
    for kind, bad in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local), ("private", ip.is_private),
                      ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
                      ("reserved", ip.is_reserved or not ip.is_global)):  # fmt: skip
        if bad:
            return f"{ip} is a {kind} address (set NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1 to allow it)"
    return None


def client_host(url: str) -> str:
    """The host as the HTTP client will use it (yarl's reading: IDNA-encoded, some Unicode digits folded)."""
    return (URL(url).raw_host or "").strip("[]").rstrip(".").lower()


def _literal(host: str) -> str | None:
    """`host` as an IP address if it is one; raises ValueError for a number that is not a canonical address
    (`2130706433`, `0177.0.0.1`, `127.1`, `0x7f.1`): the system resolver reads those as IPv4 addresses,
    and the client would connect to them without asking the guarded resolver."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if all(_NUMERIC_LABEL.fullmatch(label) for label in host.split(".")):
        raise ValueError("write an IPv4 address as four decimal numbers, a.b.c.d")
    return None


def url_syntax_problem(url: str) -> str | None:
    """What is wrong with the URL itself (before any lookup); None when it is a usable http(s) URL."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "contains spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with https:// or http://"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password (sign requests with the endpoint's secret instead)"
    if parts.fragment:
        return "must not have a #fragment"
    if port == 0:
        return "has port 0"
    try:
        _literal(client_host(url))
    except ValueError as exc:  # also yarl's own refusals (a label too long, bad IDNA)
        return f"has an unusable host ({exc})"
    return None


async def url_problem(url: str, *, allow_private: bool, within: float = 5.0) -> str | None:
    """Everything wrong with a webhook URL, its host resolved now; None when it may be used.

    A name that does not resolve is a problem too (a typo found at creation, not three days later)."""
    if (problem := url_syntax_problem(url)) is not None:
        return problem
    host = client_host(url)
    try:
        addresses = await asyncio.wait_for(_lookup(host), within)
    except (OSError, TimeoutError) as exc:
        return f"host {host!r} does not resolve ({exc or 'timed out'})"
    except (UnicodeError, ValueError) as exc:
        return f"host {host!r} is not a usable name ({exc})"
    for address in addresses:
        if (problem := address_problem(address, allow_private=allow_private)) is not None:
            return f"host {host!r} resolves to {address}: {problem}" if address != host else problem
    return None


async def _lookup(host: str) -> list[str]:
    if (literal := _literal(host)) is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class GuardedResolver(AbstractResolver):
    """The client's only name lookup: every address it returns was checked, so none other is connected to."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:  # fmt: skip
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if (problem := address_problem(result["host"], allow_private=self.allow_private)) is not None:
                raise AddressRefused(f"host {host!r} resolves to {result['host']}: {problem}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _storable(text: str) -> str:
    """A receiver's words (its reason phrase) as PostgreSQL can store them: no NUL, no lone surrogates."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:ERROR_TEXT_LIMIT]


@dataclass(frozen=True)
class PostResult:
    """One POST's answer: `status` None when there was none (refused, timed out, connection error)."""

    status: int | None
    error: str | None
    duration_ms: int
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookClient:
    """One pooled aiohttp session per process; POSTs signed bodies and never raises."""

    def __init__(self, *, allow_private: bool, timeout: float, connections: int = 100) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow_private), limit=self.connections,
                                             ttl_dns_cache=10)  # fmt: skip
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  headers={"User-Agent": USER_AGENT})  # fmt: skip
        return self._session

    async def post(self, url: str, secret: str, body: bytes, event_id: str) -> PostResult:
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        # An IP literal never reaches the resolver: check it here, as the client reads the host.
        try:
            literal = _literal(client_host(url))
        except ValueError as exc:
            return PostResult(None, f"unusable host: {exc}", took(), refused=True)
        if literal is not None and (problem := address_problem(literal, allow_private=self.allow_private)):
            return PostResult(None, problem, took(), refused=True)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, int(time.time()), body),
                   EVENT_ID_HEADER: event_id}  # fmt: skip
        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
                # Read a little of the answer, never all of it: a receiver streaming for the whole timeout must
                # not fill the worker's memory. Past the limit the connection is closed instead of reused.
                await response.content.read(MAX_ANSWER_BYTES)
                error = None if 200 <= response.status < 300 else f"HTTP {response.status} {response.reason or ''}"
                return PostResult(response.status, error and _storable(error.strip()), took())
        except AddressRefused as exc:
            return PostResult(None, _storable(str(exc)), took(), refused=True)
        except TimeoutError:
            return PostResult(None, f"no answer within {self.timeout:g} s", took())
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return PostResult(None, _storable(str(exc) or type(exc).__name__), took())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
