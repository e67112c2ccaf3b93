"""Operations view: live workers and their last hour, providers, the overview, Prometheus metrics.

All read what workers publish in Redis (notifq/telemetry.py) plus the sharded per-channel
message counts in PostgreSQL, so they cost a few reads however many workers and messages
there are, and they show the whole cluster, not the API process.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from notifq.api.contract import Operation, Reply, json_reply, parse_query
from notifq.api.models.ops import (
    HistoryQuery,
    Overview,
    OverviewPoint,
    OverviewQuery,
    OverviewTotals,
    ProviderLatency,
    ProviderLimit,
    ProviderRoute,
    Providers,
    ProviderStats,
    RatePoint,
    Worker,
    WorkerHistory,
    WorkerQueue,
    Workers,
    WorkerSeries,
)
from notifq.api.requests import require_admin
from notifq.db import feedback_repo, notifications_repo, suppressions_repo, webhook_outbox_repo
from notifq.keys import RedisKeys
from notifq.queue import queue_depth
from notifq.settings import PROVIDER_NAMES, Settings
from notifq.telemetry import (
    LATENCY_BUCKETS,
    OUTCOMES,
    SERIES_OUTCOMES,
    FleetLimit,
    ProviderCounters,
    WorkerBeat,
    failover_routes,
    live_workers,
    metric_counters,
    outcome_series,
    per_provider,
    provider_limits,
    provider_summaries,
    worker_history,
)
from notifq.vocabulary import ADDRESSED_CHANNELS, Channel, Lane, MessageStatus, Scope

CHANNELS = frozenset(Channel)


async def _message_counts(request: Request) -> list[tuple[str, str, int]]:
    async with request.app.state.replica_engine.connect() as conn:
        return await notifications_repo.counts(conn)


async def _provider_limits(request: Request) -> list[FleetLimit]:
    """Providers limited fleet-wide: configured here, or in use by a worker (whose settings may differ)."""
    settings: Settings = request.app.state.settings
    configured = {name: (rate, burst) for name, rate, burst in settings.provider_rates}
    return await provider_limits(request.app.state.redis, RedisKeys.from_settings(settings), configured,
                                 PROVIDER_NAMES)  # fmt: skip


async def _provider_routes(request: Request, live: set[str]) -> list[ProviderRoute]:
    settings: Settings = request.app.state.settings
    routes = await failover_routes(request.app.state.redis, RedisKeys.from_settings(settings), live)
    items = []
    for channel in ADDRESSED_CHANNELS:
        providers = list(settings.providers_for(channel))
        away = routes.get(channel, {})
        votes = Counter(away.values())
        votes[providers[0]] = len(live) - len(away)
        active = max(votes, key=lambda p: (votes[p], p == providers[0]))
        items.append(ProviderRoute(channel=channel, providers=providers, active=active, failing_over=away))
    return items


async def workers(request: Request) -> Response:
    await require_admin(request)
    redis, keys = request.app.state.redis, RedisKeys.from_settings(request.app.state.settings)
    beats = await live_workers(redis, keys)
    jobs = await queue_depth(redis, keys)
    by_status: dict[str, int] = defaultdict(int)
    for _, status, n in await _message_counts(request):
        by_status[status] += n
    queue = WorkerQueue(
        bulk_jobs=jobs.get(Lane.BULK, 0), transactional_jobs=jobs.get(Lane.TRANSACTIONAL, 0),
        queued_messages=by_status[MessageStatus.QUEUED], sending_messages=by_status[MessageStatus.SENDING],
        scheduled_messages=by_status[MessageStatus.PENDING],
    )  # fmt: skip
    limits = [ProviderLimit.of(f) for f in await _provider_limits(request)]
    routes = await _provider_routes(request, {b.id for b in beats})
    return json_reply(Workers(workers=[Worker.of(b) for b in beats], queue=queue,
                              in_flight=sum(b.in_flight for b in beats), provider_limits=limits,
                              provider_routes=routes))  # fmt: skip


async def providers(request: Request) -> Response:
    await require_admin(request)
    redis, keys = request.app.state.redis, RedisKeys.from_settings(request.app.state.settings)
    items = []
    for p in provider_summaries(await metric_counters(redis, keys)):
        if p.channel not in CHANNELS:  # written by notifq only; a stray field is not worth a 500
            continue
        c = p.counts
        attempts = c["sent"] + c["failed"] + c["retried"]
        p50, p95, p99 = (None if q is None else round(q, 6) for q in p.quantiles)
        items.append(ProviderStats(
            channel=Channel(p.channel), provider=p.provider, sent=c["sent"], failed=c["failed"], retried=c["retried"],
            throttled=c["throttled"], deferred=c["deferred"],
            error_rate=round((c["failed"] + c["retried"]) / attempts, 4) if attempts else 0.0,
            latency=ProviderLatency(count=p.latency_count, p50_seconds=p50, p95_seconds=p95, p99_seconds=p99),
        ))  # fmt: skip
    return json_reply(Providers(items=items))


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def workers_history(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, HistoryQuery)
    redis, keys = request.app.state.redis, RedisKeys.from_settings(request.app.state.settings)
    width, histories = await worker_history(redis, keys, q.minutes * 60)
    series = [WorkerSeries(id=h.id, host=h.host, live=h.live,
                           points=[RatePoint(at=_at(at), rate_per_second=round(rate, 1)) for at, rate in h.points])
              for h in histories]  # fmt: skip
    return json_reply(WorkerHistory(bucket_seconds=width, workers=series))


async def overview(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, OverviewQuery)
    redis, keys = request.app.state.redis, RedisKeys.from_settings(request.app.state.settings)
    by_status: dict[str, int] = defaultdict(int)
    by_channel: dict[str, dict[str, int]] = defaultdict(dict)
    for channel, status, n in await _message_counts(request):
        by_status[status] += n
        by_channel[channel][status] = n
    width, buckets = await outcome_series(redis, keys, q.minutes * 60)
    points = [OverviewPoint(at=_at(at), **dict(zip(SERIES_OUTCOMES, counts, strict=True))) for at, counts in buckets]
    totals = OverviewTotals.model_validate({"byChannel": by_channel, "byStatus": by_status})
    return json_reply(Overview(bucket_seconds=width, totals=totals, points=points))


class _Snapshot:
    """A prometheus_client collector over values read beforehand (collectors are synchronous)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _outcome_families(series: dict[tuple[str, str], ProviderCounters]) -> Iterable[Metric]:
    families = {o: CounterMetricFamily(f"notifq_messages_{o}", f"Messages {o} by workers (delivery attempts' outcomes)",
                                       labels=["channel", "provider"]) for o in OUTCOMES}  # fmt: skip
    for (channel, provider), c in sorted(series.items()):
        for outcome, value in sorted(c.counts.items()):
            families[outcome].add_metric([channel, provider], value)
    return families.values()


