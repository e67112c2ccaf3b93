"""The embedded servers: PostgreSQL carries notifq's own settings (the suite uses it unless test URLs are given),
and stopping them says what did not stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.embedded import SERVER_SETTINGS, stop_servers
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


def test_stop_servers_names_a_server_that_did_not_stop(tmp_path: Path) -> None:
    """`notifq dev` must not print "embedded servers stopped" over a server still running."""
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(30)"],
                                stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"\n"  # SIGTERM is ignored from here
        (tmp_path / "servers.json").write_text(json.dumps({"valkey_pid": stubborn.pid, "valkey_port": 1}))
        assert stop_servers(tmp_path) == [f"Valkey (pid {stubborn.pid})"]
    finally:
        stubborn.kill()
        stubborn.communicate()
    assert stop_servers(tmp_path) == []  # nothing left running: nothing named
