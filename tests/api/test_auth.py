"""Login, throttling and bearer-token checks on every protected endpoint, against real PostgreSQL and Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.admins import set_admin
from notifq.api.openapi import documented_path
from notifq.api.routes import OPERATIONS, ROUTES
from notifq.campaigns import CampaignService
from notifq.settings import Settings
from notifq.validation import CampaignRequest
from tests.api.support import app_client, assert_error, b64url, b64url_json, bearer, row_counts, stateless_token
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

OTHER_SECRET = "o" * 48

# --- login ----------------------------------------------------------------------------------------


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password})


async def test_login_returns_bearer_token_with_iso_expiry(
    client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings
) -> None:
    """A client must get a usable token and know exactly when it stops working."""
    before = datetime.now(UTC)
    r = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "tokenType", "expiresAt"}
    assert body["tokenType"] == "Bearer"
    assert body["expiresAt"].endswith("Z")
    expires_at = datetime.fromisoformat(body["expiresAt"])
    assert expires_at.tzinfo is not None
    ttl = timedelta(seconds=settings.jwt_ttl_seconds)
    assert before + ttl - timedelta(seconds=2) <= expires_at <= datetime.now(UTC) + ttl + timedelta(seconds=2)
    claims = jwt.decode(body["token"], settings.jwt_secret, algorithms=["HS256"], issuer=settings.jwt_issuer)
    assert claims["sub"] == str(admin_id)
    assert datetime.fromtimestamp(claims["exp"], UTC) == expires_at
    assert jwt.get_unverified_header(body["token"])["alg"] == "HS256"
    listed = await client.get("/campaigns", headers=bearer(body["token"]))
    assert listed.status_code == 200, listed.text


async def test_login_email_is_case_insensitive(client: httpx.AsyncClient, admin_id: uuid.UUID) -> None:
    """Admins type their address in any case; the stored address is lower-cased."""
    r = await login(client, ADMIN_EMAIL.upper(), ADMIN_PASSWORD)
    assert r.status_code == 200, r.text


async def test_login_wrong_password_is_401(client: httpx.AsyncClient, admin_id: uuid.UUID) -> None:
    """A wrong password must be refused with the standard error envelope."""
    r = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD + "!")
    assert assert_error(r, 401, "unauthorized")["details"] is None
    assert "token" not in r.text


async def test_login_unknown_email_is_401_like_wrong_password(client: httpx.AsyncClient, admin_id: uuid.UUID) -> None:
    """An unknown email gets the same answer as a wrong password, so accounts cannot be enumerated."""
    unknown = assert_error(await login(client, "nobody@notifq.dev", ADMIN_PASSWORD), 401, "unauthorized")
    wrong = assert_error(await login(client, ADMIN_EMAIL, "wrong password"), 401, "unauthorized")
    assert unknown == wrong


async def test_login_lockout_after_max_failures(
    client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings
) -> None:
    """Brute force is capped: after the limit even the right password is refused with 429 and Retry-After."""
    for _ in range(settings.login_max_failures):
        assert_error(await login(client, ADMIN_EMAIL, "wrong password"), 401, "unauthorized")
    locked = await login(client, ADMIN_EMAIL, "wrong password")
    error = assert_error(locked, 429, "too_many_attempts")
    retry_after = int(locked.headers["retry-after"])
    assert 1 <= retry_after <= settings.login_lockout_seconds
    assert error["details"] == {"retryAfterSeconds": retry_after}
    correct = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert_error(correct, 429, "too_many_attempts")
    assert "retry-after" in correct.headers


async def test_account_lockout_applies_from_any_address(
    client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings
) -> None:
    """The per-account lock lives in Redis, so switching client address (or API process) does not reset it."""
    for _ in range(settings.login_max_failures):
        assert_error(await login(client, ADMIN_EMAIL, "wrong password"), 401)
    async with app_client(settings, address="198.51.100.20") as elsewhere:
        assert_error(await login(elsewhere, ADMIN_EMAIL.upper(), ADMIN_PASSWORD), 429, "too_many_attempts")


async def test_address_lockout_spans_emails(client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings) -> None:
    """Spraying many emails from one address locks that address, but not the same account elsewhere."""
    for i in range(settings.login_max_failures):
        assert_error(await login(client, f"guess{i}@notifq.dev", "password"), 401)
    assert_error(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD), 429, "too_many_attempts")
    async with app_client(settings, address="198.51.100.21") as elsewhere:
        assert (await login(elsewhere, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_failures_below_limit_do_not_lock(
    client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings
) -> None:
    """A typo or two must not lock the admin out."""
    for _ in range(settings.login_max_failures - 1):
        assert_error(await login(client, ADMIN_EMAIL, "typo"), 401)
    assert (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


@pytest.mark.parametrize("password", ["x" * 73, "é" * 37, "p" * 10_000], ids=["73-ascii", "74-utf8", "10k"])
async def test_login_password_over_72_bytes_is_422(
    client: httpx.AsyncClient, admin_id: uuid.UUID, redis: Redis, password: str
) -> None:
    """bcrypt 5 raises on >72 bytes: that must be a 422, not a 500, and must not count as a failed login."""
    for email in (ADMIN_EMAIL, "nobody@notifq.dev"):
        error = assert_error(await login(client, email, password), 422, "validation_error")
        assert error["details"]["field"] == "password"
    assert await redis.keys("notifq:login:*") == []


async def test_login_password_of_exactly_72_bytes_is_checked(client: httpx.AsyncClient, admin_id: uuid.UUID) -> None:
    """The byte limit is inclusive: a 72-byte password is verified (here: wrong, so 401)."""
    assert_error(await login(client, ADMIN_EMAIL, "é" * 36), 401, "unauthorized")


MALFORMED_LOGIN_BODIES: list[tuple[str, bytes]] = [
    ("not-json", b"{email: admin}"),
    ("empty", b""),
    ("whitespace", b"  \n "),
    ("array", b'["admin@notifq.dev", "pw"]'),
    ("string", b'"admin@notifq.dev"'),
    ("null", b"null"),
    ("missing-password", b'{"email": "admin@notifq.dev"}'),
    ("missing-email", b'{"password": "pw"}'),
    ("email-not-string", b'{"email": 42, "password": "pw"}'),
    ("password-not-string", b'{"email": "admin@notifq.dev", "password": ["pw"]}'),
    ("password-null", b'{"email": "admin@notifq.dev", "password": null}'),
    ("empty-email", b'{"email": "", "password": "pw"}'),
    ("empty-password", b'{"email": "admin@notifq.dev", "password": ""}'),
    ("not-utf8", b'{"email": "\xff\xfe", "password": "pw"}'),
]


@pytest.mark.parametrize("raw", [b for _, b in MALFORMED_LOGIN_BODIES], ids=[n for n, _ in MALFORMED_LOGIN_BODIES])
async def test_login_malformed_body_is_422(
    client: httpx.AsyncClient, admin_id: uuid.UUID, redis: Redis, raw: bytes
) -> None:
    """A broken login request is a client error, never a 500, and is not counted as a failed login."""
    r = await client.post("/auth/login", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "validation_error")
    assert await redis.keys("notifq:login:*") == []


UNSTORABLE_LOGIN_BODIES: list[tuple[str, bytes]] = [
    ("deeply-nested", b"[" * 10_000),
    ("nul-in-email", b'{"email": "admin\\u0000@notifq.dev", "password": "pw"}'),
    ("surrogate-in-email", b'{"email": "admin\\ud800@notifq.dev", "password": "pw"}'),
    ("surrogate-in-password", b'{"email": "admin@notifq.dev", "password": "\\ud800"}'),
]


@pytest.mark.parametrize("raw", [b for _, b in UNSTORABLE_LOGIN_BODIES], ids=[n for n, _ in UNSTORABLE_LOGIN_BODIES])
async def test_login_unusable_input_is_422_not_500(client: httpx.AsyncClient, admin_id: uuid.UUID, raw: bytes) -> None:
    """JSON that parses badly (too deep) or holds text PostgreSQL/UTF-8 cannot take is a client error, not a crash."""
    r = await client.post("/auth/login", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "validation_error")


async def test_login_body_too_large_is_413(client: httpx.AsyncClient, admin_id: uuid.UUID) -> None:
    """The login body is capped well below the campaign limit, so it cannot be used to exhaust memory."""
    r = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": "x", "pad": "p" * 20_000})
    assert_error(r, 413, "payload_too_large")


# --- bearer tokens on every campaign endpoint ----------------------------------------------------

ENDPOINTS: list[tuple[str, str]] = [
    ("POST", "/campaigns"),
    ("GET", "/campaigns"),
    ("GET", "/campaigns/{id}"),
    ("GET", "/campaigns/{id}/messages"),
    ("POST", "/campaigns/{id}/retry"),
    ("POST", "/campaigns/{id}/cancel"),
]
CREATE_BODY = {"name": "Auth probe", "recipients": ["ada@example.com"]}


def _claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(uuid.uuid4()), "iss": settings.jwt_issuer, "iat": now, "exp": now + 3600,
                              "jti": uuid.uuid4().hex, "gen": 0}  # fmt: skip
    for key, value in overrides.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def _sign(settings: Settings, **overrides: Any) -> str:
    return jwt.encode(_claims(settings, **overrides), settings.jwt_secret, algorithm="HS256")


def _flip(segment: str, index: int) -> str:
    chars = list(segment)
    chars[index] = "A" if chars[index] != "A" else "B"
    return "".join(chars)


def _tampered_signature(settings: Settings) -> str:
    head, payload, sig = _sign(settings).split(".")
    # The middle of the signature: the last base64 character also carries padding bits that decoders ignore.
    return f"{head}.{payload}.{_flip(sig, len(sig) // 2)}"


def _tampered_payload(settings: Settings) -> str:
    head, _, sig = _sign(settings).split(".")
    return f"{head}.{b64url_json(_claims(settings, sub=str(uuid.uuid4())))}.{sig}"


def _flipped_payload_char(settings: Settings) -> str:
    head, payload, sig = _sign(settings).split(".")
    return f"{head}.{_flip(payload, 5)}.{sig}"


def _alg_none(settings: Settings, alg: str = "none") -> str:
    return f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(_claims(settings))}."


def _hs512(settings: Settings) -> str:
    """HS512 with the right secret, built by hand (pyjwt warns about the key length): the algorithm is pinned."""
    signing_input = f"{b64url_json({'alg': 'HS512', 'typ': 'JWT'})}.{b64url_json(_claims(settings))}"
    digest = hmac.new(settings.jwt_secret.encode(), signing_input.encode(), hashlib.sha512).digest()
    return f"{signing_input}.{b64url(digest)}"


def _auth_value(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BAD_AUTH: dict[str, Callable[[Settings], dict[str, str]]] = {
    "missing": lambda s: {},
    "basic-scheme": lambda s: {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()},
    "token-scheme": lambda s: {"Authorization": f"Token {stateless_token(s)}"},
    "no-scheme": lambda s: {"Authorization": stateless_token(s)},
    "empty-bearer": lambda s: {"Authorization": "Bearer "},
    "garbage": lambda s: _auth_value("not.a.jwt"),
    "expired": lambda s: _auth_value(_sign(s, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
    "tampered-signature": lambda s: _auth_value(_tampered_signature(s)),
    "tampered-payload": lambda s: _auth_value(_tampered_payload(s)),
    "flipped-payload-char": lambda s: _auth_value(_flipped_payload_char(s)),
    "alg-none": lambda s: _auth_value(_alg_none(s)),
    "alg-None": lambda s: _auth_value(_alg_none(s, "None")),
    "other-secret": lambda s: _auth_value(jwt.encode(_claims(s), OTHER_SECRET, algorithm="HS256")),
    "hs512-same-secret": lambda s: _auth_value(_hs512(s)),
    "missing-exp": lambda s: _auth_value(_sign(s, exp=None)),
    "missing-sub": lambda s: _auth_value(_sign(s, sub=None)),
    "missing-iat": lambda s: _auth_value(_sign(s, iat=None)),
    "missing-iss": lambda s: _auth_value(_sign(s, iss=None)),
    "wrong-issuer": lambda s: _auth_value(_sign(s, iss="someone-else")),
    "sub-not-uuid": lambda s: _auth_value(_sign(s, sub="admin")),
    "missing-jti": lambda s: _auth_value(_sign(s, jti=None)),
    "missing-gen": lambda s: _auth_value(_sign(s, gen=None)),
    "gen-not-int": lambda s: _auth_value(_sign(s, gen="0")),
    "unknown-admin": lambda s: _auth_value(_sign(s)),  # well signed, but no such admin (never was, or deleted)
}


@pytest.fixture
async def existing_campaign(engine: AsyncEngine, redis: Redis, settings: Settings) -> uuid.UUID:
    """A real campaign (through the service, no admin needed) so a valid token would have succeeded."""
    request = CampaignRequest(name="Existing", subject=None, body=None, recipients=[("a@example.com", None)],
                              recipient_count=None)  # fmt: skip
    row = await CampaignService(engine, redis, settings).create(request, None)
    return row.id


async def _snapshot(engine: AsyncEngine, redis: Redis, settings: Settings) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        campaigns = (await conn.execute(text("SELECT id, status, updated_at FROM campaigns ORDER BY id"))).all()
        messages = (await conn.execute(text("SELECT id, status, attempts, job_id FROM messages ORDER BY id"))).all()
    return tuple(campaigns), tuple(messages), await redis.zcard(settings.queue_name)


async def _call(
    client: httpx.AsyncClient, method: str, path: str, campaign_id: uuid.UUID, headers: dict[str, str]
) -> httpx.Response:
    url = path.format(id=campaign_id)
    body = CREATE_BODY if (method, path) == ("POST", "/campaigns") else None
    return await client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize("case", list(BAD_AUTH))
@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
async def test_bad_bearer_is_401_and_changes_nothing(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    existing_campaign: uuid.UUID,
    method: str,
    path: str,
    case: str,
) -> None:
    """Every campaign endpoint refuses a missing, forged, expired or incomplete token, and does nothing."""
    before = await _snapshot(engine, redis, settings)
    r = await _call(client, method, path, existing_campaign, BAD_AUTH[case](settings))
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    assert await _snapshot(engine, redis, settings) == before


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
async def test_valid_bearer_is_accepted_on_every_endpoint(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    existing_campaign: uuid.UUID,
    method: str,
    path: str,
) -> None:
    """Control for the 401 matrix: the same request with a real login token succeeds."""
    r = await _call(client, method, path, existing_campaign, auth)
    assert r.status_code in (200, 202), r.text


async def test_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, token: str, existing_campaign: uuid.UUID
) -> None:
    """RFC 7235 auth schemes are case-insensitive; `bearer` must work like `Bearer`."""
    r = await client.get(f"/campaigns/{existing_campaign}", headers={"Authorization": f"bearer {token}"})
    assert r.status_code == 200, r.text


async def test_token_of_deleted_admin_cannot_create_campaign(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A still-unexpired token whose admin was deleted is refused with 401, not a 500 from the created_by FK."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM admins"))
    r = await client.post("/campaigns", json=CREATE_BODY, headers=auth)
    assert_error(r, 401, "unauthorized")
    assert await row_counts(engine) == (0, 0)
    assert await redis.zcard(settings.queue_name) == 0


async def test_tokens_are_not_shared_between_admins(
    client: httpx.AsyncClient, engine: AsyncEngine, admin_id: uuid.UUID, settings: Settings
) -> None:
    """Each admin's login yields a token whose subject is that admin."""
    await set_admin(engine, "second@notifq.dev", "another long password")
    r = await login(client, "second@notifq.dev", "another long password")
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["token"], settings.jwt_secret, algorithms=["HS256"], issuer=settings.jwt_issuer)
    assert claims["sub"] != str(admin_id)
    async with engine.connect() as conn:
        expected = (await conn.execute(text("SELECT id FROM admins WHERE email = 'second@notifq.dev'"))).scalar_one()
    assert claims["sub"] == str(expected)


