"""Hostile input over HTTP: every attack gets a 4xx in the error envelope and writes nothing.

One class per attack. The API is reached only through HTTP (`create_app` via the shared
fixtures), so these tests hold whatever the handlers look like inside. Nothing is marked
xfail: an attack the API does not withstand today fails here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import schemathesis
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from notifq.settings import Settings
from tests.api.attack_support import (
    BAD_TEXT,
    BAD_URL_TEXT,
    IDEMPOTENCY_MODES,
    JSON_HEADERS,
    TOKEN_KINDS,
    allows,
    assert_nothing_kept,
    concrete_path,
    draw,
    fetch_spec,
    forged_authorization,
    is_valid,
    operations,
    parameters,
    raw_json,
    resolve,
    route_methods,
    send_at_schemas,
)
from tests.api.support import app_and_client, app_client, assert_error, create_campaign, row_counts
from tests.conftest import ADMIN_EMAIL

CAMPAIGN: dict[str, Any] = {"name": "p", "subject": "s", "body": "b", "channel": "email",
                            "recipients": ["ada@example.com"]}  # fmt: skip
PUSH: dict[str, Any] = {"channel": "push", "to": "mock-device-1", "subject": "s", "body": "b", "data": {"k": "v"},
                        "priority": "transactional"}  # fmt: skip
SMS: dict[str, Any] = {"channel": "sms", "to": "+15550000001", "body": "b"}
EMAIL: dict[str, Any] = {"channel": "email", "to": "ada@example.com", "subject": "s", "body": "b"}
REDRIVE: dict[str, Any] = {"ids": ["1"]}
LOGIN: dict[str, Any] = {"email": ADMIN_EMAIL, "password": "not the password"}
WEBHOOK: dict[str, Any] = {"url": "https://93.184.215.14/hook", "events": ["message.sent"]}  # a global address
PUBLIC_PATHS = {
    "/health",
    "/ready",
    "/openapi.json",
    "/metrics",
    "/",
    "/auth/login",
    "/ws",
    "/inbox.js",
    "/webhooks/ses",
    "/u/{token}",
}  # the last two: an SNS signature, an unsubscribe link's HMAC
INBOX_PREFIX = "/inbox/"  # subscriber tokens only (/inbox and /inbox/...): an admin's is refused there
STREAM_PREFIX = "/events/"
TIMEOUT = 10  # seconds: a stream that starts instead of refusing must not hang the test


def _campaign_bodies(bad: str) -> dict[str, Any]:
    """Known fields of POST /campaigns, each holding `bad`: all must be a 422."""
    recipient = {"to": "ada@example.com", "vars": {"k": "v"}}
    return {
        "name": {**CAMPAIGN, "name": "p" + bad},
        "subject": {**CAMPAIGN, "subject": "s" + bad},
        "body": {**CAMPAIGN, "body": "b" + bad},
        "channel": {**CAMPAIGN, "channel": "email" + bad},
        "sendAt": {**CAMPAIGN, "sendAt": "2026-01-01T00:00:00" + bad + "Z"},
        "recipients[0]": {**CAMPAIGN, "recipients": [bad + "@example.com"]},
        "recipients[0].to": {**CAMPAIGN, "recipients": [{**recipient, "to": bad + "@example.com"}]},
        "recipients[0].vars-key": {**CAMPAIGN, "recipients": [{**recipient, "vars": {bad: "v"}}]},
        "recipients[0].vars-value": {**CAMPAIGN, "recipients": [{**recipient, "vars": {"k": "v" + bad}}]},
    }


def _campaign_extras(bad: str) -> dict[str, Any]:
    """Unknown fields and keys of POST /campaigns holding `bad`: a 202 (ignored) or a 422, never a 500."""
    return {
        "note": {**CAMPAIGN, "note": bad},
        "top-level-key": {bad: "x", **CAMPAIGN},
        "recipients[0]-key": {**CAMPAIGN, "recipients": [{"to": "ada@example.com", bad: "x"}]},
    }


def _notification_bodies(bad: str) -> dict[str, Any]:
    """Known fields of one notification, each holding `bad`: all must be a 422."""
    return {
        "channel": {**PUSH, "channel": "push" + bad},
        "to(push)": {**PUSH, "to": "mock-device-1" + bad},
        "to(sms)": {**SMS, "to": bad},
        "to(email)": {**EMAIL, "to": bad + "@example.com"},
        "subject": {**PUSH, "subject": "s" + bad},
        "body": {**PUSH, "body": "b" + bad},
        "data-key": {**PUSH, "data": {bad: "v"}},
        "data-value": {**PUSH, "data": {"k": "v" + bad}},
        "priority": {**PUSH, "priority": "transactional" + bad},
        "sendAt": {**PUSH, "sendAt": "2026-01-01T00:00:00" + bad + "Z"},
    }


def _notification_extras(bad: str) -> dict[str, Any]:
    return {"note": {**PUSH, "note": bad}, "top-level-key": {bad: "x", **PUSH}}


def _redrive_bodies(bad: str) -> dict[str, Any]:
    return {
        "ids[0]": {"ids": ["1" + bad]},
        "filter.channel": {"filter": {"channel": "sms" + bad}},
        "filter.campaignId": {"filter": {"campaignId": str(uuid.uuid4()) + bad}},
        "filter-key": {"filter": {bad: "x"}},
    }


def _login_bodies(bad: str) -> dict[str, Any]:
    return {
        "email": {**LOGIN, "email": ADMIN_EMAIL + bad},
        "password": {**LOGIN, "password": "pw" + bad},
        "top-level-key": {bad: "x", **LOGIN},
    }


def _webhook_bodies(bad: str) -> dict[str, Any]:
    return {
        "url": {**WEBHOOK, "url": WEBHOOK["url"] + bad},
        "events[0]": {**WEBHOOK, "events": ["message.sent" + bad]},
        "description": {**WEBHOOK, "description": "d" + bad},
    }


def _cases(builder: Any, extra: bool, keyed: bool) -> list[Any]:
    """pytest params (body, Idempotency-Key headers, extra) for each bad text and position of a builder."""
    modes = IDEMPOTENCY_MODES if keyed else {"no-key": {}}
    return [
        pytest.param(body, headers, extra, id=f"{position}-{kind}-{mode}")
        for kind, bad in BAD_TEXT.items()
        for position, body in builder(bad).items()
        for mode, headers in modes.items()
    ]


async def _post_raw(client: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return await client.post(path, content=raw_json(body), headers={**JSON_HEADERS, **headers})


async def _assert_refused_or_ignored(
    response: httpx.Response, extra: bool, engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A known field: 422 and nothing kept. An unknown one: 422 (and nothing kept) or 202 (ignored)."""
    if extra and response.status_code == 202:
        return
    assert_error(response, 422, "validation_error")
    await assert_nothing_kept(engine, redis, settings)


