"""Hostile input against subscribers, preferences, subscriber sends, the inbox and `/ws` (issue 11).

The house rule, applied to the new surface: bad input gets a 4xx in the error envelope and
changes nothing (checked on the rows: subscribers, messages, campaigns, idempotency keys);
a WebSocket refuses with its documented close codes (4401, 1009, 1013) or an ERROR frame;
nothing answers 500 (or closes 1011); a race leaves no half-written state and no erased
personal data behind; /openapi.json refuses what the API refuses.

HTTP attacks go through the in-process app (conftest's `client`); WebSocket attacks and
races go to the two real `notifq api` processes of `two_apis` (uvicorn, websockets-sansio,
the 64 KiB frame limit), with the `websockets` library as the client. A defect that cannot
be fixed in the subscriber models or routes was marked `xfail(strict=True)` until it was fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
import schemathesis
import websockets
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from websockets.asyncio.client import ClientConnection

from notifq.db.transitions import COUNT_SHARDS
from notifq.keys import RedisKeys
from notifq.settings import Settings
from tests.api.attack_support import (
    BAD_TEXT,
    IDEMPOTENCY_MODES,
    JSON_HEADERS,
    TOKEN_KINDS,
    assert_nothing_kept,
    concrete_path,
    draw,
    fetch_spec,
    forged_authorization,
    is_valid,
    operations,
    raw_json,
    resolve,
)
from tests.api.support import app_client, assert_error, bearer
from tests.conftest import JWT_SECRET, wait_for
from tests.harness import running_worker
from tests.subscribers.inapp_support import ApiProcesses, inbox, subscriber_token

PROFILE: dict[str, Any] = {"email": "ada@example.com", "phone": "+15550000001", "pushTokens": ["mock-device-1"],
                           "locale": "en-GB", "timezone": "Europe/London", "data": {"firstName": "Ada"}}  # fmt: skip
PREFERENCES: dict[str, Any] = {"channels": {"sms": False}, "categories": {"marketing": {"email": False}}}
SEND: dict[str, Any] = {"channel": "inapp", "subscriber": "u-1", "body": "hi", "category": "news", "dedupKey": "k1"}
CAMPAIGN: dict[str, Any] = {"name": "c", "channel": "inapp", "subject": "s", "body": "b", "subscribers": ["u-1"],
                            "category": "news"}  # fmt: skip
SUBSCRIBER_BODY_CAP = 64 * 1024  # subscriber_routes.MAX_SUBSCRIBER_BODY, as documented
WS_FRAME_LIMIT = 64 * 1024  # cli.WS_MAX_FRAME_BYTES, as docs/inapp.md says
SUBSCRIBER_AUDIENCE = "notifq:subscriber"
TIMEOUT = 10


# --- shared helpers ---------------------------------------------------------------------------------------------


async def _state(engine: AsyncEngine) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """Every subscriber row as stored, and the counts of messages, campaigns and idempotency keys."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT id, email, phone, push_tokens, locale, timezone, data::text, preferences::text, created_at, "
            "updated_at FROM subscribers ORDER BY id"))  # fmt: skip
        counts = await conn.execute(text(
            "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM campaigns), "
            "(SELECT count(*) FROM idempotency_keys)"))  # fmt: skip
        return [tuple(r) for r in rows], tuple(counts.one())


