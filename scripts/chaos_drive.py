"""One chaos scenario, driven: a campaign through the API, watched every 50 ms, a fault injected mid-campaign.

The fault starts once a share of the campaign (`--fault-at`, 20 % by default) is in a terminal
state, so it lands mid-campaign however fast the machine is. While the campaign runs the suite
also acts as the workers' supervisor (a worker that exits is started again, as `notifq dev`
or compose would). When the campaign has completed and the fault is over (the server resumed,
the link healed, the roll finished), the suite waits `settle` seconds for late writes, stops the
workers with SIGTERM, and only then checks the rows: nothing may change them any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg
import httpx
from chaos_checks import Calls, audit_figures, invariant, sent_ids, timing
from chaos_faults import DRAIN_SECONDS, flush_redis, kill_workers, partition, roll_workers, stop_postgres
from chaos_netns import Network
from chaos_run import POLL_SECONDS, Inject, Plan, Probe, Run
from chaos_stack import ADMIN_EMAIL, ADMIN_PASSWORD, Stack

PROGRESS = ("SELECT sent_count + failed_count + skipped_count + cancelled_count, completed_at IS NOT NULL "
            "FROM campaigns WHERE id = $1")  # fmt: skip


async def _wait_api(run: Run) -> str:
    deadline = time.monotonic() + 60
    while True:
        if run.stack.api is not None and run.stack.api.poll() is not None:
            raise RuntimeError(f"notifq api exited:\n{run.stack.tail('api')}")
        with contextlib.suppress(httpx.HTTPError):
            if (await run.http.get("/health")).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not answer within 60 s:\n{run.stack.tail('api')}")
        await asyncio.sleep(0.1)
    r = await run.http.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    r.raise_for_status()
    return str(r.json()["token"])


async def _wait_workers(run: Run, token: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        for text in run.stack.supervise():
            print(f"    {text}", flush=True)
        wanted = {s.proc.pid for s in run.stack.slots.values() if s.proc is not None}
        if len(wanted) == len(run.stack.slots) and wanted <= await run.live_pids(token):
            return
        if time.monotonic() > deadline:
            tails = "\n".join(run.stack.tail(f"{s.name}-{len(s.incarnations)}") for s in run.stack.slots.values())
            raise RuntimeError(f"the workers did not heartbeat within 60 s:\n{tails}")
        await asyncio.sleep(0.2)


async def _watch(run: Run, inject: Inject | None) -> str | None:
    """Poll the campaign, fire the fault at `fault_at`, supervise the workers; None, or why the run is not valid."""
    probe = Probe(run.stack.postgres.url)
    fault_task: asyncio.Task[None] | None = None
    problem = None
    try:
        while True:
            for text in run.stack.supervise():
                run.note(text)
            rows = await probe.fetch(PROGRESS, run.campaign_id, limit=1)
            if rows:
                finished, complete = rows[0]
                due = finished >= run.plan.fault_at * run.plan.messages
                if inject is not None and fault_task is None and due and not complete:
                    fault_task = asyncio.create_task(inject(run))
                if complete and not run.done.is_set():
                    run.done.set()
                    run.completed_after = run.elapsed()
                    run.note("campaign completed")
            if fault_task is not None and fault_task.done():
                fault_task.result()  # a fault that failed fails the scenario
            if run.done.is_set() and (fault_task is None or fault_task.done()):
                break
            if run.elapsed() > run.plan.timeout:
                run.note(f"TIMEOUT: not completed within {run.plan.timeout:g} s")
                problem = "timeout"
                break
            await asyncio.sleep(POLL_SECONDS)
        if inject is not None and fault_task is None:
            problem = "the campaign completed before the fault could be injected"
    finally:
        probe.drop()
        if fault_task is not None and not fault_task.done():
            fault_task.cancel()  # each fault restores what it broke in its finally
            with contextlib.suppress(asyncio.CancelledError):
                await fault_task
    return problem


async def drive(stack: Stack, scenario: str, plan: Plan, network: Network | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, trust_env=False) as http:
        run = Run(stack, plan, http, network)
        token = await _wait_api(run)
        await _wait_workers(run, token)
        faults: dict[str, Inject | None] = {
            "baseline": None, "kill": kill_workers, "redis-flush": flush_redis, "pg-stop": stop_postgres,
            "rolling": lambda r: roll_workers(r, token), "partition": partition,
        }  # fmt: skip
        body = {"name": f"chaos {scenario}", "subject": "Chaos", "body": "Hello from the chaos suite.",
                "recipientCount": plan.messages}  # fmt: skip
        run.t0 = time.monotonic()
        r = await http.post("/campaigns", json=body, headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 202:
            raise RuntimeError(f"POST /campaigns -> {r.status_code}: {r.text[:500]}")
        run.campaign_id, accepted = str(r.json()["id"]), int(r.json()["totalMessages"])
        run.note(f"campaign {run.campaign_id} accepted: {accepted:,} messages")
        problem = await _watch(run, faults[scenario])
        await asyncio.gather(*run.tasks)
        await asyncio.sleep(plan.settle)  # late writes (a healed partition's worker) land before the check
        for text in stack.supervise():
            run.note(text)
    await asyncio.to_thread(stack.stop_workers, DRAIN_SECONDS + 10)
    return await _figures(run, scenario, accepted, problem)


async def _figures(run: Run, scenario: str, accepted: int, problem: str | None) -> dict[str, Any]:
    conn = await asyncpg.connect(run.stack.postgres.url, timeout=10)
    try:
        checks = await invariant(conn, run.campaign_id, run.plan.messages, accepted)
        seconds, status = await timing(conn, run.campaign_id)
        audit = await audit_figures(conn, run.campaign_id)
        sent = await sent_ids(conn, run.campaign_id)
    finally:
        await conn.close()
    incarnations = run.stack.incarnations()
    calls = Calls.read(inc.calls for inc in incarnations)
    counted: set[tuple[int, int]] = set()
    for f in run.faults:  # an earlier fault's claims may still be `sending` at a later one: counted once, first
        if f.in_flight is not None:
            f.in_flight -= counted
            counted |= f.in_flight
    explained = {i for i, _ in counted}
    after = None
    if run.completed_after is not None and run.recovered_after is not None:
        after = round(run.completed_after - run.recovered_after, 2)
    return {
        "scenario": scenario,
        "messages": run.plan.messages,
        "workers": len(run.stack.slots),
        "campaign_id": run.campaign_id,
        "problem": problem,
        "invariant": [c.as_dict() for c in checks],
        "invariant_ok": all(c.ok for c in checks),
        "seconds": None if seconds is None else round(seconds, 2),
        "status": status,
        "completed_after_fault_end_s": after,
        "calls": {
            "total": calls.total,
            "messages": len(calls.per_message),
            "duplicates": calls.duplicates,
            "duplicated_messages": len(calls.duplicated()),
            "duplicated_outside_faults": len(calls.duplicated() - explained),
            "sent_without_a_counted_call": len(sent - set(calls.per_message)),
        },
        "audit_events": audit,
        "faults": [f.as_dict(calls) for f in run.faults],
        "worker_processes": [
            {"slot": i.slot, "pid": i.pid, "ended": i.how or "running", "calls": len(calls.per_file.get(i.calls, ()))}
            for i in incarnations
        ],
        "timeline": run.timeline,
    }