class TestUnstorableText:
    """Lone UTF-16 surrogates and NUL, which PostgreSQL text cannot hold, in every text field and key.

    Sent as JSON escapes (`"\\ud800"`, `"\\u0000"`) in the raw body, with and without an
    Idempotency-Key where the endpoint takes one (the key's request hash serialises the body).
    """

    @pytest.mark.parametrize(
        ("body", "headers", "extra"),
        _cases(_campaign_bodies, extra=False, keyed=True) + _cases(_campaign_extras, extra=True, keyed=True),
    )
    async def test_campaign_body(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, body: Any, headers: dict[str, str], extra: bool,
    ) -> None:  # fmt: skip
        r = await _post_raw(client, "/campaigns", body, {**fast_auth, **headers})
        await _assert_refused_or_ignored(r, extra, engine, redis, settings)

    @pytest.mark.parametrize(
        ("body", "headers", "extra"),
        _cases(_notification_bodies, extra=False, keyed=True) + _cases(_notification_extras, extra=True, keyed=True),
    )
    @pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
    async def test_notification_body(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, body: Any, headers: dict[str, str], extra: bool, batch: bool,
    ) -> None:  # fmt: skip
        """As a single object, and as the second item of a batch (all created or none)."""
        sent = [EMAIL, body] if batch else body
        r = await _post_raw(client, "/notifications", sent, {**fast_auth, **headers})
        await _assert_refused_or_ignored(r, extra, engine, redis, settings)

    @pytest.mark.parametrize(("body", "headers", "extra"), _cases(_redrive_bodies, extra=False, keyed=False))
    async def test_redrive_body(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, body: Any, headers: dict[str, str], extra: bool,
    ) -> None:  # fmt: skip
        r = await _post_raw(client, "/dead-letters/redrive", body, {**fast_auth, **headers})
        await _assert_refused_or_ignored(r, extra, engine, redis, settings)

    @pytest.mark.parametrize("kind", BAD_TEXT)
    async def test_redrive_unknown_key(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, kind: str,
    ) -> None:  # fmt: skip
        """An unknown top-level key beside valid ids: ignored (202, nothing to redrive) or a 422."""
        r = await _post_raw(client, "/dead-letters/redrive", {BAD_TEXT[kind]: "x", **REDRIVE}, fast_auth)
        assert r.status_code in {202, 422}, r.text
        if r.status_code == 422:
            assert_error(r, 422, "validation_error")
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize(("body", "headers", "extra"), _cases(_login_bodies, extra=False, keyed=False))
    async def test_login_body(
        self, client: httpx.AsyncClient, engine: AsyncEngine, redis: Redis,
        settings: Settings, body: Any, headers: dict[str, str], extra: bool,
    ) -> None:  # fmt: skip
        """Refused as invalid (422) or as a wrong password (401: the admin does not exist); never a 500."""
        r = await _post_raw(client, "/auth/login", body, headers)
        assert r.status_code in {401, 422}, r.text
        assert_error(r, r.status_code)
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize(("body", "headers", "extra"), _cases(_webhook_bodies, extra=False, keyed=False))
    async def test_webhook_body(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, body: Any, headers: dict[str, str], extra: bool,
    ) -> None:  # fmt: skip
        r = await _post_raw(client, "/webhooks", body, fast_auth)
        assert_error(r, 422, "validation_error")
        await assert_nothing_kept(engine, redis, settings)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM webhook_endpoints"))).scalar_one() == 0

    @pytest.mark.parametrize("kind", BAD_URL_TEXT)
    @pytest.mark.parametrize(
        ("path", "param"),
        [
            ("/notifications", "status"),
            ("/notifications", "channel"),
            ("/notifications", "to"),
            ("/notifications", "cursor"),
            ("/campaigns", "status"),
            ("/campaigns", "cursor"),
            ("/dead-letters", "channel"),
            ("/dead-letters", "campaignId"),
            ("/dead-letters", "cursor"),
            (f"/campaigns/{uuid.UUID(int=1)}/messages", "status"),
            (f"/campaigns/{uuid.UUID(int=1)}/messages", "cursor"),
        ],
    )
    async def test_query_string(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, path: str, param: str, kind: str,
    ) -> None:  # fmt: skip
        """Percent-encoded: `%00`, and a surrogate's WTF-8 bytes (which no UTF-8 decoder accepts).

        An enum, an id or a cursor holding either is a 422 (a 404 for an unknown campaign);
        the free-text `to` filter may also match nothing (200).
        """
        r = await client.get(f"{path}?{param}=x{BAD_URL_TEXT[kind]}", headers=fast_auth)
        allowed = {422, 200} if param == "to" else {422, 404} if "/messages" in path else {422}
        assert r.status_code in allowed, r.text
        if r.status_code >= 400:
            assert_error(r, r.status_code)
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize("kind", BAD_URL_TEXT)
    @pytest.mark.parametrize(
        ("method", "template"),
        [
            ("GET", "/campaigns/{id}"),
            ("GET", "/campaigns/{id}/messages"),
            ("GET", "/campaigns/{id}/timeline"),
            ("POST", "/campaigns/{id}/retry"),
            ("POST", "/campaigns/{id}/cancel"),
            ("POST", "/campaigns/{id}/pause"),
            ("POST", "/campaigns/{id}/resume"),
            ("GET", "/events/campaigns/{id}"),
            ("GET", "/notifications/{nid}"),
            ("POST", "/notifications/{nid}/cancel"),
        ],
    )
    async def test_path_id(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, method: str, template: str, kind: str,
    ) -> None:  # fmt: skip
        """A valid-looking id with the bad text appended: 422 (malformed) or 404 (no such route or id)."""
        bad = BAD_URL_TEXT[kind]
        path = template.replace("{id}", f"{uuid.UUID(int=1)}{bad}").replace("{nid}", f"1{bad}")
        r = await asyncio.wait_for(client.request(method, path, headers=fast_auth), TIMEOUT)
        assert r.status_code in {404, 422}, r.text
        assert_error(r, r.status_code)
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize(
        ("path", "body"),
        [("/campaigns", CAMPAIGN), ("/notifications", PUSH), ("/notifications", SMS), ("/notifications", EMAIL),
         ("/notifications", [EMAIL, PUSH]), ("/dead-letters/redrive", REDRIVE)],
        ids=["campaign", "push", "sms", "email", "batch", "redrive"],
    )  # fmt: skip
    async def test_control_bodies_are_accepted(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], path: str, body: Any
    ) -> None:
        """The bodies the attacks start from are valid: only the bad text makes them fail."""
        r = await _post_raw(client, path, body, fast_auth)
        assert r.status_code == 202, r.text


