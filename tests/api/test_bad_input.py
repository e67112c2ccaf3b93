"""Bad input never writes anything and always gets a 4xx with the error envelope (real PostgreSQL and Redis)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from notifq.validation import MAX_BODY, MAX_NAME, MAX_REPORTED, MAX_SUBJECT
from tests.api.support import app_client, assert_error, assert_nothing_written, create_campaign, row_counts


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _cursor(text_value: str) -> str:
    return base64.urlsafe_b64encode(text_value.encode()).decode().rstrip("=")


VALID = {"name": "Spring launch", "recipients": ["ada@example.com"]}

# (id, raw request body); every one must be a 422 validation_error that writes nothing.
BAD_CREATE_BODIES: list[tuple[str, bytes]] = [
    ("malformed-json", b'{"name": "x", "recipientCount": 1'),
    ("trailing-garbage", b'{"name": "x", "recipientCount": 1} {}'),
    ("single-quotes", b"{'name': 'x', 'recipientCount': 1}"),
    ("empty-body", b""),
    ("whitespace-body", b" \r\n\t "),
    ("json-array", _json([{"name": "x", "recipientCount": 1}])),
    ("json-string", _json("x")),
    ("json-number", b"42"),
    ("json-null", b"null"),
    ("not-utf8", b'{"name": "\xff\xfe", "recipientCount": 1}'),
    ("missing-name", _json({"recipientCount": 1})),
    ("null-name", _json({"name": None, "recipientCount": 1})),
    ("empty-name", _json({"name": "", "recipientCount": 1})),
    ("blank-name", _json({"name": " \t\u00a0 ", "recipientCount": 1})),
    ("name-is-number", _json({"name": 42, "recipientCount": 1})),
    ("name-is-list", _json({"name": ["x"], "recipientCount": 1})),
    ("name-is-object", _json({"name": {"x": 1}, "recipientCount": 1})),
    ("name-is-bool", _json({"name": True, "recipientCount": 1})),
    ("name-too-long", _json({"name": "n" * (MAX_NAME + 1), "recipientCount": 1})),
    ("name-with-newline", _json({"name": "a\nb", "recipientCount": 1})),
    ("both-recipients-and-count", _json({"name": "x", "recipients": ["a@example.com"], "recipientCount": 1})),
    ("neither-recipients-nor-count", _json({"name": "x"})),
    ("recipients-empty", _json({"name": "x", "recipients": []})),
    ("recipients-null", _json({"name": "x", "recipients": None})),
    ("recipients-is-string", _json({"name": "x", "recipients": "a@example.com"})),
    ("recipients-is-object", _json({"name": "x", "recipients": {"a@example.com": 1}})),
    ("recipient-not-string", _json({"name": "x", "recipients": ["a@example.com", 7]})),
    ("recipient-null", _json({"name": "x", "recipients": [None]})),
    ("recipient-too-long", _json({"name": "x", "recipients": ["a" * 64 + "@" + ("d" * 60 + ".") * 4 + "com"]})),
    ("count-zero", _json({"name": "x", "recipientCount": 0})),
    ("count-negative", _json({"name": "x", "recipientCount": -5})),
    ("count-float", _json({"name": "x", "recipientCount": 2.5})),
    ("count-nan", b'{"name": "x", "recipientCount": NaN}'),
    ("count-infinity", b'{"name": "x", "recipientCount": Infinity}'),
    ("count-true", _json({"name": "x", "recipientCount": True})),
    ("count-false", _json({"name": "x", "recipientCount": False})),
    ("count-string", _json({"name": "x", "recipientCount": "5"})),
    ("count-null", _json({"name": "x", "recipientCount": None})),
    ("count-list", _json({"name": "x", "recipientCount": [5]})),
    ("count-huge", _json({"name": "x", "recipientCount": 10**30})),
    ("subject-with-lf", _json({"name": "x", "subject": "Hi\nthere", "recipientCount": 1})),
    ("subject-header-injection", _json({"name": "x", "subject": "Hi\r\nBcc: x@evil.test", "recipientCount": 1})),
    ("subject-with-cr", _json({"name": "x", "subject": "Hi\rthere", "recipientCount": 1})),
    ("subject-not-string", _json({"name": "x", "subject": 5, "recipientCount": 1})),
    ("subject-too-long", _json({"name": "x", "subject": "s" * (MAX_SUBJECT + 1), "recipientCount": 1})),
    ("body-not-string", _json({"name": "x", "body": {"html": "<p>"}, "recipientCount": 1})),
    ("body-too-long", _json({"name": "x", "body": "b" * (MAX_BODY + 1), "recipientCount": 1})),
]


@pytest.mark.parametrize("raw", [b for _, b in BAD_CREATE_BODIES], ids=[n for n, _ in BAD_CREATE_BODIES])
async def test_bad_create_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    raw: bytes,
) -> None:
    """Every malformed or invalid campaign is refused up front: no campaign, no message, no job."""
    headers = {**fast_auth, "Content-Type": "application/json"}
    r = await client.post("/campaigns", content=raw, headers=headers)
    assert_error(r, 422, "validation_error")
    await assert_nothing_written(engine, redis, settings)


async def test_create_with_valid_body_is_the_control(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Control for the table above: the same headers and a valid body are accepted."""
    await create_campaign(client, fast_auth, **VALID)
    assert await row_counts(engine) == (1, 1)


