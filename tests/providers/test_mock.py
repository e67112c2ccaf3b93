"""MockProvider: seeded, order-independent failures at the configured rate, latency within bounds."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from notifq.errors import TransientError
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.providers.mock import MockProvider

PAIRS = [(message_id, attempt) for message_id in range(1, 5001) for attempt in range(1, 5)]  # 20,000 pairs


def outgoing(message_id: int, attempt: int = 1) -> OutgoingMessage:
    return OutgoingMessage(message_id=message_id, attempt=attempt, recipient=f"u{message_id}@example.com",
                           subject="s", body="b")  # fmt: skip


async def fails(provider: MockProvider, message_id: int, attempt: int) -> bool:
    """Send once and report whether it raised the simulated TransientError."""
    try:
        await provider.send(outgoing(message_id, attempt))
    except TransientError:
        return True
    return False


async def test_same_seed_same_outcomes_in_any_order() -> None:
    """Two instances with one seed agree on every (message, attempt), whatever order or concurrency."""
    pairs = PAIRS[:2000]
    first = MockProvider((0, 0), 0.3, seed=42)
    forward = {pair: await fails(first, *pair) for pair in pairs}

    shuffled = pairs.copy()
    random.Random(7).shuffle(shuffled)
    second = MockProvider((0, 0), 0.3, seed=42)
    backward = {pair: await fails(second, *pair) for pair in shuffled}
    together = await asyncio.gather(*(fails(second, *pair) for pair in reversed(pairs)))

    assert forward == backward
    assert list(reversed(together)) == [forward[pair] for pair in pairs]
    assert 0 < sum(forward.values()) < len(pairs)  # a real mix, not trivially all one way


async def test_repeat_send_of_same_attempt_is_stable() -> None:
    """Re-sending one (message, attempt) on one instance always gives the same outcome."""
    provider = MockProvider((0, 0), 0.5, seed=3)
    for message_id, attempt in PAIRS[:200]:
        outcomes = {await fails(provider, message_id, attempt) for _ in range(3)}
        assert len(outcomes) == 1


async def test_attempts_of_one_message_fail_independently() -> None:
    """A failing message can succeed on a later attempt (retries are not doomed)."""
    provider = MockProvider((0, 0), 0.5, seed=11)
    recovered = 0
    for message_id in range(1, 201):
        if await fails(provider, message_id, 1) and not await fails(provider, message_id, 2):
            recovered += 1
    assert recovered > 0


def test_different_seeds_give_different_outcomes() -> None:
    """The seed matters: two seeds disagree on a good share of pairs."""
    a, b = MockProvider((0, 0), 0.5, seed=1), MockProvider((0, 0), 0.5, seed=2)
    disagreements = sum(a.will_fail(*pair) != b.will_fail(*pair) for pair in PAIRS[:2000])
    assert disagreements > 500  # about half for independent 50% coins


def test_without_seed_instances_draw_their_own() -> None:
    """No seed means a random one per instance (an explicit 0 is kept as-is)."""
    seeds = {MockProvider((0, 0), 0.5).seed for _ in range(5)}
    assert len(seeds) > 1
    assert MockProvider((0, 0), 0.5, seed=0).seed == 0


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("seed", [1234, 987654321])
async def test_observed_failure_rate_matches_configured(rate: float, seed: int) -> None:
    """Over 20,000 (message, attempt) pairs the failure share is within ±2% of the configured rate."""
    provider = MockProvider((0, 0), rate, seed=seed)
    failures = 0
    for pair in PAIRS:
        failures += await fails(provider, *pair)
    assert abs(failures / len(PAIRS) - rate) <= 0.02


async def test_failure_rate_zero_never_fails() -> None:
    """failure_rate 0: every send succeeds with a mock SendResult."""
    provider = MockProvider((0, 0), 0.0, seed=5)
    for message_id, attempt in PAIRS[:3000]:
        result = await provider.send(outgoing(message_id, attempt))
        assert result == SendResult(provider="mock", provider_message_id=f"mock-{message_id}-{attempt}")


async def test_failure_rate_one_always_fails() -> None:
    """failure_rate 1: every send raises TransientError."""
    provider = MockProvider((0, 0), 1.0, seed=5)
    for message_id, attempt in PAIRS[:3000]:
        with pytest.raises(TransientError):
            await provider.send(outgoing(message_id, attempt))


async def test_latency_stays_within_configured_range() -> None:
    """With latency (20, 40) ms each send takes at least 20 ms and not much over 40 ms."""
    provider = MockProvider((20, 40), 0.0, seed=8)
    loop = asyncio.get_running_loop()
    durations = []
    for message_id in range(1, 9):
        started = loop.time()
        await provider.send(outgoing(message_id))
        durations.append(loop.time() - started)
    for duration in durations:
        assert 0.020 - 0.001 <= duration < 0.040 + 0.100, durations  # 1 ms clock tolerance; loose upper slack
    assert max(durations) - min(durations) > 0.001, durations  # drawn from the range, not one fixed value


async def test_failed_sends_also_take_the_latency() -> None:
    """A simulated failure is raised only after the simulated latency."""
    provider = MockProvider((20, 40), 1.0, seed=8)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TransientError):
        await provider.send(outgoing(1))
    assert loop.time() - started >= 0.020 - 0.001


async def test_latency_is_a_non_blocking_wait() -> None:
    """Concurrent sends overlap their latency instead of running one after another."""
    provider = MockProvider((20, 40), 0.0, seed=8)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(provider.send(outgoing(i)) for i in range(50)))
    assert loop.time() - started < 0.5  # serially this would take at least 50 * 20 ms = 1 s


async def test_zero_latency_returns_without_sleeping() -> None:
    """Latency (0, 0) completes sends without waiting."""
    provider = MockProvider((0, 0), 0.0, seed=8)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for message_id, attempt in itertools.islice(PAIRS, 500):
        await provider.send(outgoing(message_id, attempt))
    assert loop.time() - started < 0.5
