"""Running real arq workers for tests: in-process (fast) or as `notifq worker` processes (signals)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.providers.factory import ProviderFactory
from notifq.settings import Settings, child_env
from notifq.worker.main import WorkerRuntime

ROOT = Path(__file__).resolve().parents[1]


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `notifq worker` build the same Settings as the test (no other NOTIFQ_ leaks in)."""
    return child_env(settings, isolated=True)


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, providers: Callable[[Settings], ProviderFactory] = ProviderFactory
) -> AsyncIterator[WorkerRuntime]:
    runtime = WorkerRuntime(settings, providers)
    await runtime.start()
    try:
        yield runtime
    finally:
        # Gracefully, as SIGTERM would: tearing arq down mid-job can drop a Redis client unclosed,
        # whose ResourceWarning then fails whichever later test the garbage collector runs in.
        # Bounded: a stop that hangs fails here, naming itself, instead of as a test timeout that
        # leaves the worker heartbeating into every later test.
        await asyncio.wait_for(runtime.stop(drain_seconds=10), timeout=45)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def api_process(settings: Settings, log: Path) -> Iterator[str]:
    """`notifq api` with one process on a free port; its URL once /health answers. Stopped with SIGTERM."""
    port = free_port()
    env = worker_env(settings.with_(host="127.0.0.1", port=port, api_processes=1))
    env.update(NOTIFQ_HOST="127.0.0.1", NOTIFQ_PORT=str(port), NOTIFQ_API_PROCESSES="1")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "notifq", "api"], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "notifq api did not start within 60 s"
                time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def spawn_worker(settings: Settings, **extra_env: str) -> subprocess.Popen[bytes]:
    env = worker_env(settings)
    env.update(extra_env)
    return subprocess.Popen([sys.executable, "-m", "notifq", "worker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")


async def status_counts(engine: AsyncEngine, campaign_id: uuid.UUID | str) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, count(*) FROM messages WHERE campaign_id = :c GROUP BY status"), {"c": campaign_id}
        )
        return {r[0]: r[1] for r in rows}


async def sent_at_least(engine: AsyncEngine, campaign_id: uuid.UUID | str, n: int) -> bool:
    return (await status_counts(engine, campaign_id)).get("sent", 0) >= n


async def campaign_completed(engine: AsyncEngine, campaign_id: uuid.UUID | str) -> bool:
    return (await campaign_row(engine, campaign_id))["status"] in ("completed", "completed_with_failures")


async def campaign_row(engine: AsyncEngine, campaign_id: uuid.UUID | str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM campaigns WHERE id = :c"), {"c": campaign_id})).one()
        return dict(row._mapping)


def assert_counters_match(campaign: dict[str, Any], counts: dict[str, int]) -> None:
    """The campaign's counters equal the per-status counts of its message rows."""
    for status in ("pending", "queued", "sending", "sent", "failed", "cancelled"):
        assert campaign[f"{status}_count"] == counts.get(status, 0), (status, campaign, counts)
    assert sum(counts.values()) == campaign["total_messages"]


def running_worker_with(settings: Settings, provider: Any) -> contextlib.AbstractAsyncContextManager[WorkerRuntime]:
    """A worker whose every recipient goes to `provider` (a real Provider implementation)."""

    class OneProvider(ProviderFactory):
        def for_message(self, channel: str, recipient: str) -> Any:
            return provider

    return running_worker(settings, OneProvider)


FINISHED_CAMPAIGN_STATUSES = ("completed", "completed_with_failures", "cancelled")


async def get_json(client: httpx.AsyncClient, auth: dict[str, str], path: str) -> dict[str, Any]:
    r = await client.get(path, headers=auth)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def post_json(client: httpx.AsyncClient, auth: dict[str, str], path: str, body: Any) -> dict[str, Any]:
    """POST an accepted request (202) and return its JSON."""
    r = await client.post(path, json=body, headers=auth)
    assert r.status_code == 202, r.text
    data: dict[str, Any] = r.json()
    return data


async def finished_campaign(client: httpx.AsyncClient, auth: dict[str, str], campaign_id: str) -> dict[str, Any] | None:
    """The campaign once it reached a terminal status, else None: a predicate for `wait_for`."""
    body = await get_json(client, auth, f"/campaigns/{campaign_id}")
    return body if body["status"] in FINISHED_CAMPAIGN_STATUSES else None