async def test_invalid_recipients_are_named_with_index_and_value(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A user fixing a list of addresses needs to know which entries are wrong and where they are."""
    recipients = [
        "ada@example.com",
        "not-an-email",
        "grace@example.com",
        "eve@example.com\r\nBcc: mallory@evil.test",
        "bob\n@example.com",
        "carol@example.com,dave@example.com",
        "trent@example.com",
    ]
    r = await client.post("/campaigns", json={"name": "x", "recipients": recipients}, headers=fast_auth)
    error = assert_error(r, 422, "validation_error")
    assert error["details"]["field"] == "recipients"
    assert error["details"]["invalid"] == [
        {"index": 1, "value": "not-an-email"},
        {"index": 3, "value": "eve@example.com\r\nBcc: mallory@evil.test"},
        {"index": 4, "value": "bob\n@example.com"},
        {"index": 5, "value": "carol@example.com,dave@example.com"},
    ]
    assert "not-an-email" in error["message"]
    await assert_nothing_written(engine, redis, settings)


async def test_invalid_recipients_report_is_capped(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A list of a million bad addresses must not produce a million-entry error: only the first few are named."""
    recipients = ["ok@example.com"] + [f"bad-{i}" for i in range(MAX_REPORTED * 3)]
    r = await client.post("/campaigns", json={"name": "x", "recipients": recipients}, headers=fast_auth)
    error = assert_error(r, 422, "validation_error")
    invalid = error["details"]["invalid"]
    assert invalid == [{"index": i + 1, "value": f"bad-{i}"} for i in range(MAX_REPORTED)]
    await assert_nothing_written(engine, redis, settings)


async def test_non_string_recipient_is_reported_by_repr(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A number or null in the list is named too (the report stays a list of strings)."""
    body = {"name": "x", "recipients": ["a@example.com", 7, None]}
    error = assert_error(await client.post("/campaigns", json=body, headers=fast_auth), 422, "validation_error")
    assert error["details"]["invalid"] == [{"index": 1, "value": "7"}, {"index": 2, "value": "None"}]
    await assert_nothing_written(engine, redis, settings)


# --- size limits ---------------------------------------------------------------------------------


@pytest.fixture
async def capped_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose campaigns are capped at 100 recipients."""
    async with app_client(settings.with_(max_campaign_size=100)) as c:
        yield c


async def test_recipient_count_above_cap_is_422(
    capped_client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
) -> None:
    """NOTIFQ_MAX_CAMPAIGN_SIZE bounds load-test campaigns, and the error says the limit."""
    r = await capped_client.post("/campaigns", json={"name": "x", "recipientCount": 101}, headers=fast_auth)
    error = assert_error(r, 422, "validation_error")
    assert error["details"] == {"field": "recipientCount", "min": 1, "max": 100}
    await assert_nothing_written(engine, redis, settings)


async def test_recipient_list_above_cap_is_422(
    capped_client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
) -> None:
    """An explicit list longer than the cap is refused before any address is checked or written."""
    recipients = [f"u{i}@example.com" for i in range(101)]
    r = await capped_client.post("/campaigns", json={"name": "x", "recipients": recipients}, headers=fast_auth)
    error = assert_error(r, 422, "validation_error")
    assert error["details"] == {"field": "recipients", "max": 100}
    await assert_nothing_written(engine, redis, settings)


@pytest.mark.parametrize("form", ["count", "list"])
async def test_campaign_exactly_at_cap_is_accepted(
    capped_client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, form: str
) -> None:
    """The cap is inclusive: exactly max_campaign_size recipients is a valid campaign."""
    body: dict[str, Any] = {"name": "x"}
    if form == "count":
        body["recipientCount"] = 100
    else:
        body["recipients"] = [f"u{i}@example.com" for i in range(100)]
    created = await create_campaign(capped_client, fast_auth, **body)
    assert created["totalMessages"] == 100
    assert await row_counts(engine) == (1, 100)


@pytest.fixture
async def small_body_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.with_(max_body_bytes=2048)) as c:
        yield c


def _padded_body(size: int) -> bytes:
    """A valid campaign body of exactly `size` bytes."""
    base = _json({"name": "x", "recipients": ["a@example.com"], "body": ""})
    pad = size - len(base)
    assert pad >= 0
    return _json({"name": "x", "recipients": ["a@example.com"], "body": "b" * pad})


async def test_body_over_limit_is_413(
    small_body_client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
) -> None:
    """NOTIFQ_MAX_BODY_BYTES caps the request (Starlette has no limit of its own)."""
    raw = _padded_body(2049)
    headers = {**fast_auth, "Content-Type": "application/json"}
    r = await small_body_client.post("/campaigns", content=raw, headers=headers)
    error = assert_error(r, 413, "payload_too_large")
    assert error["details"] == {"maxBytes": 2048}
    await assert_nothing_written(engine, redis, settings)


async def test_chunked_body_over_limit_is_413(
    small_body_client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
) -> None:
    """A body streamed without Content-Length is counted as it arrives and cut off at the limit."""
    raw = _padded_body(10_000)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 512):
            yield raw[start : start + 512]

    headers = {**fast_auth, "Content-Type": "application/json"}
    r = await small_body_client.post("/campaigns", content=chunks(), headers=headers)
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")
    await assert_nothing_written(engine, redis, settings)


