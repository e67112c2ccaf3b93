"""`make bench BENCH_ARGS="--only single-sustained"`: single sends at fixed offered rates, delivered, beside a floor.

Why: issue 12 asks how many single sends (`POST /notifications`, one SMS each) notifq takes
and delivers per second, sustained, and how fast it answers at a moderate rate. Its targets:
>= 3,000 sends/s accepted AND delivered, sustained, with 2 workers and 0 errors; at 1,000/s
offered, p99 POST→202 < 25 ms and p99 POST→provider < 50 ms. Against a floor: a bare
Starlette + uvicorn endpoint that parses the same body and answers 202, so the figure says
how much of the machine's HTTP capacity notifq's path keeps.

What, in the stack bench.py starts (embedded PostgreSQL and Valkey, migrations, an admin):

1. The floor first, on the quiet machine: this file run as `bench_single.py floor --port N`
   (one uvicorn process, uvloop, httptools, no access log), driven by scripts/loadgen.py at
   its maximum (each connection sends again as soon as it is answered).
2. notifq: `python -m notifq api` with NOTIFQ_API_PROCESSES (bench.py's `--api-processes`,
   default 2) and 2 `python -m notifq worker`, mock provider at 0 ms and 0 failures, rate
   limit off, SMS to `+1555…` numbers (the mock's test numbers). For each offered rate
   (500, 1,000, 2,000, 4,000/s, then the maximum): loadgen.py in its own process for
   `--seconds` (default 30) after a short warm-up; CPU per process group (bench.py's
   Sampler) over exactly the measured window (loadgen marks it on stderr); then a drain
   (every message terminal) and, from PostgreSQL:
   - delivered/s: `sent` audit events whose `at` falls in the window;
   - POST→provider per accepted request: its `attempt` event's `at` (written by the claim
     right before the provider call; the mock answers at once) minus the request's due time
     from loadgen's file (same host, same clock; for the fixed rates the due time, so a
     request that waited for a connection counts that wait); POST→`sent` recorded beside it;
   - how many accepted messages did not reach `sent` within the drain timeout.
   The tables keep growing from rate to rate (no TRUNCATE under running workers); a
   CHECKPOINT after each drain starts every rate on the same footing.

`--quick`: 5 s per rate; the targets then show what they would say, marked n/a (they need
>= 30 s). Results go into the run's JSON under `single_sustained`, with the targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench import Bench

THIS = Path(__file__).resolve()
LOADGEN_SCRIPT = THIS.parent / "loadgen.py"
RATES: tuple[float, ...] = (500, 1000, 2000, 4000, 0)  # 0: the maximum
SECONDS = 30.0
QUICK_SECONDS = 5.0
WARMUP_S = 3.0
QUICK_WARMUP_S = 1.0
CONNECTIONS = 64
WORKERS = 2
API_PROCESSES = 2
DRAIN_MIN_S = 30.0
# Distinct per request: the first run of # is the request number, the second a hash of it (loadgen.py).
BODY = '{"channel":"sms","to":"+1555#######","body":"Your code is ######"}'
OPEN_STATUSES = ("pending", "queued", "sending")

TARGET_SUSTAINED_PER_S = 3_000
TARGET_LATENCY_RATE = 1_000
TARGET_P99_202_MS = 25.0
TARGET_P99_PROVIDER_MS = 50.0
TARGET_MIN_SECONDS = 30.0
CPU_GROUPS = ("api", "worker", "postgres", "valkey", "loadgen", "bench")


def pct(values: list[float], p: float) -> float:
    return round(values[min(len(values) - 1, int(p * len(values)))], 1) if values else -1.0


def summary(values: list[float]) -> dict[str, float]:
    values.sort()
    return {"n": len(values), "p50": pct(values, 0.5), "p90": pct(values, 0.9), "p99": pct(values, 0.99),
            "max": round(values[-1], 1) if values else -1.0}  # fmt: skip


def cpu_ms_per(cpu: dict[str, float], n: int, groups: tuple[str, ...]) -> dict[str, float]:
    """CPU milliseconds per item, per group, from a Sampler.cpu_report() (% of one core over `seconds`)."""
    return {g: round(cpu.get(g, 0.0) * cpu["seconds"] * 10 / max(1, n), 3) for g in groups}


def label_of(rate: float) -> str:
    return f"{rate:,.0f}/s" if rate > 0 else "max"


def read_ids(path: Path) -> list[tuple[int, float, float]]:
    """loadgen.py's `id due answered` lines."""
    rows: list[tuple[int, float, float]] = []
    for line in path.read_bytes().splitlines():
        ident, due, answered = line.split()
        rows.append((int(ident), float(due), float(answered)))
    return rows