async def _raw(client: httpx.AsyncClient, method: str, path: str, body: bytes, headers: dict[str, str]
               ) -> httpx.Response:  # fmt: skip
    return await client.request(method, path, content=body, headers={**JSON_HEADERS, **headers})


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _subscriber_jwt(sid: Any, **claims: Any) -> str:
    """A subscriber token signed with the test secret and issuer (the tests' settings keep the default issuer);
    `claims` override (None removes one)."""
    now = int(time.time())
    issuer = Settings.model_fields["jwt_issuer"].default
    base: dict[str, Any] = {"sub": sid, "iss": issuer, "aud": SUBSCRIBER_AUDIENCE, "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, JWT_SECRET, algorithm="HS256")


@pytest.fixture
async def ada(client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine) -> Any:
    """Subscriber u-1 with a full profile and preferences; returns the stored state to compare against."""
    assert (await client.put("/subscribers/u-1", json=PROFILE, headers=fast_auth)).status_code == 201
    assert (await client.put("/subscribers/u-1/preferences", json=PREFERENCES, headers=fast_auth)).status_code == 200
    return await _state(engine)


# --- PUT /subscribers/{id} --------------------------------------------------------------------------------------


def _profile_bodies(bad: str) -> dict[str, Any]:
    """Each known field of a profile (and keys and values deep in `data`) holding `bad`."""
    return {
        "email": {**PROFILE, "email": f"ada{bad}@example.com"},
        "phone": {**PROFILE, "phone": f"+1555000000{bad}"},
        "pushTokens[0]": {**PROFILE, "pushTokens": [f"mock{bad}"]},
        "locale": {**PROFILE, "locale": f"en-{bad}"},
        "timezone": {**PROFILE, "timezone": f"Europe/{bad}"},
        "data-key": {**PROFILE, "data": {bad: "x"}},
        "data-value": {**PROFILE, "data": {"k": f"v{bad}"}},
        "data-deep-value": {**PROFILE, "data": {"a": [{"b": [f"x{bad}"]}]}},
        "data-deep-key": {**PROFILE, "data": {"a": {f"b{bad}": 1}}},
    }


def _preference_bodies(bad: str) -> dict[str, Any]:
    return {
        "channels-key": {"channels": {f"email{bad}": False}},
        "categories-key": {"categories": {f"m{bad}": {"email": False}}},
        "categories-channel-key": {"categories": {"m": {f"email{bad}": False}}},
    }


def _bad_text_cases(builder: Callable[[str], dict[str, Any]]) -> list[Any]:
    return [pytest.param(body, id=f"{where}-{kind}") for kind, bad in BAD_TEXT.items()
            for where, body in builder(bad).items()]  # fmt: skip


ALMOST_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "b" * 63 + "." + "b" * 61  # 254 characters: the longest allowed
REFUSED_PROFILES: dict[str, Any] = {
    "email-255": {"email": ALMOST_EMAIL + "b"},
    "phone-16-digits": {"phone": "+1" + "5" * 15},
    "pushTokens-11": {"pushTokens": [f"t{i}" for i in range(11)]},
    "pushToken-4097": {"pushTokens": ["t" * 4097]},
    "pushToken-empty": {"pushTokens": [""]},
    "locale-38": {"locale": "en" + "-abcdefgh" * 4},
    "timezone-65": {"timezone": "A" * 65},
    "timezone-pattern-only": {"timezone": "A"},
    "timezone-localtime": {"timezone": "localtime"},  # a file of the tz database, the host's zone: not IANA
    "timezone-traversal": {"timezone": "../../etc/passwd"},
    "data-16KiB+1": {"data": {"k": "x" * (16 * 1024)}},
    "data-6-levels": {"data": {"a": [{"b": [{"c": []}]}]}},
    "data-list": {"data": [1, 2]},
    "data-string": {"data": "x"},
    "email-number": {"email": 5},
    "pushTokens-string": {"pushTokens": "mock-device-1"},
    "pushTokens-null-item": {"pushTokens": [None]},
    "locale-bool": {"locale": True},
    "timezone-object": {"timezone": {}},
    "top-level-list": [PROFILE],
    "top-level-null": None,
    "top-level-string": "x",
}
REFUSED_RAW_PROFILES: dict[str, bytes] = {
    "empty": b"",
    "blank": b"  \n",
    "truncated": b'{"email": "ada@example.com"',
    "not-utf8": b'{"email": "\xff@example.com"}',
    "utf16": '{"email": "ada@example.com"}'.encode("utf-16"),
    "bom": b'\xef\xbb\xbf{"email": "ada@example.com"}',
    # Numbers JSON has no room for, which the parser still reads: PostgreSQL's jsonb refuses them.
    "data-NaN": b'{"data": {"k": NaN}}',
    "data-Infinity": b'{"data": {"k": Infinity}}',
    "data-minus-Infinity": b'{"data": {"k": -Infinity}}',
    "data-1e400": b'{"data": {"k": 1e400}}',
    "data-deep-1e400": b'{"data": {"a": [{"b": [1e400]}]}}',
}


class TestProfileBodies:
    """PUT /subscribers/u-1 over an existing profile: refused bodies leave it exactly as it was."""

    @pytest.mark.parametrize("body", _bad_text_cases(_profile_bodies))
    async def test_unstorable_text(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, body: Any
    ) -> None:
        """A lone surrogate or a NUL (sent as JSON escapes) in any field, key or nested value: 422."""
        r = await _raw(client, "PUT", "/subscribers/u-1", raw_json(body), fast_auth)
        assert_error(r, 422, "validation_error")
        assert await _state(engine) == ada

    @pytest.mark.parametrize("kind", BAD_TEXT)
    @pytest.mark.parametrize("where", ["note", "top-level-key"])
    async def test_unstorable_text_in_unknown_fields(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, kind: str,
        where: str,
    ) -> None:  # fmt: skip
        """Unknown fields are ignored (200, the profile as sent) or refused (422, unchanged); never a 500."""
        bad = BAD_TEXT[kind]
        body = {**PROFILE, "note": bad} if where == "note" else {bad: "x", **PROFILE}
        r = await _raw(client, "PUT", "/subscribers/u-1", raw_json(body), fast_auth)
        if r.status_code == 200:
            assert {k: v for k, v in r.json().items() if k in PROFILE} == PROFILE
            return
        assert_error(r, 422, "validation_error")
        assert await _state(engine) == ada

    @pytest.mark.parametrize("body", REFUSED_PROFILES.values(), ids=REFUSED_PROFILES)
    async def test_overlong_and_mistyped(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, body: Any
    ) -> None:
        r = await client.put("/subscribers/u-1", json=body, headers=fast_auth)
        assert_error(r, 422, "validation_error")
        assert await _state(engine) == ada

    @pytest.mark.parametrize("raw", REFUSED_RAW_PROFILES.values(), ids=REFUSED_RAW_PROFILES)
    async def test_malformed_and_non_finite(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, raw: bytes
    ) -> None:
        """`NaN`, `Infinity`, `1e400` in `data` were a 500 (PostgreSQL refused the jsonb): fixed in the model."""
        r = await _raw(client, "PUT", "/subscribers/u-1", raw, fast_auth)
        assert_error(r, 422, "validation_error")
        assert await _state(engine) == ada

    async def test_the_longest_values_are_accepted(self, client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
        """Control: each limit above is one past what the API takes."""
        body = {"email": ALMOST_EMAIL, "phone": "+1" + "5" * 14, "pushTokens": ["t" * 4096] * 10,
                "locale": "en" + "-abcdefgh" * 3 + "-abcde", "timezone": "America/Argentina/Buenos_Aires",
                "data": {"k": "x" * (16 * 1024 - 60), "deep": [{"b": [{"c": 1}]}]}}  # 5 levels  # fmt: skip
        r = await client.put("/subscribers/u-1", json=body, headers=fast_auth)
        assert r.status_code == 201, r.text

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    @pytest.mark.parametrize("path", ["/subscribers/u-1", "/subscribers/u-1/preferences"])
    async def test_huge_body_is_413(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, path: str,
        framing: str,
    ) -> None:  # fmt: skip
        body = json.dumps({"data": {"k": "x" * SUBSCRIBER_BODY_CAP}, "channels": {}}).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        content: bytes | AsyncIterator[bytes] = body if framing == "content-length" else chunks()
        r = await client.put(path, content=content, headers={**fast_auth, **JSON_HEADERS})
        assert_error(r, 413, "payload_too_large")
        assert await _state(engine) == ada

    @pytest.mark.parametrize("depth", [50, 100, 199, 200, 201, 255, 256, 257, 1000, 30_000])
    @pytest.mark.parametrize("path", ["/subscribers/u-1", "/subscribers/u-1/preferences"])
    async def test_deep_nesting(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, path: str,
        depth: int,
    ) -> None:  # fmt: skip
        """Nested arrays in `data` (a profile) or as a category (preferences), up to 60 KB of brackets: past the
        parser's recursion limit, and below it (where `json.dumps` and PostgreSQL's jsonb would meet them).

        A 4xx and nothing changed (`data` holds at most 5 levels now); a 200 only if it stored what was sent.
        """
        if path.endswith("preferences"):
            raw = b'{"categories": {"m": ' + _nested(depth) + b"}}"
        else:
            raw = b'{"data": {"k": ' + _nested(depth) + b"}}"
        r = await _raw(client, "PUT", path, raw, fast_auth)
        if r.status_code == 200 and not path.endswith("preferences"):
            got = await client.get("/subscribers/u-1", headers=fast_auth)
            assert got.json()["data"] == json.loads(raw)["data"]
            return
        assert 400 <= r.status_code < 500, f"{r.status_code} {r.text[:200]}"
        assert_error(r, r.status_code)
        assert await _state(engine) == ada


# --- PUT /subscribers/{id}/preferences --------------------------------------------------------------------------

REFUSED_PREFERENCES: dict[str, Any] = {
    "unknown-channel": {"channels": {"fax": False}},
    "channel-string": {"channels": {"email": "false"}},
    "channel-number": {"channels": {"email": 0}},
    "channel-null": {"channels": {"email": None}},
    "channels-list": {"channels": ["email"]},
    "category-65": {"categories": {"m" * 65: {"email": False}}},
    "category-empty": {"categories": {"": {"email": False}}},
    "category-space": {"categories": {"bad key": {"email": False}}},
    "category-unicode": {"categories": {"m\u00e9": {"email": False}}},
    "category-201": {"categories": {f"c{i}": {"email": False} for i in range(201)}},
    "category-value-list": {"categories": {"m": [False]}},
    "category-unknown-channel": {"categories": {"m": {"fax": False}}},
    "top-level-list": [PREFERENCES],
    "top-level-null": None,
}


class TestPreferenceBodies:
    """PUT /subscribers/u-1/preferences: refused bodies leave the stored preferences as they were."""

    @pytest.mark.parametrize("body", _bad_text_cases(_preference_bodies))
    async def test_unstorable_text(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, body: Any
    ) -> None:
        r = await _raw(client, "PUT", "/subscribers/u-1/preferences", raw_json(body), fast_auth)
        assert_error(r, 422, "validation_error")
        assert await _state(engine) == ada

    @pytest.mark.parametrize("body", REFUSED_PREFERENCES.values(), ids=REFUSED_PREFERENCES)
    async def test_refused(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any, body: Any
    ) -> None:
        r = await client.put("/subscribers/u-1/preferences", json=body, headers=fast_auth)
        assert_error(r, 422, "validation_error")
        assert await _state(engine) == ada

    async def test_two_hundred_categories_are_accepted(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], ada: Any
    ) -> None:
        body = {"categories": {f"c{i}": {"email": False} for i in range(200)}}
        r = await client.put("/subscribers/u-1/preferences", json=body, headers=fast_auth)
        assert r.status_code == 200, r.text


# --- path ids ---------------------------------------------------------------------------------------------------

BAD_PATH_IDS = {
    "nul": "%00",
    "surrogate": "%ED%A0%80",  # a lone surrogate's WTF-8 bytes: no UTF-8 decoder accepts them
    "invalid-utf8": "%FF",
    "129-chars": "x" * 129,
    "dot": "%2E",  # was created (201), then unreachable: `/subscribers/.` is `/subscribers/` to a client
    "dot-dot": "%2E%2E",  # was created (201) with `Location: /subscribers/..`, which resolves to `/`
    "unicode": "%C3%A9",
    "emoji": "%F0%9F%98%80",
    "fullwidth-a": "%EF%BC%A1",
    "space": "a%20b",
    "newline": "a%0A",
    "tab": "%09",
    "slash": "a%2Fb",
    "backslash": "a%5Cb",
    "query-char": "a%3Fb",
}
SUBSCRIBER_ROUTES = [("PUT", "/subscribers/{id}"), ("GET", "/subscribers/{id}"), ("DELETE", "/subscribers/{id}"),
                     ("GET", "/subscribers/{id}/preferences"), ("PUT", "/subscribers/{id}/preferences"),
                     ("POST", "/subscribers/{id}/token")]  # fmt: skip


class TestPathIds:
    @pytest.mark.parametrize("bad", BAD_PATH_IDS.values(), ids=BAD_PATH_IDS)
    @pytest.mark.parametrize(("method", "template"), SUBSCRIBER_ROUTES)
    async def test_malformed_id(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, method: str, template: str, bad: str,
    ) -> None:  # fmt: skip
        """A 422 (a 404 where the decoded id splits the path), in the envelope; nothing created."""
        body = {"json": {}} if method == "PUT" else {}
        r = await client.request(method, template.replace("{id}", bad), headers=fast_auth, **body)
        assert_error(r, 404 if bad == "a%2Fb" else 422)
        assert await _state(engine) == ([], (0, 0, 0))
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize("bad", ["%00", "%ED%A0%80", "x" * 129, "a%20b", "%2E%2E"])
    async def test_malformed_cursor(self, client: httpx.AsyncClient, fast_auth: dict[str, str], bad: str) -> None:
        assert_error(await client.get(f"/subscribers?cursor={bad}", headers=fast_auth), 422, "validation_error")

    async def test_dot_segments_in_bodies(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """The ids a path cannot carry are refused where a body names a subscriber too."""
        for sid in (".", ".."):
            r = await client.post("/notifications", json={**SEND, "subscriber": sid}, headers=fast_auth)
            assert_error(r, 422, "validation_error")
            r = await client.post("/campaigns", json={**CAMPAIGN, "subscribers": [sid]}, headers=fast_auth)
            assert_error(r, 422, "validation_error")
        assert await _state(engine) == ([], (0, 0, 0))

    async def test_ids_with_dots_are_fine(self, client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
        for sid in ("...", "a.", ".a", "a..b", "user@example.com", "tenant:42"):
            r = await client.put(f"/subscribers/{sid}", json={}, headers=fast_auth)
            assert r.status_code == 201, (sid, r.text)
            assert r.headers["location"] == f"/subscribers/{sid}"
            assert (await client.get(f"/subscribers/{sid}", headers=fast_auth)).json()["id"] == sid

    async def test_dot_dot_over_the_wire(self, two_apis: ApiProcesses, fast_auth: dict[str, str],
                                         engine: AsyncEngine) -> None:  # fmt: skip
        """uvicorn passes `/subscribers/..` through as is (no client normalised it): a 422, not a subscriber `..`."""
        host, port = two_apis.urls[0].removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        request = (f"PUT /subscribers/.. HTTP/1.1\r\nHost: {host}\r\nAuthorization: {fast_auth['Authorization']}\r\n"
                   "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")  # fmt: skip
        writer.write(request.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        writer.close()
        await writer.wait_closed()
        assert status_line.split()[1] == b"422", status_line
        assert await _state(engine) == ([], (0, 0, 0))

    async def test_spec_path_id_refuses_what_the_api_refuses(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        spec = await fetch_spec(client)
        wrong = []
        for method, path, op in operations(spec):
            for p in op["parameters"]:
                if p["name"] != "subscriber_id":
                    continue
                for sid in (".", ".."):
                    url = path.replace("{subscriber_id}", sid.replace(".", "%2E"))
                    body = {"json": {}} if method == "PUT" else {}
                    r = await client.request(method, url, headers=fast_auth, **body)
                    if r.status_code == 422 and is_valid(p["schema"], sid):
                        wrong.append(f"{method} {path} {sid!r}")
        assert not wrong, wrong


# --- POST /notifications and POST /campaigns naming subscribers -------------------------------------------------


def _send_bodies(bad: str) -> dict[str, Any]:
    return {
        "subscriber": {**SEND, "subscriber": f"u-1{bad}"},
        "category": {**SEND, "category": f"news{bad}"},
        "dedupKey": {**SEND, "dedupKey": f"k{bad}"},
    }


REFUSED_SENDS: dict[str, Any] = {
    "subscriber-129": {**SEND, "subscriber": "x" * 129},
    "subscriber-empty": {**SEND, "subscriber": ""},
    "subscriber-number": {**SEND, "subscriber": 1},
    "subscriber-list": {**SEND, "subscriber": ["u-1"]},
    "subscriber-object": {**SEND, "subscriber": {"id": "u-1"}},
    "subscriber-true": {**SEND, "subscriber": True},
    "subscriber-unicode": {**SEND, "subscriber": "u-\u00e9"},
    "subscriber-deep": {**SEND, "subscriber": [[[["u-1"]]]]},
    "category-65": {**SEND, "category": "c" * 65},
    "category-empty": {**SEND, "category": ""},
    "category-space": {**SEND, "category": "a b"},
    "category-number": {**SEND, "category": 5},
    "category-null": {**SEND, "category": None},
    "dedupKey-257": {**SEND, "dedupKey": "k" * 257},
    "dedupKey-empty": {**SEND, "dedupKey": ""},
    "dedupKey-number": {**SEND, "dedupKey": 5},
    "dedupKey-null": {**SEND, "dedupKey": None},
    "dedupKey-without-subscriber": {"channel": "email", "to": "ada@example.com", "body": "x", "dedupKey": "k"},
    "to-and-subscriber": {**SEND, "channel": "email", "to": "ada@example.com"},
    "inapp-to-an-address": {"channel": "inapp", "to": "u-1", "body": "x"},
}


class TestSubscriberSends:
    """POST /notifications with `subscriber`, `category`, `dedupKey`: single, or the second item of a batch."""

    @pytest.mark.parametrize("mode", IDEMPOTENCY_MODES)
    @pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
    @pytest.mark.parametrize("body", _bad_text_cases(_send_bodies))
    async def test_unstorable_text(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, ada: Any, body: Any, batch: bool, mode: str,
    ) -> None:  # fmt: skip
        sent = [SEND, body] if batch else body
        r = await _raw(client, "POST", "/notifications", raw_json(sent), {**fast_auth, **IDEMPOTENCY_MODES[mode]})
        assert_error(r, 422, "validation_error")
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
    @pytest.mark.parametrize("body", REFUSED_SENDS.values(), ids=REFUSED_SENDS)
    async def test_refused(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, ada: Any, body: Any, batch: bool,
    ) -> None:  # fmt: skip
        r = await client.post("/notifications", json=[SEND, body] if batch else body, headers=fast_auth)
        assert_error(r, 422, "validation_error")
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"1e400"])
    async def test_non_finite_data(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], ada: Any, raw: bytes
    ) -> None:
        body = json.dumps({**SEND, "data": {"k": "@@"}}).encode().replace(b'"@@"', raw)
        r = await _raw(client, "POST", "/notifications", body, fast_auth)
        assert r.status_code in (202, 422), r.text
        if r.status_code == 422:
            assert_error(r, 422, "validation_error")

    async def test_control_sends_are_accepted(self, client: httpx.AsyncClient, fast_auth: dict[str, str],
                                              ada: Any) -> None:  # fmt: skip
        for body in (SEND, {**SEND, "dedupKey": "k" * 256, "category": "c" * 64}, [SEND, SEND]):
            r = await client.post("/notifications", json=body, headers=fast_auth)
            assert r.status_code == 202, r.text


def _campaign_bodies(bad: str) -> dict[str, Any]:
    return {
        "subscribers[0]": {**CAMPAIGN, "subscribers": [f"u-1{bad}"]},
        "subscribers[1]": {**CAMPAIGN, "subscribers": ["u-1", f"u-2{bad}"]},
        "category": {**CAMPAIGN, "category": f"news{bad}"},
    }


REFUSED_CAMPAIGNS: dict[str, Any] = {
    "empty": {**CAMPAIGN, "subscribers": []},
    "null": {**CAMPAIGN, "subscribers": None},
    "string": {**CAMPAIGN, "subscribers": "u-1"},
    "object": {**CAMPAIGN, "subscribers": {"u-1": True}},
    "number-item": {**CAMPAIGN, "subscribers": [1]},
    "null-item": {**CAMPAIGN, "subscribers": [None]},
    "bool-item": {**CAMPAIGN, "subscribers": [True]},
    "object-item": {**CAMPAIGN, "subscribers": [{"id": "u-1"}]},
    "list-item": {**CAMPAIGN, "subscribers": [["u-1"]]},
    "mixed": {**CAMPAIGN, "subscribers": ["u-1", 2]},
    "empty-item": {**CAMPAIGN, "subscribers": [""]},
    "129-item": {**CAMPAIGN, "subscribers": ["x" * 129]},
    "unicode-item": {**CAMPAIGN, "subscribers": ["u-\u00e9"]},
    "space-item": {**CAMPAIGN, "subscribers": ["u 1"]},
    "deep": {**CAMPAIGN, "subscribers": [[[[[["u-1"]]]]]]},
    "with-recipients": {**CAMPAIGN, "channel": "email", "recipients": ["ada@example.com"]},
    "with-recipientCount": {**CAMPAIGN, "recipientCount": 3},
    "category-65": {**CAMPAIGN, "category": "c" * 65},
    "category-null": {**CAMPAIGN, "category": None},
}


class TestSubscriberCampaigns:
    @pytest.mark.parametrize("mode", IDEMPOTENCY_MODES)
    @pytest.mark.parametrize("body", _bad_text_cases(_campaign_bodies))
    async def test_unstorable_text(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, ada: Any, body: Any, mode: str,
    ) -> None:  # fmt: skip
        r = await _raw(client, "POST", "/campaigns", raw_json(body), {**fast_auth, **IDEMPOTENCY_MODES[mode]})
        assert_error(r, 422, "validation_error")
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.parametrize("body", REFUSED_CAMPAIGNS.values(), ids=REFUSED_CAMPAIGNS)
    async def test_refused(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis,
        settings: Settings, ada: Any, body: Any,
    ) -> None:  # fmt: skip
        assert_error(await client.post("/campaigns", json=body, headers=fast_auth), 422, "validation_error")
        await assert_nothing_kept(engine, redis, settings)

    @pytest.mark.timeout(300)
    async def test_a_million_and_one_ids(
        self, settings: Settings, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis
    ) -> None:
        """At the documented limit (NOTIFQ_MAX_CAMPAIGN_SIZE = 1,000,000), one id too many (an 11 MB body): a 422
        naming the limit, within seconds, nothing written."""
        capped = settings.with_(max_campaign_size=1_000_000, max_body_bytes=64 * 1024 * 1024)
        ids = ",".join(f'"s{i}"' for i in range(1_000_001))
        body = f'{{"name": "c", "channel": "inapp", "body": "b", "subscribers": [{ids}]}}'.encode()
        async with app_client(capped) as big:
            started = time.monotonic()
            r = await big.post("/campaigns", content=body, headers={**fast_auth, **JSON_HEADERS})
            elapsed = time.monotonic() - started
        assert assert_error(r, 422, "validation_error")["details"] == {"field": "subscribers", "max": 1_000_000}
        assert elapsed < 30, elapsed
        await assert_nothing_kept(engine, redis, settings)

    async def test_duplicate_ids_make_a_consistent_campaign(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, ada: Any
    ) -> None:
        """["u-1", "u-1", "u-1"]: taken as three messages (as a repeated address is), or refused; never a campaign
        whose total differs from its messages."""
        r = await client.post("/campaigns", json={**CAMPAIGN, "subscribers": ["u-1"] * 3}, headers=fast_auth)
        if r.status_code == 422:
            assert_error(r, 422, "validation_error")
            return
        assert r.status_code == 202, r.text
        assert r.json()["totalMessages"] == await _campaign_messages(engine, r.json()["id"]) == 3


async def _campaign_messages(engine: AsyncEngine, campaign_id: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT count(*) FROM messages WHERE campaign_id = :c"), {"c": campaign_id})
        return int(found.scalar_one())


# --- tokens on /inbox, and subscriber tokens on admin routes ----------------------------------------------------

INBOX_ROUTES = [("GET", "/inbox"), ("POST", "/inbox/1/read"), ("POST", "/inbox/read-all")]


def _bad_subscriber_tokens(valid: str, settings: Settings, admin: dict[str, str]) -> dict[str, dict[str, str]]:
    """Authorization headers /inbox and /ws must refuse, each from the valid token with one thing wrong."""
    forged = {kind: forged_authorization(kind, settings, bearer(valid)) for kind in TOKEN_KINDS}
    extra = {
        "admin-token": admin["Authorization"].removeprefix("Bearer "),
        "no-audience": _subscriber_jwt("u-1", aud=None),
        "other-audience": _subscriber_jwt("u-1", aud="notifq:admin"),
        "audience-list-without-ours": _subscriber_jwt("u-1", aud=["notifq:admin", "x"]),
        "unknown-subscriber": _subscriber_jwt("ghost"),
        "sub-number": _subscriber_jwt(42),
        "sub-empty": _subscriber_jwt(""),
        "no-sub": _subscriber_jwt(None),
        "no-exp": _subscriber_jwt("u-1", exp=None),
        "no-iat": _subscriber_jwt("u-1", iat=None),
        "not-before-later": _subscriber_jwt("u-1", nbf=int(time.time()) + 3600),
        "issued-later": _subscriber_jwt("u-1", iat=int(time.time()) + 3600),
        "two-tokens": f"{valid} {valid}",
        "huge": "a." * 30_000 + "b",
    }
    return {**forged, **{kind: bearer(token) for kind, token in extra.items()}}


@pytest.fixture
async def ada_token(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> str:
    return await subscriber_token(client, fast_auth, "u-1", **PROFILE)


class TestInboxTokens:
    async def test_bad_tokens_are_401(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine,
        ada_token: str,
    ) -> None:  # fmt: skip
        before = await _state(engine)
        wrong = []
        for kind, headers in _bad_subscriber_tokens(ada_token, settings, fast_auth).items():
            for method, path in INBOX_ROUTES:
                r = await client.request(method, path, headers=headers)
                challenge = r.headers.get("www-authenticate", "")
                if r.status_code != 401 or not challenge.lower().startswith("bearer"):
                    wrong.append(f"{kind} {method} {path}: {r.status_code} {r.text[:100]}")
                    continue
                assert_error(r, 401, "unauthorized")
        assert not wrong, "\n".join(wrong)
        assert await _state(engine) == before
        r = await client.get("/inbox", headers=bearer(ada_token))  # control
        assert r.status_code == 200, r.text

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [("GET", "/inbox?cursor=%00", 422), ("GET", "/inbox?cursor=%ED%A0%80", 422), ("GET", "/inbox?cursor=-1", 422),
         ("GET", "/inbox?cursor=" + "9" * 20, 422), ("GET", "/inbox?limit=0", 422), ("GET", "/inbox?limit=101", 422),
         ("GET", "/inbox?limit=1e3", 422), ("GET", "/inbox?limit=%EF%BC%91", 422), ("GET", "/inbox?unread=maybe", 422),
         ("GET", "/inbox?unread=%00", 422), ("POST", "/inbox/%00/read", 422), ("POST", "/inbox/%ED%A0%80/read", 422),
         ("POST", "/inbox/0/read", 422), ("POST", "/inbox/-1/read", 422), ("POST", "/inbox/%D9%A1/read", 422),
         ("POST", "/inbox/" + "1" * 20 + "/read", 422), ("POST", "/inbox/9223372036854775808/read", 404),
         ("POST", "/inbox/1/read", 404)],
    )  # fmt: skip
    async def test_malformed_inbox_requests(
        self, client: httpx.AsyncClient, engine: AsyncEngine, ada_token: str, method: str, path: str, status: int
    ) -> None:
        """With a valid subscriber token: malformed queries and ids are a 422, unknown ids a 404; nothing changes."""
        before = await _state(engine)
        assert_error(await client.request(method, path, headers=bearer(ada_token)), status)
        assert await _state(engine) == before

    async def test_subscriber_token_on_admin_routes_is_401(
        self, client: httpx.AsyncClient, ada_token: str, engine: AsyncEngine
    ) -> None:
        """Every operation the document secures with the admin scheme (whatever scope it names) refuses a
        subscriber's token."""
        before = await _state(engine)
        spec = await fetch_spec(client)
        admin_ops = [
            (m, p)
            for m, p, op in operations(spec)
            if any("bearerAuth" in requirement for requirement in op.get("security", spec["security"]))
        ]
        assert len(admin_ops) > 20, admin_ops
        wrong = []
        for method, path in admin_ops:
            body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
            url = concrete_path(path)
            r = await asyncio.wait_for(client.request(method, url, headers=bearer(ada_token), **body), TIMEOUT)
            if r.status_code != 401:
                wrong.append(f"{method} {url}: {r.status_code} {r.text[:100]}")
        assert not wrong, "\n".join(wrong)
        assert await _state(engine) == before

    async def test_erased_subscribers_token_is_401(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], ada_token: str
    ) -> None:
        assert (await client.delete("/subscribers/u-1", headers=fast_auth)).status_code == 204
        for method, path in INBOX_ROUTES:
            assert_error(await client.request(method, path, headers=bearer(ada_token)), 401, "unauthorized")

    async def test_token_from_before_an_erasure_stays_dead_when_the_id_returns(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], ada_token: str
    ) -> None:
        assert (await client.delete("/subscribers/u-1", headers=fast_auth)).status_code == 204
        await asyncio.sleep(1.1)  # a new token's `iat` (whole seconds) is then after the old one's
        assert (await client.put("/subscribers/u-1", json={}, headers=fast_auth)).status_code == 201
        assert_error(await client.get("/inbox", headers=bearer(ada_token)), 401, "unauthorized")


# --- the live servers: WebSocket helpers ------------------------------------------------------------------------


@pytest.fixture
async def api(two_apis: ApiProcesses) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=two_apis.urls[0], timeout=30) as c:
        yield c


