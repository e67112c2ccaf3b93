"""The campaign endpoints against real PostgreSQL and Redis, without workers: rows, counters and queued jobs."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arq.constants import job_key_prefix
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db.campaigns_repo import MESSAGE_STATUSES
from notifq.keys import RedisKeys
from notifq.settings import Settings
from tests.api.support import assert_error, create_campaign
from tests.harness import assert_counters_match, campaign_row, status_counts

BATCH = 3
CAMPAIGN_KEYS = {
    "id", "name", "subject", "status", "channel", "sendAt", "totalMessages", "sentCount", "failedCount", "progress",
    "createdAt", "updatedAt", "completedAt", "skippedCount", "category", "audience", "deliverability",
}  # fmt: skip
RECIPIENTS = [f"person{i}@example.com" for i in range(7)]


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Small batches, so a handful of recipients already spans several arq jobs."""
    return base_settings.with_(job_batch_size=BATCH)


def _timestamp(value: str) -> datetime:
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None
    return parsed


async def _messages(engine: AsyncEngine, campaign_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, recipient, status, attempts, last_error, job_id FROM messages "
                "WHERE campaign_id = :c ORDER BY id"
            ),
            {"c": campaign_id},
        )
        return [dict(r._mapping) for r in rows]


async def _queued_job_names(redis: Redis, settings: Settings) -> set[str]:
    return {m.decode() for m in await redis.zrange(settings.queue_name, 0, -1)}


async def _assert_consistent(engine: AsyncEngine, campaign_id: str) -> dict[str, int]:
    counts = await status_counts(engine, campaign_id)
    assert_counters_match(await campaign_row(engine, campaign_id), counts)
    return counts


# --- create --------------------------------------------------------------------------------------


