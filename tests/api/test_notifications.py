"""POST/GET /notifications against real PostgreSQL and Redis; delivery by a real in-process arq worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.keys import RedisKeys
from notifq.queue import queue_depth
from notifq.settings import Settings
from tests.api.support import assert_error, create_campaign, row_counts
from tests.conftest import wait_for
from tests.harness import running_worker

NOTIFICATION_KEYS = {
    "id", "campaignId", "channel", "to", "subject", "priority", "status", "attempts", "provider",
    "providerMessageId", "lastError", "sendAt", "createdAt", "updatedAt", "subscriber", "category", "skipReason",
    "deliveredAt", "readAt", "bouncedAt", "complainedAt",
}  # fmt: skip
MOCK_TO = {"email": "x@example.com", "sms": "+15550001234", "push": "mock-abc"}


def _at(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _messages(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, campaign_id, channel, recipient, subject, body, data, priority, status, attempts, "
                "send_at, job_id FROM messages ORDER BY id"
            )
        )
        return [dict(r._mapping) for r in rows]


async def _queue_sizes(redis: Redis, settings: Settings) -> dict[str, int]:
    """Batches waiting per lane: arq's queues, and the transactional ready list (the express lane)."""
    return dict(await queue_depth(redis, RedisKeys.from_settings(settings)))


async def _assert_nothing_written(engine: AsyncEngine, redis: Redis, settings: Settings) -> None:
    assert await row_counts(engine) == (0, 0)
    assert await _queue_sizes(redis, settings) == {"transactional": 0, "bulk": 0}
    assert await redis.dbsize() == 0


async def _post(client: httpx.AsyncClient, auth: dict[str, str], body: Any) -> dict[str, Any]:
    r = await client.post("/notifications", json=body, headers=auth)
    assert r.status_code == 202, r.text
    data: dict[str, Any] = r.json()
    return data


# --- create: single -------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["email", "sms", "push"])
async def test_single_notification_is_accepted_and_written(
    client: httpx.AsyncClient, fast_auth: dict[str, str], fast_admin: uuid.UUID, engine: AsyncEngine,
    redis: Redis, settings: Settings, channel: str,
) -> None:  # fmt: skip
    """202 with the notification, a Location header, one committed row and a job in the transactional lane."""
    before = datetime.now(UTC)
    body = {"channel": channel, "to": MOCK_TO[channel], "subject": "Your code", "body": "123456",
            "data": {"code": "123456", "n": 7}}  # fmt: skip
    r = await client.post("/notifications", json=body, headers=fast_auth)
    assert r.status_code == 202, r.text
    data = r.json()
    assert set(data) == NOTIFICATION_KEYS
    assert r.headers["location"] == f"/notifications/{data['id']}"
    assert data["status"] == "queued"
    assert data["channel"] == channel and data["to"] == MOCK_TO[channel]
    assert data["subject"] == "Your code" and data["priority"] == "transactional"
    assert data["campaignId"] is None and data["attempts"] == 0 and data["sendAt"] is None
    assert data["provider"] is None and data["providerMessageId"] is None and data["lastError"] is None
    assert before - timedelta(seconds=1) <= _at(data["createdAt"]) <= datetime.now(UTC) + timedelta(seconds=1)

    [row] = await _messages(engine)
    assert str(row["id"]) == data["id"]
    assert (row["channel"], row["recipient"], row["subject"], row["body"]) == (channel, MOCK_TO[channel],
                                                                                "Your code", "123456")  # fmt: skip
    assert row["data"] == {"code": "123456", "n": "7"}  # numbers are turned into strings
    assert (row["priority"], row["status"], row["attempts"], row["campaign_id"]) == ("transactional", "queued", 0,
                                                                                     None)  # fmt: skip
    assert await _queue_sizes(redis, settings) == {"transactional": 1, "bulk": 0}