async def _close_code(conn: ClientConnection, within: float = TIMEOUT) -> int:
    """Read until the server closes; its close code (1006: no close frame)."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(within):
            while True:
                await conn.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else 1006


async def _until(conn: ClientConnection, kind: str, within: float = TIMEOUT) -> list[dict[str, Any]]:
    """Frames up to and including the first of type `kind`."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not frames or frames[-1]["type"] != kind:
            frames.append(json.loads(await conn.recv()))
    return frames


@contextlib.asynccontextmanager
async def _authed(url: str, token: str) -> AsyncIterator[ClientConnection]:
    """A raw socket past AUTH and READY (frames read by the test itself)."""
    async with websockets.connect(url, open_timeout=TIMEOUT) as conn:
        await conn.send(json.dumps({"type": "AUTH", "token": token}))
        await _until(conn, "READY")
        yield conn


async def _pong(conn: ClientConnection, within: float = TIMEOUT) -> list[dict[str, Any]]:
    await conn.send('{"type":"PING"}')
    return await _until(conn, "PONG", within)


async def _healthy(two_apis: ApiProcesses) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as c:
        for url in two_apis.urls:
            assert (await c.get(f"{url}/ready")).status_code == 200


async def _listeners(redis: Redis, settings: Settings, sid: str) -> int:
    """How many API processes are subscribed to the subscriber's live channel."""
    ((_, n),) = await redis.pubsub_numsub(RedisKeys.from_settings(settings).inbox_live(sid))
    return int(n)


