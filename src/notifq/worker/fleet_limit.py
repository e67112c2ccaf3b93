"""Fleet-wide provider limits (NOTIFQ_PROVIDER_RATES): every worker on every host shares one rate per provider.

Why: the per-worker limit (rate_limit.py) lets five workers send five times SES's account rate,
and SES answers `454 Throttling`. One Lua script per provider key keeps a GCRA clock in Redis,
on Redis' own TIME, so hosts whose clocks disagree still share one timeline. A worker never
pays a round trip per message: it asks for ~GRANT_SECONDS of the rate (at least one token) and
spends the tokens locally; the sends of one worker that find none share one refill in flight.
Tokens not spent within GRANT_TTL_SECONDS are given back with the next call, never kept for
later: a fleet of hoarders would spend them all at once and exceed the rate.

A throttling answer (SES 454, FCM 429, SNS Throttling) backs off the whole fleet: the script
halves the effective rate (at most once per CUT_EVERY_SECONDS, so a burst of such answers
counts once; never below FLOOR_SHARE of the limit), holds the provider for a Retry-After, and
the rate climbs back linearly, half the limit per NOTIFQ_PROVIDER_RECOVERY_SECONDS. The state
lives in the provider's hash, which the API reads (telemetry.provider_limits).

Redis away: each worker limits the provider to its configured rate on its own (workers x rate
for the fleet, the old per-worker behaviour), says so in one WARNING, and tries Redis again
every REDIS_RETRY_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass

from redis.asyncio import Redis

from notifq.keys import RedisKeys
from notifq.settings import Settings
from notifq.telemetry import FLEET_RING, fleet_burst, fleet_rate

log = logging.getLogger("notifq.worker")

GRANT_SECONDS = 0.05  # a refill asks for ~50 ms of the rate (at least one token)
GRANT_TTL_SECONDS = 1.0  # tokens not spent within this are given back
CUT_EVERY_SECONDS = 1.0  # a back-off halves the rate at most this often
FLOOR_SHARE = 0.05  # ... and never below 5 % of the limit
KEEP_SECONDS = 86_400  # the hash outlives its last use by a day (the API shows it)
CALL_TIMEOUT_SECONDS = 2.0  # a script call slower than this counts as Redis being away
REDIS_RETRY_SECONDS = 5.0  # how often a worker limiting on its own tries Redis again
REPORT_EVERY_SECONDS = 0.25  # throttling answers reported at most this often per worker (the script cuts once a second)
SHARE_WINDOW_SECONDS = 2.0  # this worker's share of the fleet's rate: what it was granted over this window
IN_USE_SECONDS = 10.0  # a provider asked for tokens this recently (or since the start) sizes the claims
CLAIM_HORIZON_SECONDS = 1.0  # a worker's claims together hold about this much of what it may send
TOKEN_WAIT_SECONDS = 5.0  # the longest a message waits for a token (less with a short lease)
MAX_DEFER_SECONDS = 60.0
MIN_WAIT_SECONDS = 0.001  # a refill told to wait ~0 s asks again no sooner (no busy loop on rounding)

# KEYS[1]: the provider's hash (telemetry.py names its fields). ARGV: op (`take` or `throttle`), limit,
# burst, recovery seconds, floor share, cut interval, now (empty: Redis TIME), then `take`: want, given
# back; `throttle`: retry-after. Returns {granted (take) or 1 if the rate was cut (throttle), seconds to
# wait for `want` tokens, the effective rate, seconds the provider is still held}; floats as strings.
FLEET_LUA = f"""
local key, op = KEYS[1], ARGV[1]
local limit, burst, recovery = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local floor_share, cut_every = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = tonumber(ARGV[7])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local s = redis.call('HMGET', key, 'tat', 'cut_rate', 'cut_at', 'hold')
local tat, cut_rate, cut_at, hold = tonumber(s[1]) or 0, tonumber(s[2]), tonumber(s[3]) or 0, tonumber(s[4]) or 0
local rate = limit
if cut_rate then rate = math.min(limit, cut_rate + limit / (2 * recovery) * math.max(0, now - cut_at)) end
local second = math.floor(now)
local function count(n)
  if n == 0 then return end
  local slot = second % {FLEET_RING}
  if tonumber(redis.call('HGET', key, 's' .. slot)) ~= second then
    redis.call('HSET', key, 's' .. slot, second, 'c' .. slot, 0)
  end
  redis.call('HINCRBY', key, 'c' .. slot, n)
