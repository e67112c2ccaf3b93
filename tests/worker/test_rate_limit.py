"""RateLimiter: a token bucket counted in messages; 0 means unlimited."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from notifq.worker import rate_limit
from notifq.worker.rate_limit import RateLimiter


class FakeClock:
    """A monotonic clock that only moves when the limiter sleeps: exact arithmetic, no wall time.

    Each sleep advances at least 1 ns, as a real clock would, so float rounding in the bucket
    (e.g. 2.5 + 0.15 * 50 == 9.999...) cannot leave the limiter re-sleeping for 0 s forever.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(1e-9, seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Makes the rate_limit module see a fake clock (create limiters after requesting this)."""
    fake = FakeClock()
    monkeypatch.setattr(rate_limit, "time", SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(rate_limit, "asyncio", SimpleNamespace(Lock=asyncio.Lock, sleep=fake.sleep))
    return fake


async def test_zero_rate_is_unlimited() -> None:
    """RateLimiter(0) grants any request at once and never waits."""
    limiter = RateLimiter(0)
    assert limiter.unlimited
    started = time.monotonic()
    for _ in range(100):
        assert await limiter.acquire(10_000) == 10_000
    assert await limiter.acquire(5, deadline=time.monotonic() - 1) == 5
    assert time.monotonic() - started < 0.1
    assert limiter.waited_seconds == 0
    limiter.refund(50)  # a no-op, must not raise


async def test_non_positive_requests_return_immediately() -> None:
    """acquire(0) (or negative) returns the request unchanged without touching the bucket."""
    limiter = RateLimiter(1)
    assert await limiter.acquire(0) == 0
    assert await limiter.acquire(-3) == -3
    assert await limiter.acquire(1) == 1  # the full burst is still there


@pytest.mark.parametrize(("rate", "capacity"), [(50, 12.5), (100, 25.0), (4, 1.0), (2, 1.0), (0.5, 1.0), (0, 1.0)])
def test_capacity_is_a_quarter_second_but_at_least_one(rate: float, capacity: float) -> None:
    """capacity = max(1, rate / 4) unless a burst is given."""
    assert RateLimiter(rate).capacity == capacity


def test_explicit_burst_overrides_capacity() -> None:
    """An explicit burst sets the capacity."""
    assert RateLimiter(50, burst=3).capacity == 3


async def test_rate_50_paces_100_messages() -> None:
    """100 tokens at 50/s in chunks of 10: every grant is whole and it takes ~(100 - 12.5) / 50 s."""
    limiter = RateLimiter(50)
    started = time.monotonic()
    grants = [await limiter.acquire(10) for _ in range(10)]
    elapsed = time.monotonic() - started
    assert grants == [10] * 10
    assert sum(grants) == 100
    assert elapsed >= 1.5
    assert limiter.waited_seconds >= 1.5


async def test_initial_burst_is_free() -> None:
    """A fresh limiter grants its whole capacity without waiting."""
    limiter = RateLimiter(40)  # capacity 10
    started = time.monotonic()
    assert await limiter.acquire(10) == 10
    assert time.monotonic() - started < 0.05
    assert limiter.waited_seconds == 0


async def test_request_larger_than_capacity_is_capped(clock: FakeClock) -> None:
    """A request above the capacity is granted at most the capacity at a time."""
    limiter = RateLimiter(40)  # capacity 10
    assert await limiter.acquire(1000) == 10
    assert await limiter.acquire(1000) == 10
    assert clock.now - 1000.0 == pytest.approx(10 / 40)


async def test_long_run_rate_matches_configuration(clock: FakeClock) -> None:
    """On a fake clock, 1000 messages at 50/s in chunks of 10 take exactly (1000 - 12.5) / 50 s."""
    limiter = RateLimiter(50)
    granted = 0
    while granted < 1000:
        granted += await limiter.acquire(10)
    assert granted == 1000
    assert clock.now - 1000.0 == pytest.approx((1000 - 12.5) / 50)


async def test_grants_match_tokens_taken_with_fractional_capacity(clock: FakeClock) -> None:
    """At 10/s (capacity 2.5), asking for big chunks still yields 10 messages per second."""
    limiter = RateLimiter(10)
    granted = 0
    while granted < 1000:
        granted += await limiter.acquire(100)
    elapsed = clock.now - 1000.0
    assert granted / elapsed == pytest.approx(10, rel=0.05)  # currently 8/s: 2 granted per 2.5 tokens


async def test_deadline_returns_fewer_instead_of_waiting() -> None:
    """If waiting for n would pass the deadline, acquire returns the whole tokens it has, at once."""
    limiter = RateLimiter(10, burst=5)
    assert await limiter.acquire(5) == 5  # empty the bucket
    await asyncio.sleep(0.25)  # ~2.5 tokens refill
    started = time.monotonic()
    granted = await limiter.acquire(5, deadline=time.monotonic() + 0.1)  # all 5 would need ~0.25 s more
    assert 1 <= granted < 5
    assert time.monotonic() - started < 0.1


async def test_deadline_with_empty_bucket_grants_zero() -> None:
    """With under one token and too little time left, acquire returns 0 immediately."""
    limiter = RateLimiter(2)  # capacity 1, one token per 0.5 s
    assert await limiter.acquire(1) == 1
    started = time.monotonic()
    deadline = started + 0.2
    assert await limiter.acquire(1, deadline=deadline) == 0
    assert time.monotonic() < deadline
    assert limiter.waited_seconds == 0


async def test_deadline_far_enough_waits_for_full_grant() -> None:
    """A deadline that leaves time to refill does not shorten the grant."""
    limiter = RateLimiter(20)  # capacity 5
    assert await limiter.acquire(5) == 5
    started = time.monotonic()
    assert await limiter.acquire(5, deadline=time.monotonic() + 2) == 5
    assert time.monotonic() - started >= 0.2  # 5 tokens at 20/s


async def test_deadline_grants_then_leaves_bucket_consistent(clock: FakeClock) -> None:
    """A partial grant removes exactly what it returns; the remainder keeps accruing."""
    limiter = RateLimiter(10, burst=5)
    assert await limiter.acquire(5) == 5
    clock.now += 0.34  # 3.4 tokens
    assert await limiter.acquire(5, deadline=clock.now + 0.1) == 3
    assert clock.now - 1000.0 == pytest.approx(0.34)  # no waiting happened
    assert await limiter.acquire(1) == 1  # the 0.4 left needs only 0.06 s more
    assert clock.now - 1000.0 == pytest.approx(0.40)


async def test_refund_restores_tokens() -> None:
    """Refunded tokens can be acquired again without waiting."""
    limiter = RateLimiter(10)  # capacity 2.5
    assert await limiter.acquire(2) == 2
    limiter.refund(2)
    started = time.monotonic()
    assert await limiter.acquire(2) == 2  # without the refund this would wait ~0.15 s
    assert time.monotonic() - started < 0.05
    assert limiter.waited_seconds == 0


async def test_refund_is_capped_at_capacity(clock: FakeClock) -> None:
    """Refunding more than was taken cannot build a burst above capacity."""
    limiter = RateLimiter(10, burst=2)
    limiter.refund(1000)
    assert await limiter.acquire(2) == 2
    assert clock.now == 1000.0
    assert await limiter.acquire(2) == 2
    assert clock.now - 1000.0 == pytest.approx(0.2)


async def test_refund_ignores_non_positive_amounts(clock: FakeClock) -> None:
    """refund(0) and negative refunds change nothing."""
    limiter = RateLimiter(10, burst=2)
    assert await limiter.acquire(2) == 2
    limiter.refund(0)
    limiter.refund(-5)
    assert await limiter.acquire(2) == 2
    assert clock.now - 1000.0 == pytest.approx(0.2)  # waited for a full refill, not longer


async def test_concurrent_acquires_share_the_rate(clock: FakeClock) -> None:
    """Several jobs acquiring at once together get no more than the configured rate."""
    limiter = RateLimiter(20)  # capacity 5

    async def job() -> int:
        total = 0
        for _ in range(10):
            total += await limiter.acquire(5)
        return total

    totals = await asyncio.gather(*(job() for _ in range(4)))
    assert totals == [50, 50, 50, 50]
    assert clock.now - 1000.0 == pytest.approx((200 - 5) / 20)
