"""A provider that sends nothing: simulated latency and failures, for load tests and dev.

Failures are decided by a hash of (seed, message id, attempt) rather than a shared RNG,
so with a seed the same messages fail on the same attempts whatever order sends run in.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from notifq.errors import TransientError
from notifq.providers.base import OutgoingMessage, SendResult


def _unit(seed: int, message_id: int, attempt: int, salt: bytes) -> float:
    digest = hashlib.blake2b(f"{seed}:{message_id}:{attempt}".encode(), digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big") / 2**64


class MockProvider:
    name = "mock"

    def __init__(self, latency_ms: tuple[int, int], failure_rate: float, seed: int | None = None) -> None:
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**63)

    def will_fail(self, message_id: int, attempt: int) -> bool:
        return self.failure_rate > 0 and _unit(self.seed, message_id, attempt, b"fail") < self.failure_rate

    async def send(self, message: OutgoingMessage) -> SendResult:
        low, high = self.latency_ms
        if high > 0:
            fraction = _unit(self.seed, message.message_id, message.attempt, b"wait")
            await asyncio.sleep((low + (high - low) * fraction) / 1000)
        if self.will_fail(message.message_id, message.attempt):
            raise TransientError("mock provider: simulated failure")
        return SendResult(provider=self.name, provider_message_id=f"mock-{message.message_id}-{message.attempt}")

    async def aclose(self) -> None:
        return None
