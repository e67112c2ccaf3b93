"""Where workers publish their heartbeats and metrics in Redis, and how the API reads them back.

Workers may run on many hosts, so nothing is scraped from them. Each worker keeps one set
of counters (worker/metrics.py) and publishes their increments, in one pipeline, into one
Redis hash (GET /metrics) and the messages it sent into a per-second series (GET /stats'
sentLastMinute): right after each record statement, and with its heartbeat, which also
refreshes its own hash (GET /workers) once a second. All three come from the same counters,
so they agree. A worker that stops heartbeating (SIGKILL, lost host) drops out of /workers
after `LIVENESS_SECONDS`.

Two time series come from the same pipelines, for the dashboard's history views:
- each heartbeat appends the worker's rate to its own sorted set, trimmed to the last
  `HISTORY_SECONDS` and expiring that long after its last beat (GET /workers/history);
- each publish adds its sent/failed/retried increments to the cluster's `SERIES_STEP_SECONDS`
  bucket, kept `SERIES_KEEP_SECONDS` (GET /overview). Written at publish, not sampled by the
  reconciler: every increment reaches the hash and its bucket in one pipeline, once, whichever
  worker made it, so the series adds up to the counters with no sampler state, no lock, no
  duplicate samples and no lag of a reconcile interval. The audit trail could answer too, but
  a day of it is every event of the day (millions of rows) per request.
Measured against Valkey on the shared 2-core machine: the additions cost a flush 25-50 µs of
client CPU (one flush per recorded chunk of up to 500 messages) and a beat 50-70 µs; Redis
holds 96 bytes per 10 s bucket (0.8 MB a day) and ~385 KB per worker-hour of rates.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from redis.asyncio import Redis

from notifq.keys import RedisKeys

HEARTBEAT_SECONDS = 1.0
LIVENESS_SECONDS = 5.0
FORGET_SECONDS = 3600.0  # dead ids are pruned from the sorted set after this long
SENT_RATE_TTL_SECONDS = 120  # a per-second bucket of the sent series outlives the minute /stats sums
HISTORY_SECONDS = 3600  # a worker's rate samples: the last hour, kept an hour after its last beat
SERIES_STEP_SECONDS = 10  # the cluster's sent/failed/retried series: one hash per 10 s…
SERIES_KEEP_SECONDS = 86_400 + 60  # …for a day (and the bucket in progress)
SERIES_OUTCOMES = ("sent", "failed", "retried")
MAX_POINTS = 360  # per history series answered

# Provider call latency buckets (seconds): from the in-memory mock to a slow SMTP relay.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# config_error: a provider's configuration refused the message (it waits; /metrics' notifq_messages_config_error_total)
OUTCOMES = ("sent", "failed", "retried", "throttled", "deferred", "config_error", "skipped")

# Hash fields: "count|<outcome>|<channel>|<provider>", "bucket|<channel>|<provider>|<index>"
# (index len(LATENCY_BUCKETS) = above the last bound), "latency_sum|<channel>|<provider>",
# "rate_limit_waits", "rate_limit_wait_seconds".


def count_field(outcome: str, channel: str, provider: str) -> str:
    return f"count|{outcome}|{channel}|{provider}"


def counts_outcome(name: str, outcome: str) -> bool:
    """Whether hash field `name` is a count_field of `outcome`."""
    return name.startswith(f"count|{outcome}|")


def bucket_field(channel: str, provider: str, index: int) -> str:
    return f"bucket|{channel}|{provider}|{index}"


def latency_sum_field(channel: str, provider: str) -> str:
    return f"latency_sum|{channel}|{provider}"


@dataclass(frozen=True)
class WorkerBeat:
    id: str
    host: str
    pid: int
    started_at: float
    last_seen: float
    rate: float
    in_flight: int
    sent: int
    failed: int
    retried: int

    def to_hash(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> WorkerBeat:
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(id=d["id"], host=d["host"], pid=int(d["pid"]), started_at=float(d["started_at"]),
                   last_seen=float(d["last_seen"]), rate=float(d["rate"]), in_flight=int(d["in_flight"]),
                   sent=int(d["sent"]), failed=int(d["failed"]), retried=int(d["retried"]))  # fmt: skip


async def live_workers(redis: Redis, keys: RedisKeys) -> list[WorkerBeat]:
    """Workers whose heartbeat hash still exists; also forgets ids silent for an hour.

    Liveness is the hash's TTL (LIVENESS_SECONDS, renewed by every beat), kept by Redis:
    comparing the worker's clock with the API's would hide or resurrect workers on hosts
    whose clocks disagree by seconds. The sorted set only enumerates them.
    """
    pipe = redis.pipeline(transaction=False)
    pipe.zremrangebyscore(keys.workers, "-inf", time.time() - FORGET_SECONDS)
    pipe.zrange(keys.workers, 0, -1)
    _, ids = await pipe.execute()
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hgetall(keys.worker(worker_id.decode()))
    beats = [WorkerBeat.from_hash(raw) for raw in await pipe.execute() if raw]
    return sorted(beats, key=lambda b: (b.host, b.pid, b.id))


async def metric_counters(redis: Redis, keys: RedisKeys) -> dict[str, float]:
    pipe = redis.pipeline(transaction=False)  # a pipeline's execute() is typed plainly awaitable
    pipe.hgetall(keys.metrics)
    (raw,) = await pipe.execute()
    return {k.decode(): float(v) for k, v in raw.items()}


async def sent_last_minute(redis: Redis, keys: RedisKeys) -> int:
    """Messages sent cluster-wide in the last 60 seconds, the current one included."""
    now = int(time.time())
    window = [keys.sent_rate(second) for second in range(now - 59, now + 1)]
    return sum(int(v) for v in await redis.mget(window) if v)


# --- per provider (GET /providers) -----------------------------------------------------------

PROVIDER_OUTCOMES = ("sent", "failed", "retried", "throttled", "deferred")
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class ProviderSummary:
    channel: str
    provider: str
    counts: dict[str, int]  # PROVIDER_OUTCOMES
    latency_count: int
    quantiles: tuple[float | None, ...]  # QUANTILES, in seconds; None without observations


def histogram_quantile(q: float, counts: list[float]) -> float:
    """As Prometheus' histogram_quantile: linear within the bucket holding rank q (the first bucket
    starts at 0; in the one above the last bound, that bound). `counts`: per bucket, not cumulative."""
    rank, below = q * sum(counts), 0.0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            if i == len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            lower = LATENCY_BUCKETS[i - 1] if i else 0.0
            return lower + (LATENCY_BUCKETS[i] - lower) * (rank - below) / n
        below += n
    return LATENCY_BUCKETS[-1]


@dataclass
class ProviderCounters:
    """One (channel, provider)'s part of the metrics hash."""

    counts: dict[str, float] = field(default_factory=dict)  # per outcome present in the hash
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))  # not cumulative
    latency_sum: float = 0.0
    has_latency: bool = False


