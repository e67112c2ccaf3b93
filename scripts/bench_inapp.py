"""`make bench BENCH_ARGS="--only inapp"`: the in-app channel's WebSockets, beside a bare Starlette baseline.

Why: issue 11 sets three targets for the in-app channel, to be measured here, not in tests:
(a) one API process holds >= 10,000 concurrent authenticated WebSockets within 500 MB RSS;
(b) an in-app campaign to 10,000 connected subscribers reaches them at >= 20,000
notifications/s, from the first to the last frame received by the clients, every one
ACKed and persisted (`messages.delivered_at` set on all of them);
(c) single in-app sends at 100/s while (b) runs: p99 from POST to received < 50 ms.

What, in the stack bench.py starts (embedded PostgreSQL and Valkey, migrations, an admin,
`python -m notifq api` as a real process; no naive design here):

1. The baseline: `scripts/ws_baseline.py`, a bare Starlette WebSocket endpoint under uvicorn
   with the same WebSocket options as `notifq api`, in one process. Its RSS with 0 and with
   N connections, and its fan-out: `POST /broadcast` sends one frame to every socket in a
   plain `await ws.send_text()` loop; the clients ACK each (parsed and counted there).
2. notifq: N subscribers inserted with one SQL statement (setup only; `PUT /subscribers/{id}`
   would take minutes for 10,000 and is not what is measured), their tokens signed with
   `notifq.auth.issue_subscriber_token` and the API's secret. The API's RSS with 0 and with
   N authenticated connections (each AUTHed and READY). Then `--inapp-workers` workers
   (`python -m notifq worker`, rate limit 0, mock 0 ms) and `--reps` campaigns
   (`POST /campaigns` with `channel` inapp and the N subscribers), each measured from the
   first to the last NOTIFICATION frame the clients received, then until every message has
   `delivered_at` (the clients' ACKs, written by the API's batched receipts).
3. The same campaigns again while `scripts/otp_load.py --inapp` posts one single in-app send
   every 10 ms (`POST /notifications`, default lane: transactional) to a connected subscriber;
   a single send's latency is its client's arrival time minus the moment its POST started
   (same host, same clock). Sends started while a campaign ran (its POST to its last frame)
   are the figure; the rest are reported beside it.

The clients are `scripts/inapp_clients.py` processes (`--client-procs`, each a share of the
connections; the `websockets` asyncio client, permessage-deflate offered, no client pings),
driven over stdin/stdout. Everything runs on 127.0.0.1 and stops with the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil

from notifq.auth import issue_subscriber_token

if TYPE_CHECKING:
    from bench import Bench

SCRIPTS = Path(__file__).resolve().parent
CLIENTS_SCRIPT = SCRIPTS / "inapp_clients.py"
BASELINE_SCRIPT = SCRIPTS / "ws_baseline.py"
LOAD_SCRIPT = SCRIPTS / "otp_load.py"
MIB = 1024 * 1024
SUBSCRIBER_PREFIX = "bench-"
TOKEN_TTL_S = 6 * 3600
TARGET_CONNECTIONS = 10_000
TARGET_RSS_MB = 500
TARGET_RATE = 20_000
TARGET_SINGLE_P99_MS = 50
SINGLE_INTERVAL_S = 0.01
SETTLE_S = 1.0  # after connecting, before reading the RSS (the last READYs' buffers freed)


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / MIB, 1)


def cpu_per_item(cpu: dict[str, float], n: int) -> dict[str, float]:
    """CPU microseconds per item, per process group, from a Sampler.cpu_report() (% of one core over `seconds`)."""
    skip = ("seconds", "machine_busy", "other")
    return {k: round(v * cpu["seconds"] * 1e4 / max(1, n), 1) for k, v in cpu.items() if k not in skip and v > 0}


def pct(values: list[float], p: float) -> float:
    return round(values[min(len(values) - 1, int(p * len(values)))], 1) if values else -1.0


class ClientProcs:
    """`inapp_clients.py` processes, one command at a time to all; registered with the stack (stopped with it)."""

    def __init__(self, bench: Bench, url: str, tokens: Path, procs: int, label: str) -> None:
        self.bench = bench
        self.names = [f"{label}_clients-{i + 1}" for i in range(procs)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.connected: list[int] = []
        stack = bench.stack
        for i, name in enumerate(self.names):
            log = (stack.logs / f"{name}.log").open("ab")
            proc = subprocess.Popen([sys.executable, str(CLIENTS_SCRIPT), "--url", url, "--tokens", str(tokens),
                                     "--slice", f"{i}/{procs}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, cwd=stack.tmp)  # fmt: skip
            log.close()
            stack.procs[name] = proc
            bench.sampler.track(name, proc.pid)
            self.procs.append(proc)

    def _ask_one(self, proc: subprocess.Popen[bytes], command: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(command).encode() + b"\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a client process exited ({proc.poll()}); see its log in {self.bench.stack.logs}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
        commands = command if isinstance(command, list) else [command] * len(self.procs)
        return list(await asyncio.gather(*(asyncio.to_thread(self._ask_one, p, c)
                                           for p, c in zip(self.procs, commands, strict=True))))  # fmt: skip

    async def connect(self) -> dict[str, Any]:
        answers = await self.ask({"cmd": "connect"})
        self.connected = [a["connected"] for a in answers]
        failed: dict[str, int] = {}
        for a in answers:
            for k, v in a["failed"].items():
                failed[k] = failed.get(k, 0) + v
        return {"connected": sum(self.connected), "failed": failed, "seconds": max(a["seconds"] for a in answers),
                "replayed": sum(a["replayed"] for a in answers), "client_rss_mb": [a["rss_mb"] for a in answers],
                "client_rss_per_conn_kb": max(a["rss_per_conn_kb"] for a in answers)}  # fmt: skip

    async def wait(self, category: str, within: float) -> tuple[int, float, float]:
        """(frames of the category received, first, last arrival) over every process."""
        answers = await self.ask([{"cmd": "wait", "category": category, "count": n, "within": within}
                                  for n in self.connected])  # fmt: skip
        got = [a for a in answers if a["count"]]
        if not got:
            return 0, 0.0, 0.0
        return sum(a["count"] for a in got), min(a["first"] for a in got), max(a["last"] for a in got)

    async def stats(self) -> dict[str, Any]:
        answers = await self.ask({"cmd": "stats"})
        singles: dict[str, float] = {}
        for a in answers:
            singles.update(a["singles"])
        return {"acks": sum(a["acks"] for a in answers), "open": sum(a["open"] for a in answers),
                "closes": [a["closes"] for a in answers], "types": [a["types"] for a in answers],
                "singles": singles, "client_rss_mb": [a["rss_mb"] for a in answers]}  # fmt: skip

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ask({"cmd": "close"}), 60)
        for name in self.names:
            self.bench.stack.stop(name, timeout=10)


class InAppBench:
    def __init__(self, bench: Bench, secret: str, issuer: str, n: int, reps: int, workers: int, client_procs: int,
                 single_interval: float = SINGLE_INTERVAL_S) -> None:  # fmt: skip
        self.bench = bench
        self.secret, self.issuer = secret, issuer
        self.n, self.reps, self.workers, self.client_procs = n, reps, workers, client_procs
        self.single_interval = single_interval
        self.tokens = bench.stack.tmp / "inapp_tokens.txt"
        self.ids = [f"{SUBSCRIBER_PREFIX}{i}" for i in range(1, n + 1)]

    @property
    def api_pid(self) -> int:
        return self.bench.stack.procs["api"].pid

    # --- setup -------------------------------------------------------------------------------

    async def setup(self) -> dict[str, Any]:
        assert self.bench.db is not None
        started = time.perf_counter()
        await self.bench.db.execute("TRUNCATE subscribers")
        rows = await self.bench.db.fetch(
            "INSERT INTO subscribers (id) SELECT $1 || g FROM generate_series(1, $2) AS g RETURNING id, token_key",
            SUBSCRIBER_PREFIX, self.n,
        )  # fmt: skip
        inserted = time.perf_counter() - started
        keys = {r["id"]: str(r["token_key"]) for r in rows}
        tokens = [
            issue_subscriber_token(self.secret, self.issuer, sid, TOKEN_TTL_S, keys[sid]).token for sid in self.ids
        ]
        self.tokens.write_text("\n".join(tokens) + "\n")
        print(f"  setup: {self.n:,} subscribers by one SQL INSERT ({inserted:.2f} s; setup only, not measured), "
              f"tokens signed with notifq.auth.issue_subscriber_token", flush=True)  # fmt: skip
        return {"subscribers_inserted_by_sql": self.n, "insert_s": round(inserted, 3)}

    # --- the baseline --------------------------------------------------------------------------

    async def baseline(self) -> dict[str, Any]:
        from bench import free_port, wait_http

        stack, bench = self.bench.stack, self.bench
        port = free_port()
        stack.spawn("baseline", [str(BASELINE_SCRIPT), "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_http(f"{base}/health", stack)
            pid = stack.procs["baseline"].pid
            idle = rss_mb(pid)
            clients = ClientProcs(bench, f"ws://127.0.0.1:{port}/ws", self.tokens, self.client_procs, "baseline")
            try:
                bench.sampler.reset()
                connected = await clients.connect()
                connect_cpu = bench.sampler.cpu_report()
                await asyncio.sleep(SETTLE_S)
                held = rss_mb(pid)
                runs = []
                async with httpx.AsyncClient(timeout=120) as http:
                    for rep in range(self.reps + 1):  # the first is a warm-up
                        category = f"baseline-{rep}"
                        bench.sampler.reset()
                        posted = time.time()
                        r = await http.post(f"{base}/broadcast", params={"category": category})
                        loop_s = r.json()["seconds"]
                        count, first, last = await clients.wait(category, 120)
                        acked = await self._baseline_acks(http, base, (rep + 1) * connected["connected"])
                        cpu = bench.sampler.cpu_report()
                        span = max(last - first, 1e-6)
                        per = cpu_per_item(cpu, count)
                        run = {"received": count, "rate_per_s": round(count / span), "first_to_last_s": round(span, 3),
                               "post_to_last_s": round(last - posted, 3), "send_loop_s": round(loop_s, 3),
                               "last_to_all_acked_s": round(acked - last, 3), "cpu_pct_of_one_core": cpu,
                               "cpu_us_per_frame": per, "warmup": rep == 0}  # fmt: skip
                        runs.append(run)
                        print(f"  baseline broadcast {rep}{' (warm-up)' if rep == 0 else ''}: {count:,} frames, "
                              f"{run['rate_per_s']:,}/s first→last ({span:.3f} s), send loop {loop_s:.3f} s, "
                              f"all ACKs in {run['last_to_all_acked_s']:.3f} s after; CPU µs per frame {per}; "
                              f"other {cpu['other']:.0f} %", flush=True)  # fmt: skip
                stats = await clients.stats()
            finally:
                await clients.close()
            peak = bench.sampler.peaks_mb().get("baseline", 0.0)
            print(f"  baseline: RSS {idle:.0f} MB idle, {held:.0f} MB with {connected['connected']:,} connections "
                  f"({(held - idle) * 1024 / max(1, connected['connected']):.1f} KB each); connect "
                  f"{connected['seconds']:.1f} s", flush=True)  # fmt: skip
            return {"rss_idle_mb": idle, "rss_connected_mb": held, "connect": connected, "connect_cpu": connect_cpu,
                    "broadcasts": runs, "client_stats": {k: v for k, v in stats.items() if k != "singles"},
                    "peak_rss_mb": peak}  # fmt: skip
        finally:
            stack.stop("baseline")

    async def _baseline_acks(self, http: httpx.AsyncClient, base: str, expected: int) -> float:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (await http.get(f"{base}/health")).json()["acks"] >= expected:
                return time.time()
            await asyncio.sleep(0.01)
        return -1.0

    # --- notifq --------------------------------------------------------------------------------

    async def start_workers(self, names: list[str]) -> None:
        """The warm-up campaign is queued: fix the planner's statistics with it (see `planner_statistics`), then go."""
        assert self.bench.db is not None
        await self.bench.db.execute("ANALYZE messages")
        for name in names:
            self.bench.stack.spawn(name, ["-m", "notifq", "worker"], "0")

    async def planner_statistics(self) -> None:
        """`messages` is analyzed once, with the warm-up campaign queued, and never again during the run.

        Why (measured 2026-12-01, docs/benchmarks.md "A planner trap"): statistics taken while no
        message is queued make PostgreSQL plan the worker's claim (db/transitions.py CLAIM) as a
        nested loop that re-reads the batch's subquery once per open message: ~0.9 s per claim of
        500 with 10,000 queued, against ~10 ms with statistics that have seen a queued campaign.
        Autovacuum's analyze lands at a different moment in every run, so the in-app figures
        swung 10x from run to run; the claim is not in-app code, so the bench pins the statistics.
        VACUUM still runs (it keeps the row counts current).
        """
        assert self.bench.db is not None
        await self.bench.db.execute("ALTER TABLE messages SET (autovacuum_analyze_threshold = 2000000000)")

    async def campaign(self, clients: ClientProcs, label: str,
                       before_workers: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:  # fmt: skip
        bench = self.bench
        assert bench.http is not None and bench.db is not None
        body = json.dumps({"name": label, "channel": "inapp", "subject": "Benchmark", "body": "Hello from make bench.",
                           "category": label, "subscribers": self.ids}).encode()  # fmt: skip
        bench.sampler.reset()
        posted = time.time()
        r = await bench.http.post(f"http://127.0.0.1:{bench.stack.api_port}/campaigns", content=body,
                                  headers={"Authorization": f"Bearer {bench.token}",
                                           "Content-Type": "application/json"})  # fmt: skip
        if r.status_code != 202:
            raise RuntimeError(f"POST /campaigns -> {r.status_code}: {r.text[:500]}")
        accepted = time.time()
        campaign_id = r.json()["id"]
        if before_workers is not None:
            await before_workers()
        count, first, last = await clients.wait(label, 120)
        cpu = bench.sampler.cpu_report()
        persisted_at = -1.0
        deadline = time.monotonic() + 60
        delivered = 0
        while time.monotonic() < deadline:
            delivered = await bench.db.fetchval(
                "SELECT count(*) FROM messages WHERE campaign_id = $1 AND delivered_at IS NOT NULL", campaign_id
            )
            if delivered >= self.n:
                persisted_at = time.time()
                break
            await asyncio.sleep(0.01)
        row = await bench.db.fetchrow("SELECT status, sent_count, skipped_count, failed_count FROM campaigns "
                                      "WHERE id = $1", campaign_id)  # fmt: skip
        assert row is not None
        span = max(last - first, 1e-6)
        per = cpu_per_item(cpu, count)
        result = {"n": self.n, "received": count, "rate_per_s": round(count / span), "first_to_last_s": round(span, 3),
                  "post_to_202_s": round(accepted - posted, 3), "post_to_last_s": round(last - posted, 3),
                  "delivered_at_set": delivered, "last_to_persisted_s": round(persisted_at - last, 3)
                  if persisted_at > 0 else None, "campaign": dict(row), "window": [posted, last],
                  "cpu_pct_of_one_core": cpu, "cpu_us_per_notification": per}  # fmt: skip
        print(f"  {label}: {count:,} received, {result['rate_per_s']:,}/s first→last ({span:.3f} s); "
              f"POST→202 {result['post_to_202_s']:.3f} s, POST→last {result['post_to_last_s']:.3f} s; "
              f"delivered_at on {delivered:,} ({result['last_to_persisted_s']} s after the last); "
              f"CPU µs per notification (POST → last received) {per}; other {cpu['other']:.0f} %",
              flush=True)  # fmt: skip
        if count != self.n or delivered != self.n:
            print(f"  WARNING: {label}: {count:,} received and {delivered:,} persisted of {self.n:,}", flush=True)
        return result

    async def notifq(self) -> dict[str, Any]:
        stack, bench = self.bench.stack, self.bench
        idle = rss_mb(self.api_pid)
        clients = ClientProcs(bench, f"ws://127.0.0.1:{stack.api_port}/ws", self.tokens, self.client_procs, "notifq")
        workers = [f"inapp_worker-{i + 1}" for i in range(self.workers)]
        load_out = stack.tmp / "inapp_load.json"
        try:
            bench.sampler.reset()
            connected = await clients.connect()
            connect_cpu = bench.sampler.cpu_report()
            await asyncio.sleep(SETTLE_S)
            held = rss_mb(self.api_pid)
            connect_peak = bench.sampler.peaks_mb().get("api", 0.0)
            print(f"  notifq: API RSS {idle:.0f} MB idle, {held:.0f} MB with {connected['connected']:,} connections "
                  f"({(held - idle) * 1024 / max(1, connected['connected']):.1f} KB each; peak {connect_peak:.0f} MB "
                  f"while connecting); {connected['connected'] / connected['seconds']:,.0f} AUTHs/s "
                  f"({connected['seconds']:.1f} s), failed {connected['failed']}; cpu {connect_cpu}",
                  flush=True)  # fmt: skip
            warm = await self.campaign(clients, "warmup", before_workers=lambda: self.start_workers(workers))
            plain = [await self.campaign(clients, f"campaign-{i + 1}") for i in range(self.reps)]
            stats_plain = await clients.stats()
            stack.spawn("inapp_load", [str(LOAD_SCRIPT), "--port", str(stack.api_port), "--token", bench.token,
                                       "--interval", str(self.single_interval), "--out", str(load_out),
                                       "--inapp", f"{SUBSCRIBER_PREFIX}:{self.n}"])  # fmt: skip
            await asyncio.sleep(2.0)  # the load's own start, and a stretch of single sends alone
            loaded = []
            for i in range(self.reps):
                loaded.append(await self.campaign(clients, f"loaded-{i + 1}"))
                await asyncio.sleep(0.5)
            stack.stop("inapp_load")
            await asyncio.sleep(3.0)  # the last single sends arrive
            stats_loaded = await clients.stats()
            peak = bench.sampler.peaks_mb().get("api", 0.0)
            held_after = rss_mb(self.api_pid)
        finally:
            for name in workers:
                stack.stop(name)
            await clients.close()
        await asyncio.sleep(SETTLE_S)
        closed = rss_mb(self.api_pid)
        singles = await self.singles(json.loads(load_out.read_text()), stats_loaded["singles"],
                                     [r["window"] for r in loaded])  # fmt: skip
        stats_loaded.pop("singles")
        stats_plain.pop("singles")
        return {"rss_idle_mb": idle, "rss_connected_mb": held, "rss_after_campaigns_mb": held_after,
                "rss_after_close_mb": closed, "peak_rss_mb": peak, "connect_peak_rss_mb": connect_peak,
                "connect": connected, "connect_cpu": connect_cpu, "warmup": warm, "campaigns": plain,
                "campaigns_with_singles": loaded, "singles": singles, "client_stats": [stats_plain, stats_loaded],
                "workers": self.workers}  # fmt: skip

    async def singles(self, load: dict[str, Any], arrived: dict[str, float], windows: list[list[float]]
                      ) -> dict[str, Any]:  # fmt: skip
        """Latency of each single send, POST → received; sends started while a campaign ran are the figure.

        Split, for those, at the 202 and at the worker's claim (the `attempt` event, written by the
        claim statement with PostgreSQL's clock, the same host's): API, then queue and worker
        pickup, then the provider's publish, the API's fan-out and the client.
        """
        assert self.bench.db is not None
        posted = [(started, answered, str(ident)) for _, started, answered, ident, status in load["sends"]
                  if status == 202]  # fmt: skip
        ids = [int(i) for _, _, i in posted]
        claimed = {str(r["message_id"]): r["at"].timestamp() for r in await self.bench.db.fetch(
            "SELECT message_id, min(at) AS at FROM message_events WHERE event = 'attempt' "
            "AND message_id = ANY($1::bigint[]) GROUP BY message_id", ids)}  # fmt: skip
        during: list[float] = []
        outside: list[float] = []
        parts: dict[str, list[float]] = {"post_to_202": [], "202_to_claim": [], "claim_to_received": []}
        lost = 0
        for started, answered, ident in posted:
            at = arrived.get(ident)
            if at is None:
                lost += 1
                continue
            inside = any(a <= started <= b for a, b in windows)
            (during if inside else outside).append((at - started) * 1000)
            if inside and ident in claimed:
                parts["post_to_202"].append((answered - started) * 1000)
                parts["202_to_claim"].append((claimed[ident] - answered) * 1000)
                parts["claim_to_received"].append((at - claimed[ident]) * 1000)
        for values in (during, outside, *parts.values()):
            values.sort()
        lag = sorted(load["fire_lag_ms"])
        result = {"posted": len(load["sends"]), "errors": len(load["sends"]) - len(posted), "not_received": lost,
                  "during": {"n": len(during), "p50_ms": pct(during, 0.5), "p90_ms": pct(during, 0.9),
                             "p99_ms": pct(during, 0.99), "max_ms": round(during[-1], 1) if during else -1.0},
                  "outside": {"n": len(outside), "p50_ms": pct(outside, 0.5), "p99_ms": pct(outside, 0.99),
                              "max_ms": round(outside[-1], 1) if outside else -1.0},
                  "during_split_p50_p99_ms": {k: [pct(v, 0.5), pct(v, 0.99)] for k, v in parts.items()},
                  "client_fire_lag_p50_p99_ms": [pct(lag, 0.5), pct(lag, 0.99)]}  # fmt: skip
        d = result["during"]
        print(f"  single in-app sends every {self.single_interval * 1000:.0f} ms: {result['posted']:,} posted, "
              f"{result['errors']} errors, {lost} not received; during the campaigns (n={d['n']}) p50 {d['p50_ms']} "
              f"ms, p90 {d['p90_ms']} ms, p99 {d['p99_ms']} ms, max {d['max_ms']} ms; split p50/p99 "
              f"{result['during_split_p50_p99_ms']}; between the campaigns (n={result['outside']['n']}) p50 "
              f"{result['outside']['p50_ms']} ms, p99 {result['outside']['p99_ms']} ms", flush=True)  # fmt: skip
        return result

    async def run(self) -> dict[str, Any]:
        setup = await self.setup()
        print(f"baseline: bare Starlette WebSocket broadcast under uvicorn, {self.n:,} connections:", flush=True)
        baseline = await self.baseline()
        print(f"notifq: one API process, {self.n:,} subscribers' WebSockets, {self.workers} worker(s):", flush=True)
        await self.planner_statistics()
        notifq = await self.notifq()
        return {"setup": setup, "baseline": baseline, "notifq": notifq, "n": self.n, "reps": self.reps,
                "client_procs": self.client_procs}  # fmt: skip


# --- report ----------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f} (min {min(values):,.0f}, max {max(values):,.0f})"


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    n = r["n"]
    full = n >= TARGET_CONNECTIONS
    b, q = r["baseline"], r["notifq"]

    def verdict(good: bool) -> str:
        return ("PASS" if good else "MISS") if full else "n/a (smaller N)"

    rows: list[tuple[str, str, str, str]] = []
    per_q = (q["rss_connected_mb"] - q["rss_idle_mb"]) * 1024 / max(1, q["connect"]["connected"])
    per_b = (b["rss_connected_mb"] - b["rss_idle_mb"]) * 1024 / max(1, b["connect"]["connected"])
    rss_ok = q["connect"]["connected"] >= n and max(q["rss_connected_mb"], q["peak_rss_mb"]) <= TARGET_RSS_MB
    rows.append((f"(a) API RSS, 0 / {n:,} authenticated connections",
                 f"{q['rss_idle_mb']:.0f} / {q['rss_connected_mb']:.0f} MB ({per_q:.1f} KB each)",
                 f"{b['rss_idle_mb']:.0f} / {b['rss_connected_mb']:.0f} MB ({per_b:.1f} KB each)",
                 f"<= {TARGET_RSS_MB} MB at 10,000 {verdict(rss_ok)}"))  # fmt: skip
    rows.append(("    … API peak RSS over the whole run / after closing all", f"{q['peak_rss_mb']:.0f} / "
                 f"{q['rss_after_close_mb']:.0f} MB", f"{b['peak_rss_mb']:.0f} MB", ""))  # fmt: skip
    rows.append(("    … connect + AUTH + READY, all of them",
                 f"{q['connect']['seconds']:.1f} s ({q['connect']['connected'] / q['connect']['seconds']:,.0f}/s)",
                 f"{b['connect']['seconds']:.1f} s ({b['connect']['connected'] / b['connect']['seconds']:,.0f}/s)",
                 ""))  # fmt: skip
    ms_q = q["connect_cpu"].get("api", 0.0) * q["connect_cpu"]["seconds"] * 10 / max(1, q["connect"]["connected"])
    ms_b = b["connect_cpu"].get("baseline", 0.0) * b["connect_cpu"]["seconds"] * 10 / max(1, b["connect"]["connected"])
    rows.append(("    … server CPU per connect + AUTH + READY", f"{ms_q:.2f} ms", f"{ms_b:.2f} ms", ""))
    rows.append(("    … client processes' RSS (per connection)",
                 f"{q['connect']['client_rss_mb']} MB ({q['connect']['client_rss_per_conn_kb']} KB)",
                 f"{b['connect']['client_rss_mb']} MB ({b['connect']['client_rss_per_conn_kb']} KB)", ""))  # fmt: skip
    rates = [c["rate_per_s"] for c in q["campaigns"]]
    base_rates = [x["rate_per_s"] for x in b["broadcasts"] if not x["warmup"]]
    all_in = all(c["received"] == n and c["delivered_at_set"] == n for c in q["campaigns"])
    rows.append((f"(b) campaign to {n:,} connected: notifications/s, first → last received, median (min, max) "
                 f"of {len(rates)}", _spread(rates), _spread(base_rates) + " (broadcast loop)",
                 f">= {TARGET_RATE:,} {verdict(min(rates, default=0) >= TARGET_RATE and all_in)}"))  # fmt: skip
    rows.append(("    … every one received, ACKed and persisted (delivered_at)", "yes" if all_in else "NO", "",
                 ""))  # fmt: skip
    post_to_last = statistics.median(c["post_to_last_s"] for c in q["campaigns"])
    base_post_to_last = statistics.median(x["post_to_last_s"] for x in b["broadcasts"])
    rows.append(("    … POST /campaigns → last received, median", f"{post_to_last:.3f} s",
                 f"{base_post_to_last:.3f} s (POST /broadcast)", ""))  # fmt: skip
    persisted = [c["last_to_persisted_s"] for c in q["campaigns"] if c["last_to_persisted_s"] is not None]
    rows.append(("    … last received → all delivered_at written (baseline: all ACKs counted)",
                 f"{statistics.median(persisted):.3f} s" if persisted else "never",
                 f"{statistics.median(x['last_to_all_acked_s'] for x in b['broadcasts']):.3f} s", ""))  # fmt: skip
    loaded = [c["rate_per_s"] for c in q["campaigns_with_singles"]]
    rows.append(("    … the same campaigns while single sends run (c)", _spread(loaded), "", ""))
    s = q["singles"]
    d = s["during"]
    single_ok = 0 <= d["p99_ms"] < TARGET_SINGLE_P99_MS and not s["not_received"] and not s["errors"]
    rows.append(("(c) single sends every 10 ms during (b): POST → received, p50 / p99 (max)",
                 f"{d['p50_ms']} / {d['p99_ms']} ms ({d['max_ms']}; n={d['n']})", "",
                 f"p99 < {TARGET_SINGLE_P99_MS} ms {verdict(single_ok)}"))  # fmt: skip
    rows.append(("    … between the campaigns, p50 / p99", f"{s['outside']['p50_ms']} / {s['outside']['p99_ms']} ms "
                 f"(n={s['outside']['n']})", "", ""))  # fmt: skip
    return rows


def print_table(report: dict[str, Any]) -> None:
    r = report["results"]["inapp"]
    from bench import print_rows  # the same table as the other sections (bench.py imports this module lazily)

    print_rows([("measure", "notifq", "baseline (bare Starlette)", "target"), *table_rows(r)])
    cpu = r["notifq"]["campaigns"][len(r["notifq"]["campaigns"]) // 2]["cpu_pct_of_one_core"]
    shares = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items() if k != "seconds" and (v >= 0.5 or k == "other"))
    print(f"a campaign's CPU, % of one core (both cores = 200): {shares}")
    print(f"setup: {r['setup']['subscribers_inserted_by_sql']:,} subscribers inserted by one SQL statement (not "
          f"through the API); {r['client_procs']} client process(es); {r['notifq']['workers']} worker(s)")  # fmt: skip
    print()