MAX_NESTING = 7_000  # 14 KB of brackets: past any parser's recursion limit, within login's 16 KiB body cap


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_body(base: dict[str, Any], field: str, depth: int) -> bytes:
    """`base` with `field` set to `depth` nested arrays (the body is one level deeper)."""
    marker = "@@NEST@@"
    return json.dumps({**base, field: marker}).replace(f'"{marker}"', _nest(depth)).encode()


async def _post_nested(
    client: httpx.AsyncClient, path: str, body: Any, field: str, depth: int, headers: dict[str, str]
) -> httpx.Response:
    """Sent from a task of its own: in-process, the app runs on the caller's stack, and the parser's
    limit would move with the caller's frames (probe and test must see the same limit, as uvicorn would)."""
    content = _nested_body(body, field, depth)
    return await asyncio.create_task(client.post(path, content=content, headers={**headers, **JSON_HEADERS}))


async def _depth_limit(client: httpx.AsyncClient, path: str, body: Any, field: str, headers: dict[str, str]) -> int:
    """The deepest nesting in `field` the endpoint still parses, found by bisection (no Idempotency-Key).

    Past the limit the answer is a 422 whose message speaks of JSON; under it, anything else.
    """

    async def malformed(depth: int) -> bool:
        r = await _post_nested(client, path, body, field, depth, headers)
        return r.status_code == 422 and "json" in r.json()["error"]["message"].lower()

    low, high = 1, MAX_NESTING
    assert not await malformed(low)
    assert await malformed(high), f"{path} parsed {high:,} nested arrays: no recursion limit to test"
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if not await malformed(middle) else (low, middle)
    return low


