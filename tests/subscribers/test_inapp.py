"""The in-app channel end to end: two `notifq api` processes, a real worker, real PostgreSQL and Redis, and
WebSocket clients from the `websockets` library."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import websockets
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.auth import issue_token
from notifq.keys import RedisKeys
from notifq.providers.base import OutgoingMessage
from notifq.providers.inapp import InAppProvider
from notifq.settings import Settings
from tests.conftest import JWT_SECRET, wait_for
from tests.harness import running_worker
from tests.subscribers.inapp_support import ApiProcesses, inbox, subscriber_token


@pytest.fixture
async def api(two_apis: ApiProcesses) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=two_apis.urls[0], timeout=10) as c:
        yield c


async def _send(api: httpx.AsyncClient, auth: dict[str, str], sid: str, body: str, **extra: object) -> str:
    r = await api.post("/notifications", json={"channel": "inapp", "subscriber": sid, "body": body, **extra},
                       headers=auth)  # fmt: skip
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _get(api: httpx.AsyncClient, auth: dict[str, str], mid: str) -> dict[str, object]:
    r = await api.get(f"/notifications/{mid}", headers=auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _closed_with(url: str, *frames: str, within: float = 10) -> int:
    async with websockets.connect(url) as conn:
        for frame in frames:
            await conn.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(within):
                while True:
                    await conn.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_auth_timeout_and_bad_tokens_close_4401(
    two_apis: ApiProcesses, api: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    url = two_apis.ws(0)
    token = await subscriber_token(api, auth, "u-1")
    admin = auth["Authorization"].removeprefix("Bearer ")
    forged = issue_token(JWT_SECRET, settings.jwt_issuer, "u-1", 60).token  # an admin-shaped token
    started = asyncio.get_running_loop().time()
    assert await _closed_with(url) == 4401  # nothing within 5 s
    assert asyncio.get_running_loop().time() - started >= 4.5
    for frame in ("not json", "[]", '{"type":"ACK","id":"1"}', '{"type":"AUTH"}', '{"type":"AUTH","token":7}',
                  json.dumps({"type": "AUTH", "token": admin}), json.dumps({"type": "AUTH", "token": forged}),
                  json.dumps({"type": "AUTH", "token": token[:-2] + "xx"}),
                  json.dumps({"type": "AUTH", "token": "\ud800"[:0] + "a.b.c"})):  # fmt: skip
        assert await _closed_with(url, frame) == 4401, frame
    assert (await api.delete("/subscribers/u-1", headers=auth)).status_code == 204
    assert await _closed_with(url, json.dumps({"type": "AUTH", "token": token})) == 4401  # erased since


async def test_live_delivery_across_processes_with_ack_and_read(
    two_apis: ApiProcesses, api: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    token = await subscriber_token(api, auth, "u-42")
    async with running_worker(settings), inbox(two_apis.ws(1), token) as a, inbox(two_apis.ws(0), token) as b:
        mid = await _send(api, auth, "u-42", "Ada replied", subject="New comment", category="comments",
                          data={"post": "981"})  # fmt: skip
        (frame,) = await a.wait_for(1)
        assert frame == {"type": "NOTIFICATION", "id": mid, "category": "comments", "subject": "New comment",
                         "body": "Ada replied", "data": {"post": "981"}, "createdAt": frame["createdAt"]}  # fmt: skip
        assert (await b.wait_for(1))[0]["id"] == mid  # every open connection of the subscriber
        await a.send(type="ACK", id=mid)
        await a.send(type="ACK", id=mid)  # idempotent
        got = await wait_for(lambda: _delivered(api, auth, mid), within=10)
        assert got["status"] == "sent" and got["readAt"] is None
        await b.send(type="READ", id=int(mid))
        got = await wait_for(lambda: _read(api, auth, mid), within=10)
        events = [e["event"] for e in got["events"]]  # type: ignore[union-attr]
        assert events.count("delivered") == 1 and events.count("read") == 1
        await a.send(type="ACK", id="not-a-number")
        await a.send(type="NOPE")
        await asyncio.sleep(0.3)
        errors = [f for f in a.frames if f["type"] == "ERROR"]
        assert len(errors) == 2


async def _delivered(api: httpx.AsyncClient, auth: dict[str, str], mid: str) -> dict[str, object] | None:
    """ACKed and recorded sent: the frame leaves before the worker records `sent`, so an ACK may land first."""
    got = await _get(api, auth, mid)
    return got if got["deliveredAt"] and got["status"] == "sent" else None


async def _read(api: httpx.AsyncClient, auth: dict[str, str], mid: str) -> dict[str, object] | None:
    got = await _get(api, auth, mid)
    return got if got["readAt"] else None


async def test_offline_replay_in_order_from_buffer_and_postgres_then_live(
    two_apis: ApiProcesses, api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, redis: Redis,
    engine: AsyncEngine,
) -> None:  # fmt: skip
    token = await subscriber_token(api, auth, "u-7")
    async with running_worker(settings):
        ids = [await _send(api, auth, "u-7", f"n{i}") for i in range(6)]
        await wait_for(lambda: _all_sent(engine, len(ids)), within=20)
        buffer = f"{settings.redis_prefix}:inbox:buf:u-7"
        assert sorted(int(k) for k in await redis.hkeys(buffer)) == [int(i) for i in ids]
        await redis.hdel(buffer, ids[0], ids[3])  # as if they had aged out of the buffer: PostgreSQL has them
        async with inbox(two_apis.ws(0), token) as box:
            assert [f["id"] for f in box.notifications] == ids  # oldest first, nothing missing
            assert box.frames[len(ids)] == {"type": "READY", "replayed": 6}
            for mid in ids[:4]:
                await box.send(type="ACK", id=mid)
            live = await _send(api, auth, "u-7", "live one")
            await box.wait_for(7)
            assert box.notifications[-1]["id"] == live
            await box.send(type="ACK", id=live)
            await wait_for(lambda: _acked(engine, 5), within=10)
        async with inbox(two_apis.ws(1), token) as box:  # only the un-ACKed ones come back
            assert [f["id"] for f in box.notifications] == ids[4:]


async def test_replay_after_redis_flush_comes_from_postgres(
    two_apis: ApiProcesses, api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, redis: Redis,
    engine: AsyncEngine,
) -> None:  # fmt: skip
    token = await subscriber_token(api, auth, "u-8")
    async with running_worker(settings):
        ids = [await _send(api, auth, "u-8", f"n{i}") for i in range(3)]
        await wait_for(lambda: _all_sent(engine, 3), within=20)
    await redis.flushdb()
    async with inbox(two_apis.ws(1), token) as box:
        assert [f["id"] for f in box.notifications] == ids
        assert box.notifications[0]["body"] == "n0"


async def test_socket_survives_losing_its_redis_connection(
    two_apis: ApiProcesses, api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, redis: Redis,
    engine: AsyncEngine,
) -> None:  # fmt: skip
    token = await subscriber_token(api, auth, "u-9")
    async with running_worker(settings), inbox(two_apis.ws(0), token) as box:
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # every process's fan-out connection
        await redis.flushdb()  # and the buffer with it
        ids = [await _send(api, auth, "u-9", f"after {i}") for i in range(3)]
        received = await box.wait_for(3, within=20)  # live after the reconnect, or replayed by the resync
        assert sorted(f["id"] for f in received) == sorted(ids)
        assert not box.conn.close_code


async def test_dedup_and_throttling_and_preferences_decided_at_claim(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    await subscriber_token(api, auth, "u-1", email="u1@example.com", phone="+15550000001")
    await subscriber_token(api, auth, "u-2")  # no address at all
    await api.put("/subscribers/u-1/preferences", json={"channels": {"sms": False},
                  "categories": {"marketing": {"email": False}}}, headers=auth)  # fmt: skip
    sends = [
        ("dup-1", {"channel": "email", "subscriber": "u-1", "dedupKey": "order-1"}),
        ("dup-2", {"channel": "email", "subscriber": "u-1", "dedupKey": "order-1"}),
        ("sms", {"channel": "sms", "subscriber": "u-1"}),
        ("sms-otp", {"channel": "sms", "subscriber": "u-1", "priority": "transactional"}),
        ("mkt-bulk", {"channel": "email", "subscriber": "u-1", "category": "marketing", "priority": "bulk"}),
        ("mkt-otp", {"channel": "email", "subscriber": "u-1", "category": "marketing", "priority": "transactional"}),
        ("no-email", {"channel": "email", "subscriber": "u-2"}),
        ("b1", {"channel": "email", "subscriber": "u-1", "priority": "bulk"}),
        ("b2", {"channel": "email", "subscriber": "u-1", "priority": "bulk"}),
        ("t1", {"channel": "email", "subscriber": "u-1", "priority": "transactional"}),
    ]
    ids = {}
    for name, body in sends:  # one at a time: their order decides which duplicate and which bulk send loses
        r = await api.post("/notifications", json={"body": name, **body}, headers=auth)
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]
        async with running_worker(settings.with_(subscriber_rate_limit=(1, 60))):
            await wait_for(lambda mid=ids[name]: _finished(api, auth, mid), within=20)
    got = {name: await _get(api, auth, mid) for name, mid in ids.items()}
    outcome = {name: (g["status"], g["skipReason"]) for name, g in got.items()}
    assert outcome == {
        "dup-1": ("sent", None), "dup-2": ("skipped", "duplicate"),
        "sms": ("skipped", "opted_out"), "sms-otp": ("skipped", "opted_out"),  # a channel off applies to all
        "mkt-bulk": ("skipped", "opted_out"), "mkt-otp": ("sent", None),  # a category off: not transactional
        "no-email": ("skipped", "no_address"),
        "b1": ("sent", None), "b2": ("skipped", "throttled"),  # 1/min of bulk email (mkt-bulk, skipped, not counted)
        "t1": ("sent", None),  # transactional: never throttled
    }  # fmt: skip
    trail = got["dup-2"]["events"]
    assert [(e["event"], e["detail"]) for e in trail][-1] == ("skipped", "duplicate")  # type: ignore[index]
    assert got["dup-2"]["attempts"] == 0


async def _finished(api: httpx.AsyncClient, auth: dict[str, str], mid: str) -> bool:
    return (await _get(api, auth, mid))["status"] in ("sent", "failed", "skipped")


async def _all_sent(engine: AsyncEngine, n: int) -> bool:
    async with engine.connect() as conn:
        sent = (await conn.execute(text("SELECT count(*) FROM messages WHERE status = 'sent'"))).scalar_one()
    return bool(sent >= n)


async def _acked(engine: AsyncEngine, n: int) -> bool:
    async with engine.connect() as conn:
        acked = (await conn.execute(text("SELECT count(*) FROM messages WHERE delivered_at IS NOT NULL"))).scalar_one()
    return bool(acked >= n)


async def test_subscriber_campaign_counts_skips_and_fills_templates_from_profiles(
    two_apis: ApiProcesses, api: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    token = await subscriber_token(api, auth, "ada", data={"firstName": "Ada"})
    await subscriber_token(api, auth, "bob", data={"firstName": "Bob"})
    await subscriber_token(api, auth, "cy")
    # "ghost" has no profile: accepted, skipped when taken.
    await api.put("/subscribers/bob/preferences", json={"categories": {"product": {"inapp": False}}}, headers=auth)
    body = {"name": "release", "channel": "inapp", "subject": "Hi {{ firstName }}", "body": "New for {{ firstName }}",
            "subscribers": ["ada", "bob", "cy", "ghost"], "category": "product"}  # fmt: skip
    async with running_worker(settings), inbox(two_apis.ws(0), token) as box:
        r = await api.post("/campaigns", json=body, headers=auth)
        assert r.status_code == 202, r.text
        cid = r.json()["id"]
        (frame,) = await box.wait_for(1)
        assert frame["subject"] == "Hi Ada" and frame["body"] == "New for Ada" and frame["category"] == "product"
        campaign = await wait_for(lambda: _done(api, auth, cid), within=20)
    assert campaign["status"] == "completed" and campaign["audience"] == "subscribers"
    assert campaign["progress"]["sent"] == 2 and campaign["skippedCount"] == 2 == campaign["progress"]["skipped"]
    r = await api.get(f"/campaigns/{cid}/messages", headers=auth)
    rows = {m["subscriber"]: m for m in r.json()["items"]}
    assert rows["bob"]["status"] == "skipped" and rows["bob"]["skipReason"] == "opted_out"
    assert rows["ghost"]["status"] == "skipped" and rows["ghost"]["skipReason"] == "no_address"


async def _done(api: httpx.AsyncClient, auth: dict[str, str], cid: str) -> dict[str, object] | None:
    c = (await api.get(f"/campaigns/{cid}", headers=auth)).json()
    return dict(c) if c["status"] in ("completed", "completed_with_failures") else None


async def test_preferences_changed_after_acceptance_are_honoured(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    await subscriber_token(api, auth, "u-5", email="u5@example.com")
    later = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    mid = await _send(api, auth, "u-5", "soon", channel="email", sendAt=later, priority="bulk")
    await api.put("/subscribers/u-5/preferences", json={"channels": {"email": False}}, headers=auth)
    async with running_worker(settings):
        await wait_for(lambda: _finished(api, auth, mid), within=20)
    got = await _get(api, auth, mid)
    assert (got["status"], got["skipReason"]) == ("skipped", "opted_out")


async def test_erasure_redacts_and_closes_sockets(
    two_apis: ApiProcesses, api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    token = await subscriber_token(api, auth, "gone", email="gone@example.com")
    async with running_worker(settings):
        sent = await _send(api, auth, "gone", "secret body", channel="email", subject="private")
        await wait_for(lambda: _finished(api, auth, sent), within=20)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    waiting = await _send(api, auth, "gone", "later", sendAt=later)
    stats_before = (await api.get("/stats", headers=auth)).json()["byStatus"]
    async with inbox(two_apis.ws(1), token) as box:
        assert (await api.delete("/subscribers/gone", headers=auth)).status_code == 204
        async with asyncio.timeout(10):
            await box._reader
        assert box.conn.close_code == 4403
    a, b = await _get(api, auth, sent), await _get(api, auth, waiting)
    assert a["status"] == "sent" and a["to"] == "[erased]" and a["subject"] is None and a["subscriber"] is None
    assert (b["status"], b["skipReason"]) == ("skipped", "erased")
    stats = (await api.get("/stats", headers=auth)).json()["byStatus"]
    assert stats.get("pending", 0) == stats_before.get("pending", 0) - 1 and stats["skipped"] == 1
    async with engine.connect() as conn:
        leftovers = (await conn.execute(text(
            "SELECT count(*) FROM messages WHERE recipient LIKE '%gone%' OR body LIKE '%secret%' "
            "OR subscriber_id = 'gone'"))).scalar_one()  # fmt: skip
    assert leftovers == 0
    assert (await api.get("/inbox", headers={"Authorization": f"Bearer {token}"})).status_code == 401


async def test_inbox_over_http(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    token = await subscriber_token(api, auth, "reader")
    me = {"Authorization": f"Bearer {token}"}
    async with running_worker(settings):
        ids = [await _send(api, auth, "reader", f"n{i}") for i in range(5)]
        await wait_for(lambda: _all_sent(engine, 5), within=20)
    r = await api.get("/inbox?limit=2", headers=me)
    page = r.json()
    assert [i["id"] for i in page["items"]] == ids[::-1][:2] and page["unreadCount"] == 5
    r = await api.get(f"/inbox?limit=10&cursor={page['nextCursor']}", headers=me)
    assert [i["id"] for i in r.json()["items"]] == ids[::-1][2:]
    r = await api.post(f"/inbox/{ids[0]}/read", headers=me)
    assert r.status_code == 200 and r.json()["readAt"] and r.json()["deliveredAt"]
    first = r.json()["readAt"]
    assert (await api.post(f"/inbox/{ids[0]}/read", headers=me)).json()["readAt"] == first  # idempotent
    assert [i["id"] for i in (await api.get("/inbox?unread=false", headers=me)).json()["items"]] == [ids[0]]
    assert (await api.post("/inbox/read-all", headers=me)).json() == {"updated": 4}
    assert (await api.get("/inbox?unread=true", headers=me)).json()["unreadCount"] == 0
    other = await subscriber_token(api, auth, "other")
    r = await api.post(f"/inbox/{ids[1]}/read", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404  # someone else's notification


async def test_an_in_flight_send_after_an_erasure_writes_nothing(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, redis: Redis
) -> None:
    """A message claimed before its subscriber was erased and sent after it: no frame back in the buffer, none
    published; once the id is created again, its frames flow at once."""
    keys = RedisKeys.from_settings(settings)
    await subscriber_token(api, auth, "late")
    assert (await api.delete("/subscribers/late", headers=auth)).status_code == 204
    provider = InAppProvider(settings.redis_url or "", keys, settings.inapp_buffer_ttl)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.inbox_live("late"))
    try:
        await provider.send(OutgoingMessage(1, 1, "late", "s", "the erased person's text", "inapp"))
        assert not await redis.exists(keys.inbox_buffer("late"))
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
        await subscriber_token(api, auth, "late")  # created again: the mark goes
        await provider.send(OutgoingMessage(2, 1, "late", "s", "a new text", "inapp"))
        assert await redis.hkeys(keys.inbox_buffer("late")) == [b"2"]
        published = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert published is not None and b"a new text" in published["data"]
    finally:
        await pubsub.aclose()
        await provider.aclose()
