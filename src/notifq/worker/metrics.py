"""A worker's one set of counters, kept in memory on the hot path and published once a second.

What is counted is what PostgreSQL recorded (the rows each record statement moved, via
worker/recording.py), not what the code meant to record, so the counts equal the message
rows and the audit trail. Counting costs a dict update per chunk. The increments go to the
cluster-wide hash behind /metrics, the per-second sent series behind /stats and the 10 s
sent/failed/retried series behind /overview in one small pipeline right after each record,
and the totals to this worker's heartbeat behind /workers, with a sample of its rate for
/workers/history, once a second (notifq/telemetry.py).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import socket
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from notifq.db.messages_repo import Recorded
from notifq.keys import RedisKeys
from notifq.telemetry import (
    HISTORY_SECONDS,
    LATENCY_BUCKETS,
    LIVENESS_SECONDS,
    SENT_RATE_TTL_SECONDS,
    SERIES_KEEP_SECONDS,
    SERIES_OUTCOMES,
    WorkerBeat,
    bucket_field,
    count_field,
    counts_outcome,
    latency_sum_field,
    rate_sample,
    series_bucket,
)
from notifq.vocabulary import Event, MessageStatus
from notifq.worker.rate_limit import RateLimiter

RATE_WINDOW_SECONDS = 5.0
HEARTBEAT_TOTALS = ("sent", "failed", "retried")


def outcome_of(status: str, event: str) -> str:
    """A recorded transition's /metrics outcome: sent or failed; for a message queued again,
    throttled, deferred or config_error (its attempt given back), else retried (a retry, or a lost
    worker's attempt)."""
    if status in (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.SKIPPED):
        return str(status)
    if event in (Event.THROTTLED, Event.DEFERRED, Event.CONFIG_ERROR):
        return str(event)
    return "retried"


class WorkerMetrics:
    def __init__(self) -> None:
        self.host = socket.gethostname()
        self.id = f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = time.time()
        self.in_flight = 0
        self.totals: Counter[str] = Counter()  # sent / failed / retried, for the heartbeat
        self.stale = 0  # outcomes PostgreSQL refused (a newer attempt or a terminal state got there first)
        # Keyed by tuples on the hot path; turned into hash field names once a second.
        self._outcomes: Counter[tuple[str, str, str]] = Counter()
        self._buckets: Counter[tuple[str, str, int]] = Counter()
        self._latency_sums: defaultdict[tuple[str, str], float] = defaultdict(float)
        # Field-named increments a failed publish could not send; retried with the next beat.
        self._unpublished_counts: Counter[str] = Counter()
        self._unpublished_sums: defaultdict[str, float] = defaultdict(float)
        self._waits_published = (0, 0.0)
        self._history: deque[tuple[float, int]] = deque()

    def outcome(self, outcome: str, channel: str, provider: str, n: int = 1) -> None:
        self._outcomes[(outcome, channel, provider)] += n
        if outcome in HEARTBEAT_TOTALS:
            self.totals[outcome] += n

    def recorded(self, recorded: Mapping[Recorded, int], stale: int = 0) -> Counter[str]:
        """Count what one record statement applied; returns its totals per outcome."""
        totals: Counter[str] = Counter()
        for (status, event, channel, provider), n in recorded.items():
            outcome = outcome_of(status, event)
            self.outcome(outcome, channel, provider or "none", n)
            totals[outcome] += n
        self.stale += stale
        return totals

    def latency(self, channel: str, provider: str, seconds: float) -> None:
        self._buckets[(channel, provider, bisect.bisect_left(LATENCY_BUCKETS, seconds))] += 1
        self._latency_sums[(channel, provider)] += seconds

    def _take_increments(self) -> tuple[dict[str, int], dict[str, float]]:
        counts = {count_field(*key): n for key, n in self._outcomes.items()}
        counts.update({bucket_field(*key): n for key, n in self._buckets.items()})
        sums = {latency_sum_field(*key): v for key, v in self._latency_sums.items()}
        self._outcomes, self._buckets, self._latency_sums = Counter(), Counter(), defaultdict(float)
        for name, n in self._unpublished_counts.items():
            counts[name] = counts.get(name, 0) + n
        for name, v in self._unpublished_sums.items():
            sums[name] = sums.get(name, 0.0) + v
        self._unpublished_counts, self._unpublished_sums = Counter(), defaultdict(float)
        return counts, sums

    def rate(self, now: float) -> float:
        """Messages finished (sent or failed) per second over the last few seconds."""
        done = self.totals["sent"] + self.totals["failed"]
        self._history.append((now, done))
        while len(self._history) > 1 and now - self._history[0][0] > RATE_WINDOW_SECONDS:
            self._history.popleft()
        first_at, first_done = self._history[0]
        return (done - first_done) / (now - first_at) if now > first_at else 0.0

    def beat(self, now: float) -> WorkerBeat:
        return WorkerBeat(id=self.id, host=self.host, pid=os.getpid(), started_at=self.started_at,
                          last_seen=now, rate=self.rate(now), in_flight=self.in_flight, sent=self.totals["sent"],
                          failed=self.totals["failed"], retried=self.totals["retried"])  # fmt: skip

    async def flush(self, redis: Redis, keys: RedisKeys) -> None:
        """The counter increments since the last publish, at once: the metrics hash and the sent series.

        Called after every record statement (one small pipeline per chunk), so GET /metrics and
        GET /stats count a send as soon as PostgreSQL holds it; the heartbeat follows within a
        second. Never raises: what it could not send waits for the next beat.
        """
        with contextlib.suppress(RedisError):
            await self._publish(redis, keys, None, alive=None)

    async def publish(self, redis: Redis, keys: RedisKeys, limiter: RateLimiter, *, alive: bool = True) -> None:
        """Heartbeat plus every counter increment since the last call, in one round trip."""
        await self._publish(redis, keys, limiter, alive=alive)

    async def _publish(self, redis: Redis, keys: RedisKeys, limiter: RateLimiter | None, *, alive: bool | None
                       ) -> None:  # fmt: skip
        """`alive`: refresh (True) or remove (False) the heartbeat, or neither (None: counters only)."""
        now = time.time()
        pending, sums = self._take_increments()
        series = {o: sum(n for name, n in pending.items() if counts_outcome(name, o)) for o in SERIES_OUTCOMES}
        sent = series["sent"]
        published = self._waits_published
        waits = (limiter.waits, limiter.waited_seconds) if limiter is not None else published
        self._waits_published = waits
        pipe = redis.pipeline(transaction=False)
        for name, n in pending.items():
            pipe.hincrby(keys.metrics, name, n)
        for name, seconds in sums.items():
            pipe.hincrbyfloat(keys.metrics, name, seconds)
        if waits[0] != published[0]:
            pipe.hincrby(keys.metrics, "rate_limit_waits", waits[0] - published[0])
            pipe.hincrbyfloat(keys.metrics, "rate_limit_wait_seconds", waits[1] - published[1])
        if sent:  # the rate series gets exactly the sends this pipeline adds to the hash
            rate_key = keys.sent_rate(int(now))
            pipe.incrby(rate_key, sent)
            pipe.expire(rate_key, SENT_RATE_TTL_SECONDS)
        if any(series.values()):  # the cluster's 10 s series (GET /overview), from the same increments
            series_key = keys.outcome_series(series_bucket(now))
            for outcome, n in series.items():
                if n:
                    pipe.hincrby(series_key, outcome, n)
            pipe.expire(series_key, SERIES_KEEP_SECONDS)
        key = keys.worker(self.id)
        if alive:
            beat = self.beat(now)
            pipe.hset(key, mapping=beat.to_hash())
            pipe.expire(key, int(LIVENESS_SECONDS))  # liveness: Redis drops a silent worker's hash
            pipe.zadd(keys.workers, {self.id: now})
            history = keys.history(self.id)  # its last hour of rates (GET /workers/history), kept an hour
            pipe.zadd(history, rate_sample(now, beat.rate))
            pipe.zremrangebyscore(history, "-inf", now - HISTORY_SECONDS)
            pipe.expire(history, HISTORY_SECONDS)
            pipe.hset(keys.history_hosts, self.id, self.host)
            pipe.expire(keys.history_hosts, HISTORY_SECONDS)
        elif alive is False:
            pipe.delete(key)
            pipe.zrem(keys.workers, self.id)
        try:
            await pipe.execute()
        except RedisConnectionError:
            # Could not connect: nothing was applied, so keep the increments for the next beat.
            # (After a timeout or a cancellation the pipeline may have been applied; resending
            # would count twice, and a counter that is too high never corrects itself.)
            self._unpublished_counts.update(pending)
            for name, seconds in sums.items():
                self._unpublished_sums[name] += seconds
            self._waits_published = published
            raise