NESTING_TARGETS = [
    pytest.param("/campaigns", CAMPAIGN, "name", False, id="campaign-name"),
    pytest.param("/campaigns", CAMPAIGN, "note", True, id="campaign-note(extra)"),
    pytest.param("/notifications", EMAIL, "body", False, id="notification-body"),
    pytest.param("/notifications", EMAIL, "data", False, id="notification-data"),
    pytest.param("/notifications", EMAIL, "note", True, id="notification-note(extra)"),
    pytest.param("/dead-letters/redrive", REDRIVE, "ids", False, id="redrive-ids"),
    pytest.param("/auth/login", LOGIN, "email", False, id="login-email"),
    pytest.param("/webhooks", WEBHOOK, "description", False, id="webhook-description"),
]


class TestDeepNesting:
    """JSON nested up to the parser's recursion limit, and past it.

    The limit is measured per endpoint (it depends on the parser and on the stack depth it
    runs at). The few depths just under it, in a field: a 4xx, or a 202 for an ignored extra
    field, never a 500 (serialising the body again, e.g. for the Idempotency-Key's request
    hash, must not overflow either). Past it: a 422 naming malformed JSON, nothing written.
    """

    @pytest.mark.parametrize("mode", IDEMPOTENCY_MODES)
    @pytest.mark.parametrize(("path", "base", "field", "extra"), NESTING_TARGETS)
    async def test_just_under_the_limit(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, path: str, base: dict[str, Any], field: str, extra: bool, mode: str,
    ) -> None:  # fmt: skip
        limit = await _depth_limit(client, path, base, field, fast_auth)
        accepted = extra  # a probe may have created rows already
        for depth in range(limit - 5, limit + 1):
            headers = dict(fast_auth)
            if mode == "with-key":
                headers["Idempotency-Key"] = f"nest-{depth}"  # one key per body: a reused key is a 422
            r = await _post_nested(client, path, base, field, depth, headers)
            assert r.status_code < 500, f"depth {depth} (limit {limit}): {r.status_code} {r.text}"
            if extra and r.status_code == 202:
                continue
            assert 400 <= r.status_code < 500, f"depth {depth} (limit {limit}): {r.status_code} {r.text}"
            assert_error(r, r.status_code)
            if not accepted:
                await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize("mode", IDEMPOTENCY_MODES)
    @pytest.mark.parametrize(("path", "base", "field", "extra"), NESTING_TARGETS)
    async def test_over_the_limit_is_malformed_json(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, path: str, base: dict[str, Any], field: str, extra: bool, mode: str,
    ) -> None:  # fmt: skip
        limit = await _depth_limit(client, path, base, field, fast_auth)
        if extra:  # the probe's parsed bodies were accepted: start from nothing again
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE messages, campaigns, message_events, message_counts CASCADE"))
            await redis.flushdb()
        for depth in (limit + 1, limit + 2, MAX_NESTING):
            r = await _post_nested(client, path, base, field, depth, {**fast_auth, **IDEMPOTENCY_MODES[mode]})
            error = assert_error(r, 422, "validation_error")
            assert "json" in error["message"].lower(), f"depth {depth} (limit {limit}): {error}"
            await assert_nothing_kept(engine, redis, settings)