# --- public endpoints ----------------------------------------------------------------------------


async def test_health_is_public(client: httpx.AsyncClient) -> None:
    """Load balancers probe /health without credentials."""
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_ready_is_public_and_checks_both_dependencies(client: httpx.AsyncClient) -> None:
    """Readiness needs no token and reports PostgreSQL and Redis."""
    r = await client.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


PUBLIC_PATHS = {
    "/auth/login",
    "/health",
    "/ready",
    "/openapi.json",
    "/metrics",
    "/",
    "/ws",
    "/inbox.js",
    "/webhooks/ses",
    "/u/{token}",
}
SUBSCRIBER_PATHS = {"/inbox", "/inbox/{notification_id}/read", "/inbox/read-all"}  # a subscriber's token


async def test_openapi_is_public_and_lists_every_route(client: httpx.AsyncClient) -> None:
    """The published contract must cover every route the app serves, with bearer security on all but the public ones,
    naming the scope an API key needs."""
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    # The /assets mount has no methods: static files.
    served = {(documented_path(getattr(route, "path", "")), method.lower()) for route in ROUTES
              for method in (getattr(route, "methods", None) or ()) if method != "HEAD"}  # fmt: skip
    documented = {
        (path, method)
        for path, item in paths.items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert served == documented
    scopes = {(documented_path(op.path), op.method.lower()): str(op.scope) for op in OPERATIONS if op.scope}
    for path, method in served:
        security = paths[path][method].get("security")
        expected = (
            []
            if path in PUBLIC_PATHS
            else [{"subscriberAuth": []}]
            if path in SUBSCRIBER_PATHS
            else [{"bearerAuth": [scopes[(path, method)]]}]
        )
        assert security == expected, (path, method)
    assert "bearerAuth" in spec["components"]["securitySchemes"]
