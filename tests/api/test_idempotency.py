"""`Idempotency-Key` on POST /notifications and POST /campaigns: replay, conflict, concurrency, scope."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.keys import RedisKeys
from notifq.queue import queue_depth
from notifq.settings import Settings
from tests.api.support import assert_error, bearer, row_counts, stateless_token

NOTIFICATION = {"channel": "email", "to": "otp@example.com", "subject": "Code", "body": "123456"}
BATCH = [
    {"channel": "email", "to": "a@example.com", "body": "1"},
    {"channel": "sms", "to": "+15550000002", "body": "2", "priority": "bulk"},
]
CAMPAIGN = {"name": "Launch", "recipients": ["a@example.com", "b@example.com", "c@example.com"], "subject": "Hi"}
ENDPOINTS = [("/notifications", NOTIFICATION), ("/notifications", BATCH), ("/campaigns", CAMPAIGN)]
ENDPOINT_IDS = ["notification", "batch", "campaign"]


@pytest.fixture(autouse=True)
async def clean_keys(clean: None, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE message_events, message_counts, idempotency_keys"))


async def _jobs(redis: Redis, settings: Settings) -> int:
    return sum((await queue_depth(redis, RedisKeys.from_settings(settings))).values())


def _ids(path: str, body: dict[str, Any]) -> list[str]:
    if path == "/campaigns":
        return [body["id"]]
    return list(body["ids"]) if "ids" in body else [body["id"]]


def _key(headers: dict[str, str], key: str | bytes) -> dict[str, Any]:
    return {**headers, "Idempotency-Key": key}


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
async def test_same_key_same_body_replays_and_creates_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    path: str, body: Any,
) -> None:  # fmt: skip
    """The replay is the first response (status, body, Location) marked `Idempotent-Replayed: true`."""
    headers = _key(fast_auth, "key-1")
    first = await client.post(path, json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    counts, jobs = await row_counts(engine), await _jobs(redis, settings)

    for _ in range(2):
        again = await client.post(path, json=body, headers=headers)
        assert again.status_code == 202, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert _ids(path, again.json()) == _ids(path, first.json())
        assert again.json() == first.json()
        assert again.headers.get("location") == first.headers.get("location")
    assert await row_counts(engine) == counts
    assert await _jobs(redis, settings) == jobs


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
async def test_replay_ids_match_after_key_reordering_of_the_body(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, path: str, body: Any
) -> None:
    """The same JSON with its object keys in another order is the same request."""
    headers = _key(fast_auth, "reordered")
    first = await client.post(path, json=body, headers=headers)
    assert first.status_code == 202
    counts = await row_counts(engine)
    if isinstance(body, dict):
        reordered: Any = dict(reversed(list(body.items())))
    else:
        reordered = [dict(reversed(list(item.items()))) for item in body]
    again = await client.post(path, json=reordered, headers=headers)
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert _ids(path, again.json()) == _ids(path, first.json())
    assert await row_counts(engine) == counts


@pytest.mark.parametrize(("path", "body", "other"), [
    ("/notifications", NOTIFICATION, {**NOTIFICATION, "body": "654321"}),
    ("/notifications", BATCH, BATCH[:1]),
    ("/campaigns", CAMPAIGN, {**CAMPAIGN, "recipients": ["a@example.com"]}),
], ids=ENDPOINT_IDS)  # fmt: skip
async def test_same_key_different_body_is_422_and_creates_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    path: str, body: Any, other: Any,
) -> None:  # fmt: skip
    headers = _key(fast_auth, "reused")
    assert (await client.post(path, json=body, headers=headers)).status_code == 202
    counts, jobs = await row_counts(engine), await _jobs(redis, settings)
    error = assert_error(await client.post(path, json=other, headers=headers), 422, "validation_error")
    assert error["details"]["header"] == "Idempotency-Key"
    assert await row_counts(engine) == counts
    assert await _jobs(redis, settings) == jobs
    # The original still replays.
    replay = await client.post(path, json=body, headers=headers)
    assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"


async def test_same_key_on_the_other_endpoint_is_422(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    headers = _key(fast_auth, "shared")
    assert (await client.post("/campaigns", json=CAMPAIGN, headers=headers)).status_code == 202
    counts = await row_counts(engine)
    assert_error(await client.post("/notifications", json=NOTIFICATION, headers=headers), 422, "validation_error")
    assert await row_counts(engine) == counts


async def test_without_key_each_post_creates(client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
                                             ) -> None:  # fmt: skip
    for _ in range(2):
        r = await client.post("/notifications", json=NOTIFICATION, headers=fast_auth)
        assert r.status_code == 202 and "idempotent-replayed" not in r.headers
    assert await row_counts(engine) == (0, 2)


async def test_different_keys_create_separately(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    a = await client.post("/notifications", json=NOTIFICATION, headers=_key(fast_auth, "a"))
    b = await client.post("/notifications", json=NOTIFICATION, headers=_key(fast_auth, "b"))
    assert a.json()["id"] != b.json()["id"]
    assert await row_counts(engine) == (0, 2)


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
async def test_key_is_per_admin(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, settings: Settings, path: str,
    body: Any,
) -> None:  # fmt: skip
    async with engine.begin() as conn:
        other_admin = (await conn.execute(text(
            "INSERT INTO admins (email, password_hash) VALUES ('other@notifq.dev', '!') RETURNING id"
        ))).scalar_one()  # fmt: skip
    other_auth = bearer(stateless_token(settings, other_admin))
    mine = await client.post(path, json=body, headers=_key(fast_auth, "k"))
    theirs = await client.post(path, json=body, headers=_key(other_auth, "k"))
    assert mine.status_code == theirs.status_code == 202
    assert "idempotent-replayed" not in theirs.headers
    assert set(_ids(path, mine.json())).isdisjoint(_ids(path, theirs.json()))
    # Each admin's own replay still finds its own resources.
    again = await client.post(path, json=body, headers=_key(other_auth, "k"))
    assert again.headers["idempotent-replayed"] == "true"
    assert _ids(path, again.json()) == _ids(path, theirs.json())


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
async def test_concurrent_duplicates_create_once(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    path: str, body: Any,
) -> None:  # fmt: skip
    """Identical requests at once: exactly one creates; the others get 409 (still running) or a replay."""
    headers = _key(fast_auth, f"race-{uuid.uuid4()}")
    responses = await asyncio.gather(*(client.post(path, json=body, headers=headers) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}, [r.text for r in responses]
    created = [r for r in responses if r.status_code == 202 and "idempotent-replayed" not in r.headers]
    assert len(created) == 1, [(r.status_code, dict(r.headers)) for r in responses]
    for r in responses:
        if r.status_code == 202:
            assert _ids(path, r.json()) == _ids(path, created[0].json())
        else:
            error = assert_error(r, 409, "conflict")
            assert error["details"] == {"header": "Idempotency-Key"}
    expected_messages = len(body) if isinstance(body, list) else len(body.get("recipients", [None]))
    assert await row_counts(engine) == (1 if path == "/campaigns" else 0, expected_messages)
    # Once the winner is done, everyone gets the replay.
    replay = await client.post(path, json=body, headers=headers)
    assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    "key",
    [
        "clé".encode(),  # non-ASCII (UTF-8 bytes on the wire)
        "k" * 256,  # one over the limit
        "",  # empty
        "tab\there",  # not printable
    ],
    ids=["non-ascii", "too-long", "empty", "control-char"],
)
@pytest.mark.parametrize(("path", "body"), [ENDPOINTS[0], ENDPOINTS[2]], ids=["notification", "campaign"])
async def test_malformed_key_is_422_and_creates_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    path: str, body: Any, key: str | bytes,
) -> None:  # fmt: skip
    error = assert_error(await client.post(path, json=body, headers=_key(fast_auth, key)), 422, "validation_error")
    assert error["details"] == {"header": "Idempotency-Key"}
    assert await row_counts(engine) == (0, 0)
    assert await _jobs(redis, settings) == 0


async def test_key_of_255_printable_ascii_is_accepted(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    key = ("AZaz09-_.~!/" * 30)[:255]
    first = await client.post("/notifications", json=NOTIFICATION, headers=_key(fast_auth, key))
    assert first.status_code == 202, first.text
    again = await client.post("/notifications", json=NOTIFICATION, headers=_key(fast_auth, key))
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert await row_counts(engine) == (0, 1)


async def test_invalid_body_does_not_burn_the_key(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """A 422 for the body claims nothing: the client can fix the body and retry with the same key."""
    headers = _key(fast_auth, "fix-and-retry")
    bad = {**NOTIFICATION, "to": "not an address"}
    assert_error(await client.post("/notifications", json=bad, headers=headers), 422, "validation_error")
    ok = await client.post("/notifications", json=NOTIFICATION, headers=headers)
    assert ok.status_code == 202 and "idempotent-replayed" not in ok.headers
    assert await row_counts(engine) == (0, 1)


async def test_failed_create_releases_the_key(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    """A create that fails after claiming the key (the token's admin is gone: 401) frees it again."""
    ghost = bearer(stateless_token(settings, uuid.uuid4()))
    headers = _key(ghost, "ghost")
    assert_error(await client.post("/campaigns", json=CAMPAIGN, headers=headers), 401, "unauthorized")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar_one() == 0
    assert await row_counts(engine) == (0, 0)
