"""Subscribers over HTTP with real PostgreSQL and Redis: profiles, preferences, tokens, sends by subscriber."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.support import assert_error

PROFILE = {"email": "ada@example.com", "phone": "+15550000001", "pushTokens": ["mock-device-1"], "locale": "en-GB",
           "timezone": "Europe/London", "data": {"firstName": "Ada", "tier": 2}}  # fmt: skip


async def test_put_creates_then_replaces_and_keeps_preferences(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.put("/subscribers/u-42", json=PROFILE, headers=auth)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/subscribers/u-42"
    body = r.json()
    assert body["id"] == "u-42" and body["email"] == "ada@example.com" and body["pushTokens"] == ["mock-device-1"]
    assert body["data"] == {"firstName": "Ada", "tier": 2}
    prefs = {"channels": {"sms": False}, "categories": {"marketing": {"email": False}}}
    r = await client.put("/subscribers/u-42/preferences", json=prefs, headers=auth)
    assert r.status_code == 200, r.text
    r = await client.put("/subscribers/u-42", json={"email": "ada@example.org"}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["phone"] is None and r.json()["pushTokens"] == []  # a PUT replaces the profile
    r = await client.get("/subscribers/u-42/preferences", headers=auth)
    assert r.json() == {"channels": {"sms": False}, "categories": {"marketing": {"email": False}}}


async def test_racing_puts_of_a_new_id_give_one_201(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    answers = await asyncio.gather(*(client.put("/subscribers/race", json=PROFILE, headers=auth) for _ in range(10)))
    assert sorted(r.status_code for r in answers) == [200] * 9 + [201]


async def test_list_pages_in_id_order(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for i in range(5):
        assert (await client.put(f"/subscribers/s{i}", json={}, headers=auth)).status_code == 201
    r = await client.get("/subscribers?limit=2", headers=auth)
    page = r.json()
    assert [s["id"] for s in page["items"]] == ["s0", "s1"] and page["nextCursor"] == "s1"
    r = await client.get(f"/subscribers?limit=10&cursor={page['nextCursor']}", headers=auth)
    assert [s["id"] for s in r.json()["items"]] == ["s2", "s3", "s4"] and r.json()["nextCursor"] is None


async def test_bad_profiles_are_422_and_write_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    bad = [
        ("/subscribers/u-1", {"email": "not-an-address"}),
        ("/subscribers/u-1", {"phone": "12345"}),
        ("/subscribers/u-1", {"pushTokens": ["bad token"]}),
        ("/subscribers/u-1", {"pushTokens": [f"t{i}" for i in range(11)]}),
        ("/subscribers/u-1", {"timezone": "Mars/Olympus"}),
        ("/subscribers/u-1", {"timezone": "../../etc/passwd"}),
        ("/subscribers/u-1", {"locale": "english please"}),
        ("/subscribers/u-1", {"data": {"k": "a\u0000b"}}),
        ("/subscribers/u-1", {"data": {"k": "x" * 20_000}}),
        ("/subscribers/u-1", {"data": [1, 2]}),
        ("/subscribers/u%20space", {}),
        ("/subscribers/" + "x" * 129, {}),
    ]
    for path, body in bad:
        assert_error(await client.put(path, json=body, headers=auth), 422, "validation_error")
    for prefs in ({"channels": {"fax": True}}, {"channels": {"email": "yes"}}, {"categories": {"bad key!": {}}},
                  {"categories": {"m": {"email": 1}}}):  # fmt: skip
        assert (await client.put("/subscribers/u-1", json={}, headers=auth)).status_code in (200, 201)
        assert_error(await client.put("/subscribers/u-1/preferences", json=prefs, headers=auth), 422)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT preferences FROM subscribers WHERE id = 'u-1'"))).scalar_one()
    assert stored == {}


async def test_unknown_subscriber_is_404_or_422(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert_error(await client.get("/subscribers/nobody", headers=auth), 404, "not_found")
    assert_error(await client.delete("/subscribers/nobody", headers=auth), 404, "not_found")
    assert_error(await client.post("/subscribers/nobody/token", headers=auth), 404, "not_found")
    assert_error(await client.put("/subscribers/nobody/preferences", json={}, headers=auth), 404, "not_found")
    # Sends are accepted: the profile is read when the message is taken (tests/subscribers/test_inapp.py).
    r = await client.post("/notifications", json={"subscriber": "nobody", "body": "hi"}, headers=auth)
    assert r.status_code == 202 and r.json()["to"] == ""
    r = await client.post("/campaigns", json={"name": "c", "channel": "inapp", "subscribers": ["a", "nobody"]},
                          headers=auth)  # fmt: skip
    assert r.status_code == 202 and r.json()["totalMessages"] == 2


async def test_send_by_subscriber_takes_the_profile_address(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.put("/subscribers/u-42", json=PROFILE, headers=auth)
    for channel, address in (("email", "ada@example.com"), ("sms", "+15550000001"), ("push", "mock-device-1"),
                             ("inapp", "u-42")):  # fmt: skip
        r = await client.post("/notifications", json={"subscriber": "u-42", "channel": channel, "body": "hi",
                                                      "category": "news", "dedupKey": "k1"}, headers=auth)  # fmt: skip
        assert r.status_code == 202, r.text
        assert r.json()["to"] == address and r.json()["subscriber"] == "u-42" and r.json()["category"] == "news"


async def test_either_to_or_subscriber(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.put("/subscribers/u-42", json=PROFILE, headers=auth)
    for body in ({"body": "x"}, {"to": "a@example.com", "subscriber": "u-42", "body": "x"},
                 {"to": None, "body": "x"}, {"subscriber": None, "body": "x"},
                 {"channel": "inapp", "to": "a@example.com", "body": "x"},
                 {"to": "a@example.com", "dedupKey": "k", "body": "x"},
                 {"subscriber": "u-42", "category": "no spaces", "body": "x"}):  # fmt: skip
        assert_error(await client.post("/notifications", json=body, headers=auth), 422, "validation_error")
    for body in ({"name": "c", "channel": "inapp", "recipientCount": 3},
                 {"name": "c", "channel": "inapp", "recipients": ["a@example.com"]},
                 {"name": "c", "subscribers": ["u-42"], "recipientCount": 3},
                 {"name": "c", "subscribers": []}):  # fmt: skip
        assert_error(await client.post("/campaigns", json=body, headers=auth), 422, "validation_error")


async def test_subscriber_tokens_and_admin_tokens_do_not_mix(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.put("/subscribers/u-42", json=PROFILE, headers=auth)
    r = await client.post("/subscribers/u-42/token", headers=auth)
    assert r.status_code == 201, r.text
    subscriber = {"Authorization": f"Bearer {r.json()['token']}"}
    assert_error(await client.get("/subscribers/u-42", headers=subscriber), 401, "unauthorized")
    assert_error(await client.get("/campaigns", headers=subscriber), 401, "unauthorized")
    assert_error(await client.get("/inbox", headers=auth), 401, "unauthorized")
    r = await client.get("/inbox", headers=subscriber)
    assert r.status_code == 200 and r.json() == {"items": [], "unreadCount": 0, "nextCursor": None}