class SingleBench:
    def __init__(self, bench: Bench, *, seconds: float, warmup: float, api_processes: int, connections: int,
                 rates: tuple[float, ...] = RATES, idempotency_key: bool = False) -> None:  # fmt: skip
        self.bench = bench
        self.seconds, self.warmup = seconds, warmup
        self.api_processes, self.connections = api_processes, connections
        self.rates, self.idempotency_key = rates, idempotency_key
        self.api_url = f"http://127.0.0.1:{bench.stack.api_port}/notifications"
        self.workers = [f"worker-{i + 1}" for i in range(WORKERS)]

    # --- the load generator --------------------------------------------------------------------

    def start_loadgen(self, url: str, rate: float, ids: Path | None) -> subprocess.Popen[bytes]:
        """Its own process, registered with the stack (stopped with it) and sampled as the `loadgen` group."""
        args = [sys.executable, str(LOADGEN_SCRIPT), url, "--token", self.bench.token, "--rate", str(rate),
                "--duration", str(self.seconds), "--warmup", str(self.warmup), "--connections",
                str(self.connections), "--body", BODY]  # fmt: skip
        if ids is not None:
            args += ["--ids", str(ids)]
        if self.idempotency_key:
            args.append("--idempotency-key")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.bench.stack.tmp)
        self.bench.stack.procs["loadgen"] = proc
        self.bench.sampler.track("loadgen", proc.pid)
        return proc

    async def load(self, label: str, url: str, rate: float, ids: Path | None
                   ) -> tuple[dict[str, Any], dict[str, float]]:  # fmt: skip
        """Run loadgen.py once; the Sampler's CPU figures cover exactly its measured window (its stderr marks)."""
        stack, sampler = self.bench.stack, self.bench.sampler
        log_path = stack.logs / f"loadgen-{label.replace('/', '_')}.log"
        proc = self.start_loadgen(url, rate, ids)
        window_cpu: dict[str, dict[str, float]] = {}

        def follow_stderr() -> None:
            # In a thread, not the event loop: the markers reach the Sampler within a read() of being written.
            assert proc.stderr is not None
            with log_path.open("ab") as log:
                for line in proc.stderr:
                    if line.startswith(b"measure-start"):
                        sampler.reset()
                    elif line.startswith(b"measure-end"):
                        window_cpu["cpu"] = sampler.cpu_report()
                    log.write(line)

        reader = threading.Thread(target=follow_stderr, name="loadgen-stderr", daemon=True)
        reader.start()
        try:
            assert proc.stdout is not None
            out = await asyncio.to_thread(proc.stdout.read)
            code = await asyncio.to_thread(proc.wait)
            await asyncio.to_thread(reader.join, 10)
        finally:
            stack.stop("loadgen", timeout=10)
        if code != 0 or not out.strip() or "cpu" not in window_cpu:
            raise RuntimeError(f"loadgen exited with {code}; see {log_path}:\n{stack.tail(log_path.stem)}")
        result: dict[str, Any] = json.loads(out)
        return result, window_cpu["cpu"]

    # --- notifq --------------------------------------------------------------------------------

    async def start_workers(self) -> None:
        """Spawn the workers and wait until a probe send is delivered: the first rate must not time their start."""
        bench = self.bench
        assert bench.http is not None and bench.db is not None
        for name in self.workers:
            bench.stack.spawn(name, ["-m", "notifq", "worker"], "0")
        headers = {"Authorization": f"Bearer {bench.token}"}
        ids = []
        for i in range(20):
            r = await bench.http.post(self.api_url, headers=headers, json={"channel": "sms", "to": f"+1555999{i:04d}",
                                                                           "body": "probe"})  # fmt: skip
            if r.status_code != 202:
                raise RuntimeError(f"probe POST /notifications -> {r.status_code}: {r.text[:300]}")
            ids.append(int(r.json()["id"]))
        deadline = time.monotonic() + 60
        while await bench.db.fetchval("SELECT count(*) FROM messages WHERE id = ANY($1::bigint[]) "
                                      "AND status <> 'sent'", ids):  # fmt: skip
            bench.stack.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the probe sends were not delivered within 60 s; see the workers' logs")
            await asyncio.sleep(0.1)

    async def drain(self, within: float) -> tuple[float, int]:
        """Wait until no message is open (pending, queued, sending): (seconds waited, still open at the deadline)."""
        assert self.bench.db is not None
        started = time.monotonic()
        while True:
            left = int(await self.bench.db.fetchval(
                "SELECT count(*) FROM messages WHERE status = ANY($1::text[])", list(OPEN_STATUSES)
            ))  # fmt: skip
            if not left or time.monotonic() - started > within:
                return round(time.monotonic() - started, 2), left
            self.bench.stack.check_alive()
            await asyncio.sleep(0.25)

    async def rate(self, rate: float) -> dict[str, Any]:
        bench = self.bench
        assert bench.db is not None
        from bench import quiet_state

        label = label_of(rate)
        ids_path = bench.stack.tmp / f"ids-{label.replace('/', '_').replace(',', '')}.txt"
        quiet_before = quiet_state()
        activity_before = await bench.background_activity()
        load, cpu = await self.load(label, self.api_url, rate, ids_path)
        activity_after = await bench.background_activity()
        drain_s, still_open = await self.drain(max(DRAIN_MIN_S, self.seconds))
        w0, w1 = (datetime.fromtimestamp(t, UTC) for t in load["window"])
        delivered = int(await bench.db.fetchval(
            "SELECT count(*) FROM message_events WHERE event = 'sent' AND at >= $1 AND at < $2", w0, w1
        ))  # fmt: skip
        rows = read_ids(ids_path)
        ids = [r[0] for r in rows]
        events = {r["message_id"]: (r["attempt"], r["sent"]) for r in await bench.db.fetch(
            "SELECT message_id, min(at) FILTER (WHERE event = 'attempt') AS attempt, "
            "min(at) FILTER (WHERE event = 'sent') AS sent FROM message_events "
            "WHERE message_id = ANY($1::bigint[]) AND event IN ('attempt', 'sent') GROUP BY message_id", ids,
        )}  # fmt: skip
        statuses = {str(r["status"]): int(r["n"]) for r in await bench.db.fetch(
            "SELECT status, count(*) AS n FROM messages WHERE id = ANY($1::bigint[]) GROUP BY status", ids
        )}  # fmt: skip
        await bench.db.execute("CHECKPOINT")
        to_provider: list[float] = []
        to_sent: list[float] = []
        for ident, due, _ in rows:
            attempt, sent = events.get(ident, (None, None))
            if attempt is not None:
                to_provider.append((attempt.timestamp() - due) * 1000)
            if sent is not None:
                to_sent.append((sent.timestamp() - due) * 1000)
        accepted = int(load["accepted"])
        seconds = load["window"][1] - load["window"][0]
        not_sent = len(ids) - statuses.get("sent", 0)
        result = {
            "offered_per_s": rate,
            "label": label,
            "seconds": round(seconds, 3),
            "accepted": accepted,
            "accepted_per_s": round(accepted / seconds, 1),
            "delivered_in_window": delivered,
            "delivered_per_s": round(delivered / seconds, 1),
            "errors": int(load["errors"]["total"]),
            "unsent": int(load["unsent"]),
            "post_to_202_ms": load["latency_ms"],
            "post_to_provider_ms": summary(to_provider),
            "post_to_sent_ms": summary(to_sent),
            "accepted_ids": len(ids),
            "not_sent": not_sent,
            "statuses_of_accepted": statuses,
            "drain_s": drain_s,
            "open_after_drain": still_open,
            "cpu_pct_of_one_core": cpu,
            "cpu_ms_per_send": cpu_ms_per(cpu, accepted, CPU_GROUPS),
            "postgres_during": {k: activity_after[k] - activity_before[k] for k in activity_after},
            "quiet_before": quiet_before,
            "quiet_after": quiet_state(),
            "loadgen": load,
        }
        p202, prov = result["post_to_202_ms"], result["post_to_provider_ms"]
        print(f"  notifq {label:>8}: accepted {result['accepted_per_s']:8,.0f}/s, delivered "
              f"{result['delivered_per_s']:8,.0f}/s, errors {result['errors']}, unsent {result['unsent']}, not sent "
              f"{not_sent}; POST→202 p50/p99 {p202['p50']}/{p202['p99']} ms, POST→provider p50/p99 "
              f"{prov['p50']}/{prov['p99']} ms; CPU ms/send {result['cpu_ms_per_send']}; loadgen "
              f"{load['loadgen_cpu']['us_per_request']} µs/request, send lag p99 {load['send_lag_ms']['p99']} ms; "
              f"drain {drain_s} s", flush=True)  # fmt: skip
        if load["error_samples"]:
            print(f"    errors, e.g.: {load['error_samples'][:3]}", flush=True)
        return result

    # --- the floor ---------------------------------------------------------------------------

    async def floor(self) -> dict[str, Any]:
        from bench import free_port, quiet_state, wait_http

        stack = self.bench.stack
        port = free_port()
        stack.spawn("floor", [str(THIS), "floor", "--port", str(port)])
        try:
            await wait_http(f"http://127.0.0.1:{port}/health", stack)
            quiet_before = quiet_state()
            load, cpu = await self.load("floor", f"http://127.0.0.1:{port}/notifications", 0, None)
        finally:
            stack.stop("floor")
        answered = int(load["accepted"])
        result = {"accepted": answered, "accepted_per_s": load["accepted_per_s"], "errors": load["errors"]["total"],
                  "post_to_202_ms": load["latency_ms"], "cpu_pct_of_one_core": cpu,
                  "cpu_ms_per_request": cpu_ms_per(cpu, answered, ("floor", "loadgen", "bench")),
                  "quiet_before": quiet_before, "loadgen": load}  # fmt: skip
        lat = result["post_to_202_ms"]
        print(f"  floor (bare Starlette, 1 process) max: {result['accepted_per_s']:,.0f}/s, errors "
              f"{result['errors']}, p50/p99 {lat['p50']}/{lat['p99']} ms; CPU ms/request "
              f"{result['cpu_ms_per_request']}; loadgen {load['loadgen_cpu']['us_per_request']} µs/request",
              flush=True)  # fmt: skip
        return result

    async def run(self) -> dict[str, Any]:
        bench = self.bench
        print(f"floor: a bare Starlette endpoint (uvicorn, uvloop, httptools, 1 process), loadgen at its maximum, "
              f"{self.connections} connections, {self.seconds:g} s:", flush=True)  # fmt: skip
        floor = await self.floor()
        await bench.reset()
        print(f"notifq: POST /notifications (one SMS each), API with NOTIFQ_API_PROCESSES={self.api_processes}, "
              f"{WORKERS} workers, mock 0 ms, rate limit off; {self.seconds:g} s per rate after {self.warmup:g} s "
              f"of warm-up, {self.connections} connections:", flush=True)  # fmt: skip
        runs: list[dict[str, Any]] = []
        try:
            await self.start_workers()
            for rate in self.rates:
                runs.append(await self.rate(rate))
        finally:
            for name in self.workers:
                bench.stack.stop(name)
        top = max((r["accepted_per_s"] for r in runs if r["offered_per_s"] == 0), default=0.0)
        ratio = round(top / floor["accepted_per_s"], 3) if floor["accepted_per_s"] else None
        return {"api_processes": self.api_processes, "workers": WORKERS, "seconds": self.seconds,
                "warmup_s": self.warmup, "connections": self.connections, "body_template": BODY,
                "idempotency_key": self.idempotency_key, "rates": runs, "floor": floor,
                "max_to_floor_ratio": ratio}  # fmt: skip