end
local granted, wait = 0, 0
if op == 'throttle' then
  if now - cut_at >= cut_every then
    rate = math.max(limit * floor_share, rate / 2)
    redis.call('HSET', key, 'cut_rate', string.format('%.6f', rate), 'cut_at', string.format('%.6f', now))
    granted = 1
  end
  local retry_after = tonumber(ARGV[8]) or 0
  if retry_after > 0 and now + retry_after > hold then
    hold = now + retry_after
    redis.call('HSET', key, 'hold', string.format('%.6f', hold))
  end
  tat = math.max(tat, now)
  redis.call('HINCRBY', key, 'throttles', 1)
else
  local want, given_back = tonumber(ARGV[8]), tonumber(ARGV[9])
  if given_back > 0 then
    tat = math.max(now, tat - given_back / rate)
    count(-given_back)
  end
  if now < hold then
    wait = hold - now
  elseif want > 0 then
    local base = math.max(tat, now)
    local available = math.floor((now - base) * rate + burst + 1e-9)
    if available >= 1 then
      granted = math.min(want, available)
      tat = base + granted / rate
      count(granted)
    else
      wait = base + (math.min(want, math.max(1, math.floor(burst))) - burst) / rate - now
    end
  end
end
redis.call('HSET', key, 'tat', string.format('%.6f', tat), 'limit', limit, 'burst', burst, 'recovery', recovery)
redis.call('EXPIRE', key, {KEEP_SECONDS})
return {{granted, tostring(wait), tostring(rate), tostring(math.max(0, hold - now))}}
"""


@dataclass(frozen=True)
class Limit:
    provider: str
    rate: float
    burst: float


@dataclass(frozen=True)
class Answer:
    granted: int  # tokens (take); 1 if this answer halved the rate (throttle)
    wait: float  # seconds until the fleet has the tokens asked for (0 once granted)
    rate: float  # the effective rate now
    held: float  # seconds a Retry-After still holds the provider


def limits_of(settings: Settings) -> dict[str, Limit]:
    return {name: Limit(name, rate, fleet_burst(rate, burst)) for name, rate, burst in settings.provider_rates}


class FleetScript:
    """The script's two calls. `now` (seconds) stands in for Redis' TIME in tests of its arithmetic."""

    def __init__(self, redis: Redis, keys: RedisKeys, recovery: float) -> None:
        self.keys = keys
        self.recovery = recovery
        self._script = redis.register_script(FLEET_LUA)

    async def _call(self, limit: Limit, op: str, now: float | None, *args: float) -> Answer:
        raw = await self._script(keys=[self.keys.fleet_limit(limit.provider)],
                                 args=[op, limit.rate, limit.burst, self.recovery, FLOOR_SHARE, CUT_EVERY_SECONDS,
                                       "" if now is None else repr(now), *args])  # fmt: skip
        granted, wait, rate, held = raw
        return Answer(int(granted), float(wait), float(rate), float(held))

    async def take(self, limit: Limit, want: int, given_back: int = 0, now: float | None = None) -> Answer:
        """Up to `want` tokens (0: only give back), and `given_back` unspent ones returned."""
        return await self._call(limit, "take", now, want, given_back)

    async def throttle(self, limit: Limit, retry_after: float, now: float | None = None) -> Answer:
        """The provider answered "slow down": back off (and hold for `retry_after` seconds, if > 0)."""
        return await self._call(limit, "throttle", now, retry_after)


class ProviderGate:
    """One fleet-limited provider as one worker sees it: the tokens in hand and one refill in flight."""

    def __init__(self, limit: Limit, script: FleetScript) -> None:
        self.limit = limit
        self._script = script
        self._tokens = 0
        self._expires = 0.0  # monotonic, like every time below: Redis' answers are durations
        self._given_back = 0  # dropped tokens, returned with the next call
        self._refill: asyncio.Task[None] | None = None
        self._queue: deque[asyncio.Future[None]] = deque()  # sends waiting for a token, in line
        self.waiting = 0  # those of them not served yet
        self._ready_at = 0.0  # when the fleet expects tokens for us
        self._held_until = 0.0
        self._rate, self._rate_at = limit.rate, 0.0  # the effective rate, as last heard, and when
        self._grants: deque[tuple[float, int]] = deque()
        self._used_at = self._waited_at = time.monotonic()  # in use from the start: claims are sized at once
        self._alone_until = 0.0  # Redis failed: limiting on our own until then, then trying it again
        self._alone_since: float | None = None
        self._local_tat = 0.0
        self._report: asyncio.Task[None] | None = None
        self._reported_at, self._reported_hold = -math.inf, 0.0

    def rate(self, now: float) -> float:
        """The effective rate now: the last one heard, climbing back as the script's would."""
        return fleet_rate(self.limit.rate, self._script.recovery, self._rate, self._rate_at, now)

    def share(self, now: float) -> float:
        """What this worker was granted per second lately."""
        while self._grants and self._grants[0][0] < now - SHARE_WINDOW_SECONDS:
            self._grants.popleft()
        return sum(n for _, n in self._grants) / SHARE_WINDOW_SECONDS

    def claim_rate(self, now: float) -> float | None:
        """The rate this worker's claims should follow: its share while sends queue for tokens, else the fleet's."""
        if now - self._used_at > IN_USE_SECONDS:
            return None
        congested = now - self._waited_at < SHARE_WINDOW_SECONDS
        return (self.share(now) or self.rate(now)) if congested else self.rate(now)

    def unavailable(self) -> str | None:
        """Why failover should pass this provider by: held by a Retry-After, or throttled down to the floor."""
        now = time.monotonic()
        if self._held_until > now:
            return f"throttled: the fleet holds it for {self._held_until - now:.1f} s"
        if self.rate(now) <= self.limit.rate * FLOOR_SHARE * 1.001:
            return f"throttled: its fleet rate is down to {self.rate(now):g}/s"
        return None

    def estimate(self, now: float) -> float:
        """Seconds until a send given up now could have a token."""
        if self._held_until > now:
            return self._held_until - now
        share = self.share(now) or self.rate(now)
        return min(MAX_DEFER_SECONDS, max(self._ready_at - now, self.waiting / share, 0.1))

    async def take(self, within: float) -> float:
        """0 once this send has a token; else (none within `within` seconds) how long the fleet expects."""
        now = self._used_at = time.monotonic()
        if self._tokens:
            if now < self._expires:
                self._tokens -= 1
                return 0.0
            self._drop()
        # In line: the refill hands its grant to the first waiters, one token each. (Waking every waiter
        # to race for a few tokens cost ~90 wake-ups per message at 500/s: a worker's whole core.)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        self.waiting += 1
        self._waited_at = now
        if self._refill is None:
            self._refill = asyncio.create_task(self._fill())
        try:
            await asyncio.wait_for(turn, within)  # a token handed over as the wait ends still counts
        except TimeoutError:
            return self.estimate(time.monotonic())
        finally:
            if turn.cancelled():  # gave up (or was cancelled): out of line; a served one was counted out
                self.waiting -= 1
        return 0.0

    def _drop(self) -> None:
        self._given_back += self._tokens
        self._tokens = 0

    def _hand_out(self, granted: int) -> None:
        """One token to each waiter in line (skipping those that gave up); what is left is kept for a while."""
        while granted and self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                self.waiting -= 1
                granted -= 1
        self._tokens += granted

    async def _fill(self) -> None:
        try:
            while self.waiting:
                want = max(1, min(self.waiting, int(self.rate(time.monotonic()) * GRANT_SECONDS)))
                answer = await self._ask(want)
                now = time.monotonic()
                if answer.granted:
                    self._expires = now + GRANT_TTL_SECONDS
                    self._grants.append((now, answer.granted))
                    self._hand_out(answer.granted)
                    continue  # more in line: ask again (the fleet says how long to wait if it has none)
                self._ready_at = now + answer.wait
                await asyncio.sleep(max(answer.wait, MIN_WAIT_SECONDS))
        except Exception:  # never leave the line without a refill: the next send starts another one
            log.exception("fleet limit of %s: a refill failed", self.limit.provider)
        finally:
            self._refill = None
            while self._queue and self._queue[0].done():
                self._queue.popleft()

    async def _ask(self, want: int) -> Answer:
        now = time.monotonic()
        if now >= self._alone_until:
            given_back, self._given_back = self._given_back, 0
            try:
                answer = await asyncio.wait_for(self._script.take(self.limit, want, given_back), CALL_TIMEOUT_SECONDS)
            except Exception as exc:  # Redis away (or too slow): limit on our own
                self._alone(exc)
            else:
                self._heard(answer)
                return answer
        return self._local_take(want, time.monotonic())

    def _heard(self, answer: Answer) -> None:
        now = time.monotonic()
        if self._alone_since is not None:
            log.info("fleet limit of %s: Redis answers again; the fleet shares %g/s again (limited alone for %.0f s)",
                     self.limit.provider, self.limit.rate, now - self._alone_since,
                     extra={"provider": self.limit.provider})  # fmt: skip
            self._alone_since, self._alone_until = None, 0.0
        self._rate, self._rate_at = answer.rate, now
        self._held_until = now + answer.held if answer.held > 0 else 0.0

    def _alone(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._alone_until = now + REDIS_RETRY_SECONDS
        if self._alone_since is None:
            self._alone_since = now
            log.warning("fleet limit of %s unavailable (Redis: %r): this worker limits %s to %g/s on its own (the "
                        "fleet may send workers x that) and tries Redis again every %g s", self.limit.provider, exc,
                        self.limit.provider, self.limit.rate, REDIS_RETRY_SECONDS,
                        extra={"provider": self.limit.provider})  # fmt: skip

    def _local_take(self, want: int, now: float) -> Answer:
        """The script's grant, on this worker's clock and the configured rate (while Redis is away)."""
        rate, burst = self.limit.rate, self.limit.burst
        if self._held_until > now:
            return Answer(0, self._held_until - now, rate, self._held_until - now)
        base = max(self._local_tat, now)
        available = math.floor((now - base) * rate + burst + 1e-9)
        if available >= 1:
            granted = min(want, available)
            self._local_tat = base + granted / rate
            return Answer(granted, 0.0, rate, 0.0)
        return Answer(0, base + (min(want, max(1, math.floor(burst))) - burst) / rate - now, rate, 0.0)

    def throttled(self, retry_after: float | None) -> None:
        """A send was throttled: stop spending this grant, hold locally at once, and tell the fleet (in the
        background, at most every REPORT_EVERY_SECONDS unless the answer asks for a longer hold)."""
        now = time.monotonic()
        self._drop()
        hold = retry_after if retry_after and retry_after > 0 else 0.0
        if hold:
            self._held_until = max(self._held_until, now + hold)
        if self._report is not None or (now - self._reported_at < REPORT_EVERY_SECONDS and hold <= self._reported_hold):
            return
        self._reported_at, self._reported_hold = now, hold
        self._report = asyncio.create_task(self._tell(hold))

    async def _tell(self, hold: float) -> None:
        try:
            if time.monotonic() < self._alone_until:
                return
            answer = await asyncio.wait_for(self._script.throttle(self.limit, hold), CALL_TIMEOUT_SECONDS)
        except Exception as exc:
            self._alone(exc)
        else:
            self._heard(answer)
            if answer.granted:
                log.info("provider %s throttled: the fleet's rate is halved to %g/s (limit %g/s)%s",
                         self.limit.provider, answer.rate, self.limit.rate,
                         f", held {answer.held:.1f} s" if answer.held else "",
                         extra={"provider": self.limit.provider})  # fmt: skip
        finally:
            self._report = None

    async def close(self) -> None:
        """Give back what this worker holds (best effort: a worker that stops keeps nothing)."""
        self._drop()
        for task in (self._refill, self._report):
            if task is not None:
                task.cancel()
        if self._given_back and time.monotonic() >= self._alone_until:
            with contextlib.suppress(Exception):  # lost tokens only cost the fleet a fraction of a second
                await asyncio.wait_for(self._script.take(self.limit, 0, self._given_back), CALL_TIMEOUT_SECONDS)
            self._given_back = 0


class FleetLimits:
    """A worker's gates, one per provider NOTIFQ_PROVIDER_RATES names; other providers pass freely."""

    def __init__(self, settings: Settings, redis: Redis, keys: RedisKeys) -> None:
        script = FleetScript(redis, keys, settings.provider_recovery_seconds)
        self.gates = {name: ProviderGate(limit, script) for name, limit in limits_of(settings).items()}
        # A claimed message's lease covers its token wait and its provider call (send_chunk's timer).
        self.wait_bound = max(0.1, min(TOKEN_WAIT_SECONDS, (settings.lease_seconds - settings.provider_timeout) / 2))

    def limited(self, provider: str) -> bool:
        return provider in self.gates

    async def take(self, provider: str) -> float:
        """0 once a send to `provider` may go; else the seconds the fleet expects (the send is deferred)."""
        gate = self.gates.get(provider)
        return 0.0 if gate is None else await gate.take(self.wait_bound)

    def throttled(self, provider: str, retry_after: float | None) -> None:
        gate = self.gates.get(provider)
        if gate is not None:
            gate.throttled(retry_after)

    def unavailable(self, provider: str) -> str | None:
        gate = self.gates.get(provider)
        return None if gate is None else gate.unavailable()

    def claim_cap(self, jobs: int) -> int | None:
        """Most messages a job should claim at once: about CLAIM_HORIZON_SECONDS of what the fleet lets this
        worker send, spread over its jobs (None: no fleet-limited provider in use)."""
        now = time.monotonic()
        rates = [r for gate in self.gates.values() if (r := gate.claim_rate(now)) is not None]
        if not rates:
            return None
        return max(1, math.ceil(max(rates) * CLAIM_HORIZON_SECONDS / max(1, jobs)))

    async def aclose(self) -> None:
        await asyncio.gather(*(gate.close() for gate in self.gates.values()))