async def test_single_notifications_are_delivered_with_an_audit_trail(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    """A worker sends each channel's notification once through the mock; GET shows the whole history."""
    ids = {}
    for channel, to in MOCK_TO.items():
        ids[channel] = (await _post(client, fast_auth, {"channel": channel, "to": to, "body": f"hi {channel}"}))["id"]

    async def all_sent() -> list[dict[str, Any]] | None:
        views = [(await client.get(f"/notifications/{i}", headers=fast_auth)).json() for i in ids.values()]
        return views if all(v["status"] == "sent" for v in views) else None

    async with running_worker(settings):
        views = await wait_for(all_sent, within=15)

    for view in views:
        assert set(view) == NOTIFICATION_KEYS | {"events"}
        assert view["attempts"] == 1
        assert view["provider"] == "mock"
        assert view["providerMessageId"] == f"mock-{view['id']}-1"
        assert view["lastError"] is None
        events = view["events"]
        assert [e["event"] for e in events] == ["accepted", "attempt", "sent"], events
        assert [e["attempt"] for e in events] == [None, 1, 1]
        assert events[2]["provider"] == "mock"
        times = [_at(e["at"]) for e in events]
        assert times == sorted(times), times
        assert times[0] == _at(view["createdAt"])


async def test_get_unknown_and_malformed_notification(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    assert_error(await client.get("/notifications/999999", headers=fast_auth), 404, "not_found")
    for bad in ("abc", "0", "-1", "1.5", "²", "99999999999999999999"):
        assert_error(await client.get(f"/notifications/{bad}", headers=fast_auth), 422, "validation_error")


async def test_notifications_need_a_bearer_token(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    r = await client.post("/notifications", json={"channel": "email", "to": "x@example.com", "body": "b"})
    assert_error(r, 401, "unauthorized")
    for path in ("/notifications", "/notifications/1", "/dead-letters", "/stats"):
        assert_error(await client.get(path), 401, "unauthorized")
    assert await row_counts(engine) == (0, 0)


# --- create: batch --------------------------------------------------------------------------------


async def test_batch_returns_ids_in_request_order(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Mixed channels and lanes: the ids come back in the order of the array, and rows match them."""
    items = [
        {"channel": "sms", "to": "+15550000001", "body": "one", "priority": "bulk"},
        {"channel": "email", "to": "b@example.com", "body": "two", "subject": "S"},
        {"channel": "push", "to": "mock-3", "body": "three", "priority": "bulk"},
    ]
    r = await client.post("/notifications", json=items, headers=fast_auth)
    assert r.status_code == 202, r.text
    data = r.json()
    assert len(data["ids"]) == 3 and len(set(data["ids"])) == 3
    assert [i["id"] for i in data["items"]] == data["ids"]
    assert [i["to"] for i in data["items"]] == ["+15550000001", "b@example.com", "mock-3"]
    rows = {str(r["id"]): r for r in await _messages(engine)}
    assert [rows[i]["recipient"] for i in data["ids"]] == ["+15550000001", "b@example.com", "mock-3"]
    assert [rows[i]["priority"] for i in data["ids"]] == ["bulk", "transactional", "bulk"]
    assert await _queue_sizes(redis, settings) == {"transactional": 1, "bulk": 1}


async def test_batch_of_exactly_1000_is_accepted(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    items = [{"channel": "email", "to": f"u{i}@example.com", "body": "b", "priority": "bulk"} for i in range(1000)]
    r = await client.post("/notifications", json=items, headers=fast_auth)
    assert r.status_code == 202, r.text
    ids = r.json()["ids"]
    assert len(ids) == 1000
    assert await row_counts(engine) == (0, 1000)
    rows = await _messages(engine)
    assert [str(r["id"]) for r in rows] == ids
    assert [r["recipient"] for r in rows] == [f"u{i}@example.com" for i in range(1000)]


@pytest.mark.parametrize("body", [[], [{"channel": "email", "to": "a@example.com", "body": "b"}] * 1001])
async def test_batch_size_out_of_range_is_422(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    body: list[Any],
) -> None:  # fmt: skip
    assert_error(await client.post("/notifications", json=body, headers=fast_auth), 422, "validation_error")
    await _assert_nothing_written(engine, redis, settings)


@pytest.mark.parametrize(
    ("bad_item", "field"),
    [
        ({"channel": "email", "to": "not-an-address", "body": "b"}, "[1].to"),
        ({"channel": "sms", "to": "5551234", "body": "b"}, "[1].to"),
        ({"channel": "email", "to": "ok@example.com"}, "[1].body"),
        ({"channel": "fax", "to": "ok@example.com", "body": "b"}, "[1].channel"),
        ({"channel": "email", "to": "ok@example.com", "body": "b", "priority": "urgent"}, "[1].priority"),
        ({"channel": "email", "to": "ok@example.com", "body": "b", "subject": "a\r\nBcc: x@evil.test"}, "[1].subject"),
    ],
)
async def test_batch_with_one_invalid_item_is_422_naming_it_and_writes_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    bad_item: dict[str, Any], field: str,
) -> None:  # fmt: skip
    items = [{"channel": "email", "to": "a@example.com", "body": "b"}, bad_item,
             {"channel": "email", "to": "c@example.com", "body": "b"}]  # fmt: skip
    error = assert_error(await client.post("/notifications", json=items, headers=fast_auth), 422, "validation_error")
    assert error["details"]["field"] == field, error
    await _assert_nothing_written(engine, redis, settings)


# --- bad input ------------------------------------------------------------------------------------

VALID = {"channel": "email", "to": "x@example.com", "subject": "s", "body": "b"}
IN_2_YEARS = _iso(datetime.now(UTC) + timedelta(days=800))


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != key}


BAD_BODIES: list[tuple[str, Any, str | None]] = [
    ("email to with CRLF", {**VALID, "to": "x@example.com\r\nRCPT TO:<y@example.com>"}, "to"),
    ("email to with LF", {**VALID, "to": "x@example.com\n"}, "to"),
    ("email to with comma", {**VALID, "to": "x@example.com,y@example.com"}, "to"),
    ("email to with space", {**VALID, "to": "x@example.com y@example.com"}, "to"),
    ("email to with angle brackets", {**VALID, "to": "X <x@example.com>"}, "to"),
    ("email to not a string", {**VALID, "to": ["x@example.com"]}, "to"),
    ("missing to", _without("to"), "to"),
    ("subject with CRLF", {**VALID, "subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
    ("subject with LF", {**VALID, "subject": "Hi\nthere"}, "subject"),
    ("subject with CR", {**VALID, "subject": "Hi\rthere"}, "subject"),
    ("subject not a string", {**VALID, "subject": 5}, "subject"),
    ("sms without plus", {"channel": "sms", "to": "5551234", "body": "b"}, "to"),
    ("sms leading zero", {"channel": "sms", "to": "+0123456789", "body": "b"}, "to"),
    ("sms too short", {"channel": "sms", "to": "+1555", "body": "b"}, "to"),
    ("sms too long", {"channel": "sms", "to": "+1" + "5" * 15, "body": "b"}, "to"),
    ("sms with spaces", {"channel": "sms", "to": "+1 555 000 1234", "body": "b"}, "to"),
    ("push token with bad characters", {"channel": "push", "to": "mock abc", "body": "b"}, "to"),
    ("email address on push", {"channel": "push", "to": "x@example.com", "body": "b"}, "to"),
    ("unknown channel", {**VALID, "channel": "fax"}, "channel"),
    ("channel not a string", {**VALID, "channel": ["email"]}, "channel"),
    ("priority bogus", {**VALID, "priority": "urgent"}, "priority"),
    ("priority not a string", {**VALID, "priority": 1}, "priority"),
    ("data not an object", {**VALID, "data": ["a", "b"]}, "data"),
    ("data a string", {**VALID, "data": "k=v"}, "data"),
    ("data nested object", {**VALID, "data": {"k": {"nested": "v"}}}, "data.k"),
    ("data list value", {**VALID, "data": {"k": ["v"]}}, "data.k"),
    ("data bool value", {**VALID, "data": {"k": True}}, "data.k"),
    ("data null value", {**VALID, "data": {"k": None}}, "data.k"),
    ("data too big", {**VALID, "data": {"k": "v" * 5000}}, "data"),
    ("sendAt without zone", {**VALID, "sendAt": "2030-01-01T10:00:00"}, "sendAt"),
    ("sendAt malformed", {**VALID, "sendAt": "tomorrow at noon"}, "sendAt"),
    ("sendAt impossible date", {**VALID, "sendAt": "2030-02-30T10:00:00Z"}, "sendAt"),
    ("sendAt a number", {**VALID, "sendAt": 1893456000}, "sendAt"),
    ("sendAt more than a year ahead", {**VALID, "sendAt": IN_2_YEARS}, "sendAt"),
    ("missing body", _without("body"), "body"),
    ("blank body", {**VALID, "body": "   "}, "body"),
    ("body not a string", {**VALID, "body": {"text": "b"}}, "body"),
    ("body with NUL", {**VALID, "body": "a\u0000b"}, "body"),
    ("body a JSON string", "hello", None),
    ("body a JSON number", 42, None),
]


@pytest.mark.parametrize(("body", "field"), [(b, f) for _, b, f in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES])
async def test_bad_notification_is_422_and_writes_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    body: Any, field: str | None,
) -> None:  # fmt: skip
    error = assert_error(await client.post("/notifications", json=body, headers=fast_auth), 422, "validation_error")
    if field is not None:
        assert error["details"]["field"] == field, error
    await _assert_nothing_written(engine, redis, settings)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[1, 2"])
async def test_unparsable_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    raw: bytes,
) -> None:  # fmt: skip
    r = await client.post("/notifications", content=raw, headers={**fast_auth, "Content-Type": "application/json"})
    assert_error(r, 422, "validation_error")
    await _assert_nothing_written(engine, redis, settings)


async def test_valid_edge_values_are_accepted(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """The control for the table above: limits that are just inside are accepted."""
    ok = [
        {"channel": "sms", "to": "+12345678", "body": "b"},  # 8 digits
        {"channel": "sms", "to": "+1" + "5" * 14, "body": "b"},  # 15 digits
        {**VALID, "data": {"k": "v" * 3000}},
        {**VALID, "data": {}},
        {**VALID, "sendAt": _iso(datetime.now(UTC) + timedelta(days=300))},
        {**VALID, "sendAt": (datetime.now(UTC) + timedelta(hours=1)).astimezone().isoformat()},  # any zone
    ]
    for body in ok:
        r = await client.post("/notifications", json=body, headers=fast_auth)
        assert r.status_code == 202, (body, r.text)
    assert await row_counts(engine) == (0, len(ok))


async def test_send_at_in_the_past_means_now(
    client: httpx.AsyncClient, fast_auth: dict[str, str], redis: Redis, settings: Settings
) -> None:
    data = await _post(client, fast_auth, {**VALID, "sendAt": "2020-01-01T00:00:00Z"})
    assert data["status"] == "queued" and data["sendAt"] is None
    assert await _queue_sizes(redis, settings) == {"transactional": 1, "bulk": 0}


async def test_bulk_single_notification_goes_to_the_bulk_lane(
    client: httpx.AsyncClient, fast_auth: dict[str, str], redis: Redis, settings: Settings, engine: AsyncEngine
) -> None:
    """Before any worker runs: a bulk notification's job is in the base queue (an arq job); a transactional
    one's batch number is on the ready list of the express lane (no arq job), and both name the row's batch."""
    bulk = await _post(client, fast_auth, {**VALID, "priority": "bulk"})
    assert bulk["priority"] == "bulk"
    keys = RedisKeys.from_settings(settings)
    assert await redis.zcard(settings.queue_name) == 1
    assert await redis.llen(keys.ready) == 0
    txn = await _post(client, fast_auth, {**VALID, "priority": "transactional"})
    assert txn["priority"] == "transactional"
    assert await redis.zcard(settings.queue_name) == 1
    assert await redis.zcard(settings.queue_name + ":transactional") == 0
    jobs = {r["id"]: r["job_id"] for r in await _messages(engine)}
    assert await redis.zrange(settings.queue_name, 0, -1) == [keys.job_id(jobs[int(bulk["id"])]).encode()]
    assert await redis.lrange(keys.ready, 0, -1) == [str(jobs[int(txn["id"])]).encode()]


# --- list -----------------------------------------------------------------------------------------


async def test_list_filters_and_paginates_newest_first(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    """Only single notifications are listed (never campaign messages); filters combine; the cursor walks back."""
    await create_campaign(client, fast_auth, name="c", recipients=["a@example.com", "camp@example.com"])
    created = []
    for i in range(7):
        channel = ("email", "sms", "push")[i % 3]
        to = {"email": "a@example.com", "sms": f"+1555000000{i}", "push": f"mock-{i}"}[channel]
        created.append((await _post(client, fast_auth, {"channel": channel, "to": to, "body": str(i)}))["id"])
    # One of them cancelled, so the status filter has something to tell apart.
    scheduled = await _post(client, fast_auth, {**VALID, "to": "s@example.com",
                                                "sendAt": _iso(datetime.now(UTC) + timedelta(hours=1))})  # fmt: skip
    assert (await client.post(f"/notifications/{scheduled['id']}/cancel", headers=fast_auth)).status_code == 202
    created.append(scheduled["id"])

    async def page_ids(query: str) -> list[str]:
        r = await client.get(f"/notifications?{query}", headers=fast_auth)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    everything = await page_ids("")
    assert everything == list(reversed(created))  # newest first, no campaign messages
    assert await page_ids("channel=email") == [scheduled["id"], created[6], created[3], created[0]]
    assert await page_ids("channel=sms") == [created[4], created[1]]
    assert await page_ids("to=a%40example.com") == [created[6], created[3], created[0]]
    assert await page_ids("to=camp%40example.com") == []
    assert await page_ids("status=cancelled") == [scheduled["id"]]
    assert await page_ids("status=queued&channel=push") == [created[5], created[2]]
    assert await page_ids("status=sent") == []

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        r = await client.get("/notifications", params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                             headers=fast_auth)  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= 3
        seen += [i["id"] for i in body["items"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == everything and pages == 3


async def test_list_exact_multiple_has_no_empty_last_page(client: httpx.AsyncClient, fast_auth: dict[str, str]
                                                          ) -> None:  # fmt: skip
    for i in range(4):
        await _post(client, fast_auth, {**VALID, "to": f"p{i}@example.com"})
    first = (await client.get("/notifications?limit=2", headers=fast_auth)).json()
    second = (await client.get(f"/notifications?limit=2&cursor={first['nextCursor']}", headers=fast_auth)).json()
    assert len(first["items"]) == 2 and len(second["items"]) == 2
    assert second["nextCursor"] is None


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "channel=fax", "limit=0", "limit=501", "limit=x", "cursor=abc", "cursor=-1",
     "cursor=99999999999999999999", "to=%00", "to=a%40example.com%00"],
)  # fmt: skip
async def test_bad_list_query_is_422(client: httpx.AsyncClient, fast_auth: dict[str, str], query: str) -> None:
    """Including a `to` PostgreSQL cannot even compare (NUL): a 422, never a 500."""
    assert_error(await client.get(f"/notifications?{query}", headers=fast_auth), 422, "validation_error")


# --- cancel ---------------------------------------------------------------------------------------


async def test_cancel_scheduled_notification_is_never_sent(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=1)
    data = await _post(client, fast_auth, {**VALID, "sendAt": _iso(send_at)})
    assert data["status"] == "pending"
    assert abs(_at(data["sendAt"]) - send_at) < timedelta(milliseconds=1)
    assert await _queue_sizes(redis, settings) == {"transactional": 0, "bulk": 0}

    r = await client.post(f"/notifications/{data['id']}/cancel", headers=fast_auth)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled" and r.json()["id"] == data["id"]
    # Make it due (as if the hour had passed) and let the scheduler and a worker run: still not sent.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE messages SET send_at = now() - interval '1 second'"))
    async with running_worker(settings) as runtime:
        await asyncio.sleep(1.2)  # two scheduler rounds, several reconciler rounds
        assert runtime.deps is not None
        assert runtime.deps.metrics.totals["sent"] == 0
    view = (await client.get(f"/notifications/{data['id']}", headers=fast_auth)).json()
    assert view["status"] == "cancelled" and view["attempts"] == 0
    assert [e["event"] for e in view["events"]] == ["accepted", "cancelled"]
    assert_error(await client.post(f"/notifications/{data['id']}/cancel", headers=fast_auth), 409, "conflict")


async def test_cancel_queued_notification(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    data = await _post(client, fast_auth, VALID)
    r = await client.post(f"/notifications/{data['id']}/cancel", headers=fast_auth)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    async with running_worker(settings) as runtime:
        await asyncio.sleep(0.5)
        assert runtime.deps is not None and runtime.deps.metrics.totals["sent"] == 0


async def test_cancel_sent_notification_is_409(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    data = await _post(client, fast_auth, VALID)

    async def sent() -> bool:
        return bool((await client.get(f"/notifications/{data['id']}", headers=fast_auth)).json()["status"] == "sent")

    async with running_worker(settings):
        await wait_for(sent, within=10)
    error = assert_error(await client.post(f"/notifications/{data['id']}/cancel", headers=fast_auth), 409, "conflict")
    assert error["details"] == {"status": "sent"}
    assert (await client.get(f"/notifications/{data['id']}", headers=fast_auth)).json()["status"] == "sent"


async def test_cancel_campaign_message_is_409(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    campaign = await create_campaign(client, fast_auth, name="c", recipients=["a@example.com"])
    [row] = await _messages(engine)
    error = assert_error(await client.post(f"/notifications/{row['id']}/cancel", headers=fast_auth), 409, "conflict")
    assert error["details"] == {"campaignId": campaign["id"]}
    [after] = await _messages(engine)
    assert after["status"] == "queued"


async def test_cancel_unknown_or_malformed_id(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    assert_error(await client.post("/notifications/424242/cancel", headers=fast_auth), 404, "not_found")
    assert_error(await client.post("/notifications/x1/cancel", headers=fast_auth), 422, "validation_error")