async def test_body_exactly_at_limit_is_accepted(
    small_body_client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """The body limit is inclusive, so the 413 above is about size, not about this body."""
    headers = {**fast_auth, "Content-Type": "application/json"}
    r = await small_body_client.post("/campaigns", content=_padded_body(2048), headers=headers)
    assert r.status_code == 202, r.text
    assert await row_counts(engine) == (1, 1)


# --- text that PostgreSQL or UTF-8 cannot hold ---------------------------------------------------

UNSTORABLE_BODIES: list[tuple[str, bytes]] = [
    ("nul-in-name", b'{"name": "a\\u0000b", "recipientCount": 1}'),
    ("nul-in-subject", b'{"name": "x", "subject": "a\\u0000b", "recipientCount": 1}'),
    ("nul-in-body", b'{"name": "x", "body": "a\\u0000b", "recipientCount": 1}'),
    ("lone-surrogate-in-name", b'{"name": "a\\ud800b", "recipientCount": 1}'),
    ("lone-surrogate-in-body", b'{"name": "x", "body": "\\udfff", "recipientCount": 1}'),
]


@pytest.mark.parametrize("raw", [b for _, b in UNSTORABLE_BODIES], ids=[n for n, _ in UNSTORABLE_BODIES])
async def test_unstorable_text_is_422_not_500(
    client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    raw: bytes,
) -> None:
    """Valid JSON escapes that PostgreSQL text cannot store (NUL, lone surrogates) are a client error."""
    headers = {**fast_auth, "Content-Type": "application/json"}
    r = await client.post("/campaigns", content=raw, headers=headers)
    assert_error(r, 422, "validation_error")
    await assert_nothing_written(engine, redis, settings)


async def test_deeply_nested_json_is_422_not_500(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A small body of 100,000 '[' makes json.loads recurse too deep; that is malformed input, not a crash."""
    headers = {**fast_auth, "Content-Type": "application/json"}
    r = await client.post("/campaigns", content=b"[" * 100_000, headers=headers)
    assert_error(r, 422, "validation_error")
    await assert_nothing_written(engine, redis, settings)


# --- ids, 404s, unknown routes -------------------------------------------------------------------

ID_ENDPOINTS: list[tuple[str, str]] = [
    ("GET", "/campaigns/{id}"),
    ("GET", "/campaigns/{id}/messages"),
    ("POST", "/campaigns/{id}/retry"),
    ("POST", "/campaigns/{id}/cancel"),
]
MALFORMED_IDS = ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", "%20", "a" * 300]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
@pytest.mark.parametrize(("method", "path"), ID_ENDPOINTS, ids=[f"{m} {p}" for m, p in ID_ENDPOINTS])
async def test_malformed_campaign_id_is_422(
    client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    method: str,
    path: str,
    bad_id: str,
) -> None:
    """A non-UUID id is the caller's mistake (422 naming the field), never a database error."""
    r = await client.request(method, path.format(id=bad_id), headers=fast_auth)
    error = assert_error(r, 422, "validation_error")
    assert error["details"]["field"] == "id"
    assert len(error["details"]["value"]) <= 64
    await assert_nothing_written(engine, redis, settings)


@pytest.mark.parametrize(("method", "path"), ID_ENDPOINTS, ids=[f"{m} {p}" for m, p in ID_ENDPOINTS])
async def test_unknown_campaign_is_404(
    client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    method: str,
    path: str,
) -> None:
    """A well-formed id that does not exist is a 404 not_found naming the id, and writes nothing."""
    missing = uuid.uuid4()
    r = await client.request(method, path.format(id=missing), headers=fast_auth)
    error = assert_error(r, 404, "not_found")
    assert error["details"] == {"id": str(missing)}
    await assert_nothing_written(engine, redis, settings)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/campaigns/{id}/nowhere", 404, "not_found"),
        ("DELETE", "/campaigns", 405, "method_not_allowed"),
        ("PUT", "/campaigns/{id}", 405, "method_not_allowed"),
        ("DELETE", "/campaigns/{id}", 405, "method_not_allowed"),
        ("GET", "/campaigns/{id}/cancel", 405, "method_not_allowed"),
        ("GET", "/auth/login", 405, "method_not_allowed"),
    ],
)
async def test_unknown_routes_and_methods_use_the_envelope(
    client: httpx.AsyncClient, fast_auth: dict[str, str], method: str, path: str, status: int, code: str
) -> None:
    """Even router-level errors use the documented error envelope."""
    r = await client.request(method, path.format(id=uuid.uuid4()), headers=fast_auth)
    assert_error(r, status, code)


