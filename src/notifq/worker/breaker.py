"""Per-provider circuit breaker and throttle hold, per worker process.

After `failures` consecutive transient failures a provider is skipped for `cooldown`
seconds; a provider that answered "slow down" is skipped for as long as it asked. Skipped
messages are not sent and do not use up an attempt: they wait (a deferred retry) until
the provider may be tried again, instead of burning their four attempts on an outage.
After the cool-down, sends go through again; one more failure re-opens the circuit.

A configuration error (credentials, sender, endpoint: `ProviderConfigError`) opens the circuit at
once and *holds* the provider: every cool-down a single send tries it, the others keep waiting,
until one gets another answer (sent, or a message's own error), which ends the hold.

Failover (worker/failover.py) asks `blocked` first, which changes nothing, so a provider passed
over keeps its single try per cool-down for the message that does pick it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

REMIND_SECONDS = 300.0  # a hold that goes on is reported again this often
CONFIG_ERROR = "configuration error: "  # how the audit trail and lastError of a held message begin
CIRCUIT_OPEN = "circuit open"  # why a provider is skipped, as the failover's audit detail says it
THROTTLED = "throttled"


@dataclass
class _State:
    failures: int = 0
    closed_at: float = 0.0  # monotonic time before which the provider is skipped
    problem: str | None = None  # the configuration error holding the provider
    reported_at: float = 0.0
    why: str = CIRCUIT_OPEN  # what closed_at waits for: CIRCUIT_OPEN or THROTTLED (a problem says itself)


class CircuitBreaker:
    def __init__(self, failures: int, cooldown: float) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self._states: dict[str, _State] = {}
        self.opened = 0  # times a circuit opened (for logs and metrics)

    def _state(self, provider: str) -> _State:
        return self._states.setdefault(provider, _State())

    def wait_for(self, provider: str) -> float:
        """Seconds until `provider` may be tried; 0 when it may be tried now.

        Called right before a send. For a provider held by a configuration error, a 0 is the
        cool-down's one try: the sends after it wait another cool-down (or until it succeeds)."""
        state = self._state(provider)
        now = time.monotonic()
        if state.closed_at > now:
            return state.closed_at - now
        if state.problem is not None:
            state.closed_at = now + self.cooldown
        return 0.0

    def blocked(self, provider: str) -> str | None:
        """Why `provider` may not be tried now (None: it may), without taking a held provider's one try."""
        state = self._states.get(provider)
        if state is None or state.closed_at <= time.monotonic():
            return None
        return f"{CONFIG_ERROR}{state.problem}" if state.problem is not None else state.why

    def problem(self, provider: str) -> str | None:
        """The configuration error holding `provider`, if any."""
        return self._state(provider).problem

    def held(self) -> dict[str, str]:
        """Every provider held by a configuration error, with the error."""
        return {name: s.problem for name, s in self._states.items() if s.problem is not None}

    def success(self, provider: str) -> str | None:
        """The provider answered (it took the message, or refused that message only). Returns the
        configuration error this ends, if it was held."""
        state = self._state(provider)
        state.failures = 0
        return self._release(state)

    def refused(self, provider: str) -> None:
        """The provider (or the adapter's own check) refused this message only: the provider is fine,
        but a hold stays until a message is delivered (a local check proves nothing about credentials)."""
        self._state(provider).failures = 0

    def failure(self, provider: str) -> None:
        state = self._state(provider)
        self._release(state)  # a different answer than the configuration error: count it as usual
        state.failures += 1
        if state.failures >= self.threshold:
            state.closed_at, state.why = time.monotonic() + self.cooldown, CIRCUIT_OPEN
            state.failures = self.threshold - 1  # after the cool-down, one more failure re-opens it
            self.opened += 1

    def hold(self, provider: str, seconds: float) -> None:
        """The provider throttled us: skip it for `seconds` (never shortening a longer hold)."""
        state = self._state(provider)
        self._release(state)
        until = time.monotonic() + seconds
        if until > state.closed_at:
            state.closed_at, state.why = until, THROTTLED

    def misconfigured(self, provider: str, problem: str) -> bool:
        """A send met a configuration error: hold the provider for a cool-down. True when this is news
        to report (the hold starts, its reason changed, or it was last reported REMIND_SECONDS ago)."""
        state = self._state(provider)
        now = time.monotonic()
        if state.problem is None:
            self.opened += 1
        news = state.problem != problem or now - state.reported_at >= REMIND_SECONDS
        state.problem, state.failures = problem, 0
        state.closed_at = max(state.closed_at, now + self.cooldown)
        if news:
            state.reported_at = now
        return news

    @staticmethod
    def _release(state: _State) -> str | None:
        problem, state.problem = state.problem, None
        if problem is not None:
            state.closed_at = 0.0  # the messages waiting for it may go now
        return problem