async def test_create_with_recipients_writes_rows_and_jobs(
    client: httpx.AsyncClient,
    fast_auth: dict[str, str],
    fast_admin: uuid.UUID,
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
) -> None:
    """A 202 means every message row is committed and every batch has an arq job in the queue."""
    before = datetime.now(UTC)
    r = await client.post(
        "/campaigns", json={"name": "Launch", "subject": "Hello", "recipients": RECIPIENTS}, headers=fast_auth
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == CAMPAIGN_KEYS
    assert r.headers["location"] == f"/campaigns/{body['id']}"
    assert uuid.UUID(body["id"]).version == 4
    assert (body["name"], body["subject"]) == ("Launch", "Hello")
    assert body["status"] == "processing"  # committed, and its batches are in the queue
    assert body["totalMessages"] == len(RECIPIENTS)
    assert (body["sentCount"], body["failedCount"]) == (0, 0)
    assert set(body["progress"]) == set(MESSAGE_STATUSES)
    assert body["progress"] == {s: (len(RECIPIENTS) if s == "queued" else 0) for s in MESSAGE_STATUSES}
    created, updated = _timestamp(body["createdAt"]), _timestamp(body["updatedAt"])
    assert before.replace(microsecond=0) <= created <= updated <= datetime.now(UTC)
    assert body["completedAt"] is None
    assert "body" not in body

    rows = await _messages(engine, body["id"])
    assert [m["recipient"] for m in rows] == RECIPIENTS
    assert {(m["status"], m["attempts"], m["last_error"]) for m in rows} == {("queued", 0, None)}
    job_ids = [m["job_id"] for m in rows]
    expected_jobs = math.ceil(len(RECIPIENTS) / settings.job_batch_size)
    assert len(set(job_ids)) == expected_jobs
    assert sorted(job_ids.count(j) for j in set(job_ids)) == sorted(
        min(settings.job_batch_size, len(RECIPIENTS) - i) for i in range(0, len(RECIPIENTS), settings.job_batch_size)
    )
    assert await redis.zcard(settings.queue_name) == expected_jobs
    assert await _queued_job_names(redis, settings) == {RedisKeys.from_settings(settings).job_id(j) for j in job_ids}
    for j in set(job_ids):
        assert await redis.exists(job_key_prefix + RedisKeys.from_settings(settings).job_id(j))

    row = await campaign_row(engine, body["id"])
    assert row["created_by"] == fast_admin
    assert row["status"] == "processing"
    assert row["enqueued_at"] is not None
    await _assert_consistent(engine, body["id"])


async def test_create_with_recipient_count_generates_synthetic_recipients(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Load-test mode writes user1..userN@example.com, split into batches like an explicit list."""
    n = 10
    created = await create_campaign(client, fast_auth, name="Load", recipientCount=n)
    assert created["totalMessages"] == n
    assert created["subject"] is None
    rows = await _messages(engine, created["id"])
    assert [m["recipient"] for m in rows] == [f"user{i}@example.com" for i in range(1, n + 1)]
    assert await redis.zcard(settings.queue_name) == math.ceil(n / settings.job_batch_size)
    await _assert_consistent(engine, created["id"])


async def test_get_campaign_matches_database(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """GET returns the stored campaign; after enqueueing it is `processing`."""
    created = await create_campaign(client, fast_auth, name="Get me", recipients=RECIPIENTS[:2])
    r = await client.get(f"/campaigns/{created['id']}", headers=fast_auth)
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == CAMPAIGN_KEYS
    row = await campaign_row(engine, created["id"])
    assert got["status"] == row["status"] == "processing"
    assert got["totalMessages"] == row["total_messages"] == 2
    assert got["progress"] == {s: row[f"{s}_count"] for s in MESSAGE_STATUSES}
    assert got["createdAt"] == created["createdAt"]
    assert _timestamp(got["updatedAt"]) >= _timestamp(created["updatedAt"])


async def test_campaign_id_is_case_insensitive(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    """UUIDs are case-insensitive, so an upper-cased id names the same campaign."""
    created = await create_campaign(client, fast_auth, name="Case", recipientCount=1)
    r = await client.get(f"/campaigns/{created['id'].upper()}", headers=fast_auth)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created["id"]


# --- listing -------------------------------------------------------------------------------------


async def _walk(client: httpx.AsyncClient, url: str, auth: dict[str, str], **params: Any) -> list[list[dict[str, Any]]]:
    """Follow nextCursor to the end; returns the pages."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get(url, params=query, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "nextCursor"}
        pages.append(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not terminate"


async def _newest_first_ids(engine: AsyncEngine, status: str | None = None) -> list[str]:
    where = "WHERE status = :s" if status else ""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(f"SELECT id FROM campaigns {where} ORDER BY created_at DESC, id DESC"), {"s": status}
        )
        return [str(r[0]) for r in rows]


async def test_list_campaigns_paginates_newest_first(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Walking nextCursor visits every campaign exactly once, newest first."""
    created = [await create_campaign(client, fast_auth, name=f"c{i}", recipientCount=1) for i in range(5)]
    pages = await _walk(client, "/campaigns", fast_auth, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [c["id"] for page in pages for c in page]
    assert len(ids) == len(set(ids)) == 5
    assert ids == [c["id"] for c in reversed(created)]
    assert ids == await _newest_first_ids(engine)
    assert all(set(c) == CAMPAIGN_KEYS for page in pages for c in page)


async def test_list_campaigns_pagination_breaks_created_at_ties_by_id(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Campaigns created in the same instant are neither skipped nor repeated across pages."""
    for i in range(5):
        await create_campaign(client, fast_auth, name=f"tie{i}", recipientCount=1)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE campaigns SET created_at = '2026-01-01T00:00:00Z'"))
    pages = await _walk(client, "/campaigns", fast_auth, limit=2)
    ids = [c["id"] for page in pages for c in page]
    assert len(ids) == len(set(ids)) == 5
    assert ids == sorted(ids, key=uuid.UUID, reverse=True)
    assert ids == await _newest_first_ids(engine)


async def test_list_campaigns_default_page_and_exact_multiple(
    client: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    """A page size that divides the total exactly ends with nextCursor null, not an empty extra page."""
    for i in range(4):
        await create_campaign(client, fast_auth, name=f"c{i}", recipientCount=1)
    pages = await _walk(client, "/campaigns", fast_auth, limit=2)
    assert [len(p) for p in pages] == [2, 2]
    r = await client.get("/campaigns", headers=fast_auth)
    assert len(r.json()["items"]) == 4
    assert r.json()["nextCursor"] is None


async def test_list_campaigns_empty(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    """No campaigns is an empty page, not an error."""
    r = await client.get("/campaigns", headers=fast_auth)
    assert r.status_code == 200
    assert r.json() == {"items": [], "nextCursor": None}


async def test_list_campaigns_status_filter(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """The status filter returns exactly the campaigns in that status, still newest first and paginated."""
    created = [await create_campaign(client, fast_auth, name=f"c{i}", recipientCount=1) for i in range(5)]
    for c in (created[1], created[3]):
        r = await client.post(f"/campaigns/{c['id']}/cancel", headers=fast_auth)
        assert r.status_code == 202, r.text
    for status in ("cancelled", "processing", "completed"):
        pages = await _walk(client, "/campaigns", fast_auth, status=status, limit=1)
        ids = [c["id"] for page in pages for c in page]
        assert ids == await _newest_first_ids(engine, status)
        assert all(c["status"] == status for page in pages for c in page)
    cancelled = [c["id"] for p in await _walk(client, "/campaigns", fast_auth, status="cancelled") for c in p]
    assert cancelled == [created[3]["id"], created[1]["id"]]


async def test_list_messages_paginates_in_creation_order(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Walking a campaign's messages returns each recipient once, in the order they were submitted."""
    created = await create_campaign(client, fast_auth, name="m", recipients=RECIPIENTS)
    await create_campaign(client, fast_auth, name="other", recipientCount=4)  # must not leak in
    pages = await _walk(client, f"/campaigns/{created['id']}/messages", fast_auth, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    items = [m for page in pages for m in page]
    assert [m["recipient"] for m in items] == RECIPIENTS
    assert [m["id"] for m in items] == [str(m["id"]) for m in await _messages(engine, created["id"])]
    assert set(items[0]) == {"id", "recipient", "subscriber", "status", "skipReason", "attempts", "lastError",
                             "updatedAt"}  # fmt: skip
    assert all(m["status"] == "queued" and m["attempts"] == 0 and m["lastError"] is None for m in items)
    for m in items:
        _timestamp(m["updatedAt"])


async def test_list_messages_status_filter(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Filtering by status returns exactly the rows in that status (e.g. to inspect failures)."""
    created = await create_campaign(client, fast_auth, name="m", recipients=RECIPIENTS)
    failed_recipients = {RECIPIENTS[1], RECIPIENTS[4], RECIPIENTS[6]}
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE messages SET status = 'failed', attempts = 4, last_error = 'mailbox full' "
                "WHERE campaign_id = :c AND recipient = ANY(:r)"
            ),
            {"c": created["id"], "r": list(failed_recipients)},
        )
    url = f"/campaigns/{created['id']}/messages"
    failed = [m for p in await _walk(client, url, fast_auth, status="failed", limit=2) for m in p]
    assert {m["recipient"] for m in failed} == failed_recipients
    assert len(failed) == len(failed_recipients)
    assert all(m["attempts"] == 4 and m["lastError"] == "mailbox full" for m in failed)
    queued = [m for p in await _walk(client, url, fast_auth, status="queued") for m in p]
    assert {m["recipient"] for m in queued} == set(RECIPIENTS) - failed_recipients
    assert [m for p in await _walk(client, url, fast_auth, status="sent") for m in p] == []


# --- cancel --------------------------------------------------------------------------------------


async def test_cancel_cancels_every_open_message(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Cancel moves every not-yet-started message to cancelled, in rows and counters alike."""
    created = await create_campaign(client, fast_auth, name="c", recipients=RECIPIENTS)
    r = await client.post(f"/campaigns/{created['id']}/cancel", headers=fast_auth)
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == CAMPAIGN_KEYS
    assert body["status"] == "cancelled"
    assert body["progress"]["cancelled"] == body["totalMessages"] == len(RECIPIENTS)
    assert sum(body["progress"].values()) == body["totalMessages"]
    assert body["completedAt"] is not None
    counts = await _assert_consistent(engine, created["id"])
    assert counts == {"cancelled": len(RECIPIENTS)}
    got = (await client.get(f"/campaigns/{created['id']}", headers=fast_auth)).json()
    assert got["status"] == "cancelled"
    assert got["progress"] == body["progress"]


async def test_second_cancel_is_409(client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine) -> None:
    """Cancelling twice is a conflict and changes nothing the second time."""
    created = await create_campaign(client, fast_auth, name="c", recipients=RECIPIENTS)
    assert (await client.post(f"/campaigns/{created['id']}/cancel", headers=fast_auth)).status_code == 202
    before = await campaign_row(engine, created["id"])
    error = assert_error(await client.post(f"/campaigns/{created['id']}/cancel", headers=fast_auth), 409, "conflict")
    assert error["details"] == {"status": "cancelled"}
    assert await campaign_row(engine, created["id"]) == before


async def test_concurrent_cancels_exactly_one_wins(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Two simultaneous cancels serialize on the campaign row: one 202, one 409, counters applied once."""
    created = await create_campaign(client, fast_auth, name="c", recipients=RECIPIENTS)
    url = f"/campaigns/{created['id']}/cancel"
    results = await asyncio.gather(*(client.post(url, headers=fast_auth) for _ in range(2)))
    assert sorted(r.status_code for r in results) == [202, 409]
    counts = await _assert_consistent(engine, created["id"])
    assert counts == {"cancelled": len(RECIPIENTS)}


async def test_cancel_leaves_in_flight_messages(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Messages already being sent are not cancelled (they finish as sent/failed); the rest are."""
    created = await create_campaign(client, fast_auth, name="c", recipients=RECIPIENTS)
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE messages SET status = 'sending', attempts = 1, lease_until = now() + interval '1 minute' "
                "WHERE id IN (SELECT id FROM messages WHERE campaign_id = :c ORDER BY id LIMIT 2)"
            ),
            {"c": created["id"]},
        )
        sending = result.rowcount
        await conn.execute(
            text("UPDATE campaigns SET queued_count = queued_count - :n, sending_count = :n WHERE id = :c"),
            {"n": sending, "c": created["id"]},
        )
    r = await client.post(f"/campaigns/{created['id']}/cancel", headers=fast_auth)
    assert r.status_code == 202, r.text
    counts = await _assert_consistent(engine, created["id"])
    assert counts == {"sending": sending, "cancelled": len(RECIPIENTS) - sending}
    assert r.json()["progress"]["cancelled"] == len(RECIPIENTS) - sending


@pytest.mark.parametrize("final_status", ["completed", "completed_with_failures"])
async def test_cancel_finished_campaign_is_409(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, final_status: str
) -> None:
    """A campaign that already finished cannot be cancelled."""
    created = await create_campaign(client, fast_auth, name="c", recipientCount=2)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE campaigns SET status = :s WHERE id = :c"), {"s": final_status, "c": created["id"]}
        )
    error = assert_error(await client.post(f"/campaigns/{created['id']}/cancel", headers=fast_auth), 409, "conflict")
    assert error["details"] == {"status": final_status}
    assert await status_counts(engine, created["id"]) == {"queued": 2}


# --- retry ---------------------------------------------------------------------------------------


async def _finish_with_failures(
    engine: AsyncEngine, redis: Redis, settings: Settings, campaign_id: str, k: int
) -> None:
    """Simulate workers having run: the first k messages failed for good, the rest were sent; queue drained."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE messages SET status = CASE WHEN id IN "
                "(SELECT id FROM messages WHERE campaign_id = :c ORDER BY id LIMIT :k) "
                "THEN 'failed' ELSE 'sent' END, attempts = 4, "
                "last_error = 'x' WHERE campaign_id = :c"
            ),
            {"c": campaign_id, "k": k},
        )
        await conn.execute(
            text(
                "UPDATE campaigns SET queued_count = 0, failed_count = :k, sent_count = total_messages - :k, "
                "status = 'completed_with_failures', completed_at = now() WHERE id = :c"
            ),
            {"c": campaign_id, "k": k},
        )
    await redis.delete(settings.queue_name)
    await _assert_consistent(engine, campaign_id)


async def test_retry_without_failures_requeues_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Retrying a campaign with no failed messages is a harmless no-op."""
    created = await create_campaign(client, fast_auth, name="r", recipients=RECIPIENTS)
    before_row = await campaign_row(engine, created["id"])
    before_jobs = await _queued_job_names(redis, settings)
    r = await client.post(f"/campaigns/{created['id']}/retry", headers=fast_auth)
    assert r.status_code == 202, r.text
    assert r.json() == {"requeued": 0}
    assert await campaign_row(engine, created["id"]) == before_row
    assert await _queued_job_names(redis, settings) == before_jobs


async def test_retry_requeues_failed_messages(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Retry puts exactly the failed messages back on the queue with fresh attempts, and reopens the campaign."""
    created = await create_campaign(client, fast_auth, name="r", recipients=RECIPIENTS)
    k = 4
    await _finish_with_failures(engine, redis, settings, created["id"], k)
    failed_ids = [m["id"] for m in await _messages(engine, created["id"]) if m["status"] == "failed"]
    assert len(failed_ids) == k

    r = await client.post(f"/campaigns/{created['id']}/retry", headers=fast_auth)
    assert r.status_code == 202, r.text
    assert r.json() == {"requeued": k}

    rows = await _messages(engine, created["id"])
    requeued = [m for m in rows if m["id"] in failed_ids]
    assert {(m["status"], m["attempts"]) for m in requeued} == {("queued", 0)}
    assert {m["status"] for m in rows if m["id"] not in failed_ids} == {"sent"}
    counts = await _assert_consistent(engine, created["id"])
    assert counts == {"queued": k, "sent": len(RECIPIENTS) - k}
    row = await campaign_row(engine, created["id"])
    assert row["status"] == "processing"
    assert row["completed_at"] is None

    new_jobs = {m["job_id"] for m in requeued}
    assert len(new_jobs) == math.ceil(k / settings.job_batch_size)
    assert await _queued_job_names(redis, settings) == {RedisKeys.from_settings(settings).job_id(j) for j in new_jobs}

    got = (await client.get(f"/campaigns/{created['id']}", headers=fast_auth)).json()
    assert got["status"] == "processing"
    assert got["failedCount"] == 0
    assert got["progress"]["queued"] == k
    assert got["completedAt"] is None


async def test_second_retry_requeues_nothing_more(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Retry is idempotent once the failures are queued: counters do not drift on a repeat."""
    created = await create_campaign(client, fast_auth, name="r", recipients=RECIPIENTS)
    await _finish_with_failures(engine, redis, settings, created["id"], 2)
    url = f"/campaigns/{created['id']}/retry"
    assert (await client.post(url, headers=fast_auth)).json() == {"requeued": 2}
    jobs = await _queued_job_names(redis, settings)
    assert (await client.post(url, headers=fast_auth)).json() == {"requeued": 0}
    assert await _queued_job_names(redis, settings) == jobs
    assert await _assert_consistent(engine, created["id"]) == {"queued": 2, "sent": len(RECIPIENTS) - 2}


async def test_concurrent_retries_requeue_each_failure_once(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Two simultaneous retries lock the campaign, so each failed message is requeued exactly once."""
    created = await create_campaign(client, fast_auth, name="r", recipients=RECIPIENTS)
    k = 5
    await _finish_with_failures(engine, redis, settings, created["id"], k)
    url = f"/campaigns/{created['id']}/retry"
    results = await asyncio.gather(*(client.post(url, headers=fast_auth) for _ in range(3)))
    assert all(r.status_code == 202 for r in results)
    assert sum(r.json()["requeued"] for r in results) == k
    assert await _assert_consistent(engine, created["id"]) == {"queued": k, "sent": len(RECIPIENTS) - k}


async def test_retry_cancelled_campaign_is_409(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A cancelled campaign's failures stay failed: retry is a conflict and changes nothing."""
    created = await create_campaign(client, fast_auth, name="r", recipients=RECIPIENTS)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE messages SET status = 'failed', attempts = 4 WHERE campaign_id = :c"), {"c": created["id"]}
        )
        await conn.execute(
            text("UPDATE campaigns SET queued_count = 0, failed_count = total_messages WHERE id = :c"),
            {"c": created["id"]},
        )
    assert (await client.post(f"/campaigns/{created['id']}/cancel", headers=fast_auth)).status_code == 202
    await redis.delete(settings.queue_name)
    error = assert_error(await client.post(f"/campaigns/{created['id']}/retry", headers=fast_auth), 409, "conflict")
    assert error["details"] == {"status": "cancelled"}
    assert await status_counts(engine, created["id"]) == {"failed": len(RECIPIENTS)}
    assert await redis.zcard(settings.queue_name) == 0
