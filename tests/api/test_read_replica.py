"""DATABASE_READ_URL: listings and reports come from the replica; one thing by its id falls back to the primary.

The "replica" here is a second database migrated to head and never written: a replica whose lag never ends.
What the API then shows from it tells which reads went where.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.migrate import upgrade_head
from notifq.settings import Settings
from tests.api.support import app_client

EMAIL = {"channel": "email", "to": "replica@example.com", "subject": "s", "body": "b"}


def _with_database(url: str, name: str) -> str:
    """The same server's URL for another database (`postgresql://user@host/db?query` or `…@/db?host=…`)."""
    head, _, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
async def replica_url(settings: Settings) -> AsyncIterator[str]:
    assert settings.database_url
    name = f"notifq_replica_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = _with_database(settings.database_url, name)
        await asyncio.to_thread(upgrade_head, url)
        yield url
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_listings_come_from_the_replica_and_a_new_thing_from_the_primary(
    settings: Settings, auth: dict[str, str], replica_url: str, engine: AsyncEngine
) -> None:
    async with app_client(settings.with_(database_read_url=replica_url)) as client:
        created = await client.post("/campaigns", json={"name": "lagging", "recipientCount": 3}, headers=auth)
        assert created.status_code == 202, created.text
        campaign_id = created.json()["id"]
        sent = await client.post("/notifications", json=EMAIL, headers=auth)
        assert sent.status_code == 202, sent.text
        notification_id = sent.json()["id"]

        # By id: not on the replica yet, so read from the primary (the caller sees its own write).
        one = await client.get(f"/campaigns/{campaign_id}", headers=auth)
        assert one.status_code == 200 and one.json()["totalMessages"] == 3, one.text
        single = await client.get(f"/notifications/{notification_id}", headers=auth)
        assert single.status_code == 200 and single.json()["to"] == EMAIL["to"], single.text
        missing = await client.get(f"/campaigns/{uuid.uuid4()}", headers=auth)
        assert missing.status_code == 404

        # Listings and reports: from the replica, which has none of it.
        assert (await client.get("/campaigns", headers=auth)).json()["items"] == []
        assert (await client.get("/notifications", headers=auth)).json()["items"] == []
        messages = await client.get(f"/campaigns/{campaign_id}/messages", headers=auth)
        assert messages.status_code == 200 and messages.json()["items"] == []
        stats = (await client.get("/stats", headers=auth)).json()
        assert sum(sum(c.values()) for c in stats["byChannel"].values()) == 0, stats

        database = replica_url.partition("?")[0].rsplit("/", 1)[1]
        async with engine.connect() as conn:
            on_replica = (await conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'notifq-api-replica' "
                "AND datname = :db"), {"db": database})).scalar_one()  # fmt: skip
        assert on_replica >= 1

    # Without DATABASE_READ_URL every read is the primary's.
    async with app_client(settings) as client:
        listed = (await client.get("/campaigns", headers=auth)).json()["items"]
        assert [c["id"] for c in listed] == [campaign_id]
