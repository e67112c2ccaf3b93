"""Making room for transactional sends while bulk work saturates the machine.

Separate queues are not enough on their own: a worker's event loop and the machine's
cores are shared, so with eight bulk jobs in full swing a one-off OTP waits behind them
for seconds (measured: p50 ~3 s on 2 cores). While transactional traffic is active (the
API sets a short-lived Redis flag on every transactional POST, and a transactional job
marks its own process), bulk work in each worker runs one small chunk at a time and pauses
briefly after each: the campaign slows down, the OTP goes through at once.

How small and how brief is a trade (`make bench --only priority --priority-lanes shared`,
OTPs every 10 ms during a 1,000,000-message campaign, 2 workers, 2026-12-01): chunks of 100
and 10 ms pauses gave the OTPs p99 13 ms and the campaign 31 % of its solo rate; 200 and
3 ms, p99 20 ms and 57 %; 300 and 2 ms, p99 63 ms and 67 %; 250 and 2.5 ms (below), p99
38-41 ms and 67-69 %. Workers with NOTIFQ_WORKER_LANES=bulk never yield (dedicated
transactional workers serve the OTPs; on 2 cores that measured worse for them: p99 54 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from notifq.keys import RedisKeys
from notifq.queue import TRANSACTIONAL_ACTIVE_MS

BUSY_CHUNK = 250  # bulk messages per chunk while transactional traffic is active
BUSY_PAUSE_SECONDS = 0.0025  # after each bulk chunk, while it is active
WATCH_INTERVAL_SECONDS = 0.05


class PriorityGate:
    def __init__(self) -> None:
        self._until = 0.0
        self._slot = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return time.monotonic() < self._until

    def mark(self, seconds: float = TRANSACTIONAL_ACTIVE_MS / 1000) -> None:
        self._until = max(self._until, time.monotonic() + seconds)

    def chunk_size(self, normal: int) -> int:
        return min(normal, BUSY_CHUNK) if self.busy else normal

    @contextlib.asynccontextmanager
    async def bulk_chunk(self) -> AsyncIterator[None]:
        """Around one bulk chunk: free when idle; one at a time, then a pause, while busy."""
        if not self.busy:
            yield
            return
        async with self._slot:
            yield
            await asyncio.sleep(BUSY_PAUSE_SECONDS)

    async def watch(self, redis: Redis, keys: RedisKeys, stop: asyncio.Event) -> None:
        """Follow the flag the API sets (queue.announce_transactional; one PTTL every 50 ms per worker process)."""
        while not stop.is_set():
            with contextlib.suppress(Exception):  # Redis down: the lanes themselves will notice
                ttl = await redis.pttl(keys.transactional_active)
                if ttl and ttl > 0:
                    self.mark(ttl / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL_SECONDS)
