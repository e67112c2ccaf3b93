"""GET /dead-letters, POST /dead-letters/redrive and GET /stats with real PostgreSQL, Redis and arq workers."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.errors import PermanentError
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.settings import Settings
from tests.api.support import assert_error, create_campaign
from tests.conftest import wait_for
from tests.harness import assert_counters_match, campaign_row, running_worker, running_worker_with, status_counts


class BouncingProvider:
    """Rejects recipients in `bounce` permanently (mutable: clear it to "fix" them); records every call."""

    name = "bouncing"

    def __init__(self, bounce: set[str]) -> None:
        self.bounce = bounce
        self.calls: dict[int, list[int]] = defaultdict(list)

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.calls[message.message_id].append(message.attempt)
        if message.recipient in self.bounce:
            raise PermanentError(f"550 mailbox {message.recipient} unavailable")
        return SendResult(provider=self.name, provider_message_id=f"b-{message.message_id}-{message.attempt}")

    async def aclose(self) -> None:
        return None


async def _post(client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]) -> str:
    r = await client.post("/notifications", json=body, headers=auth)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _open(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')")
        return int((await conn.execute(query)).scalar_one())


async def _settled(engine: AsyncEngine) -> bool:
    return await _open(engine) == 0


async def _rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, recipient, status, attempts, last_error FROM messages"))
        return {r.recipient: dict(r._mapping) for r in rows}


async def _dead(client: httpx.AsyncClient, auth: dict[str, str], query: str = "") -> dict[str, Any]:
    r = await client.get(f"/dead-letters?{query}", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _campaign(client: httpx.AsyncClient, auth: dict[str, str], campaign_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/campaigns/{campaign_id}", headers=auth)).json()
    return body


# --- dead letters and redrive ---------------------------------------------------------------------


async def test_dead_letters_list_filter_and_redrive(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    bounced = {"b1@example.com", "b2@example.com", "b3@example.com", "+15550009999"}
    provider = BouncingProvider(set(bounced))
    campaign = await create_campaign(client, fast_auth, name="news", recipients=[
        "ok1@example.com", "b1@example.com", "b2@example.com", "ok2@example.com", "b3@example.com"])  # fmt: skip
    sms_id = await _post(client, fast_auth, {"channel": "sms", "to": "+15550009999", "body": "otp"})
    await _post(client, fast_auth, {"channel": "email", "to": "ok3@example.com", "body": "hello"})
    async with running_worker_with(settings, provider):
        await wait_for(lambda: _settled(engine), within=15)
    assert (await _campaign(client, fast_auth, campaign["id"]))["status"] == "completed_with_failures"
    rows = await _rows(engine)
    ids = {to: str(r["id"]) for to, r in rows.items()}

    # Listing: newest first, every permanently failed message with its error, nothing else.
    everything = await _dead(client, fast_auth)
    assert [i["id"] for i in everything["items"]] == [ids["+15550009999"], ids["b3@example.com"],
                                                      ids["b2@example.com"], ids["b1@example.com"]]  # fmt: skip
    assert everything["nextCursor"] is None
    for item in everything["items"]:
        assert item["status"] == "failed" and item["attempts"] == 1
        assert item["lastError"] == f"550 mailbox {item['to']} unavailable"
        assert item["provider"] == "bouncing"
    assert {i["campaignId"] for i in everything["items"]} == {campaign["id"], None}

    assert [i["id"] for i in (await _dead(client, fast_auth, "channel=sms"))["items"]] == [sms_id]
    assert [i["to"] for i in (await _dead(client, fast_auth, "channel=push"))["items"]] == []
    in_campaign = await _dead(client, fast_auth, f"campaignId={campaign['id']}")
    assert [i["to"] for i in in_campaign["items"]] == ["b3@example.com", "b2@example.com", "b1@example.com"]
    both = await _dead(client, fast_auth, f"campaignId={campaign['id']}&channel=sms")
    assert both["items"] == []

    first = await _dead(client, fast_auth, "limit=3")
    assert len(first["items"]) == 3 and first["nextCursor"]
    rest = await _dead(client, fast_auth, f"limit=3&cursor={first['nextCursor']}")
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in everything["items"]]
    assert rest["nextCursor"] is None

    # Redrive by ids: only those two; a sent message among the ids is left alone.
    r = await client.post(
        "/dead-letters/redrive",
        headers=fast_auth,
        json={"ids": [ids["b1@example.com"], int(ids["b2@example.com"]), ids["ok1@example.com"]]},
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"redriven": 2}
    after = await _campaign(client, fast_auth, campaign["id"])
    assert after["status"] == "processing" and after["completedAt"] is None
    assert after["progress"]["queued"] == 2 and after["failedCount"] == 1
    assert [i["to"] for i in (await _dead(client, fast_auth))["items"]] == ["+15550009999", "b3@example.com"]
    view = (await client.get(f"/notifications/{ids['b1@example.com']}", headers=fast_auth)).json()
    assert view["status"] == "queued" and view["attempts"] == 0
    assert [e["event"] for e in view["events"]] == ["accepted", "attempt", "failed", "redriven"]

    provider.bounce.clear()
    async with running_worker_with(settings, provider):
        await wait_for(lambda: _settled(engine), within=15)
    rows = await _rows(engine)
    for to in ("b1@example.com", "b2@example.com"):
        assert rows[to]["status"] == "sent" and rows[to]["attempts"] == 1, rows[to]  # fresh attempts
        assert provider.calls[int(ids[to])] == [1, 1]
    assert provider.calls[int(ids["ok1@example.com"])] == [1]  # never re-sent
    assert (await _campaign(client, fast_auth, campaign["id"]))["status"] == "completed_with_failures"

    # Redrive by filter: the campaign's last dead letter, then the sms one.
    r = await client.post("/dead-letters/redrive", json={"filter": {"campaignId": campaign["id"]}}, headers=fast_auth)
    assert r.status_code == 202 and r.json() == {"redriven": 1}
    assert (await _campaign(client, fast_auth, campaign["id"]))["status"] == "processing"
    r = await client.post("/dead-letters/redrive", json={"filter": {"channel": "sms"}}, headers=fast_auth)
    assert r.status_code == 202 and r.json() == {"redriven": 1}
    async with running_worker_with(settings, provider):
        await wait_for(lambda: _settled(engine), within=15)
    final = await _campaign(client, fast_auth, campaign["id"])
    assert final["status"] == "completed" and final["sentCount"] == 5 and final["failedCount"] == 0
    assert final["completedAt"] is not None
    sms = (await client.get(f"/notifications/{sms_id}", headers=fast_auth)).json()
    assert sms["status"] == "sent" and sms["attempts"] == 1 and sms["providerMessageId"] == f"b-{sms_id}-1"
    assert (await _dead(client, fast_auth))["items"] == []
    r = await client.post("/dead-letters/redrive", json={"filter": {}}, headers=fast_auth)
    assert r.status_code == 202 and r.json() == {"redriven": 0}
    assert_counters_match(await campaign_row(engine, campaign["id"]), await status_counts(engine, campaign["id"]))


BAD_REDRIVE: list[tuple[str, Any]] = [
    ("both ids and filter", {"ids": [1], "filter": {"channel": "email"}}),
    ("neither", {}),
    ("other key only", {"campaignId": "x"}),
    ("ids not a list", {"ids": "1"}),
    ("ids a number", {"ids": 1}),
    ("ids empty", {"ids": []}),
    ("ids with a word", {"ids": ["one"]}),
    ("ids with zero", {"ids": [0]}),
    ("ids negative", {"ids": [-1]}),
    ("ids fractional", {"ids": [1.5]}),
    ("ids boolean", {"ids": [True]}),
    ("ids too many", {"ids": list(range(1, 10_002))}),
    ("filter not an object", {"filter": "sms"}),
    ("filter unknown key", {"filter": {"status": "failed"}}),
    ("filter bad channel", {"filter": {"channel": "fax"}}),
    ("filter bad campaign id", {"filter": {"campaignId": "not-a-uuid"}}),
    ("filter numeric campaign id", {"filter": {"campaignId": 5}}),
    ("body an array", [1, 2]),
    ("body a string", "all"),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_REDRIVE], ids=[n for n, _ in BAD_REDRIVE])
async def test_bad_redrive_body_is_422_and_changes_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings,
    body: Any,
) -> None:  # fmt: skip
    # One dead letter that a wrongly accepted body could redrive.
    await _post(client, fast_auth, {"channel": "email", "to": "x@example.com", "body": "b"})
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE messages SET status = 'failed', last_error = 'x'"))
    await redis.flushdb()
    assert_error(await client.post("/dead-letters/redrive", json=body, headers=fast_auth), 422, "validation_error")
    assert [r["status"] for r in (await _rows(engine)).values()] == ["failed"]
    assert await redis.dbsize() == 0


@pytest.mark.parametrize("query", ["channel=fax", "campaignId=nope", "limit=0", "limit=501", "cursor=zz"])
async def test_bad_dead_letter_query_is_422(client: httpx.AsyncClient, fast_auth: dict[str, str], query: str) -> None:
    assert_error(await client.get(f"/dead-letters?{query}", headers=fast_auth), 422, "validation_error")


async def test_redrive_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/dead-letters/redrive", json={"filter": {}}), 401, "unauthorized")


# --- stats ----------------------------------------------------------------------------------------


async def _sql_counts(engine: AsyncEngine) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    by_status: dict[str, int] = defaultdict(int)
    by_channel: dict[str, dict[str, int]] = defaultdict(dict)
    async with engine.connect() as conn:
        for channel, status, n in await conn.execute(
            text("SELECT channel, status, count(*) FROM messages GROUP BY 1, 2")
        ):
            by_status[status] += n
            by_channel[channel][status] = n
    return dict(by_status), dict(by_channel)


async def test_stats_match_the_messages_table(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """Every status and channel, reached through every kind of transition, is counted exactly."""
    empty = (await client.get("/stats", headers=fast_auth)).json()
    assert empty["byStatus"] == {} and empty["byChannel"] == {} and empty["sentLastMinute"] == 0
    assert empty["queueDepth"] == {"transactional": 0, "bulk": 0}

    provider = BouncingProvider({"bad@example.com", "+15550000013"})
    await create_campaign(client, fast_auth, name="e", recipients=["a@example.com", "bad@example.com", "c@example.com"])
    await create_campaign(client, fast_auth, name="s", channel="sms", recipientCount=4)
    for i in range(3):
        await _post(client, fast_auth, {"channel": "sms", "to": f"+1555000001{i + 1}", "body": "b"})
    await _post(client, fast_auth, {"channel": "push", "to": "mock-1", "body": "b", "priority": "bulk"})
    cancelled = await _post(client, fast_auth, {"channel": "push", "to": "mock-2", "body": "b"})
    assert (await client.post(f"/notifications/{cancelled}/cancel", headers=fast_auth)).status_code == 202
    async with running_worker_with(settings, provider):
        await wait_for(lambda: _settled(engine), within=15)
    sent = sum(1 for r in (await _rows(engine)).values() if r["status"] == "sent")
    assert sent == 9
    # Not yet due / not yet delivered ones: pending and queued.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await _post(client, fast_auth, {"channel": "email", "to": "later@example.com", "body": "b", "sendAt": later})
    await _post(client, fast_auth, {"channel": "email", "to": "now@example.com", "body": "b"})
    await create_campaign(client, fast_auth, name="big", recipientCount=600)  # two bulk batches

    stats = (await client.get("/stats", headers=fast_auth)).json()
    by_status, by_channel = await _sql_counts(engine)
    assert stats["byStatus"] == by_status
    assert stats["byChannel"] == by_channel
    assert by_status == {"sent": 9, "failed": 2, "cancelled": 1, "pending": 1, "queued": 601}
    # Jobs of the stopped worker may still sit in the queues; queueDepth is what Redis holds, new jobs included.
    assert stats["queueDepth"] == {"transactional": await redis.zcard(settings.queue_name + ":transactional")
                                   + await redis.llen(settings.queue_name + ":transactional:ready"),
                                   "bulk": await redis.zcard(settings.queue_name)}  # fmt: skip
    assert stats["queueDepth"]["transactional"] >= 1 and stats["queueDepth"]["bulk"] >= 2
    # The send rate: once the sends' wall-clock second is over (the current second is covered by the next test).
    await asyncio.sleep(1.05)
    stats = (await client.get("/stats", headers=fast_auth)).json()
    assert stats["sentLastMinute"] >= sent
    assert stats["sendRatePerSecond"] == round(stats["sentLastMinute"] / 60, 2)


async def test_sent_last_minute_counts_sends_at_once(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    """A send is in `sentLastMinute` as soon as it is recorded, not only once its wall-clock second is over.

    Aligned to the start of a second, so the send and the GET /stats fall in the same second.
    """
    async with running_worker(settings):
        for _ in range(3):
            await asyncio.sleep(1.02 - time.time() % 1)  # just after a second boundary
            second = int(time.time())
            nid = await _post(client, fast_auth, {"channel": "email", "to": "x@example.com", "body": "b"})

            async def sent(nid: str = nid) -> bool:
                view = (await client.get(f"/notifications/{nid}", headers=fast_auth)).json()
                return bool(view["status"] == "sent")

            await wait_for(sent, within=5, interval=0.01)
            stats = (await client.get("/stats", headers=fast_auth)).json()
            if int(time.time()) == second:
                break
        else:
            pytest.fail("could not fit a send and a GET /stats into one wall-clock second")
    # Every send of this test happened within the last minute, the one of this very second included.
    assert stats["sentLastMinute"] >= stats["byStatus"]["sent"], stats