# --- report ----------------------------------------------------------------------------------


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's targets; a run shorter than 30 s per rate, or not with 2 workers, says what it saw but n/a."""
    long_enough = r["seconds"] >= TARGET_MIN_SECONDS
    why_not = "" if long_enough else f"{r['seconds']:g} s per rate < {TARGET_MIN_SECONDS:g} s"
    if r["workers"] != WORKERS:
        why_not = f"{r['workers']} workers, not {WORKERS}"

    def row(name: str, value: float, unit: str, goal: str, ok: bool, measured: bool = True) -> dict[str, Any]:
        applicable = measured and not why_not
        if not measured:
            verdict = "n/a (not measured)"
        elif why_not:
            verdict = f"n/a ({why_not}; would be {'PASS' if ok else 'MISS'})"
        else:
            verdict = "PASS" if ok else "MISS"
        return {"name": name, "value": value, "unit": unit, "target": goal, "pass": ok and applicable,
                "verdict": verdict}  # fmt: skip

    clean = [x for x in r["rates"] if x["errors"] == 0 and x["unsent"] == 0 and x["not_sent"] == 0]
    best = max(clean, key=lambda x: min(x["accepted_per_s"], x["delivered_per_s"]), default=None)
    sustained = min(best["accepted_per_s"], best["delivered_per_s"]) if best else 0.0
    name = f"single sends accepted and delivered, sustained, {WORKERS} workers, 0 errors" + (
        f" (best: offered {best['label']})" if best else " (no run without errors)")  # fmt: skip
    rows = [row(name, sustained, "sends/s", f">= {TARGET_SUSTAINED_PER_S:,}", sustained >= TARGET_SUSTAINED_PER_S)]
    at = next((x for x in r["rates"] if x["offered_per_s"] == TARGET_LATENCY_RATE), None)
    if at is None:
        rows.append(row(f"p99 POST → 202 at {TARGET_LATENCY_RATE:,}/s", -1.0, "ms", f"< {TARGET_P99_202_MS:g} ms",
                        False, measured=False))  # fmt: skip
        rows.append(row(f"p99 POST → provider at {TARGET_LATENCY_RATE:,}/s", -1.0, "ms",
                        f"< {TARGET_P99_PROVIDER_MS:g} ms", False, measured=False))  # fmt: skip
        return rows
    p202, prov = at["post_to_202_ms"]["p99"], at["post_to_provider_ms"]["p99"]
    kept = at["errors"] == 0 and at["unsent"] == 0
    rows.append(row(f"p99 POST → 202 at {TARGET_LATENCY_RATE:,}/s offered (0 errors, none unsent)", p202, "ms",
                    f"< {TARGET_P99_202_MS:g} ms", kept and 0 <= p202 < TARGET_P99_202_MS))  # fmt: skip
    rows.append(row(f"p99 POST → provider at {TARGET_LATENCY_RATE:,}/s offered (every accepted one sent)", prov, "ms",
                    f"< {TARGET_P99_PROVIDER_MS:g} ms",
                    kept and at["not_sent"] == 0 and 0 <= prov < TARGET_P99_PROVIDER_MS))  # fmt: skip
    return rows


