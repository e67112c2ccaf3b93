"""A per-worker token bucket counted in messages (not jobs): `rate` messages/s, 0 = unlimited."""

from __future__ import annotations

import asyncio
import time

REFUND_POLL_SECONDS = 0.02


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        # A burst of a quarter second keeps sends smooth instead of one spike per second.
        self.capacity = burst if burst is not None else max(1.0, rate / 4)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0
        self.waits = 0  # acquisitions that had to wait (published as a metric)

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, n: int, deadline: float | None = None, *, priority: bool = False) -> int:
        """Wait for up to `n` tokens; returns how many were granted (fewer only if the deadline passes).

        `priority` (transactional sends) takes its tokens at once, even into debt: the rate
        still holds over time, because bulk work then waits until the debt is repaid.
        """
        if self.unlimited or n <= 0:
            return n
        if priority:
            self._refill()
            self._tokens -= n
            return n
        # Whole tokens only: taking a fractional capacity while granting its int() lost tokens.
        want = float(min(n, max(1, int(self.capacity))))
        async with self._lock:  # FIFO among this worker's jobs
            waited = False
            while True:
                self._refill()
                if self._tokens >= want:
                    self._tokens -= want
                    return int(want)
                wait = (want - self._tokens) / self.rate
                if deadline is not None and time.monotonic() + wait > deadline:
                    granted = int(self._tokens)
                    self._tokens -= granted
                    return granted
                # Short slices: a refund (a job that claimed fewer than it was granted, e.g. an
                # empty batch) is seen within 20 ms instead of after the whole wait.
                step = min(wait, REFUND_POLL_SECONDS)
                if not waited:
                    waited = True
                    self.waits += 1
                self.waited_seconds += step
                await asyncio.sleep(step)

    def refund(self, n: int) -> None:
        if not self.unlimited and n > 0:
            self._tokens = min(self.capacity, self._tokens + n)
