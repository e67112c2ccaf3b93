"""Failover: which provider a message goes to when its channel lists several (NOTIFQ_EMAIL_PROVIDERS=ses,smtp).

A message not routed to the mock goes to the first provider of its channel's list that may be
tried now: its circuit is not open (worker/breaker.py) and the fleet neither holds it for a
Retry-After nor has throttled it down to its floor (worker/fleet_limit.py). When none may, it
waits on the first one, as with a single provider. Traffic returns to the first as soon as it
may be tried again (its breaker's cool-down: then every send tries it, and one more failure
opens the circuit again); a provider held by a configuration error keeps its one try per
cool-down, taken by the message that picks it.

The switch shows three ways: an INFO line per worker and channel when it starts failing over and
one when it returns (not one per message); the worker's route in Redis for GET /workers
(keys.failover); and the audit trail of each message sent through a later provider, whose `sent`
event says why ("failover: ses unavailable (circuit open), sent through smtp").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from notifq.keys import RedisKeys
from notifq.providers.base import Provider
from notifq.providers.factory import ProviderFactory
from notifq.telemetry import failover_field
from notifq.worker.breaker import CircuitBreaker
from notifq.worker.fleet_limit import FleetLimits

log = logging.getLogger("notifq.worker")


class Failover:
    def __init__(self, providers: ProviderFactory, breaker: CircuitBreaker, fleet: FleetLimits, redis: Redis,
                 keys: RedisKeys, worker_id: str) -> None:  # fmt: skip
        self.providers, self.breaker, self.fleet = providers, breaker, fleet
        self.redis, self.keys, self.worker_id = redis, keys, worker_id
        self.active: dict[str, str] = {}  # channel -> the later provider it fails over to now
        self._writes: set[asyncio.Task[None]] = set()

    def unavailable(self, name: str) -> str | None:
        """Why `name` may not be tried now; None when it may (for a held provider: its one try, taken now)."""
        held = self.fleet.unavailable(name)
        if held is not None:
            return held
        if self.breaker.wait_for(name) > 0:
            return self.breaker.blocked(name) or "paused"
        return None

    def choose(self, channel: str, recipient: str, first: Provider) -> tuple[Provider, str | None] | None:
        """The provider to try and, if it is not the first, the `sent` event's detail; None when the channel
        has one provider (or the message goes to the mock), or none of them may be tried: then the first
        one's ordinary checks apply."""
        backups = self.providers.backups(channel, recipient, first)
        if not backups:
            return None
        passed: list[str] = []
        for provider in (first, *backups):
            why = self.unavailable(provider.name)
            if why is None:
                self._through(channel, first.name, provider.name, passed)
                return provider, f"failover: {'; '.join(passed)}, sent through {provider.name}" if passed else None
            passed.append(f"{provider.name} unavailable ({why})")
        return None

    def _through(self, channel: str, first: str, chosen: str, passed: list[str]) -> None:
        """Say (and publish) a change of route, once per worker and channel. A held provider's one try per
        cool-down is no return yet: the route changes back once that try has ended the hold."""
        was = self.active.get(channel)
        if chosen == first and was is not None and self.breaker.problem(first) is None:
            del self.active[channel]
            log.info("%s: back to provider %s (it may be tried again); it was failing over to %s", channel, first,
                     was, extra={"provider": first})  # fmt: skip
            self._publish(channel, None)
        elif chosen != first and was != chosen:
            self.active[channel] = chosen
            log.info("%s: %s; failing over to %s until %s may be tried again", channel, "; ".join(passed), chosen,
                     first, extra={"provider": first})  # fmt: skip
            self._publish(channel, chosen)

    def _publish(self, channel: str, provider: str | None) -> None:
        """In the background: the route in Redis is for the operations view, never worth a send's wait."""

        async def write() -> None:
            pipe = self.redis.pipeline(transaction=False)
            field_ = failover_field(self.worker_id, channel)
            if provider is None:
                pipe.hdel(self.keys.failover, field_)
            else:
                pipe.hset(self.keys.failover, field_, provider)
            try:
                await pipe.execute()
            except Exception as exc:
                log.warning("could not publish the failover route of %s: %r", channel, exc)

        task = asyncio.create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def aclose(self) -> None:
        """A stopping worker routes nothing: its fields go (a killed worker's are ignored by GET /workers)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.active:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(self.keys.failover, *(failover_field(self.worker_id, c) for c in self.active))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pipe.execute(), 2.0)