BODY_CAP = 64 * 1024
HUGE = 1024 * 1024 + 1024  # over every endpoint's cap: the configurable one, redrive's 1 MiB, login's 16 KiB


@pytest.fixture
async def capped_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose NOTIFQ_MAX_BODY_BYTES is 64 KiB."""
    async with app_client(settings.with_(max_body_bytes=BODY_CAP)) as c:
        yield c


def _huge_body() -> bytes:
    return json.dumps({"name": "x" * HUGE, "recipients": ["ada@example.com"]}).encode()


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class TestHugeBodies:
    """A body over the cap is a 413 in the envelope, whether it declares its length or not."""

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    @pytest.mark.parametrize("path", ["/campaigns", "/notifications", "/dead-letters/redrive", "/auth/login",
                                      "/webhooks"])  # fmt: skip
    async def test_over_the_cap_is_413(
        self, capped_client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, path: str, framing: str,
    ) -> None:  # fmt: skip
        body = _huge_body()
        content: bytes | AsyncIterator[bytes] = body if framing == "content-length" else _chunks(body)
        r = await capped_client.post(path, content=content, headers={**fast_auth, **JSON_HEADERS})
        if framing == "chunked":
            assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_error(r, 413, "payload_too_large")
        await assert_nothing_kept(engine, redis, settings)


@pytest.fixture
async def app_and_http(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    async with app_and_client(settings) as pair:
        yield pair


class TestMethodNotAllowed:
    """A 405 names the allowed methods in `Allow` (RFC 9110 §15.5.6), in the error envelope."""

    @staticmethod
    def _allow(response: httpx.Response) -> set[str]:
        return {m.strip().upper() for m in response.headers.get("allow", "").split(",") if m.strip()}

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [("DELETE", "/campaigns", {"GET", "POST"}), ("PUT", "/notifications", {"GET", "POST"})],
    )
    async def test_examples(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], method: str, path: str, allowed: set[str]
    ) -> None:
        r = await client.request(method, path, headers=fast_auth)
        assert_error(r, 405, "method_not_allowed")
        assert allowed <= self._allow(r), f"Allow: {r.headers.get('allow')!r}"

    async def test_every_route(
        self, app_and_http: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str]
    ) -> None:
        app, client = app_and_http
        wrong: list[str] = []
        for template, allowed in sorted(route_methods(app).items()):
            method = next(m for m in ("DELETE", "PATCH", "PUT", "POST") if m not in allowed)
            r = await asyncio.wait_for(client.request(method, concrete_path(template), headers=fast_auth), TIMEOUT)
            got = self._allow(r)
            envelope = r.headers.get("content-type", "").startswith("application/json") and set(r.json()) == {"error"}
            if r.status_code != 405 or not (allowed - {"HEAD"}) <= got or not envelope:
                wrong.append(f"{method} {template}: {r.status_code}, Allow {r.headers.get('allow')!r}, "
                             f"expected {sorted(allowed)}")  # fmt: skip
        assert not wrong, "\n".join(wrong)


def _authenticated(app: Starlette) -> list[tuple[str, str]]:
    """(method, path template) of every route that needs a token."""
    return [
        (method, template)
        for template, methods in sorted(route_methods(app).items())
        if template not in PUBLIC_PATHS
        for method in sorted(methods - {"HEAD"})
    ]


class TestBadTokens:
    """Every authenticated route refuses a missing or bad token: 401, `WWW-Authenticate`, the envelope."""

    @pytest.mark.parametrize("kind", TOKEN_KINDS)
    async def test_every_route_refuses(
        self, app_and_http: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], settings: Settings,
        engine: AsyncEngine, redis: Redis, kind: str,
    ) -> None:  # fmt: skip
        app, client = app_and_http
        headers = forged_authorization(kind, settings, fast_auth)
        wrong: list[str] = []
        routes = _authenticated(app)
        assert len(routes) > 10, routes
        for method, template in routes:
            body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
            r = await asyncio.wait_for(client.request(method, concrete_path(template), headers=headers, **body),
                                       TIMEOUT)  # fmt: skip
            challenge = r.headers.get("www-authenticate", "")
            if r.status_code != 401 or not challenge.lower().startswith("bearer"):
                wrong.append(f"{method} {template}: {r.status_code} WWW-Authenticate={challenge!r} {r.text[:120]}")
                continue
            assert_error(r, 401)
        assert not wrong, f"{len(wrong)} of {len(routes)} routes:\n" + "\n".join(wrong)
        await assert_nothing_kept(engine, redis, settings)

    async def test_control_a_valid_token_passes(
        self, app_and_http: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str]
    ) -> None:
        """The same routes with a valid token are not a 401 (streams and logout left out)."""
        app, client = app_and_http
        for method, template in _authenticated(app):
            if (
                template.startswith(STREAM_PREFIX)
                or template in ("/auth/logout", "/inbox")
                or template.startswith(INBOX_PREFIX)
            ):
                continue
            body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
            r = await client.request(method, concrete_path(template), headers=fast_auth, **body)
            assert r.status_code != 401, f"{method} {template}: {r.text}"


async def _real_ids(client: httpx.AsyncClient, auth: dict[str, str]) -> Callable[[str], str]:
    """A campaign and a webhook endpoint that exist, and a function filling a path template with their ids."""
    campaign = await create_campaign(client, auth, **CAMPAIGN)
    r = await client.post("/webhooks", json=WEBHOOK, headers=auth)
    assert r.status_code == 201, r.text
    webhook = r.json()

    def fill(template: str) -> str:
        real = webhook["id"] if template.startswith("/webhooks/") else campaign["id"]
        return concrete_path(template).replace(str(uuid.UUID(int=1)), real)

    return fill


class TestSpecStrictness:
    """/openapi.json carries the constraints the API enforces, so what it calls valid is accepted."""

    async def test_limit_bounds_are_what_the_api_accepts(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        real = await _real_ids(client, fast_auth)
        assert (await client.put("/subscribers/reader", json={}, headers=fast_auth)).status_code == 201
        minted = await client.post("/subscribers/reader/token", headers=fast_auth)
        reader = {"Authorization": f"Bearer {minted.json()['token']}"}  # the inbox takes a subscriber's token
        params = parameters(await fetch_spec(client), "limit", "query")
        assert params
        wrong: list[str] = []
        for method, path, p in params:
            schema = p["schema"]
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is None or high is None:
                wrong.append(f"{method} {path}: `limit` has no minimum/maximum: {schema}")
                continue
            url = real(path)
            for value, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
                headers = reader if path == "/inbox" or path.startswith(INBOX_PREFIX) else fast_auth
                r = await client.request(method, url, params={"limit": value}, headers=headers)
                if (r.status_code == 200) != ok:
                    wrong.append(f"{method} {path}?limit={value}: {r.status_code} but the spec says {low}..{high}")
        assert not wrong, "\n".join(wrong)

    async def test_cursor_refuses_arbitrary_strings(self, client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
        """Cursors are opaque, but not any string: the API refuses a malformed one, so the spec must."""
        real = await _real_ids(client, fast_auth)
        params = parameters(await fetch_spec(client), "cursor", "query")
        assert params
        wrong: list[str] = []
        for method, path, p in params:
            for junk in ("not a cursor!", "\u00e9\u00e9", "~~", "9" * 19, "MJAK8"):  # 9…9 is past 2**63 - 1
                url = real(path)
                r = await client.request(method, url, params={"cursor": junk}, headers=fast_auth)
                if r.status_code == 422 and is_valid(p["schema"], junk):
                    wrong.append(f"{method} {path}?cursor={junk!r}: API {r.status_code}, spec valid {p['schema']}")
        assert not wrong, "\n".join(wrong)

    async def test_path_ids_refuse_what_the_api_refuses(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        """Path ids carry a format or pattern: 0, a negative or an over-long id is invalid per the spec too."""
        params = parameters(await fetch_spec(client), where="path")
        assert params
        wrong: list[str] = []
        for method, path, p in params:
            if method != "GET" or path.startswith(STREAM_PREFIX):
                continue
            for junk in ("0", "000", "-1", "9223372036854775808", "not-an-id", str(uuid.UUID(int=1))[:-1]):
                url = path.replace("{" + p["name"] + "}", junk)
                r = await client.get(url, headers=fast_auth)
                if r.status_code == 422 and is_valid(p["schema"], junk):
                    wrong.append(f"GET {path} with {p['name']}={junk!r}: API 422, spec valid {p['schema']}")
        assert not wrong, "\n".join(wrong)

    async def test_send_at_is_a_date_time(self, client: httpx.AsyncClient) -> None:
        spec = await fetch_spec(client)
        found = [
            (method, path, schema)
            for method, path, op in operations(spec)
            for schema in send_at_schemas(op.get("requestBody", {}))
        ]
        assert found, "no request body has a sendAt"
        wrong = [f"{m} {p}: {s}" for m, p, s in found if not allows(s, "format", "date-time")]
        assert not wrong, "\n".join(wrong)

    async def test_bodies_the_api_refuses_are_invalid_per_the_spec(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        """Text the API refuses (a NUL in any field or key, a line break in a subject) is invalid per the spec.

        JSON Schema can say both (a `pattern`, `propertyNames`); otherwise a client that follows the
        document gets a 422 it could not foresee.
        """
        spec = await fetch_spec(client)
        schemas = {
            path: resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
            for method, path, op in operations(spec)
            if method == "POST" and "application/json" in op.get("requestBody", {}).get("content", {})
        }
        refused = [
            *((path, position, body) for path, builder in (
                ("/campaigns", _campaign_bodies), ("/notifications", _notification_bodies),
                ("/dead-letters/redrive", _redrive_bodies), ("/auth/login", _login_bodies),
                ("/webhooks", _webhook_bodies),
            ) for position, body in builder("\x00").items()),
            ("/campaigns", "subject-line-break", {**CAMPAIGN, "subject": "a\nb"}),
            ("/notifications", "subject-line-break", {**EMAIL, "subject": "a\r\nBcc: x@example.com"}),
        ]  # fmt: skip
        wrong: list[str] = []
        for path, position, body in refused:
            r = await _post_raw(client, path, body, fast_auth)
            if r.status_code == 422 and is_valid(schemas[path], body):
                wrong.append(f"POST {path} {position}: API 422 ({r.json()['error']['message']!r}), spec valid")
        assert not wrong, "\n".join(wrong)

    async def test_generated_valid_queries_are_accepted(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        """Query strings schemathesis generates from the spec (positive mode) are not refused (422)."""
        schema = schemathesis.openapi.from_dict(await fetch_spec(client))
        requests: list[tuple[str, dict[str, Any]]] = []
        for method, path, op in operations(schema.raw_schema):
            names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            if method != "GET" or "{" in path or not names or path.startswith(STREAM_PREFIX):
                continue
            requests += [(path, dict(case.query or {})) for case in draw(schema[path][method].as_strategy(), 25)]
        assert requests
        refused: dict[str, str] = {}
        for path, query in requests:
            r = await client.get(path, params=query, headers=fast_auth)
            if r.status_code == 422:
                refused.setdefault(f"{path} {r.json()['error']['message']}", f"{path}?{httpx.QueryParams(query)}")
        assert not refused, "\n".join(f"{reason}  e.g. {example}" for reason, example in refused.items())


async def _idempotency_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar_one())


class TestIdempotencyRace:
    """Twenty identical requests with one Idempotency-Key at once: exactly one creation."""

    @pytest.mark.parametrize(
        ("path", "body", "rows"),
        [("/notifications", EMAIL, (0, 1)), ("/campaigns", CAMPAIGN, (1, 1))],
        ids=["notification", "campaign"],
    )
    async def test_one_creation(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, path: str,
        body: dict[str, Any], rows: tuple[int, int],
    ) -> None:  # fmt: skip
        headers = {**fast_auth, "Idempotency-Key": "race-1"}
        answers = await asyncio.gather(*(client.post(path, json=body, headers=headers) for _ in range(20)))
        statuses = sorted(r.status_code for r in answers)
        assert set(statuses) <= {202, 409}, statuses
        created = [r for r in answers if r.status_code == 202 and "idempotent-replayed" not in r.headers]
        replays = [r for r in answers if r.status_code == 202 and r.headers.get("idempotent-replayed") == "true"]
        assert len(created) == 1, statuses
        assert len(created) + len(replays) == statuses.count(202)
        assert {r.json()["id"] for r in created + replays} == {created[0].json()["id"]}
        for r in answers:
            if r.status_code == 409:
                assert_error(r, 409)
        assert await row_counts(engine) == rows
        assert await _idempotency_rows(engine) == 1
