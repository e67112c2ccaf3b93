"""The embedded PostgreSQL carries notifq's own settings (the suite uses it unless test URLs are given)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.embedded import SERVER_SETTINGS
from tests import servers as test_servers


async def test_embedded_postgres_has_room_for_scaled_workers(
    servers: test_servers.TestServers, engine: AsyncEngine
) -> None:
    if servers.state_dir is None:
        pytest.skip("NOTIFQ_TEST_DATABASE_URL points at an external server: its settings are its own")
    async with engine.connect() as conn:
        for name, value in SERVER_SETTINGS.items():
            assert (await conn.execute(text(f"SHOW {name}"))).scalar_one() == value
    # Written once: a second start neither appends nor restarts.
    conf = (servers.state_dir / "pg" / "postgresql.conf").read_text()
    assert conf.count("# notifq: settings for the embedded server") == 1
