"""The chaos suite's faults. Each starts when the watcher (chaos_drive.py) fires it, mid-campaign, and restores what
it broke in a `finally` (PostgreSQL resumed, Redis back, the link up), also when the run is cut short."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from chaos_run import POLL_SECONDS, Run
from chaos_stack import Slot

DRAIN_SECONDS = 35.0  # NOTIFQ_WORKER_DRAIN_SECONDS' default: how long a SIGTERMed worker may take


async def _running(slot: Slot) -> None:
    while True:
        if slot.proc is not None:
            return
        await asyncio.sleep(POLL_SECONDS)


async def kill_workers(run: Run) -> None:
    """SIGKILL a worker (w1, w2, w1, …) every `kill_every` seconds until the campaign completes; each is replaced
    at once, as a supervisor would."""
    slots = list(run.stack.slots.values())
    kills = 0
    while not run.done.is_set() and (run.plan.max_kills is None or kills < run.plan.max_kills):
        slot = slots[kills % len(slots)]
        await _running(slot)  # between a crash and its restart: wait for the replacement
        if kills and await run.completed():  # the watcher may not have seen it yet
            break
        killed, new = run.stack.kill(slot)
        kills += 1
        run.fault(f"SIGKILL {slot.name}", killed, in_flight=True)
        run.note(f"SIGKILL worker {slot.name} (pid {killed.pid}); replacement started (pid {new.pid})")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.done.wait(), run.plan.kill_every)


async def flush_redis(run: Run) -> None:
    """`SHUTDOWN NOSAVE`, then an empty Valkey on the same port `redis_down` seconds later."""
    valkey = run.stack.valkey
    await asyncio.to_thread(valkey.shutdown_nosave)
    run.fault("Redis SHUTDOWN NOSAVE")
    run.note(f"Redis SHUTDOWN NOSAVE (pid {valkey.proc.pid if valkey.proc else '?'})")
    try:
        await asyncio.sleep(run.plan.redis_down)
    finally:
        await asyncio.to_thread(valkey.start)
        run.recovered_after = run.elapsed()
        run.note(f"Redis restarted empty on the same port (pid {valkey.proc.pid if valkey.proc else '?'})")


async def stop_postgres(run: Run) -> None:
    """SIGSTOP every PostgreSQL process (the postmaster and all its children: one process group), then SIGCONT."""
    pg = run.stack.postgres
    count = pg.signal_all(signal.SIGSTOP)
    await asyncio.sleep(0.1)
    run.fault("PostgreSQL SIGSTOP")
    run.note(f"SIGSTOP to {count} PostgreSQL processes ({pg.stopped()} stopped)")
    try:
        await asyncio.sleep(run.plan.pg_stop)
    finally:
        pg.signal_all(signal.SIGCONT)
        run.recovered_after = run.elapsed()
        run.note(f"SIGCONT to PostgreSQL ({pg.stopped()} still stopped)")


async def roll_workers(run: Run, token: str) -> None:
    """A rolling deploy: SIGTERM each worker in turn, wait for it to drain and exit, start its replacement and wait
    until the replacement heartbeats before the next."""
    for slot in run.stack.slots.values():
        await _running(slot)
        slot.held = True
        try:
            pid, started = slot.current.pid, time.monotonic()
            run.fault(f"SIGTERM {slot.name}", slot.current)
            run.note(f"SIGTERM worker {slot.name} (pid {pid})")
            stopped = await asyncio.to_thread(run.stack.terminate, slot, DRAIN_SECONDS + 10)
            run.note(f"worker {slot.name} (pid {pid}) gone: {stopped.how}, after {time.monotonic() - started:.2f} s")
            new = run.stack.spawn(slot)
        finally:
            slot.held = False
        deadline = time.monotonic() + 60
        while True:
            if new.pid in await run.live_pids(token):
                run.note(f"replacement {slot.name} (pid {new.pid}) heartbeating")
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replacement of worker {slot.name} did not heartbeat within 60 s")
            await asyncio.sleep(0.1)
    run.recovered_after = run.elapsed()


async def partition(run: Run) -> None:
    """Cut worker host w1 off the network (its veth down) for `cut_seconds`, then heal it."""
    assert run.network is not None
    slot = run.stack.slots["w1"]
    run.network.cut("w1")
    run.fault("cut off w1", slot.current, in_flight=True)
    run.note(f"host w1 cut off (link down), worker pid {slot.current.pid} on it")
    try:
        await asyncio.sleep(run.plan.cut_seconds)
    finally:
        run.network.heal("w1")
        run.recovered_after = run.elapsed()
        run.note("host w1 healed (link up)")
