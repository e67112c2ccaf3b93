"""One chaos scenario's run: what is planned, what happened (the faults, the timeline), and a resilient reader.

In flight, per fault: the messages `sending` with the same attempt 0.25 s and 1.5 s after it
(chaos_checks.snapshot_in_flight): claimed by a worker that did not record them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from chaos_checks import Calls, fault_figures, snapshot_in_flight
from chaos_netns import Network
from chaos_stack import Incarnation, Stack

POLL_SECONDS = 0.05
SNAPSHOT_AT = (0.25, 1.5)
SENDING = "SELECT id, attempts FROM messages WHERE campaign_id = $1 AND status = 'sending'"
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
Inject = Callable[["Run"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Plan:
    messages: int
    fault_at: float = 0.2
    timeout: float = 600.0
    kill_every: float = 10.0
    max_kills: int | None = None
    redis_down: float = 5.0
    pg_stop: float = 15.0
    cut_seconds: float = 60.0
    settle: float = 2.0


class Probe:
    """One connection that survives a stalled or vanished server: each query has a deadline, and a failed one
    drops the connection (the next query opens another)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: asyncpg.Connection | None = None

    async def fetch(self, sql: str, *args: object, limit: float = 2.0) -> list[asyncpg.Record] | None:
        """The rows, or None if the server did not answer within `limit` seconds (or refused)."""
        try:
            if self.conn is None:
                self.conn = await asyncpg.connect(self.url, timeout=limit)
            return list(await self.conn.fetch(sql, *args, timeout=limit))
        except DB_ERRORS:
            self.drop()
            return None

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.terminate()
            self.conn = None


@dataclass
class Fault:
    what: str
    at: float
    worker: Incarnation | None = None
    measure: bool = False  # whether the faulted worker's in-flight messages are measured
    in_flight: set[tuple[int, int]] | None = None  # None while (or if) not measured

    def as_dict(self, calls: Calls) -> dict[str, Any]:
        doc: dict[str, Any] = {"what": self.what, "at_s": round(self.at, 2)}
        if self.worker is not None:
            doc |= {"worker": self.worker.slot, "pid": self.worker.pid}
        if self.measure and self.worker is not None:
            doc["in_flight"] = None  # PostgreSQL did not answer a snapshot
            if self.in_flight is not None:
                doc |= fault_figures(self.in_flight, calls.per_file.get(self.worker.calls, set()), calls)
        return doc


@dataclass
class Run:
    stack: Stack
    plan: Plan
    http: httpx.AsyncClient
    network: Network | None = None
    campaign_id: str = ""
    t0: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    faults: list[Fault] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    completed_after: float | None = None  # seconds after the POST at which the watcher saw completed_at
    recovered_after: float | None = None  # seconds after the POST at which the fault ended (resume, restart, heal)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def note(self, text: str) -> None:
        self.timeline.append((round(self.elapsed(), 2), text))
        print(f"    {self.elapsed():7.2f} s  {text}", flush=True)

    def fault(self, what: str, worker: Incarnation | None = None, *, in_flight: bool = False) -> Fault:
        record = Fault(what, self.elapsed(), worker, measure=in_flight)
        self.faults.append(record)
        if in_flight:
            self.tasks.append(asyncio.create_task(self._snapshot(record)))
        return record

    async def _snapshot(self, record: Fault) -> None:
        probe = Probe(self.stack.postgres.url)
        snaps: list[list[asyncpg.Record]] = []
        for at in SNAPSHOT_AT:
            await asyncio.sleep(max(0.0, record.at + at - self.elapsed()))
            rows = await probe.fetch(SENDING, self.campaign_id, limit=5)
            if rows is None:
                self.note(f"in-flight snapshot after {record.what} failed: PostgreSQL did not answer within 5 s")
                break
            snaps.append(rows)
        probe.drop()
        if len(snaps) == len(SNAPSHOT_AT):
            record.in_flight = snapshot_in_flight(*snaps)

    async def completed(self) -> bool:
        probe = Probe(self.stack.postgres.url)
        rows = await probe.fetch("SELECT completed_at IS NOT NULL FROM campaigns WHERE id = $1", self.campaign_id)
        probe.drop()
        return bool(rows and rows[0][0])

    async def live_pids(self, token: str) -> set[int]:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            r = await self.http.get("/workers", headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200:
                return {int(w["pid"]) for w in r.json()["workers"]}
        return set()