async def _sent_inapp(engine: AsyncEngine, sid: str, count: int) -> list[int]:
    """`count` sent, un-ACKed in-app notifications for `sid`, written straight into PostgreSQL (oldest first)."""
    async with engine.begin() as conn:
        rows = await conn.execute(text(
            "INSERT INTO messages (channel, recipient, status, subscriber_id, body, priority, attempts) "
            "SELECT 'inapp', :s, 'sent', :s, 'n' || g, 'transactional', 1 FROM generate_series(1, :n) g "
            "RETURNING id"), {"s": sid, "n": count})  # fmt: skip
        return sorted(r.id for r in rows)


async def _receipts(engine: AsyncEngine, ids: list[int]) -> list[tuple[Any, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT delivered_at, read_at FROM messages WHERE id = ANY(:ids) ORDER BY id"),
                                  {"ids": ids})  # fmt: skip
        return [tuple(r) for r in rows]


# --- /ws: tokens and frames before AUTH -------------------------------------------------------------------------


class TestSocketAuth:
    async def test_bad_tokens_close_4401(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings,
        engine: AsyncEngine,
    ) -> None:  # fmt: skip
        token = await subscriber_token(api, fast_auth, "u-1")
        before = await _state(engine)
        wrong = []
        for kind, headers in _bad_subscriber_tokens(token, settings, fast_auth).items():
            given = headers.get("Authorization", "")
            bad = given.removeprefix("Bearer ")  # "not-bearer": the whole `Basic …` value as the token
            frame = json.dumps({"type": "AUTH", "token": bad} if bad else {"type": "AUTH"})
            async with websockets.connect(two_apis.ws(0), open_timeout=TIMEOUT) as conn:
                await conn.send(frame)
                code = await _close_code(conn)
            if code != 4401:
                wrong.append(f"{kind}: closed {code}")
        assert not wrong, wrong
        assert await _state(engine) == before

    @pytest.mark.parametrize(
        "first",
        [b'{"type":"AUTH","token":"x"}', '{"type":"PING"}', '{"type":"ACK","id":"1"}', '{"type":"READ","id":"1"}',
         "", "null", "[]", '"AUTH"', '{"type":"auth","token":"@"}', '{"type":"AUTH","token":["@"]}',
         '{"type":"AUTH","token":{"t":"@"}}', '{"type":"AUTH","token":null}', '{"type":"AUTH","token":"\\ud800"}',
         '{"type":"AUTH","token":"a\\u0000b"}', '{"type":"AUTH","token":"@","type":"PING"}'],
        ids=["binary", "ping", "ack", "read", "empty", "null", "list", "string", "lowercase", "token-list",
             "token-object", "token-null", "token-surrogate", "token-nul", "type-twice"],
    )  # fmt: skip
    async def test_anything_but_auth_first_closes_4401(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], first: str | bytes
    ) -> None:
        """`@` stands for a valid token: only a well-formed AUTH frame with it opens the inbox."""
        token = await subscriber_token(api, fast_auth, "u-1")
        frame = first.replace("@", token) if isinstance(first, str) else first.replace(b"x", token.encode())
        async with websockets.connect(two_apis.ws(1), open_timeout=TIMEOUT) as conn:
            await conn.send(frame)
            assert await _close_code(conn) == 4401

    async def test_token_expiring_while_connected_closes_4401(self, two_apis: ApiProcesses, api: httpx.AsyncClient,
                                                              fast_auth: dict[str, str], engine: AsyncEngine
                                                              ) -> None:  # fmt: skip
        await subscriber_token(api, fast_auth, "u-1")
        async with engine.connect() as conn:  # the profile's token key (migration 0007), as a real token carries
            key = (await conn.execute(text("SELECT token_key FROM subscribers WHERE id = 'u-1'"))).scalar_one()
        token = _subscriber_jwt("u-1", exp=int(time.time()) + 2, key=str(key))
        async with _authed(two_apis.ws(0), token) as conn:
            assert await _close_code(conn, within=8) == 4401

    async def test_erasure_closes_every_open_socket_4403(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        token = await subscriber_token(api, fast_auth, "u-1")
        async with _authed(two_apis.ws(0), token) as a, _authed(two_apis.ws(1), token) as b:
            assert (await api.delete("/subscribers/u-1", headers=fast_auth)).status_code == 204
            assert [await _close_code(a), await _close_code(b)] == [4403, 4403]
        async with websockets.connect(two_apis.ws(0), open_timeout=TIMEOUT) as conn:  # and the token opens nothing
            await conn.send(json.dumps({"type": "AUTH", "token": token}))
            assert await _close_code(conn) == 4401

    async def test_deeply_nested_auth_frame_closes_4401(self, two_apis: ApiProcesses) -> None:
        async with websockets.connect(two_apis.ws(0), open_timeout=TIMEOUT) as conn:
            await conn.send(_nested(20_000).decode())
            assert await _close_code(conn) == 4401
        await _healthy(two_apis)


# --- /ws: abuse after AUTH --------------------------------------------------------------------------------------


class TestSocketAbuse:
    async def test_frame_over_the_limit_closes_1009(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        """One byte over 64 KiB, before and after AUTH: 1009; the subscriber's other socket is untouched."""
        token = await subscriber_token(api, fast_auth, "u-1")
        async with websockets.connect(two_apis.ws(0), open_timeout=TIMEOUT) as conn:
            await conn.send("x" * (WS_FRAME_LIMIT + 1))
            assert await _close_code(conn) == 1009
        async with _authed(two_apis.ws(0), token) as other, _authed(two_apis.ws(0), token) as conn:
            await conn.send("x" * WS_FRAME_LIMIT)  # at the limit: an ERROR frame, and the socket stays
            assert (await _until(conn, "ERROR"))[-1]["message"] == "frames are JSON objects"
            await conn.send(json.dumps({"type": "ACK", "id": "1", "pad": "x" * WS_FRAME_LIMIT}))
            assert await _close_code(conn) == 1009
            await _pong(other)
        await _healthy(two_apis)

    async def test_binary_frames_get_an_error_and_the_socket_stays(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        token = await subscriber_token(api, fast_auth, "u-1")
        (mid,) = await _sent_inapp(engine, "u-1", 1)
        async with _authed(two_apis.ws(1), token) as conn:
            for frame in (b'{"type":"PING"}', json.dumps({"type": "ACK", "id": str(mid)}).encode(), b"\x00\xff", b""):
                await conn.send(frame)
                assert (await _until(conn, "ERROR"))[-1]["type"] == "ERROR"
            await _pong(conn)
        await asyncio.sleep(0.3)
        assert await _receipts(engine, [mid]) == [(None, None)]  # the binary ACK counted for nothing

    async def test_auth_twice(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """A second AUTH (even with another subscriber's token) is an ERROR: the socket stays the first one's."""
        token = await subscriber_token(api, fast_auth, "u-1")
        bob = await subscriber_token(api, fast_auth, "bob")
        (bobs,) = await _sent_inapp(engine, "bob", 1)
        async with _authed(two_apis.ws(0), token) as conn:
            for again in (token, bob):
                await conn.send(json.dumps({"type": "AUTH", "token": again}))
                assert (await _until(conn, "ERROR"))[-1]["type"] == "ERROR"
            await conn.send(json.dumps({"type": "READ", "id": str(bobs)}))
            frames = await _pong(conn)
            assert [f["type"] for f in frames] == ["PONG"]  # no replay of bob's inbox
        await asyncio.sleep(0.3)
        assert await _receipts(engine, [bobs]) == [(None, None)]

    async def test_ten_thousand_garbage_frames(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """10,000 bad frames as fast as the client can send them, read as they come: one ERROR each, then a PONG;
        the subscriber's other socket answers meanwhile, and nothing is written."""
        token = await subscriber_token(api, fast_auth, "u-1")
        before = await _state(engine)
        garbage = ["garbage", "{}", "[]", "null", '{"type":"ACK"}', '{"type":"ACK","id":"0"}',
                   '{"type":"READ","id":"99999999999999999999"}', '{"type":"ACK","id":-1}', '{"type":"ACK","id":1.5}',
                   '{"type":"ACK","id":true}', '{"type":"NOPE"}', '{"type":"READ","id":"\\u0661"}']  # fmt: skip
        async with _authed(two_apis.ws(0), token) as conn, _authed(two_apis.ws(0), token) as other:
            errors = 0

            async def read() -> None:
                nonlocal errors
                while True:
                    frame = json.loads(await conn.recv())
                    if frame["type"] == "PONG":
                        return
                    assert frame["type"] == "ERROR", frame
                    errors += 1

            reader = asyncio.create_task(read())
            for i in range(10_000):
                await conn.send(garbage[i % len(garbage)])
            await _pong(other)
            await conn.send('{"type":"PING"}')
            await asyncio.wait_for(reader, 60)
            assert errors == 10_000
        assert await _state(engine) == before
        await _healthy(two_apis)

    async def test_deeply_nested_frame_gets_an_error(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        token = await subscriber_token(api, fast_auth, "u-1")
        async with _authed(two_apis.ws(0), token) as conn:
            await conn.send(_nested(20_000).decode())
            assert (await _until(conn, "ERROR"))[-1]["type"] == "ERROR"
            await _pong(conn)

    async def test_closing_mid_replay(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine,
        redis: Redis, settings: Settings,
    ) -> None:  # fmt: skip
        """3,000 un-ACKed notifications; the client reads five and drops the connection (no close frame). The
        next connection replays all 3,000 in order, nothing was marked delivered, and no process stays
        subscribed to the subscriber's channel once every socket is gone."""
        token = await subscriber_token(api, fast_auth, "u-1")
        ids = await _sent_inapp(engine, "u-1", 3000)
        for url in two_apis.urls:
            for _ in range(3):
                conn = await websockets.connect(url.replace("http", "ws") + "/ws", open_timeout=TIMEOUT)
                await conn.send(json.dumps({"type": "AUTH", "token": token}))
                for _ in range(5):
                    assert json.loads(await conn.recv())["type"] == "NOTIFICATION"
                conn.transport.abort()
                await conn.wait_closed()
        async with inbox(two_apis.ws(1), token) as box:
            assert [int(f["id"]) for f in box.notifications] == ids
            assert box.frames[len(ids)] == {"type": "READY", "replayed": 3000}
        await wait_for(lambda: _no_listeners(redis, settings, "u-1"), within=10)
        assert await _receipts(engine, ids[:5]) == [(None, None)] * 5
        await _healthy(two_apis)

    @pytest.mark.timeout(180)
    async def test_hundreds_of_connections_of_one_subscriber(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings,
        redis: Redis,
    ) -> None:  # fmt: skip
        """300 sockets of one subscriber (150 per API process): all get READY, all get a live notification, and
        when they close no process stays subscribed. The processes keep answering throughout."""
        token = await subscriber_token(api, fast_auth, "u-1")
        async with contextlib.AsyncExitStack() as stack:
            boxes = await asyncio.gather(*(stack.enter_async_context(inbox(two_apis.ws(i % 2), token))
                                           for i in range(300)))  # fmt: skip
            assert all(box.ready.is_set() for box in boxes)
            await _healthy(two_apis)
            async with running_worker(settings):
                r = await api.post("/notifications", json={**SEND, "subscriber": "u-1"}, headers=fast_auth)
                assert r.status_code == 202, r.text
                got = await asyncio.gather(*(box.wait_for(1, within=30) for box in boxes))
            assert {g[0]["id"] for g in got} == {r.json()["id"]}
        await wait_for(lambda: _no_listeners(redis, settings, "u-1"), within=20)
        await _healthy(two_apis)


async def _no_listeners(redis: Redis, settings: Settings, sid: str) -> bool:
    return await _listeners(redis, settings, sid) == 0


# --- one subscriber against another's notifications -------------------------------------------------------------


class TestOtherSubscribersNotifications:
    async def test_reading_or_acking_anothers_notification_changes_nothing(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings,
        engine: AsyncEngine,
    ) -> None:  # fmt: skip
        """Bob, with his own valid token, aims at Ada's notifications (ids are guessable: 1, 2, 3 …) over HTTP and
        over /ws. Ada's stay undelivered and unread in PostgreSQL, with no receipt events, and Bob sees none."""
        ada = await subscriber_token(api, fast_auth, "u-1")
        bob = await subscriber_token(api, fast_auth, "bob")
        async with running_worker(settings):
            ids = []
            for i in range(2):
                r = await api.post("/notifications", json={**SEND, "dedupKey": f"k{i}"}, headers=fast_auth)
                assert r.status_code == 202, r.text
                ids.append(int(r.json()["id"]))
            await wait_for(lambda: _all_sent(engine, ids), within=20)
        bob_auth = bearer(bob)
        for mid in ids:
            assert_error(await api.post(f"/inbox/{mid}/read", headers=bob_auth), 404, "not_found")
        assert (await api.post("/inbox/read-all", headers=bob_auth)).json() == {"updated": 0}
        assert (await api.get("/inbox", headers=bob_auth)).json() == {"items": [], "unreadCount": 0,
                                                                      "nextCursor": None}  # fmt: skip
        async with _authed(two_apis.ws(1), bob) as conn:
            for mid in ids:
                for frame in ({"type": "ACK", "id": str(mid)}, {"type": "READ", "id": mid},
                              {"type": "READ", "id": str(mid), "subscriber": "u-1"}):  # fmt: skip
                    await conn.send(json.dumps(frame))
            assert [f["type"] for f in await _pong(conn)] == ["PONG"]
        await asyncio.sleep(0.5)  # receipts are written every 50 ms
        assert await _receipts(engine, ids) == [(None, None)] * 2
        async with engine.connect() as conn:
            events = await conn.execute(text("SELECT count(*) FROM message_events WHERE message_id = ANY(:ids) "
                                             "AND event IN ('delivered', 'read')"), {"ids": ids})  # fmt: skip
            assert events.scalar_one() == 0
        page = (await api.get("/inbox", headers=bearer(ada))).json()
        assert page["unreadCount"] == 2 and [int(i["id"]) for i in page["items"]] == ids[::-1]


async def _all_sent(engine: AsyncEngine, ids: list[int]) -> bool:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT count(*) FROM messages WHERE id = ANY(:ids) AND status = 'sent'"),
                                   {"ids": ids})  # fmt: skip
        return int(found.scalar_one()) == len(ids)


# --- races ------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _holding(engine: AsyncEngine, lock_sql: str, params: dict[str, Any]) -> AsyncIterator[AsyncConnection]:
    """A transaction holding the row locks `lock_sql` takes, rolled back (released) on exit."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            await conn.execute(text(lock_sql), params)
            yield conn
        finally:
            await transaction.rollback()


async def _counts_rows(engine: AsyncEngine, channel: str, status: str) -> None:
    """Every shard row of message_counts for (channel, status), so that locking them holds every writer."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO message_counts (channel, status, shard, n) SELECT :c, :s, g, 0 "
                "FROM generate_series(0, :k - 1) g ON CONFLICT DO NOTHING"
            ),
            {"c": channel, "s": status, "k": COUNT_SHARDS},
        )


LOCK_COUNTS = "SELECT 1 FROM message_counts WHERE channel = ANY(:channels) AND status = 'queued' FOR UPDATE"


async def _lock_waiters(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND datname = current_database()"))  # fmt: skip
        return int(found.scalar_one())


async def _waiting(engine: AsyncEngine, count: int = 1) -> bool:
    return await _lock_waiters(engine) >= count


async def _addresses_left(engine: AsyncEngine, *addresses: str) -> list[tuple[Any, ...]]:
    """Messages that still hold one of an erased subscriber's addresses (for in-app, the address is its id)."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT id, channel, status, recipient, subscriber_id, body, dedup_key FROM messages "
            "WHERE recipient = ANY(:a) ORDER BY id"), {"a": list(addresses)})  # fmt: skip
        return [tuple(r) for r in rows]


class TestRaces:
    async def test_twenty_parallel_puts_of_a_new_id(
        self, two_apis: ApiProcesses, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """Across both API processes, each request on its own connection: one 201, nineteen 200, and the row is
        exactly one of the bodies (no mix of two)."""
        bodies = [{**PROFILE, "email": f"u{i}@example.com", "data": {"i": i}} for i in range(20)]
        clients = [httpx.AsyncClient(base_url=two_apis.urls[i % 2], timeout=30) for i in range(20)]
        try:
            answers = await asyncio.gather(*(c.put("/subscribers/race", json=b, headers=fast_auth)
                                             for c, b in zip(clients, bodies, strict=True)))  # fmt: skip
        finally:
            for c in clients:
                await c.aclose()
        assert sorted(r.status_code for r in answers) == [200] * 19 + [201], [r.text for r in answers]
        (row,), _ = await _state(engine)
        assert f"u{json.loads(row[6])['i']}@example.com" == row[1]

    async def test_parallel_preference_puts(
        self, two_apis: ApiProcesses, api: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """Twenty different preference documents at once: all 200, and what is stored is one of them, whole."""
        await subscriber_token(api, fast_auth, "u-1")
        bodies = [{"channels": {"email": i % 2 == 0}, "categories": {f"c{i}": {"sms": False}}} for i in range(20)]
        clients = [httpx.AsyncClient(base_url=two_apis.urls[i % 2], timeout=30) for i in range(20)]
        try:
            answers = await asyncio.gather(*(c.put("/subscribers/u-1/preferences", json=b, headers=fast_auth)
                                             for c, b in zip(clients, bodies, strict=True)))  # fmt: skip
        finally:
            for c in clients:
                await c.aclose()
        assert [r.status_code for r in answers] == [200] * 20
        stored = (await api.get("/subscribers/u-1/preferences", headers=fast_auth)).json()
        assert stored in bodies

    async def test_parallel_deletes_and_puts(
        self, two_apis: ApiProcesses, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """Ten DELETEs of one id: one 204, nine 404. Then PUTs and DELETEs interleaved: every answer is one of
        the documented ones, and the row is either gone or whole."""
        async with httpx.AsyncClient(base_url=two_apis.urls[0], timeout=30) as c:
            assert (await c.put("/subscribers/u-1", json=PROFILE, headers=fast_auth)).status_code == 201
        clients = [httpx.AsyncClient(base_url=two_apis.urls[i % 2], timeout=30) for i in range(20)]
        try:
            deletes = await asyncio.gather(*(c.delete("/subscribers/u-1", headers=fast_auth) for c in clients[:10]))
            assert sorted(r.status_code for r in deletes) == [204] + [404] * 9
            mixed = await asyncio.gather(
                *(
                    c.delete("/subscribers/u-1", headers=fast_auth)
                    if i % 4 == 0
                    else c.put("/subscribers/u-1", json=PROFILE, headers=fast_auth)
                    for i, c in enumerate(clients)
                )
            )
        finally:
            for c in clients:
                await c.aclose()
        assert {r.status_code for r in mixed} <= {200, 201, 204, 404}, [r.text for r in mixed]
        rows, _ = await _state(engine)
        assert rows == [] or rows[0][1:6] == ("ada@example.com", "+15550000001", ["mock-device-1"], "en-GB",
                                              "Europe/London")  # fmt: skip

    async def test_erasure_while_sends_are_in_flight_leaves_no_personal_data(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """Twenty sends to a subscriber, then its DELETE, while the sends' inserts are still running.

        To make the race certain, the test holds the message_counts rows every insert must update (the
        transition's `counts` step, after the insert has read the profile): the inserts wait there, the
        DELETE completes, then the inserts commit. Afterwards no message may hold the erased subscriber's
        address (nor its texts): every one of these sends was accepted before the erasure answered.
        """
        await client.put("/subscribers/victim", json={"email": "victim@example.com"}, headers=fast_auth)
        for channel in ("email", "inapp"):
            await _counts_rows(engine, channel, "queued")
        async with _holding(engine, LOCK_COUNTS, {"channels": ["email", "inapp"]}):
            sends = [asyncio.create_task(client.post("/notifications", headers=fast_auth, json={
                "channel": ("email", "inapp")[i % 2], "subscriber": "victim", "body": f"n{i}", "dedupKey": f"d{i}"}))
                for i in range(20)]  # fmt: skip
            await wait_for(lambda: _waiting(engine), within=TIMEOUT)
            # The erasure waits for the sends that locked the profile (FOR KEY SHARE), so it is started, seen
            # waiting, and only then are the sends let go.
            waiters = await _lock_waiters(engine)
            erasing = asyncio.create_task(client.delete("/subscribers/victim", headers=fast_auth))
            await wait_for(lambda: _waiting(engine, waiters + 1), within=TIMEOUT)
        erased = await erasing
        assert erased.status_code == 204, erased.text
        answers = await asyncio.gather(*sends)
        assert {r.status_code for r in answers} <= {202, 422}, [r.text for r in answers]
        assert await _addresses_left(engine, "victim", "victim@example.com") == []

    async def test_erasure_while_a_campaign_is_written_leaves_no_personal_data(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
    ) -> None:
        """The campaign's transaction is held after its messages are inserted (at the per-channel count, which it
        updates last); the DELETE completes meanwhile; then the campaign commits."""
        for sid in ("victim", "bystander"):
            await client.put(f"/subscribers/{sid}", json={"email": f"{sid}@example.com"}, headers=fast_auth)
        await _counts_rows(engine, "email", "queued")
        async with _holding(engine, LOCK_COUNTS, {"channels": ["email"]}):
            created = asyncio.create_task(client.post("/campaigns", headers=fast_auth, json={
                **CAMPAIGN, "channel": "email", "subscribers": ["victim", "bystander"]}))  # fmt: skip
            await wait_for(lambda: _waiting(engine), within=TIMEOUT)
            waiters = await _lock_waiters(engine)
            erasing = asyncio.create_task(client.delete("/subscribers/victim", headers=fast_auth))
            await wait_for(lambda: _waiting(engine, waiters + 1), within=TIMEOUT)
        assert (await erasing).status_code == 204
        assert (await created).status_code == 202, (await created).text
        assert await _addresses_left(engine, "victim", "victim@example.com") == []

    async def test_erasure_while_a_campaign_is_accepted_keeps_its_counts_whole(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], fast_admin: uuid.UUID, engine: AsyncEngine
    ) -> None:
        """The campaign is held at its own row's insert (the foreign key to the admin row, which the test locks),
        before its messages are written; the DELETE completes meanwhile; then the campaign goes on.

        Found against 759979c: the subscribers were checked first, then inserted with a JOIN, so the erased one
        was silently left out and totalMessages counted a message that did not exist (the campaign could never
        complete). Now every named subscriber gets a message (one without a profile ends `skipped`): the total
        is the messages, and the erased subscriber's address is in none of them.
        """
        for sid in ("victim", "bystander"):
            await client.put(f"/subscribers/{sid}", json={"email": f"{sid}@example.com"}, headers=fast_auth)
        async with _holding(engine, "SELECT 1 FROM admins WHERE id = :a FOR UPDATE", {"a": fast_admin}):
            created = asyncio.create_task(client.post("/campaigns", headers=fast_auth, json={
                **CAMPAIGN, "channel": "email", "subscribers": ["victim", "bystander"]}))  # fmt: skip
            await wait_for(lambda: _waiting(engine), within=TIMEOUT)
            assert (await client.delete("/subscribers/victim", headers=fast_auth)).status_code == 204
        r = await created
        if r.status_code == 422:  # refused as naming an unknown subscriber: consistent, if nothing was written
            assert_error(r, 422, "validation_error")
            assert (await _state(engine))[1] == (0, 0, 0)
            return
        assert r.status_code == 202, r.text
        assert r.json()["totalMessages"] == await _campaign_messages(engine, r.json()["id"]) == 2
        assert await _addresses_left(engine, "victim", "victim@example.com") == []


# --- the document ------------------------------------------------------------------------------------------------


class TestDocument:
    async def test_every_new_operation_is_documented(self, client: httpx.AsyncClient) -> None:
        spec = await fetch_spec(client)
        documented = {(m, p) for m, p, _ in operations(spec)}
        expected = {("PUT", "/subscribers/{subscriber_id}"), ("GET", "/subscribers/{subscriber_id}"),
                    ("DELETE", "/subscribers/{subscriber_id}"), ("GET", "/subscribers"),
                    ("GET", "/subscribers/{subscriber_id}/preferences"),
                    ("PUT", "/subscribers/{subscriber_id}/preferences"),
                    ("POST", "/subscribers/{subscriber_id}/token"), ("GET", "/ws"), ("GET", "/inbox"),
                    ("POST", "/inbox/{notification_id}/read"), ("POST", "/inbox/read-all")}  # fmt: skip
        assert expected <= documented, expected - documented
        schemes = spec["components"]["securitySchemes"]
        inbox_ops = [op for m, p, op in operations(spec) if p == "/inbox" or p.startswith("/inbox/")]
        assert all(op["security"] == [{"subscriberAuth": []}] for op in inbox_ops)
        assert all("401" in op["responses"] for op in inbox_ops)
        assert schemes["subscriberAuth"]["scheme"] == "bearer"

    async def test_ws_over_plain_http_is_the_documented_426(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        spec = await fetch_spec(client)
        ws = resolve(spec, spec["paths"]["/ws"]["get"])
        assert ws["security"] == [] and set(ws["responses"]) == {"426"}
        for headers in ({}, fast_auth, {"Upgrade": "websocket"}, {"Connection": "Upgrade", "Upgrade": "h2c"}):
            r = await client.get("/ws", headers=headers)
            assert_error(r, 426, "upgrade_required")
            assert r.headers["upgrade"] == "websocket"
            assert is_valid(ws["responses"]["426"]["content"]["application/json"]["schema"], r.json())
        r = await client.post("/ws", headers=fast_auth)
        assert_error(r, 405, "method_not_allowed")
        assert "GET" in r.headers["allow"]

    async def test_admin_token_on_inbox_is_the_documented_401(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str]
    ) -> None:
        spec = await fetch_spec(client)
        documented = resolve(spec, spec["paths"]["/inbox"]["get"]["responses"]["401"])
        r = await client.get("/inbox", headers=fast_auth)
        assert_error(r, 401, "unauthorized")
        assert "WWW-Authenticate" in documented["headers"] and "www-authenticate" in r.headers
        assert is_valid(documented["content"]["application/json"]["schema"], r.json())

    @pytest.mark.parametrize(
        ("path", "body"),
        [("/subscribers/u-1", {"timezone": "A"}), ("/subscribers/u-1", {"timezone": "Mars/Olympus"}),
         ("/subscribers/u-1", {"timezone": "localtime"}), ("/subscribers/u-1", {"data": {"k\u0000": 1}}),
         ("/subscribers/u-1", {"data": {"a": [{"b": "x\u0000"}]}}),
         ("/subscribers/u-1", {"data": {"a": {"\u0000": 1}}}),
         ("/subscribers/u-1/preferences", {"categories": {"bad key": {"email": False}}}),
         ("/subscribers/u-1/preferences", {"categories": {"\u0097": {"x": 1}}}),
         ("/subscribers/u-1/preferences", {"channels": {"fax": True}})],
        ids=["timezone-A", "timezone-unknown", "timezone-localtime", "data-key-nul", "data-deep-nul",
             "data-deep-key-nul", "category-space", "category-control", "channel-unknown"],
    )  # fmt: skip
    async def test_bodies_the_api_refuses_are_invalid_per_the_document(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], ada: Any, path: str, body: Any
    ) -> None:
        """Each was valid per the document and a 422 from the API (schemathesis found the timezone and the
        category): the schema now says it (an enum of the zones, `propertyNames`, no NUL in `data`)."""
        spec = await fetch_spec(client)
        schema = resolve(spec, spec["paths"][path.replace("u-1", "{subscriber_id}")]["put"]["requestBody"])
        assert_error(await _raw(client, "PUT", path, raw_json(body), fast_auth), 422, "validation_error")
        assert not is_valid(schema["content"]["application/json"]["schema"], body)

    @pytest.mark.parametrize(
        "body",
        [{"to": "ada@example.com", "subscriber": "u-1", "body": "x"}, {"channel": "inapp", "to": "u-1", "body": "x"},
         {"subscriber": "u-1", "category": "a b", "body": "x"}, {"subscriber": "..", "body": "x"},
         {"subscriber": "u-1", "dedupKey": "", "body": "x"},
         {"to": "ada@example.com", "dedupKey": "k", "body": "x"}],
        ids=["to-and-subscriber", "inapp-to", "category-space", "subscriber-dot-dot", "dedupKey-empty",
             "to-with-dedupKey"],
    )  # fmt: skip
    async def test_sends_the_api_refuses_are_invalid_per_the_document(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], ada: Any, body: Any
    ) -> None:
        spec = await fetch_spec(client)
        schema = resolve(spec, spec["paths"]["/notifications"]["post"]["requestBody"])
        assert_error(await client.post("/notifications", json=body, headers=fast_auth), 422, "validation_error")
        assert not is_valid(schema["content"]["application/json"]["schema"], body)

    @pytest.mark.parametrize("path", ["/subscribers/{subscriber_id}", "/subscribers/{subscriber_id}/preferences"])
    async def test_bodies_generated_from_the_document_are_accepted(
        self, client: httpx.AsyncClient, fast_auth: dict[str, str], ada: Any, path: str
    ) -> None:
        """Positive bodies schemathesis draws from the document (deterministic): every one a 200."""
        schema = schemathesis.openapi.from_dict(await fetch_spec(client))
        refused: dict[str, Any] = {}
        for case in draw(schema[path]["PUT"].as_strategy(), 60):
            r = await client.put(path.replace("{subscriber_id}", "u-1"), json=case.body, headers=fast_auth)
            if r.status_code != 200:
                refused.setdefault(r.json()["error"]["message"], case.body)
        assert not refused, refused
