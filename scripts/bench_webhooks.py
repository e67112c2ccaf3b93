"""`make bench BENCH_ARGS="--only webhooks"`: outbound webhooks for a campaign, batched and not.

For each mode, an endpoint is created through `POST /webhooks` for `message.sent`, a campaign of
`--webhook-size` messages (100,000) is sent by 2 workers (mock, 0 ms), and a receiver on 127.0.0.1
(an aiohttp server in this process that checks every signature with its own HMAC, as a user's code
would, and keeps a dedup log) counts what arrives. Reported: events/s over the delivery span (first
event received to the last), the time from the campaign's POST to its last event, and whether every
event arrived exactly once. Beside it, measured in the same run against the same receiver: a bare
aiohttp client POSTing pre-built, pre-signed bodies at the same concurrency (no database, no outbox):
the ceiling of this receiver and machine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
from bench import ROOT, Bench

sys.path.insert(0, str(ROOT))  # the tests' receiver (tests/webhooks/receiver.py)
from tests.webhooks.receiver import Receiver

from notifq.webhook_http import body_of, envelope, signature

WORKERS = 2
BARE_SECONDS = 8.0
CONCURRENCY = 32  # NOTIFQ_WEBHOOK_CONCURRENCY's default
TARGETS = {True: 5_000, False: 1_000}  # events/s: batched, not batched (issue 14)


class WebhookBench:
    def __init__(self, bench: Bench, n: int) -> None:
        self.bench = bench
        self.n = n

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.bench.stack.api_port}"

    async def reset(self) -> None:
        assert self.bench.db is not None
        await self.bench.db.execute("TRUNCATE webhook_endpoints, campaign_events CASCADE")
        await self.bench.reset()

    async def bare(self, receiver: Receiver, batch: bool) -> dict[str, Any]:
        """Pre-built signed bodies POSTed as fast as the receiver answers, CONCURRENCY at a time."""
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        size = 100 if batch else 1
        counter = iter(range(10**9))
        posted = 0
        deadline = time.monotonic() + BARE_SECONDS

        async def client(session: aiohttp.ClientSession) -> None:
            nonlocal posted
            while time.monotonic() < deadline:
                events = [envelope(f"bare_{next(counter)}", "message.sent", now, {"n": 1}) for _ in range(size)]
                body = body_of(events, batch=batch)
                headers = {"Content-Type": "application/json",
                           "Notifq-Signature": signature(receiver.secret, int(time.time()), body)}  # fmt: skip
                async with session.post(receiver.url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status < 300:
                        posted += size

        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(client(session) for _ in range(CONCURRENCY)))
        rate = posted / (time.monotonic() - started)
        print(f"  bare client ({'batches of 100' if batch else 'one event a POST'}): {rate:,.0f} events/s", flush=True)
        return {"events_per_s": round(rate)}

    async def measure(self, batch: bool) -> dict[str, Any]:
        bench = self.bench
        assert bench.http is not None and bench.db is not None
        await self.reset()
        receiver = await Receiver().start()
        first_at: float | None = None
        last_at = 0.0
        handle = receiver.handle

        async def timed(request: Any) -> Any:
            nonlocal first_at, last_at
            response = await handle(request)
            now = time.monotonic()
            first_at = first_at or now
            last_at = now
            return response

        receiver.handle = timed  # type: ignore[method-assign]
        try:
            auth = {"Authorization": f"Bearer {bench.token}"}
            endpoint = {"url": receiver.url, "events": ["message.sent"], "batch": batch}
            r = await bench.http.post(f"{self.api}/webhooks", headers=auth, json=endpoint)
            if r.status_code != 201:
                raise RuntimeError(f"POST /webhooks -> {r.status_code}: {r.text[:300]}")
            receiver.secret = r.json()["secret"]
            names = [f"webhook_worker-{i + 1}" for i in range(WORKERS)]
            for name in names:
                bench.stack.spawn(name, ["-m", "notifq", "worker"], "0",
                                  extra_env={"NOTIFQ_WEBHOOKS_ALLOW_PRIVATE": "1"})  # fmt: skip
            try:
                started = time.monotonic()
                _, campaign_id = await bench.post_campaign(False, bench.body(self.n, False), self.n)
                done, _ = await bench.wait_terminal(campaign_id, 600)
                campaign_done = time.monotonic()
                deadline = time.monotonic() + 600
                while len(receiver.seen) < self.n and time.monotonic() < deadline:
                    bench.stack.check_alive()
                    await asyncio.sleep(0.05)
                complete = time.monotonic()
            finally:
                for name in names:
                    bench.stack.stop(name)
            expected = self.n
            once = len(receiver.seen) == expected and receiver.duplicates == 0 and receiver.bad_signatures == 0
            span = (last_at - first_at) if first_at else float("nan")
            rate = len(receiver.seen) / span if span and span > 0 else 0.0
            result = {
                "batch": batch,
                "n": self.n,
                "received": len(receiver.seen),
                "duplicates": receiver.duplicates,
                "bad_signatures": receiver.bad_signatures,
                "posts": receiver.posts,
                "exactly_once": once,
                "delivery_span_s": round(span, 2),
                "events_per_s": round(rate),
                "campaign_post_to_complete_s": round(campaign_done - started, 2),
                "campaign_post_to_last_event_s": round(complete - started, 2),
                "campaign_status": done["status"],
                "target_events_per_s": TARGETS[batch],
                "meets_target": once and rate >= TARGETS[batch],
            }
            print(
                f"  webhooks {'batched' if batch else 'single '}: {rate:,.0f} events/s over {span:.2f} s "
                f"({receiver.posts:,} POSTs), campaign done in {campaign_done - started:.2f} s, last event at "
                f"{complete - started:.2f} s, exactly once: {once} (target >= {TARGETS[batch]:,}/s)",
                flush=True,
            )
            result["bare"] = await self.bare(receiver, batch)
            return result
        finally:
            await receiver.stop()

    async def run(self) -> dict[str, Any]:
        print(f"webhooks: a {self.n:,}-message campaign, {WORKERS} workers, one endpoint for message.sent", flush=True)
        return {"batched": await self.measure(True), "single": await self.measure(False)}


def print_table(report: dict[str, Any]) -> None:
    results = report["results"]["webhooks"]
    print("\n| mode | events/s | target | exactly once | POSTs | campaign done | last event | bare client |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("batched", "single"):
        r = results[mode]
        print(
            f"| {mode} | {r['events_per_s']:,} | >= {r['target_events_per_s']:,} | {r['exactly_once']} | "
            f"{r['posts']:,} | {r['campaign_post_to_complete_s']} s | {r['campaign_post_to_last_event_s']} s | "
            f"{r['bare']['events_per_s']:,}/s |"
        )
    print(json.dumps({m: results[m]["meets_target"] for m in ("batched", "single")}))
