"""`make chaos`: notifq under faults, and the invariant checked in SQL after each one (issue 15).

Each scenario runs against its own fresh PostgreSQL and Valkey (never the machine's services),
one `notifq api` process and 2 `notifq worker` processes (mock provider at 0 ms, no failures,
no rate limit), and delivers one campaign of `--messages` (100,000) while a fault is injected
once 20 % of it is done (`--fault-at`):

  baseline     no fault: the time the targets are relative to (run first, on its own servers)
  kill         a worker SIGKILLed every 10 s (w1, w2, w1, …) until the campaign completes, each
               restarted at once, as a supervisor would
  redis-flush  Redis `SHUTDOWN NOSAVE`, restarted empty on the same port 5 s later
  pg-stop      every PostgreSQL process SIGSTOPped for 15 s, then SIGCONT
  rolling      each worker SIGTERMed in turn, replaced once it has exited (a rolling deploy)
  partition    PostgreSQL + Valkey, the API and each worker on hosts of their own (network
               namespaces on a bridge, 10.213.0.0/24, built and removed by the suite); worker
               host w1 cut off for 60 s (its link down), then healed. Needs root and `ip`:
               otherwise reported SKIPPED, with the reason

After each: the invariant (scripts/chaos_checks.py), the time to complete (campaign creation
to `completed_at`), duplicates (provider calls beyond one per message, counted by the mock:
scripts/chaos_worker.py), per fault what the faulted worker had in flight, and targets
(PASS/FAIL): kill done within 2x the fault-free time, redis-flush within it + 10 s, duplicates
no more than the killed (or cut-off) worker had in flight, none where docs/operations.md
promises none. The exit status is 1 when an invariant is violated or a scenario could not run
as planned, else 0; with `--strict` also when a target fails or a scenario is skipped.
`--short` is the CI form (tests/chaos/test_chaos_short.py): the kill scenario, 20,000 messages,
one kill of each worker 1 s apart, after a baseline of the same size, in about a minute.
How to read the output: docs/chaos.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chaos_netns
from chaos_drive import drive
from chaos_procs import Registry, end_leftovers, live_runs, new_run_dir
from chaos_run import Plan
from chaos_servers import LOCALHOST
from chaos_stack import Stack

SCENARIOS = {
    "baseline": "no fault",
    "kill": "a worker SIGKILLed every {kill_every:g} s mid-campaign, restarted at once",
    "redis-flush": "Redis SHUTDOWN NOSAVE mid-campaign, restarted empty {redis_down:g} s later (same port)",
    "pg-stop": "every PostgreSQL process SIGSTOPped for {pg_stop:g} s, then SIGCONT",
    "rolling": "rolling SIGTERM of each worker, each replaced once it has exited",
    "partition": "worker host w1 cut off the network for {cut_seconds:g} s mid-campaign, then healed",
}
FAULTS = ["kill", "redis-flush", "pg-stop", "rolling", "partition"]
SHORT_MESSAGES, SHORT_KILL_EVERY, SHORT_KILLS = 20_000, 1.0, 2
# Targets: issue 15's (kill, redis-flush, duplicates of a crash) and docs/operations.md's promises of no duplicate.
NO_DUPLICATES = {"redis-flush": "a flushed Redis", "pg-stop": "a PostgreSQL stall shorter than the lease",
                 "rolling": "a graceful stop (SIGTERM)"}  # fmt: skip


def plan_for(args: argparse.Namespace) -> Plan:
    plan = Plan(messages=args.messages, fault_at=args.fault_at, timeout=args.timeout, kill_every=args.kill_every,
                max_kills=args.max_kills)  # fmt: skip
    return replace(plan, kill_every=SHORT_KILL_EVERY, max_kills=SHORT_KILLS) if args.short else plan


def run_scenario(name: str, plan: Plan, run_dir: Path, registry: Registry, overrides: dict[str, str]) -> dict[str, Any]:
    network = None
    if name == "partition":
        if reason := chaos_netns.unavailable():
            return {"scenario": name, "skipped": reason}
        if others := live_runs():
            raise RuntimeError(f"another chaos run (pid {others[0]}) may be using the nqchaos-* namespaces")
        chaos_netns.remove_leftovers()
        network = chaos_netns.Network()
    root = run_dir / name
    root.mkdir()
    root.chmod(0o755)
    try:
        if network is not None:
            network.up()
            hosts = network.hosts
            stack = Stack(root, registry, db_host=hosts["db"], api_host=hosts["api"],
                          worker_hosts={"w1": hosts["w1"], "w2": hosts["w2"]}, overrides=overrides)  # fmt: skip
        else:
            stack = Stack(root, registry, worker_hosts={"w1": LOCALHOST, "w2": LOCALHOST}, overrides=overrides)
        try:
            stack.start(chaos_netns.SUBNET_CIDR if network is not None else "127.0.0.1/32")
            settle = max(plan.settle, 5.0) if network is not None else plan.settle
            return asyncio.run(drive(stack, name, replace(plan, settle=settle), network))
        finally:
            stack.close()
    finally:
        if network is not None:
            network.down()


def targets(result: dict[str, Any], baseline: float | None) -> list[dict[str, Any]]:
    name, seconds, calls = result["scenario"], result.get("seconds"), result.get("calls", {})
    found: list[dict[str, Any]] = []

    def target(what: str, ok: bool | None, detail: str) -> None:
        found.append({"name": what, "ok": ok, "detail": detail})

    def relative(what: str, limit: float | None, how: str) -> None:
        if limit is None or seconds is None:
            target(what, None, "no fault-free time" if limit is None else "the campaign did not complete")
        else:
            target(what, seconds <= limit, f"{seconds:.2f} s <= {limit:.2f} s ({how})")

    dup = calls.get("duplicates", 0)
    if name == "kill":
        relative("done within 2x fault-free", None if baseline is None else 2 * baseline, "2 x fault-free")
    if name == "redis-flush":
        relative("done within fault-free + 10 s", None if baseline is None else baseline + 10, "fault-free + 10 s")
    if name in ("kill", "partition"):
        measured = [f["in_flight"] for f in result.get("faults", []) if "in_flight" in f]
        outside = calls.get("duplicated_outside_faults", 0)
        who = "the killed workers" if name == "kill" else "the cut-off worker"
        what = f"duplicates <= messages {who} had in flight"
        if None in measured:
            target(what, None, "in flight not measured (a snapshot failed)")
        else:
            in_flight = sum(measured)
            target(what, dup <= in_flight and outside == 0, f"{dup:,} duplicate calls, {in_flight:,} in flight; "
                   f"{outside:,} duplicated messages outside them")  # fmt: skip
    if name in NO_DUPLICATES:
        target("no duplicates", dup == 0, f"{dup:,} duplicate calls (promised for {NO_DUPLICATES[name]})")
    return found


def _verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a "}[ok]


def report(result: dict[str, Any], baseline: float | None) -> None:
    if "skipped" in result or "error" in result:
        return
    print(f"  invariant   {_verdict(result['invariant_ok'])}")
    for check in result["invariant"]:
        print(f"    {_verdict(check['ok'])}  {check['name']}: {check['detail']}")
    seconds = result["seconds"]
    ratio = f", fault-free {baseline:.2f} s, {seconds / baseline:.2f}x" if seconds and baseline else ""
    after = result["completed_after_fault_end_s"]
    tail = f"; completed {after:.2f} s after the fault ended" if after is not None and after >= 0 else ""
    print(f"  time        {seconds if seconds is None else f'{seconds:.2f} s'} to complete "
          f"({result['status']}{ratio}){tail}")  # fmt: skip
    calls = result["calls"]
    print(f"  duplicates  {calls['duplicates']:,} provider calls beyond one per message (the mock's own count: "
          f"{calls['total']:,} calls for {calls['messages']:,} messages; {calls['duplicated_messages']:,} messages "
          f"called more than once, {calls['duplicated_outside_faults']:,} of them outside the faults' in-flight "
          "sets)")  # fmt: skip
    if calls["sent_without_a_counted_call"]:
        print(f"    WARNING: {calls['sent_without_a_counted_call']:,} sent messages have no counted call: the mock's "
              "count is incomplete")  # fmt: skip
    audit = result["audit_events"]
    print("  audit       " + ", ".join(f"{k} {v:,}" for k, v in sorted(audit.items()))
          + f" (attempt events beyond one per message: {audit.get('attempt', 0) - result['messages']:,}; an attempt "
          "is a claim, not a provider call)")  # fmt: skip
    for i, fault in enumerate(result["faults"], 1):
        line = f"    #{i} at {fault['at_s']:.2f} s  {fault['what']}"
        if "pid" in fault:
            line += f" (pid {fault['pid']})"
        if "in_flight" in fault and fault["in_flight"] is None:
            line += ": in flight not measured (PostgreSQL did not answer the snapshot)"
        elif "in_flight" in fault:
            line += (f": {fault['in_flight']:,} in flight (claimed, not recorded), {fault['reached_provider']:,} of "
                     f"them had reached the provider, {fault['duplicated']:,} sent more than once "
                     f"({fault['duplicate_calls']:,} extra calls)")  # fmt: skip
        print(("  faults\n" if i == 1 else "") + line)
    for t in result["targets"]:
        print(f"  target      {_verdict(t['ok'])}  {t['name']}: {t['detail']}")


def summary(results: list[dict[str, Any]], baseline: float | None) -> None:
    print("\nscenario     invariant  time to complete  x fault-free  duplicates  in flight  targets")
    for r in results:
        name = r["scenario"]
        if "skipped" in r:
            print(f"{name:<12} SKIPPED    {r['skipped']}")
            continue
        if "error" in r:
            print(f"{name:<12} ERROR      {r['error'].splitlines()[0][:100]}")
            continue
        seconds = r["seconds"]
        time_s = "-" if seconds is None else f"{seconds:.2f} s"
        ratio = f"{seconds / baseline:.2f}" if seconds and baseline else "-"
        counted = [f["in_flight"] for f in r["faults"] if "in_flight" in f]
        in_flight = "-" if not counted else "?" if None in counted else f"{sum(counted):,}"
        verdicts = " ".join(_verdict(t["ok"]) for t in r["targets"]) or "-"
        print(f"{name:<12} {_verdict(r['invariant_ok']):<10} {time_s:>16}  {ratio:>12}  {r['calls']['duplicates']:>10,}"
              f"  {in_flight:>9}  {verdicts}")  # fmt: skip


def exit_status(results: list[dict[str, Any]], strict: bool) -> int:
    for r in results:
        if "error" in r or r.get("problem") or r.get("invariant_ok") is False:
            return 1
        if strict and ("skipped" in r or any(t["ok"] is False for t in r.get("targets", []))):
            return 1
    return 0


def verdict(results: list[dict[str, Any]], code: int) -> str:
    failed = sum(1 for r in results for t in r.get("targets", []) if t["ok"] is False)
    skipped = [r["scenario"] for r in results if "skipped" in r]
    extra = (f"; {failed} target(s) FAIL" if failed else "") + (f"; skipped: {', '.join(skipped)}" if skipped else "")
    if any("error" in r or r.get("problem") or r.get("invariant_ok") is False for r in results):
        return f"FAILED, exit {code}: an invariant was violated or a scenario could not run as planned{extra}"
    return f"exit {code}: the invariant held in every scenario run{extra}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=[*FAULTS, "all"], default="all", help="default: all")
    parser.add_argument("--messages", type=int, default=100_000, help="campaign size (default 100,000)")
    parser.add_argument("--short", action="store_true", help="the CI form: kill, 20,000 messages, 2 kills 1 s apart")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a failed target or a skipped scenario too")
    parser.add_argument("--baseline", type=float, metavar="SECONDS", help="use this fault-free time instead of "
                        "running the baseline scenario")  # fmt: skip
    parser.add_argument("--fault-at", type=float, default=0.2, metavar="SHARE", help="inject the fault once this "
                        "share of the campaign is done (default 0.2)")  # fmt: skip
    parser.add_argument("--kill-every", type=float, default=10.0, metavar="SECONDS", help="kill: seconds between "
                        "kills (default 10)")  # fmt: skip
    parser.add_argument("--max-kills", type=int, metavar="N", help="kill: at most N kills (default: until done)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="give up on a campaign "
                        "after this long (default 600): its messages are then not all terminal, a "
                        "violation")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a notifq setting for "
                        "the API and workers, e.g. NOTIFQ_LEASE_SECONDS=30 (repeatable)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the servers' data and the processes' logs")
    args = parser.parse_args(argv)
    if args.short:
        if args.scenario not in ("all", "kill"):
            parser.error("--short runs the kill scenario only")
        args.scenario = "kill"
        if args.messages == parser.get_default("messages"):
            args.messages = SHORT_MESSAGES
    if args.messages < 1 or not 0 < args.fault_at < 1:
        parser.error("--messages must be positive and --fault-at between 0 and 1")
    if any("=" not in item for item in args.set):
        parser.error("--set wants NAME=VALUE")
    return args


def _on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    if ended := end_leftovers():
        print(f"ended the processes of a crashed earlier run: {', '.join(ended)}", flush=True)
    if not live_runs() and chaos_netns.unavailable() is None and (removed := chaos_netns.remove_leftovers()):
        print(f"removed a crashed earlier run's network: {', '.join(removed)}", flush=True)
    plan = plan_for(args)
    names = ["baseline"] * (args.baseline is None) + (FAULTS if args.scenario == "all" else [args.scenario])
    busy = subprocess.run(["pgrep", "-c", "-f", "pytest"], capture_output=True, text=True, check=False).stdout.strip()
    run_dir = new_run_dir()
    registry = Registry(run_dir)
    started = time.monotonic()
    print(f"notifq chaos: {', '.join(names)}; {plan.messages:,} messages, 2 workers, mock 0 ms; load "
          f"{os.getloadavg()[0]:.2f}, {busy or 0} pytest process(es) elsewhere; state in {run_dir}",
          flush=True)  # fmt: skip
    results: list[dict[str, Any]] = []
    baseline = args.baseline
    try:
        for name in names:
            description = SCENARIOS[name].format(**vars(plan))
            print(f"\n== {name}: {description} ({plan.messages:,} messages, 2 workers)", flush=True)
            try:
                result = run_scenario(name, plan, run_dir, registry, overrides)
            except Exception as exc:  # the scenario could not run: reported, counted as a failure
                result = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"}
                print(f"  ERROR  {result['error']}", flush=True)
            if "skipped" in result:
                print(f"  SKIPPED  {result['skipped']}", flush=True)
            if name == "baseline" and result.get("invariant_ok") and not result.get("problem"):
                baseline = result["seconds"]
            result["description"] = description
            result["targets"] = targets(result, baseline) if "calls" in result else []
            report(result, baseline)
            if result.get("problem"):
                print(f"  PROBLEM  {result['problem']}", flush=True)
            results.append(result)
    except KeyboardInterrupt:
        print("\ninterrupted: everything the suite started is stopped", file=sys.stderr)
        return 130
    finally:
        code = exit_status(results, args.strict)
        if args.keep or code:
            registry.keep()
            print(f"\nlogs and data kept in {run_dir}", flush=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    summary(results, baseline)
    total = time.monotonic() - started
    print(f"\n{verdict(results, code)} ({total:.0f} s)")
    if args.json:
        doc = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "argv": sys.argv[1:], "plan": asdict(plan),
               "baseline_s": baseline, "exit": code, "seconds": round(total, 1), "results": results}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