def per_provider(counters: dict[str, float]) -> dict[tuple[str, str], ProviderCounters]:
    """The metrics hash's field names (see above) parsed once, by (channel, provider); unknown fields ignored.
    /metrics and /providers both read it through here."""
    out: dict[tuple[str, str], ProviderCounters] = defaultdict(ProviderCounters)
    for name, value in counters.items():
        parts = name.split("|")
        if parts[0] == "count" and len(parts) == 4 and parts[1] in OUTCOMES:
            counts = out[(parts[2], parts[3])].counts
            counts[parts[1]] = counts.get(parts[1], 0.0) + value
        elif parts[0] == "bucket" and len(parts) == 4 and parts[3].isdigit() and int(parts[3]) <= len(LATENCY_BUCKETS):
            series = out[(parts[1], parts[2])]
            series.buckets[int(parts[3])] += value
            series.has_latency = True
        elif parts[0] == "latency_sum" and len(parts) == 3:
            series = out[(parts[1], parts[2])]
            series.latency_sum += value
            series.has_latency = True
    return dict(out)


def provider_summaries(counters: dict[str, float]) -> list[ProviderSummary]:
    """Outcome counts and latency quantiles per channel and provider, from metric_counters()."""
    summaries = []
    for (channel, provider), c in sorted(per_provider(counters).items()):
        if not any(o in c.counts for o in PROVIDER_OUTCOMES) and not c.has_latency:
            continue
        total = int(sum(c.buckets))
        quantiles = tuple(histogram_quantile(q, c.buckets) if total else None for q in QUANTILES)
        counts = {o: int(c.counts.get(o, 0)) for o in PROVIDER_OUTCOMES}
        summaries.append(ProviderSummary(channel, provider, counts, total, quantiles))
    return summaries


# --- history (GET /workers/history, GET /overview) --------------------------------------------


def bucket_width(span_seconds: int, step: int = 1) -> int:
    """The narrowest multiple of `step` seconds that cuts `span_seconds` into at most MAX_POINTS buckets."""
    return step * max(1, math.ceil(span_seconds / MAX_POINTS / step))