def table_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for x in r["rates"]:
        cpu = x["cpu_ms_per_send"]
        p202, prov = x["post_to_202_ms"], x["post_to_provider_ms"]
        rows.append((
            f"notifq {x['label']}",
            f"{x['accepted_per_s']:,.0f}",
            f"{x['delivered_per_s']:,.0f}",
            f"{x['errors']}" + (f" (+{x['unsent']:,} unsent)" if x["unsent"] else ""),
            f"{p202['p50']} / {p202['p99']}",
            f"{prov['p50']} / {prov['p99']}",
            f"{x['not_sent']:,}",
            " / ".join(f"{cpu.get(g, 0.0):.2f}" for g in CPU_GROUPS[:5]),
        ))  # fmt: skip
    f = r["floor"]
    fl = f["post_to_202_ms"]
    fc = f["cpu_ms_per_request"]
    rows.append(("floor max (bare Starlette)", f"{f['accepted_per_s']:,.0f}", "-", f"{f['errors']}",
                 f"{fl['p50']} / {fl['p99']}", "-", "-",
                 f"{fc['floor']:.2f} (floor) / - / - / - / {fc['loadgen']:.2f}"))  # fmt: skip
    return rows


def print_table(report: dict[str, Any]) -> None:
    from bench import print_rows  # the same table as the other sections (bench.py imports this module lazily)

    r = report["results"]["single_sustained"]
    print(f"\nsingle sends, sustained: API processes (NOTIFQ_API_PROCESSES) {r['api_processes']}, {r['workers']} "
          f"workers, {r['seconds']:g} s per rate, {r['connections']} connections, body {r['body_template']}"
          + (", an Idempotency-Key each" if r["idempotency_key"] else ""))  # fmt: skip
    print_rows([("offered", "accepted/s", "delivered/s", "errors", "POST→202 p50 / p99 ms",
                 "POST→provider p50 / p99 ms", "not sent", "CPU ms/send api / worker / pg / valkey / loadgen"),
                *table_rows(r)])  # fmt: skip
    top = next((x for x in r["rates"] if x["offered_per_s"] == 0), None)
    if top is not None and r["max_to_floor_ratio"] is not None:
        print(f"notifq max / floor: {top['accepted_per_s']:,.0f} / {r['floor']['accepted_per_s']:,.0f} accepted/s "
              f"= {r['max_to_floor_ratio']:.3f} ({100 * r['max_to_floor_ratio']:.1f} %)")  # fmt: skip
        cpu = top["cpu_pct_of_one_core"]
        shares = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items() if k != "seconds" and (v >= 0.5 or k == "other"))
        print(f"notifq max CPU, % of one core (both cores = 200): {shares}")
    rows = [(t["name"], f"{t['value']:,} {t['unit']}", t["target"], t["verdict"]) for t in report.get("targets", [])]
    if rows:
        print_rows([("target", "value", "goal", "verdict"), *rows])
    notes = disturbances(r)
    if notes:
        print(f"NOTE: the run may have been disturbed: {notes}")
    print()