# --- query parameters ----------------------------------------------------------------------------

BAD_LIST_QUERIES: list[tuple[str, dict[str, str], str]] = [
    ("limit-zero", {"limit": "0"}, "limit"),
    ("limit-abc", {"limit": "abc"}, "limit"),
    ("limit-501", {"limit": "501"}, "limit"),
    ("limit-negative", {"limit": "-1"}, "limit"),
    ("limit-float", {"limit": "2.5"}, "limit"),
    ("limit-plus", {"limit": "+5"}, "limit"),
    ("limit-huge", {"limit": "9" * 40}, "limit"),
    ("status-bogus", {"status": "bogus"}, "status"),
    ("status-wrong-case", {"status": "PENDING"}, "status"),
    ("status-message-status", {"status": "sent"}, "status"),
    ("cursor-garbage", {"cursor": "!!!not-a-cursor!!!"}, "cursor"),
    ("cursor-not-base64-json", {"cursor": "abc"}, "cursor"),
    ("cursor-no-separator", {"cursor": _cursor("2024-01-01T00:00:00+00:00")}, "cursor"),
    ("cursor-bad-uuid", {"cursor": _cursor("2024-01-01T00:00:00+00:00|nope")}, "cursor"),
    ("cursor-bad-date", {"cursor": _cursor(f"yesterday|{uuid.uuid4()}")}, "cursor"),
    ("cursor-not-utf8", {"cursor": base64.urlsafe_b64encode(b"\xff\xfe|\xff").decode()}, "cursor"),
]


