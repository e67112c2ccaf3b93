"""Operations bodies: health, readiness, live workers and their history, providers, the overview, login."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from notifq.api.models.base import ApiModel, Limit, Text
from notifq.auth import BCRYPT_MAX_BYTES
from notifq.telemetry import FleetLimit, WorkerBeat
from notifq.vocabulary import Channel, MessageStatus


class Health(ApiModel):
    status: Literal["ok"]


class Checks(ApiModel):
    postgres: str = Field(description="`ok` or `unavailable: <exception type>` (2 s timeout).", examples=["ok"])
    redis: str = Field(description="`ok` or `unavailable: <exception type>` (2 s timeout).", examples=["ok"])


class Readiness(ApiModel):
    status: Literal["ready", "unavailable"]
    checks: Checks


class Worker(ApiModel):
    model_config = ConfigDict(strict=False)
    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime = Field(description="The last heartbeat.")
    rate_per_second: float = Field(ge=0, description="Messages finished per second over the last few seconds.")
    in_flight: int = Field(ge=0, description="Provider calls in progress.")
    sent: int = Field(ge=0)
    failed: int = Field(ge=0)
    retried: int = Field(ge=0)

    @classmethod
    def of(cls, beat: WorkerBeat) -> Worker:
        def at(seconds: float) -> datetime:
            return datetime.fromtimestamp(round(seconds, 3), UTC)

        return cls(id=beat.id, host=beat.host, pid=beat.pid, started_at=at(beat.started_at),
                   last_seen=at(beat.last_seen), rate_per_second=round(beat.rate, 1), in_flight=beat.in_flight,
                   sent=beat.sent, failed=beat.failed, retried=beat.retried)  # fmt: skip


class WorkerQueue(ApiModel):
    bulk_jobs: int = Field(ge=0, description="Delivery batches waiting in the bulk lane.")
    transactional_jobs: int = Field(ge=0, description="Delivery batches waiting in the transactional lane.")
    queued_messages: int = Field(ge=0)
    sending_messages: int = Field(ge=0)
    scheduled_messages: int = Field(ge=0, description="Messages `pending` (held until their sendAt or a resume).")


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(round(seconds, 3), UTC)


class ProviderLimit(ApiModel):
    model_config = ConfigDict(strict=False)
    provider: str = Field(description="A provider NOTIFQ_PROVIDER_RATES limits fleet-wide.")
    limit_per_second: float = Field(gt=0, description="The configured fleet-wide rate.")
    burst: float = Field(ge=0, description="Sends the fleet may make at once after a quiet spell.")
    effective_per_second: float = Field(ge=0, description="The rate enforced now: the limit, or less after a "
                                        "throttling answer (halved, then climbing back over "
                                        "NOTIFQ_PROVIDER_RECOVERY_SECONDS).")  # fmt: skip
    current_per_second: float = Field(ge=0, description="Sends per second the workers took over the last 5 s.")
    held_until: datetime | None = Field(description="While a Retry-After holds the provider for every worker.")
    throttled_at: datetime | None = Field(description="The last back-off; null if none.")
    throttle_reports: int = Field(ge=0, description="Throttling answers the workers reported (at most 4 a second "
                                  "each) since the state began.")  # fmt: skip

    @classmethod
    def of(cls, state: FleetLimit) -> ProviderLimit:
        return cls(provider=state.provider, limit_per_second=state.limit, burst=round(state.burst, 3),
                   effective_per_second=round(state.effective, 2), current_per_second=round(state.current, 1),
                   held_until=_at(state.held_until), throttled_at=_at(state.throttled_at),
                   throttle_reports=state.throttles)  # fmt: skip


class ProviderRoute(ApiModel):
    channel: Channel
    providers: list[str] = Field(description="In order of preference (NOTIFQ_EMAIL_PROVIDERS, …): messages go "
                                 "to the first one that may be tried.")  # fmt: skip
    active: str = Field(description="Where most live workers send the channel's messages now: the first "
                        "provider, unless they fail over.")  # fmt: skip
    failing_over: dict[str, str] = Field(description="Live workers failing over now: worker id -> the provider "
                                         "they send through.")  # fmt: skip


class Workers(ApiModel):
    workers: list[Worker]
    queue: WorkerQueue
    in_flight: int = Field(ge=0, description="Provider calls in progress on every live worker.")
    provider_limits: list[ProviderLimit] = Field(description="Fleet-wide provider limits (NOTIFQ_PROVIDER_RATES), "
                                                 "from the state the workers share in Redis.")  # fmt: skip
    provider_routes: list[ProviderRoute] = Field(description="Per channel, its providers in order and where live "
                                                 "workers send now (failover).")  # fmt: skip


class ProviderLatency(ApiModel):
    count: int = Field(ge=0, description="Provider calls observed.")
    p50_seconds: float | None = Field(ge=0, description="Median call latency; null without calls.")
    p95_seconds: float | None = Field(ge=0)
    p99_seconds: float | None = Field(ge=0)


class ProviderStats(ApiModel):
    channel: Channel
    provider: str = Field(description="`mock`, `ses`, `smtp`, `sns`, `fcm`; `none` for outcomes with no provider "
                          "(a worker lost during the attempt).")  # fmt: skip
    sent: int = Field(ge=0)
    failed: int = Field(ge=0, description="Failed for good (permanent error or last attempt).")
    retried: int = Field(ge=0, description="Transient failures queued for another attempt.")
    throttled: int = Field(ge=0, description="Held back by the provider's rate limit (attempt given back).")
    deferred: int = Field(ge=0, description="Not attempted: the provider's circuit was open (attempt given back).")
    error_rate: float = Field(ge=0, le=1, description="(failed + retried) / (sent + failed + retried); 0 when none.")
    latency: ProviderLatency = Field(description="Quantiles interpolated within the latency histogram's buckets "
                                     "(1 ms … 10 s), as Prometheus' histogram_quantile.")  # fmt: skip


class Providers(ApiModel):
    items: list[ProviderStats] = Field(description="Per channel and provider, since Redis' counters began.")


class HistoryQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    minutes: Limit = Field(60, ge=1, le=60, description="How far back, in minutes.")


class OverviewQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    minutes: Limit = Field(60, ge=1, le=1440, description="How far back, in minutes (at most a day).")


class RatePoint(ApiModel):
    model_config = ConfigDict(strict=False)
    at: datetime = Field(description="The start of the bucket.")
    rate_per_second: float = Field(ge=0, description="The mean of the worker's heartbeat rates in the bucket.")


class WorkerSeries(ApiModel):
    id: str
    host: str
    live: bool = Field(description="Still heartbeating (listed by GET /workers).")
    points: list[RatePoint] = Field(description="Oldest first; buckets without a heartbeat are left out.")


class WorkerHistory(ApiModel):
    bucket_seconds: int = Field(ge=1, description="Width of each point's bucket (at most 360 per worker).")
    workers: list[WorkerSeries] = Field(description="Every worker live or heard from in the window.")


class OverviewTotals(ApiModel):
    model_config = ConfigDict(strict=False)
    by_channel: dict[Channel, dict[MessageStatus, Annotated[int, Field(ge=0)]]] = Field(
        description="Per channel, messages per status (zeros left out), as GET /stats.")  # fmt: skip
    by_status: dict[MessageStatus, Annotated[int, Field(ge=0)]] = Field(
        description="Messages per status (zeros left out).")  # fmt: skip


class OverviewPoint(ApiModel):
    model_config = ConfigDict(strict=False)
    at: datetime = Field(description="The start of the bucket.")
    sent: int = Field(ge=0)
    failed: int = Field(ge=0)
    retried: int = Field(ge=0)


class Overview(ApiModel):
    bucket_seconds: int = Field(ge=10, description="Width of each point's bucket: a multiple of 10 s, at most 360 "
                                "points.")  # fmt: skip
    totals: OverviewTotals
    points: list[OverviewPoint] = Field(description="Every bucket of the window, oldest first, the one in progress "
                                        "last; cluster-wide outcomes as counted by /metrics.")  # fmt: skip


class LoginRequest(ApiModel):
    email: Text = Field(min_length=1, description="The admin's email address.")
    password: Text = Field(min_length=1, description=f"At most {BCRYPT_MAX_BYTES} bytes once UTF-8 encoded.")


class LoginResponse(ApiModel):
    token: str = Field(description="A JWT (HS256); send it as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"]
    expires_at: datetime = Field(description="When the token stops being accepted.")
