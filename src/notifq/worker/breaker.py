"""Per-provider circuit breaker and throttle hold, per worker process.

After `failures` consecutive transient failures a provider is skipped for `cooldown`
seconds; a provider that answered "slow down" is skipped for as long as it asked. Skipped
messages are not sent and do not use up an attempt: they wait (a deferred retry) until
the provider may be tried again, instead of burning their four attempts on an outage.
After the cool-down, sends go through again; one more failure re-opens the circuit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    closed_at: float = 0.0  # monotonic time before which the provider is skipped


class CircuitBreaker:
    def __init__(self, failures: int, cooldown: float) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self._states: dict[str, _State] = {}
        self.opened = 0  # times a circuit opened (for logs and metrics)

    def _state(self, provider: str) -> _State:
        return self._states.setdefault(provider, _State())

    def wait_for(self, provider: str) -> float:
        """Seconds until `provider` may be tried; 0 when it may be tried now."""
        return max(0.0, self._state(provider).closed_at - time.monotonic())

    def success(self, provider: str) -> None:
        self._state(provider).failures = 0

    def failure(self, provider: str) -> None:
        state = self._state(provider)
        state.failures += 1
        if state.failures >= self.threshold:
            state.closed_at = time.monotonic() + self.cooldown
            state.failures = self.threshold - 1  # after the cool-down, one more failure re-opens it
            self.opened += 1

    def hold(self, provider: str, seconds: float) -> None:
        """The provider throttled us: skip it for `seconds` (never shortening a longer hold)."""
        state = self._state(provider)
        state.closed_at = max(state.closed_at, time.monotonic() + seconds)