def bucket_starts(now: float, span_seconds: int, width: int) -> range:
    """Starts (epoch seconds, multiples of `width`) of the buckets covering the last `span_seconds`,
    the one in progress included: at most ceil(span / width), so at most MAX_POINTS."""
    first = (int((now - span_seconds) // width) + 1) * width
    return range(first, int(now // width) * width + 1, width)


def series_bucket(now: float) -> int:
    """The SERIES_STEP_SECONDS bucket a publish at `now` adds to."""
    return int(now // SERIES_STEP_SECONDS) * SERIES_STEP_SECONDS


def rate_sample(now: float, rate: float) -> dict[str, float]:
    """A heartbeat's sorted-set entry: member `<time> <rate>` (unique per beat), scored by its time."""
    return {f"{now:.3f} {rate:.3f}": now}


@dataclass(frozen=True)
class RateHistory:
    id: str
    host: str
    live: bool
    points: list[tuple[int, float]]  # (bucket start, mean rate of the samples in it)


async def worker_history(redis: Redis, keys: RedisKeys, span_seconds: int) -> tuple[int, list[RateHistory]]:
    """Each worker heard from in the last `span_seconds` (or live), its samples averaged per bucket.

    Forgets the ids whose series expired (an hour after their last beat). An hour of 12 workers
    (43,000 samples): 45-70 ms; 5 minutes: 12 ms."""
    now = time.time()
    width = bucket_width(span_seconds)
    start = bucket_starts(now, span_seconds, width).start
    pipe = redis.pipeline(transaction=False)  # a pipeline's execute() is typed plainly awaitable
    pipe.hgetall(keys.history_hosts)
    (raw,) = await pipe.execute()
    hosts = {k.decode(): v.decode() for k, v in raw.items()}
    live = {b.id: b.host for b in await live_workers(redis, keys)}
    ids = sorted({*hosts, *live})
    pipe = redis.pipeline(transaction=False)
    for worker_id in ids:
        pipe.zrangebyscore(keys.history(worker_id), start, "+inf", withscores=True)
        pipe.exists(keys.history(worker_id))
    answers = await pipe.execute()
    series, gone = [], []
    for i, worker_id in enumerate(ids):
        samples, exists = answers[2 * i], answers[2 * i + 1]
        if not exists and worker_id not in live:
            gone.append(worker_id)
            continue
        sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
        for member, at in samples:
            bucket = sums[int(at // width) * width]
            bucket[0] += float(member.split(b" ")[1])
            bucket[1] += 1
        if samples or worker_id in live:
            points = [(b, total / n) for b, (total, n) in sorted(sums.items())]
            series.append(RateHistory(worker_id, live.get(worker_id) or hosts[worker_id], worker_id in live, points))
    if gone:
        pipe = redis.pipeline(transaction=False)
        pipe.hdel(keys.history_hosts, *gone)
        await pipe.execute()
    return width, sorted(series, key=lambda h: (h.host, h.id))


async def outcome_series(redis: Redis, keys: RedisKeys, span_seconds: int) -> tuple[int, list[tuple[int, list[int]]]]:
    """Messages sent, failed and retried cluster-wide per bucket (SERIES_OUTCOMES), every bucket of the
    last `span_seconds` (empty ones as zeros); one pipelined HMGET per SERIES_STEP_SECONDS: an hour
    (360) 3.5 ms, a day (8,640) 75-85 ms."""
    now = time.time()
    width = bucket_width(span_seconds, SERIES_STEP_SECONDS)
    starts = bucket_starts(now, span_seconds, width)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        for step in range(start, start + width, SERIES_STEP_SECONDS):
            pipe.hmget(keys.outcome_series(step), list(SERIES_OUTCOMES))
    answers = iter(await pipe.execute())
    points = []
    for start in starts:
        totals = [0] * len(SERIES_OUTCOMES)
        for _ in range(width // SERIES_STEP_SECONDS):
            for i, value in enumerate(next(answers)):
                totals[i] += int(value or 0)
        points.append((start, totals))
    return width, points


# --- fleet-wide provider limits (GET /workers, /metrics) ----------------------------------------
# worker/fleet_limit.py's script keeps each limited provider's state in one hash (keys.fleet_limit):
# `limit`, `burst`, `recovery` as configured; `cut_rate` and `cut_at` (Redis time) of the last back-off;
# `hold` (Redis time) until which a Retry-After holds it; `throttles`, the throttling answers reported;
# and sends per second in a ring of FLEET_RING seconds (`s<i>`: the second, `c<i>`: tokens granted net
# of those given back). The API reads it with Redis' own TIME, the script's clock.

FLEET_RING = 8
FLEET_MEASURE_SECONDS = 5  # `current`: the last 5 whole seconds
FLEET_DEFAULT_BURST_SECONDS = 0.2  # a burst of 0 (NOTIFQ_PROVIDER_RATES without `:burst`): 200 ms of the rate


def fleet_burst(rate: float, burst: float) -> float:
    """The burst a limit is enforced with: the configured one, or FLEET_DEFAULT_BURST_SECONDS of the rate (>= 1)."""
    return burst if burst > 0 else max(1.0, rate * FLEET_DEFAULT_BURST_SECONDS)


def fleet_rate(limit: float, recovery: float, cut_rate: float | None, cut_at: float, now: float) -> float:
    """The effective rate at `now`: the limit, or after a back-off `cut_rate` climbing back linearly by half
    the limit per `recovery` seconds. The script computes the same (fleet_limit.py's FLEET_LUA)."""
    if cut_rate is None:
        return limit
    return min(limit, cut_rate + limit / (2 * recovery) * max(0.0, now - cut_at))


@dataclass(frozen=True)
class FleetLimit:
    provider: str
    limit: float  # configured sends per second
    burst: float
    effective: float  # after back-off
    current: float  # measured sends per second over the last FLEET_MEASURE_SECONDS
    held_until: float | None  # epoch seconds (Redis time), while a Retry-After holds the provider
    throttled_at: float | None  # the last back-off
    throttles: int


def fleet_limit_of(provider: str, raw: dict[bytes, bytes], now: float, configured: tuple[float, float] | None
                   ) -> FleetLimit | None:  # fmt: skip
    """One provider's state from its hash (or its configured limit if no worker used it yet)."""
    d = {k.decode(): v.decode() for k, v in raw.items()}
    if "limit" not in d:
        if configured is None:
            return None
        rate, burst = configured
        return FleetLimit(provider, rate, fleet_burst(rate, burst), rate, 0.0, None, None, 0)
    limit, recovery = float(d["limit"]), float(d.get("recovery") or 1)
    cut_rate = float(d["cut_rate"]) if "cut_rate" in d else None
    cut_at = float(d.get("cut_at") or 0)
    second = int(now)
    sent = sum(float(d.get(f"c{i}") or 0) for i in range(FLEET_RING)
               if second - FLEET_MEASURE_SECONDS <= int(d.get(f"s{i}") or 0) < second)  # fmt: skip
    hold = float(d.get("hold") or 0)
    return FleetLimit(provider, limit, float(d.get("burst") or 1), fleet_rate(limit, recovery, cut_rate, cut_at, now),
                      max(0.0, sent) / FLEET_MEASURE_SECONDS, hold if hold > now else None,
                      cut_at if cut_rate is not None else None, int(d.get("throttles") or 0))  # fmt: skip


async def provider_limits(redis: Redis, keys: RedisKeys, configured: dict[str, tuple[float, float]],
                          names: tuple[str, ...]) -> list[FleetLimit]:  # fmt: skip
    """Every provider of `names` that is fleet-limited (configured here, or in use by a worker): one pipeline."""
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    for name in names:
        pipe.hgetall(keys.fleet_limit(name))
    (seconds, micros), *raws = await pipe.execute()
    now = int(seconds) + int(micros) / 1e6
    found = (fleet_limit_of(name, raw, now, configured.get(name)) for name, raw in zip(names, raws, strict=True))
    return [f for f in found if f is not None]


# --- failover (GET /workers) -------------------------------------------------------------------


def failover_field(worker_id: str, channel: str) -> str:
    return f"{worker_id}|{channel}"


async def failover_routes(redis: Redis, keys: RedisKeys, live: set[str]) -> dict[str, dict[str, str]]:
    """Channel -> {worker id: the provider it fails over to}, live workers only (a worker clears its fields
    when it returns to its first provider and when it stops; a killed one's stay, ignored, a few bytes)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.failover)
    (raw,) = await pipe.execute()
    routes: dict[str, dict[str, str]] = defaultdict(dict)
    for field_, provider in raw.items():
        worker_id, _, channel = field_.decode().rpartition("|")
        if worker_id in live:
            routes[channel][worker_id] = provider.decode()
    return dict(routes)