def disturbances(r: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    for x in [*r["rates"], r["floor"]]:
        label = x.get("label", "floor")
        other = x["cpu_pct_of_one_core"].get("other", 0.0)
        if other > 20:
            notes.append(f"{label}: {other:.0f} % of a core used by processes outside the benchmark")
        if x["quiet_before"]["pytest"]:
            notes.append(f"{label}: pytest running")
    return notes


# --- the floor's server ----------------------------------------------------------------------


def serve_floor(port: int) -> None:
    """What the machine gives for the same request with nothing of notifq's: parse the body, answer 202.

    No auth, no validation model, no database, no Redis: `json.loads` of the body and a small JSON
    answer with an id (loadgen reads it like notifq's). uvicorn as `notifq api` runs it (uvloop,
    httptools, no access log), one process, so the ratio compares notifq's code with nothing.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    counter = iter(range(1, 1 << 62))

    async def create(request: Request) -> Response:
        doc = json.loads(await request.body())
        if not isinstance(doc, dict) or "to" not in doc or "body" not in doc:
            return JSONResponse({"error": "bad request"}, 400)
        return JSONResponse({"id": str(next(counter)), "channel": doc.get("channel"), "to": doc["to"],
                             "status": "queued"}, 202)  # fmt: skip

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/notifications", create, methods=["POST"]), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="the floor server: `bench_single.py floor --port N`")
    parser.add_argument("what", choices=["floor"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve_floor(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