def _latency_family(series: dict[tuple[str, str], ProviderCounters]) -> Metric:
    family = HistogramMetricFamily("notifq_provider_latency_seconds", "Provider call latency, per channel and provider",
                                   labels=["channel", "provider"])  # fmt: skip
    for (channel, provider), c in sorted(series.items()):
        if not c.has_latency:
            continue
        cumulative, buckets = 0.0, []
        for bound, n in zip([*(str(b) for b in LATENCY_BUCKETS), "+Inf"], c.buckets, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        family.add_metric([channel, provider], buckets, c.latency_sum)
    return family


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


SUPPRESSION_COUNTS_TTL = 60.0  # seconds: the list can hold millions of rows, and every scrape of every process asks


async def _suppression_counts(request: Request, conn: AsyncConnection) -> list[tuple[str, str, int]]:
    """The suppression list counted by channel and reason, at most once a minute per process."""
    cached: tuple[float, list[tuple[str, str, int]]] | None = getattr(request.app.state, "suppression_counts", None)
    now = time.monotonic()
    if cached is None or cached[0] <= now:
        cached = (now + SUPPRESSION_COUNTS_TTL, await suppressions_repo.counts(conn))
        request.app.state.suppression_counts = cached
    return cached[1]


async def metrics(request: Request) -> Response:
    redis, keys = request.app.state.redis, RedisKeys.from_settings(request.app.state.settings)
    counters = await metric_counters(redis, keys)
    beats: list[WorkerBeat] = await live_workers(redis, keys)
    jobs = await queue_depth(redis, keys)
    messages = GaugeMetricFamily("notifq_messages", "Messages by channel and status (PostgreSQL)",
                                 labels=["channel", "status"])  # fmt: skip
    queued = 0
    for channel, status, n in await _message_counts(request):
        messages.add_metric([channel, status], n)
        queued += n if status == "queued" else 0
    lanes = GaugeMetricFamily("notifq_queue_jobs", "arq jobs (batches) waiting per lane", labels=["lane"])
    for lane, n in sorted(jobs.items()):
        lanes.add_metric([lane], n)
    series = per_provider(counters)
    async with request.app.state.read_engine.connect() as conn:
        suppressed = await _suppression_counts(request, conn)
        campaigns = await feedback_repo.open_campaign_counts(conn)
    suppression_family = GaugeMetricFamily("notifq_suppressions", "Suppression list entries by channel and reason",
                                           labels=["channel", "reason"])  # fmt: skip
    for channel, reason, n in suppressed:
        suppression_family.add_metric([channel, reason], n)
    per_campaign = {
        name: GaugeMetricFamily(f"notifq_campaign_{name}", doc, labels=["campaign_id", "status"])
        for name, doc in (("bounces", "Hard-bounced messages of a campaign still sending or paused"),
                          ("complaints", "Complaints about a campaign still sending or paused"),
                          ("unsubscribes", "One-click unsubscribes from a campaign still sending or paused"),
                          ("bounce_rate", "Hard bounces / sent, per campaign still sending or paused"),
                          ("complaint_rate", "Complaints / sent, per campaign still sending or paused"))
    }  # fmt: skip
    for c in campaigns:
        labels = [str(c.id), c.status]
        for name, value in (("bounces", c.bounces), ("complaints", c.complaints), ("unsubscribes", c.unsubscribes),
                            ("bounce_rate", c.bounces / c.sent if c.sent else 0.0),
                            ("complaint_rate", c.complaints / c.sent if c.sent else 0.0)):  # fmt: skip
            per_campaign[name].add_metric(labels, value)
    fleet = {name: GaugeMetricFamily(f"notifq_provider_rate_{name}", doc, labels=["provider"])
             for name, doc in (("limit", "Configured fleet-wide sends per second (NOTIFQ_PROVIDER_RATES)"),
                               ("effective", "Fleet-wide sends per second enforced now (less after throttling)"),
                               ("current", "Fleet-wide sends per second over the last 5 s"))}  # fmt: skip
    for f in await _provider_limits(request):
        for name, value in (("limit", f.limit), ("effective", f.effective), ("current", f.current)):
            fleet[name].add_metric([f.provider], value)
    webhooks = {
        name: GaugeMetricFamily(f"notifq_webhook_{name}", doc, labels=["endpoint_id", "status"])
        for name, doc in (("pending", "Events waiting for a webhook endpoint"),
                          ("oldest_pending_seconds", "Age of the oldest event waiting for a webhook endpoint"))
    }  # fmt: skip
    async with request.app.state.read_engine.connect() as conn:
        backlogs, held = await webhook_outbox_repo.backlogs(conn)
    for b in backlogs:
        status = "disabled" if not b.enabled else "failing" if b.failing else "active"
        webhooks["pending"].add_metric([str(b.endpoint_id), status], b.pending)
        webhooks["oldest_pending_seconds"].add_metric([str(b.endpoint_id), status], b.oldest_seconds)
    families: list[Metric] = [
        *webhooks.values(),
        _gauge("notifq_webhook_horizon_held_seconds", "How long the oldest PostgreSQL transaction holding webhook "
               "events back has been running (0: none)", held),
        *fleet.values(),
        suppression_family,
        *per_campaign.values(),
        *_outcome_families(series),
        _latency_family(series),
        messages,
        lanes,
        _gauge("notifq_queue_depth", "Messages queued for delivery (not yet claimed by a worker)", queued),
        _gauge("notifq_in_flight", "Provider calls in progress on live workers", sum(b.in_flight for b in beats)),
        _gauge("notifq_workers", "Live workers (heartbeat within the last few seconds)", len(beats)),
        CounterMetricFamily("notifq_rate_limit_waits", "Times a worker waited for its rate limit",
                            value=counters.get("rate_limit_waits", 0.0)),
        CounterMetricFamily("notifq_rate_limit_wait_seconds", "Seconds workers spent waiting for their rate limit",
                            value=counters.get("rate_limit_wait_seconds", 0.0)),
    ]  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


OPERATIONS = [
    Operation("GET", "/workers", workers, "listWorkers", "Live workers and queue depth", "operations",
              {200: Reply("The live workers.", Workers)}, errors=("Unauthorized", "ServiceUnavailable"),
              description="Every worker heartbeats every second; one silent for a few seconds is left out (a "
              "gracefully stopped one leaves at once). `providerLimits`: each provider limited fleet-wide, with "
              "its configured and effective rate, its measured rate and any hold, from the state the workers "
              "share in Redis. `providerRoutes`: each channel's providers in order and where live workers send "
              "now (failover).", scope=Scope.READ),
    Operation("GET", "/workers/history", workers_history, "getWorkersHistory",
              "Each worker's rate over the last hour", "operations",
              {200: Reply("The rates.", WorkerHistory)}, query=HistoryQuery,
              errors=("Unauthorized", "ServiceUnavailable", "ValidationFailed"),
              description="Every heartbeat stores the worker's rate (messages finished per second over the last few "
              "seconds) in Redis for an hour, also after the worker stopped; the samples are averaged per bucket (1 s "
              "for up to 6 minutes, 10 s for an hour: at most 360 points per worker).", scope=Scope.READ),
    Operation("GET", "/providers", providers, "listProviders", "Outcomes, error rate and latency per provider",
              "operations", {200: Reply("The providers.", Providers)}, errors=("Unauthorized", "ServiceUnavailable"),
              description="From the cluster-wide counters the workers publish (the same as /metrics), since Redis "
              "last lost them. `errorRate` is (failed + retried) / (sent + failed + retried); latency quantiles are "
              "interpolated within the histogram's buckets, so they are estimates.", scope=Scope.READ),
    Operation("GET", "/overview", overview, "getOverview", "Message totals and outcomes over time", "operations",
              {200: Reply("The overview.", Overview)}, query=OverviewQuery,
              errors=("Unauthorized", "ServiceUnavailable", "ValidationFailed"),
              description="`totals`: messages by channel and status now (PostgreSQL, as /stats). `points`: messages "
              "sent, failed and retried cluster-wide per bucket over the last `minutes` (10 s buckets up to an hour, "
              "wider beyond: at most 360 points), from a series the workers write with their metrics and Redis "
              "keeps for a day.", scope=Scope.READ),
    Operation("GET", "/metrics", metrics, "getMetrics", "Prometheus metrics for the whole cluster", "operations",
              {200: Reply("The metrics.", str, media_type="text/plain")}, public=True, errors=("ServiceUnavailable",),
              description="Prometheus text format. Counters `notifq_messages_{sent,failed,retried,throttled,deferred,"
              "config_error}_total` and the histogram `notifq_provider_latency_seconds` by channel and provider "
              "(published by every worker through Redis); gauges `notifq_messages{channel,status}`, "
              "`notifq_queue_depth`, `notifq_queue_jobs{lane}`, `notifq_in_flight`, `notifq_workers`; counters "
              "`notifq_rate_limit_waits_total` and `notifq_rate_limit_wait_seconds_total`; the deliverability "
              "gauges `notifq_suppressions{channel,reason}` and, for campaigns still sending or paused that have "
              "feedback (at most 200), `notifq_campaign_{bounces,complaints,unsubscribes,bounce_rate,"
              "complaint_rate}{campaign_id,status}`; for providers limited fleet-wide (NOTIFQ_PROVIDER_RATES), "
              "the gauges `notifq_provider_rate_{limit,effective,current}{provider}` (configured, enforced after "
              "back-off, and measured over the last 5 s). Aggregates only, and campaign ids: no addresses or "
              "secrets."),
]  # fmt: skip
