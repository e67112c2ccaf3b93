"""The command line as users type it: alembic, create-admin, and the dev stack with scale."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests import servers as test_servers
from tests.harness import worker_env
from tests.live import wait_until_serving

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFQ_", "DATABASE_URL", "REDIS_URL"))}
    env.update(extra)
    return env


async def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, args, **kwargs)


async def test_alembic_upgrade_head_builds_an_empty_database(servers: test_servers.TestServers) -> None:
    """`alembic upgrade head` with a plain postgresql:// DATABASE_URL creates every table."""
    database = f"notifq_alembic_{uuid.uuid4().hex[:8]}"
    await test_servers._admin(servers.admin_url, f'CREATE DATABASE "{database}"')
    url = test_servers._with_database(servers.admin_url, database)
    try:
        alembic = Path(sys.executable).with_name("alembic")
        done = await _run([str(alembic), "upgrade", "head"], cwd=ROOT, env=_env(DATABASE_URL=url),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            tables = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        finally:
            await conn.close()
        assert {"admins", "campaigns", "messages", "alembic_version"} <= tables
    finally:
        await test_servers._admin(servers.admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def test_create_admin_reads_the_password_from_stdin(settings: Settings, engine: AsyncEngine) -> None:
    """`notifq create-admin EMAIL` stores a bcrypt hash, never the password itself."""
    env = worker_env(settings)
    done = await _run([sys.executable, "-m", "notifq", "create-admin", "ops@bank.example"], env=env,
                          input="s3cret-pass\n", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT password_hash FROM admins WHERE email = 'ops@bank.example'"))).one()
    assert stored.password_hash.startswith("$2b$12$") and "s3cret-pass" not in stored.password_hash

    too_long = await _run([sys.executable, "-m", "notifq", "create-admin", "ops@bank.example"], env=env,
                              input="x" * 80 + "\n", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert too_long.returncode != 0 and "72 bytes" in too_long.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int, name: str) -> int:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if name in line)


@pytest.mark.timeout(180)
def test_dev_stack_runs_and_scales(servers: test_servers.TestServers, tmp_path: Path) -> None:
    """`notifq dev` with URLs set: migrates, ensures the admin, serves the API; `notifq scale 3` adds workers."""
    port = _free_port()
    env = _env(DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url, NOTIFQ_PORT=str(port),
               NOTIFQ_ADMIN_PASSWORD="dev-password", NOTIFQ_STATE_DIR=str(tmp_path))  # fmt: skip
    dev = subprocess.Popen([sys.executable, "-m", "notifq", "dev"], env=env, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{base}/ready", lambda: dev.poll() is None, within=60)
        login = httpx.post(f"{base}/auth/login", json={"email": "admin@notifq.dev", "password": "dev-password"})
        assert login.status_code == 200
        assert json.loads((tmp_path / "dev.json").read_text())["pid"] == dev.pid
        assert _children(dev.pid, "notifq worker") == 1

        scale = subprocess.run([sys.executable, "-m", "notifq", "scale", "3"], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        assert scale.returncode == 0, scale.stderr
        deadline = time.monotonic() + 20
        while _children(dev.pid, "notifq worker") != 3:
            assert time.monotonic() < deadline, "scale did not reach 3 workers"
            time.sleep(0.2)
        # ...and the operations view (dashboard workers panel, `notifq workers`) shows all three.
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        deadline = time.monotonic() + 20
        while len(httpx.get(f"{base}/workers", headers=auth).json()["workers"]) != 3:
            assert time.monotonic() < deadline, "GET /workers did not list 3 workers"
            time.sleep(0.2)
    finally:
        dev.send_signal(signal.SIGINT)
        out, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0, out.decode()[-2000:]
    assert not (tmp_path / "dev.json").exists()


def test_scale_without_a_running_stack_explains_itself(tmp_path: Path) -> None:
    """No stack: a non-zero exit and a pointer to the compose command."""
    done = subprocess.run([sys.executable, "-m", "notifq", "scale", "5"], env=_env(NOTIFQ_STATE_DIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 1 and "--scale worker=5" in done.stderr