@pytest.mark.parametrize(
    ("params", "field"), [(p, f) for _, p, f in BAD_LIST_QUERIES], ids=[n for n, _, _ in BAD_LIST_QUERIES]
)
async def test_bad_list_query_is_422(
    client: httpx.AsyncClient, fast_auth: dict[str, str], params: dict[str, str], field: str
) -> None:
    """Bad paging or filter parameters name the offending field instead of being ignored or crashing."""
    r = await client.get("/campaigns", params=params, headers=fast_auth)
    error = assert_error(r, 422, "validation_error")
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "\u00b2"},  # superscript two: str.isdigit() is True, int() raises
        {"cursor": _cursor(f"0001-01-01T00:00:00+01:00|{uuid.uuid4()}")},
        {"cursor": _cursor(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}")},
    ],
    ids=["limit-superscript-digit", "cursor-before-year-1-utc", "cursor-after-year-9999-utc"],
)
async def test_list_query_edge_values_are_422_not_500(
    client: httpx.AsyncClient, fast_auth: dict[str, str], params: dict[str, str]
) -> None:
    """Values that pass the syntactic checks but cannot be used (int() or PostgreSQL rejects them) are 422."""
    r = await client.get("/campaigns", params=params, headers=fast_auth)
    assert_error(r, 422, "validation_error")


BAD_MESSAGE_QUERIES: list[tuple[str, dict[str, str], str]] = [
    ("limit-zero", {"limit": "0"}, "limit"),
    ("limit-1001", {"limit": "1001"}, "limit"),
    ("limit-abc", {"limit": "abc"}, "limit"),
    ("status-bogus", {"status": "bogus"}, "status"),
    ("status-campaign-status", {"status": "processing"}, "status"),
    ("cursor-abc", {"cursor": "abc"}, "cursor"),
    ("cursor-negative", {"cursor": "-1"}, "cursor"),
    ("cursor-float", {"cursor": "1.5"}, "cursor"),
]


@pytest.fixture
async def campaign_id(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> str:
    created = await create_campaign(client, fast_auth, name="Paging", recipientCount=3)
    return str(created["id"])


@pytest.mark.parametrize(
    ("params", "field"), [(p, f) for _, p, f in BAD_MESSAGE_QUERIES], ids=[n for n, _, _ in BAD_MESSAGE_QUERIES]
)
async def test_bad_messages_query_is_422(
    client: httpx.AsyncClient, fast_auth: dict[str, str], campaign_id: str, params: dict[str, str], field: str
) -> None:
    """The messages listing validates its own limit (up to 1000), status and numeric cursor."""
    r = await client.get(f"/campaigns/{campaign_id}/messages", params=params, headers=fast_auth)
    error = assert_error(r, 422, "validation_error")
    assert error["details"]["field"] == field


@pytest.mark.parametrize(
    "params",
    [{"cursor": "\u00b2"}, {"cursor": "9" * 30}, {"limit": "\u00b9"}],
    ids=["cursor-superscript-digit", "cursor-beyond-bigint", "limit-superscript-digit"],
)
async def test_messages_query_edge_values_are_422_not_500(
    client: httpx.AsyncClient, fast_auth: dict[str, str], campaign_id: str, params: dict[str, str]
) -> None:
    """A cursor that is 'all digits' to str.isdigit() but not a bigint must be a 422, not a 500."""
    r = await client.get(f"/campaigns/{campaign_id}/messages", params=params, headers=fast_auth)
    assert_error(r, 422, "validation_error")


async def test_bad_query_on_unknown_campaign_still_validates_first(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Parameter errors are reported even for an id that does not exist (no database work for bad input)."""
    r = await client.get(f"/campaigns/{uuid.uuid4()}/messages", params={"limit": "0"}, headers=fast_auth)
    assert_error(r, 422, "validation_error")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM campaigns"))).scalar_one() == 0


async def test_an_integral_json_number_is_an_integer(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """JSON Schema's `integer` (what /openapi.json promises) includes 2.0 and 1e2; 2.5 stays a 422 (above)."""
    for raw, total in ((b'{"name": "x", "recipientCount": 2.0}', 2), (b'{"name": "x", "recipientCount": 1e2}', 100)):
        r = await client.post("/campaigns", content=raw, headers={**fast_auth, "Content-Type": "application/json"})
        assert r.status_code == 202, r.text
        assert r.json()["totalMessages"] == total
