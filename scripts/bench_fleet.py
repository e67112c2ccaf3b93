"""Fleet-wide provider limits, measured: three workers share `NOTIFQ_PROVIDER_RATES=mock=500`.

Why: issue 14 asks that three workers with `NOTIFQ_PROVIDER_RATES=mock=500` and the per-worker
limit off send 500/s ± 5 % as a fleet (not 1,500), measured in `make bench`, beside what the
old behaviour gives on the same machine in the same run: the same three workers with a
per-worker limit of 500/s each and no fleet limit (~1,500/s).

What, in the stack bench.py starts (embedded PostgreSQL and Valkey, migrations, the API, an
admin), for each of the two runs on empty tables and an empty Redis:
1. a campaign (`recipientCount`, example.com addresses: the mock at 0 ms, 0 failures) big
   enough to keep the workers busy past the window;
2. three `python -m notifq worker` processes; once the first message is sent and a warm-up
   has passed, `sent` messages are counted in PostgreSQL every second for `--seconds`
   (default 30); the rate is the count's growth over the window, with the per-second spread
   and who used the CPU (bench.py's Sampler);
3. the audit trail's token misses (messages deferred for lack of a fleet token) in the run.

Standalone: `python scripts/bench_fleet.py [--seconds 30] [--rate 500]` starts and stops its own
stack; bench.py can call `measure_fleet(bench)` with the Bench it opened.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import RESULTS_DIR, Bench, Sizes, Stack, quiet_state

WORKERS = 3
RATE = 500.0
SECONDS = 30.0
WARMUP_S = 5.0
TOLERANCE = 0.05
START_WITHIN_S = 60.0


def _env(fleet: bool, rate: float) -> dict[str, str]:
    """The workers' settings beyond the stack's (mock at 0 ms, no failures): a fleet limit, or a per-worker one."""
    if fleet:
        return {"NOTIFQ_PROVIDER_RATES": f"mock={rate:g}", "NOTIFQ_RATE_LIMIT": "0"}
    return {"NOTIFQ_PROVIDER_RATES": "", "NOTIFQ_RATE_LIMIT": f"{rate:g}"}


async def _sent(bench: Bench) -> int:
    assert bench.db is not None
    return int(await bench.db.fetchval("SELECT count(*) FROM messages WHERE status = 'sent'"))


async def run_once(bench: Bench, *, fleet: bool, rate: float, seconds: float) -> dict[str, Any]:
    """One run: a fresh campaign, three workers, the sent count sampled every second over the window."""
    assert bench.db is not None
    stack = bench.stack
    await bench.reset()
    expected = rate if fleet else rate * WORKERS
    n = int(expected * (seconds + WARMUP_S + 15) * 1.2)
    _, campaign_id = await bench.post_campaign(False, bench.body(n, explicit=False), n)
    names = [f"fleet-worker-{i + 1}" for i in range(WORKERS)]
    for name in names:
        stack.spawn(name, ["-m", "notifq", "worker"], "0", extra_env=_env(fleet, rate))
    try:
        deadline = time.monotonic() + START_WITHIN_S
        while not await _sent(bench):
            stack.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing was sent within {START_WITHIN_S:g} s; see the workers' logs")
            await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP_S)
        bench.sampler.reset()
        samples = [(time.monotonic(), await _sent(bench))]
        while samples[-1][0] - samples[0][0] < seconds:
            await asyncio.sleep(1.0)
            samples.append((time.monotonic(), await _sent(bench)))
        cpu = bench.sampler.cpu_report()
        stack.check_alive()
    finally:
        for name in names:
            stack.stop(name)
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    per_second = [(b - a) / (tb - ta) for (ta, a), (tb, b) in itertools.pairwise(samples)]
    misses = int(await bench.db.fetchval(
        "SELECT count(*) FROM message_events WHERE event IN ('throttled', 'deferred')"
    ))  # fmt: skip
    spread = [round(min(per_second), 1), round(max(per_second), 1), round(statistics.pstdev(per_second), 1)]
    result = {
        "mode": "fleet" if fleet else "per-worker",
        "workers": WORKERS,
        "env": _env(fleet, rate),
        "campaign": campaign_id,
        "messages": n,
        "window_s": round(t1 - t0, 2),
        "sent_in_window": c1 - c0,
        "rate_per_s": round((c1 - c0) / (t1 - t0), 1),
        "expected_per_s": expected,
        "per_second": dict(zip(("min", "max", "stdev"), spread, strict=True)),
        "ran_out": c1 >= n,
        "token_misses": misses,
        "cpu_pct_of_one_core": cpu,
    }
    print(f"  {result['mode']:10} {WORKERS} workers: {result['rate_per_s']:8,.1f} sent/s over {result['window_s']} s "
          f"(expected {expected:,.0f}; per second {result['per_second']['min']:,.0f}-{result['per_second']['max']:,.0f}"
          f"; {misses} token misses; machine {cpu.get('machine_busy', 0):.0f} % of one core)", flush=True)  # fmt: skip
    return result


async def measure_fleet(bench: Bench, *, rate: float = RATE, seconds: float = SECONDS) -> dict[str, Any]:
    """The fleet limit, then the old per-worker behaviour, on the stack `bench` opened (its API logged in)."""
    fleet = await run_once(bench, fleet=True, rate=rate, seconds=seconds)
    baseline = await run_once(bench, fleet=False, rate=rate, seconds=seconds)
    within = abs(fleet["rate_per_s"] - rate) <= rate * TOLERANCE
    return {
        "fleet": fleet,
        "per_worker_baseline": baseline,
        "target": {"rate_per_s": rate, "tolerance": TOLERANCE, "met": within and not fleet["ran_out"]},
    }


def print_table(report: dict[str, Any]) -> None:
    fleet, base, target = report["fleet"], report["per_worker_baseline"], report["target"]
    print("\nfleet-wide provider limit, 3 workers, mock at 0 ms")
    verdict = "met" if target["met"] else "NOT met"
    print(f"  NOTIFQ_PROVIDER_RATES=mock={target['rate_per_s']:g}, per-worker limit off: {fleet['rate_per_s']:,.1f}/s "
          f"(target {target['rate_per_s']:g} ± {target['tolerance']:.0%}: {verdict})")  # fmt: skip
    print(f"  old behaviour, NOTIFQ_RATE_LIMIT={target['rate_per_s']:g} per worker: {base['rate_per_s']:,.1f}/s")


async def _standalone(stack: Stack, rate: float, seconds: float) -> dict[str, Any]:
    bench = Bench(stack, Sizes(), quick=False)
    try:
        await bench.open(naive=False)
        return await measure_fleet(bench, rate=rate, seconds=seconds)
    finally:
        await bench.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="the measured window of each run")
    parser.add_argument("--rate", type=float, default=RATE, help="the fleet limit (and the baseline's per-worker one)")
    args = parser.parse_args(argv)
    quiet = quiet_state()
    if quiet["pytest"] or quiet["load"][0] >= 1.0:
        print(f"WARNING: the machine is not quiet (load {quiet['load']}, {len(quiet['pytest'])} pytest process(es))",
              flush=True)  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="notifq-bench-fleet-"))
    stack = Stack(tmp)
    try:
        print(f"notifq fleet bench: state in {tmp}", flush=True)
        stack.start_servers()
        report = asyncio.run(_standalone(stack, args.rate, args.seconds))
    finally:
        stack.shutdown()
    report["quiet_before"] = quiet
    print_table(report)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-fleet.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out}")
    return 0 if report["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
