"""Real PostgreSQL and Redis for the tests: given by URL, or embedded servers we start.

Each test session gets a fresh database (created and dropped here), so a shared server
is never touched outside it; Redis is flushed per test, on its own db number.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from notifq.embedded import ensure_servers, stop_servers
from notifq.migrate import upgrade_head


@dataclass
class TestServers:
    database_url: str
    redis_url: str
    admin_url: str
    database: str
    state_dir: Path | None


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def start() -> TestServers:
    db_url = os.environ.get("NOTIFQ_TEST_DATABASE_URL")
    redis_url = os.environ.get("NOTIFQ_TEST_REDIS_URL")
    state_dir = None
    if not (db_url and redis_url):
        state_dir = Path(tempfile.mkdtemp(prefix="notifq-test-"))
        urls = ensure_servers(state_dir, database_url=db_url, redis_url=redis_url, persistent=False)
        db_url, redis_url = urls.database_url, urls.redis_url
        if not os.environ.get("NOTIFQ_TEST_REDIS_URL"):
            redis_url = redis_url.rsplit("/", 1)[0] + "/0"
    elif not urlsplit(redis_url).path.strip("/"):
        redis_url = redis_url.rstrip("/") + "/15"
    database = f"notifq_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(db_url, f'CREATE DATABASE "{database}"'))
    test_url = _with_database(db_url, database)
    upgrade_head(test_url)
    return TestServers(test_url, redis_url, db_url, database, state_dir)


def stop(servers: TestServers) -> None:
    try:
        asyncio.run(_admin(servers.admin_url, f'DROP DATABASE IF EXISTS "{servers.database}" WITH (FORCE)'))
    finally:
        if servers.state_dir is not None:
            stop_servers(servers.state_dir)
            shutil.rmtree(servers.state_dir, ignore_errors=True)
