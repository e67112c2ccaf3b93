"""One immutable Settings, declared once: each field names its variable, type, default, bounds and meaning.

Everything else is derived from the declaration: `load_settings` reads each field's variable,
`Settings.to_env()` / `child_env()` write the same variables back for child processes, and
README's "Settings" table is rendered by `settings_table()` (a test compares the two).

Why a frozen pydantic `BaseModel` and a small loader rather than pydantic-settings' `BaseSettings`:
`BaseSettings` reads the process environment whenever it is constructed, and tests build
`Settings(rate_limit=0, ...)` expecting nothing else to leak in; its environment source also
decodes lists as JSON, where notifq's variables are comma-separated (and `100-500`). Turning
both off means replacing its sources and decoders, which is more code than the loader below.
The variable names live in each field's `json_schema_extra` rather than as pydantic aliases,
so that `Settings(port=...)` takes field names only, on every pydantic 2 release.

Nothing in notifq reads the environment anywhere else: `create_app(settings)` and the worker
receive it explicitly, which keeps tests free to build their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeFloat, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo

from notifq.errors import ConfigError

MIN_JWT_SECRET_BYTES = 32
_T = TypeVar("_T")


@dataclass(frozen=True)
class EnvText:
    """How a type is written back as its variable, where `str()` or a comma list would not read back."""

    render: Callable[[Any], str]


def _from_text(parse: Callable[[str], object]) -> BeforeValidator:
    """Variables arrive as strings and are parsed; Python values (tests, `with_`) pass through."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _latency(raw: str) -> tuple[int, int]:
    low, dash, high = raw.partition("-")
    try:
        return int(low), int(high if dash else low)
    except ValueError:
        raise ValueError("must be 'min-max' or one number") from None


def _ordered(value: tuple[int, int]) -> tuple[int, int]:
    if not 0 <= value[0] <= value[1]:
        raise ValueError("needs 0 <= min <= max")
    return value


CommaList = Annotated[tuple[str, ...], _from_text(_comma_list)]
Domains = Annotated[CommaList, AfterValidator(lambda domains: tuple(d.lower() for d in domains))]
Seconds = Annotated[tuple[NonNegativeFloat, ...], _from_text(_comma_list)]
Latency = Annotated[
    tuple[int, int], _from_text(_latency), AfterValidator(_ordered), EnvText(lambda v: f"{v[0]}-{v[1]}")
]
_any_case = _from_text(lambda s: s.strip().lower())  # choices are case-insensitive in the environment
EmailProvider = Annotated[Literal["ses", "smtp"], _any_case]
SmsProvider = Annotated[Literal["sns", "mock"], _any_case]
PushProvider = Annotated[Literal["fcm", "mock"], _any_case]
SmtpSecurity = Annotated[Literal["starttls", "tls", "none"], _any_case]
LogFormat = Annotated[Literal["json", "text"], _any_case]
WorkerLanes = Annotated[Literal["all", "transactional", "bulk"], _any_case]
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400,
        "day": 86400}  # fmt: skip


def _per_window(raw: str) -> tuple[int, int]:
    """`20/min` -> (20, 60); `0` or empty -> (0, 0): no limit."""
    raw = raw.strip().lower()
    if raw in ("", "0", "off", "none"):
        return 0, 0
    count, slash, unit = raw.partition("/")
    if not slash or not count.strip().isdigit() or unit.strip() not in _PER:
        raise ValueError("must be `<count>/<sec|min|hour|day>`, e.g. 20/min, or 0 for no limit")
    return int(count), _PER[unit.strip()]


def _render_window(value: tuple[int, int]) -> str:
    count, seconds = value
    return "0" if not count else f"{count}/{ {1: 'sec', 60: 'min', 3600: 'hour', 86400: 'day'}.get(seconds, 'sec') }"


def _window_ok(value: tuple[int, int]) -> tuple[int, int]:
    if value[0] < 0 or (value[0] and value[1] not in (1, 60, 3600, 86400)):
        raise ValueError("needs a count >= 0 per sec, min, hour or day")
    return value


PerWindow = Annotated[tuple[int, int], _from_text(_per_window), AfterValidator(_window_ok), EnvText(_render_window)]

# The providers a message can go through (mock routes included), in one place for the settings that name them.
PROVIDER_NAMES = ("mock", "ses", "smtp", "sns", "fcm")
CHANNEL_PROVIDERS = {"email": ("ses", "smtp", "mock"), "sms": ("sns", "mock"), "push": ("fcm", "mock")}


def _provider_rates(raw: str) -> tuple[tuple[str, float, float], ...]:
    """`ses=14,fcm=10000:20000` -> ((ses, 14, 0), (fcm, 10000, 20000)): per second, `:burst` optional (0: default)."""
    rates: list[tuple[str, float, float]] = []
    for item in _comma_list(raw):
        name, eq, value = item.partition("=")
        rate, colon, burst = value.partition(":")
        try:
            rates.append((name.strip().lower(), float(rate), float(burst) if colon else 0.0))
        except ValueError:
            raise ValueError(f"must be `<provider>=<per second>[:<burst>]`, comma-separated, got {item!r}") from None
        if not eq:
            raise ValueError(f"must be `<provider>=<per second>[:<burst>]`, comma-separated, got {item!r}")
    return tuple(rates)


def _rates_ok(value: tuple[tuple[str, float, float], ...]) -> tuple[tuple[str, float, float], ...]:
    names = [name for name, _, _ in value]
    for name, rate, burst in value:
        if name not in PROVIDER_NAMES:
            raise ValueError(f"names an unknown provider {name!r} (known: {', '.join(PROVIDER_NAMES)})")
        if not (rate > 0 and burst >= 0) or rate != rate or burst != burst:
            raise ValueError(f"needs a rate > 0 and a burst >= 0 for {name}")
    if len(set(names)) != len(names):
        raise ValueError("names a provider twice")
    return value


def _render_rates(value: tuple[tuple[str, float, float], ...]) -> str:
    def number(x: float) -> str:
        return str(int(x)) if x.is_integer() else repr(x)

    return ",".join(f"{n}={number(r)}" + (f":{number(b)}" if b else "") for n, r, b in value)


ProviderRates = Annotated[
    tuple[tuple[str, float, float], ...], _from_text(_provider_rates), AfterValidator(_rates_ok), EnvText(_render_rates)
]


def _providers_for(channel: str) -> AfterValidator:
    allowed = CHANNEL_PROVIDERS[channel]

    def check(value: tuple[str, ...]) -> tuple[str, ...]:
        value = tuple(v.lower() for v in value)
        for name in value:
            if name not in allowed:
                raise ValueError(f"names {name!r}, not a {channel} provider (one of {', '.join(allowed)})")
        if len(set(value)) != len(value):
            raise ValueError("names a provider twice")
        return value

    return AfterValidator(check)


EmailProviders = Annotated[CommaList, _providers_for("email")]
SmsProviders = Annotated[CommaList, _providers_for("sms")]
PushProviders = Annotated[CommaList, _providers_for("push")]


def setting(env: str, default: _T, *, description: str, shown: str | None = None, from_file: bool = False,
            **bounds: Any) -> _T:  # fmt: skip
    """A field read from variable `env`; `description` and `shown` (the default as README words it) feed the table.

    `from_file`: `<env>_FILE` may name a file that holds the value instead (Docker and Kubernetes secrets)."""
    extra: dict[str, Any] = {"env": env, "shown_default": shown, "from_file": from_file}
    return Field(default, description=description, json_schema_extra=extra, **bounds)  # type: ignore[no-any-return]


def secret(env: str, default: _T, *, description: str, shown: str | None = None) -> _T:
    """A setting kept out of `repr()` (and so out of logs and error messages), also read from `<env>_FILE`."""
    return setting(env, default, description=description, shown=shown, from_file=True, repr=False)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True)

    # fmt: off
    # One setting per line or two, so that the declaration reads like the table it generates.
    database_url: str | None = setting("DATABASE_URL", None, shown="embedded server", from_file=True,
        description="PostgreSQL, e.g. `postgresql://user:pass@host:5432/notifq`")
    database_read_url: str | None = setting("DATABASE_READ_URL", None, shown="`DATABASE_URL`", from_file=True,
        description="a PostgreSQL read replica for the API's listings and reports (campaigns, notifications, dead "
        "letters, stats, metrics); a single campaign or notification not yet on the replica is read from the primary")
    redis_url: str | None = setting("REDIS_URL", None, shown="embedded server", from_file=True,
        description="Redis or Valkey, e.g. `redis://host:6379/0`, or a master found through Sentinel: "
        "`redis+sentinel://host1:26379,host2:26379/mymaster/0` ([deployment](docs/deployment.md))")
    redis_prefix: str = setting("NOTIFQ_REDIS_PREFIX", "notifq", min_length=1,
        description="prefix of every Redis key notifq writes, so several deployments can share one Redis")
    jwt_secret: str = secret("NOTIFQ_JWT_SECRET", "", shown="generated in dev", description="HS256 secret, at "
        "least 32 bytes (refused otherwise); `notifq dev` keeps one in `.notifq/jwt_secret`")
    jwt_issuer: str = setting("NOTIFQ_JWT_ISSUER", "notifq", min_length=1,
        description="the `iss` claim of the tokens notifq issues and accepts")
    jwt_ttl_seconds: int = setting("NOTIFQ_JWT_TTL_SECONDS", 24 * 3600, ge=1, description="lifetime of a login token")
    admin_password: str | None = secret("NOTIFQ_ADMIN_PASSWORD", None, shown="generated, printed once",
        description="password `make run` sets for `admin@notifq.dev`")
    host: str = setting("NOTIFQ_HOST", "127.0.0.1", min_length=1, description="address the API listens on")
    port: int = setting("NOTIFQ_PORT", 8000, ge=1, le=65535, description="port the API listens on")
    api_processes: int = setting("NOTIFQ_API_PROCESSES", 0, ge=0, le=256, shown="`0` (the CPU count)",
        description="API processes `notifq api` runs on one port (`make run` and docker included)")
    send_linger_ms: float = setting("NOTIFQ_SEND_LINGER_MS", 1.0, ge=0, le=50,
        description="how long a single send waits for others to share its INSERT and Redis pipeline (group commit)")
    rate_limit: float = setting("NOTIFQ_RATE_LIMIT", 10.0, ge=0,
        description="messages per second per worker; `0` = unlimited")
    mock_latency_ms: Latency = setting("NOTIFQ_MOCK_LATENCY_MS", (100, 500),
        description="mock provider latency, `min-max` or one number")
    mock_failure_rate: float = setting("NOTIFQ_MOCK_FAILURE_RATE", 0.2, ge=0, le=1,
        description="share of mock attempts that fail (transiently)")
    mock_seed: int | None = setting("NOTIFQ_MOCK_SEED", None, ge=0, shown="random",
        description="makes mock failures reproducible (same message and attempt, same outcome)")
    mock_domains: Domains = setting("NOTIFQ_MOCK_DOMAINS", ("example.com",),
        description="comma-separated recipient domains that go to the mock")
    mock_phone_prefixes: CommaList = setting("NOTIFQ_MOCK_PHONE_PREFIXES", ("+1555",),
        description="comma-separated prefixes of test numbers that always go to the mock")
    mock_push_prefix: str = setting("NOTIFQ_MOCK_PUSH_PREFIX", "mock-", min_length=1,
        description="device tokens starting with this always go to the mock")
    max_campaign_size: int = setting("NOTIFQ_MAX_CAMPAIGN_SIZE", 1_000_000, ge=1,
        description="most recipients per campaign")
    max_body_bytes: int = setting("NOTIFQ_MAX_BODY_BYTES", 64 * 1024 * 1024, ge=1024,
        shown="`67108864` (64 MiB)", description="largest request body")
    # Delivery machinery (documented in docs/operations.md).
    max_attempts: int = setting("NOTIFQ_MAX_ATTEMPTS", 4, ge=1, description="attempts per message (1 + retries)")
    retry_delays: Seconds = setting("NOTIFQ_RETRY_DELAYS", (1.0, 2.0, 4.0), min_length=1,
        description="comma-separated seconds before each retry; the last one repeats")
    job_batch_size: int = setting("NOTIFQ_JOB_BATCH_SIZE", 500, ge=1, description="messages per queue job")
    worker_jobs: int = setting("NOTIFQ_WORKER_JOBS", 8, ge=1, description="batch jobs a worker runs at once")
    worker_lanes: WorkerLanes = setting("NOTIFQ_WORKER_LANES", "all", description="the lanes a worker serves: "
        "`all`, `transactional` (dedicated OTP capacity) or `bulk` (never slows down for transactional traffic)")
    # In flight >= jobs x batch: otherwise claimed messages wait for a send slot while their lease runs.
    worker_max_in_flight: int = setting("NOTIFQ_WORKER_MAX_IN_FLIGHT", 4000, ge=1,
        description="provider calls a worker keeps in flight (keep it >= jobs x batch size)")
    worker_drain_seconds: float = setting("NOTIFQ_WORKER_DRAIN_SECONDS", 35.0, ge=0,
        description="how long SIGTERM waits for in-flight sends")
    job_slice_seconds: float = setting("NOTIFQ_JOB_SLICE_SECONDS", 10.0, ge=0.1,
        description="how long one job works before handing the rest of its batch on")
    lease_seconds: float = setting("NOTIFQ_LEASE_SECONDS", 60.0, ge=1, description="how long a claimed message "
        "may stay `sending` before the reconciler takes it back (must exceed the provider timeout)")
    reconcile_interval: float = setting("NOTIFQ_RECONCILE_INTERVAL", 10.0, ge=0.1,
        description="reconciler period in seconds")
    reconcile_grace: float = setting("NOTIFQ_RECONCILE_GRACE", 30.0, ge=0,
        description="how long a queued batch may lack its job before it is re-enqueued")
    # 0 keeps every event forever (the default: an audit trail's lifetime is a compliance decision, not ours).
    event_retention_days: float = setting("NOTIFQ_EVENT_RETENTION_DAYS", 0.0, ge=0, shown="`0` (keep forever)",
        description="delete audit events (`message_events`) older than this many days; the reconciler prunes them")
    provider_timeout: float = setting("NOTIFQ_PROVIDER_TIMEOUT", 30.0, ge=0.1, description="seconds per provider call")
    login_max_failures: int = setting("NOTIFQ_LOGIN_MAX_FAILURES", 5, ge=1,
        description="failed logins per account or client address before 429")
    login_lockout_seconds: int = setting("NOTIFQ_LOGIN_LOCKOUT_SECONDS", 300, ge=1,
        description="how long failed logins are counted, and so how long the 429 lasts")
    trusted_proxies: CommaList = setting("NOTIFQ_TRUSTED_PROXIES", (), shown="none",
        description="comma-separated proxy addresses whose `X-Forwarded-For` the API believes (the client address "
        "drives the login lockout); empty: the peer address is the client")
    queue_name: str = setting("NOTIFQ_QUEUE", "notifq:queue", min_length=1,
        description="the bulk arq queue; transactional sends use `<name>:transactional`")
    # Providers per channel (issue 3). Mock routes win first: mock domains, phone prefixes and push tokens.
    email_provider: EmailProvider = setting("NOTIFQ_EMAIL_PROVIDER", "ses",
        description="`ses` or `smtp` for email not routed to the mock")
    sms_provider: SmsProvider = setting("NOTIFQ_SMS_PROVIDER", "sns",
        description="`sns`, or `mock` to send every SMS to the mock")
    push_provider: PushProvider = setting("NOTIFQ_PUSH_PROVIDER", "fcm",
        description="`fcm`, or `mock` to send every push notification to the mock")
    # Failover (docs/operations.md): empty = the single provider above.
    email_providers: EmailProviders = setting("NOTIFQ_EMAIL_PROVIDERS", (), shown="NOTIFQ_EMAIL_PROVIDER",
        description="comma-separated email providers in order of preference, e.g. `ses,smtp`: while one's circuit "
        "is open (or the fleet holds it for throttling) messages go to the next")
    sms_providers: SmsProviders = setting("NOTIFQ_SMS_PROVIDERS", (), shown="NOTIFQ_SMS_PROVIDER",
        description="comma-separated SMS providers in order of preference")
    push_providers: PushProviders = setting("NOTIFQ_PUSH_PROVIDERS", (), shown="NOTIFQ_PUSH_PROVIDER",
        description="comma-separated push providers in order of preference")
    provider_rates: ProviderRates = setting("NOTIFQ_PROVIDER_RATES", (), shown="none",
        description="fleet-wide sends per second per provider, shared by every worker through Redis, e.g. "
        "`ses=14,sns=20,fcm=10000:20000` (`:burst` optional); on a throttling answer the fleet's rate halves and "
        "recovers gradually")
    provider_recovery_seconds: float = setting("NOTIFQ_PROVIDER_RECOVERY_SECONDS", 30.0, ge=1,
        description="how long a throttled provider's fleet-wide rate takes to climb back from half to its limit")
    aws_region: str = setting("AWS_REGION", "us-east-1", min_length=1, description="region for SES and SNS; "
        "credentials come from boto3's usual chain (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …)")
    from_email: str = setting("FROM_EMAIL", "notifications@notifq.dev", min_length=1,
        description="sender of every email (must be verified in SES)")
    ses_endpoint_url: str | None = setting("NOTIFQ_SES_ENDPOINT_URL", None, shown="AWS",
        description="another SES endpoint (tests use moto's server)")
    sns_endpoint_url: str | None = setting("NOTIFQ_SNS_ENDPOINT_URL", None, shown="AWS",
        description="another SNS endpoint (tests use moto's server)")
    smtp_host: str = setting("NOTIFQ_SMTP_HOST", "localhost", min_length=1, description="SMTP server")
    smtp_port: int = setting("NOTIFQ_SMTP_PORT", 587, ge=1, le=65535, description="SMTP server's port")
    smtp_security: SmtpSecurity = setting("NOTIFQ_SMTP_SECURITY", "starttls", description="`starttls`, `tls` or `none`")
    smtp_username: str | None = setting("NOTIFQ_SMTP_USERNAME", None, description="SMTP user name, if any")
    smtp_password: str | None = secret("NOTIFQ_SMTP_PASSWORD", None, description="SMTP password, if any")
    smtp_pool_size: int = setting("NOTIFQ_SMTP_POOL_SIZE", 4, ge=1,
        description="reused SMTP connections per worker process")
    fcm_credentials_file: str | None = setting("NOTIFQ_FCM_CREDENTIALS_FILE", None,
        description="a Google service-account JSON for FCM HTTP v1")
    fcm_endpoint_url: str = setting("NOTIFQ_FCM_ENDPOINT_URL", "https://fcm.googleapis.com", min_length=1,
        description="another FCM endpoint")
    breaker_failures: int = setting("NOTIFQ_BREAKER_FAILURES", 5, ge=1,
        description="consecutive transient failures that pause a provider (open its circuit)")
    breaker_cooldown: float = setting("NOTIFQ_BREAKER_COOLDOWN", 30.0, ge=0.1,
        description="seconds a paused provider is skipped")
    # Subscribers and the in-app channel (docs/inapp.md).
    inapp_buffer_ttl: float = setting("NOTIFQ_INAPP_BUFFER_TTL", 86400.0, ge=1, shown="`86400` (24 h)",
        description="seconds an in-app notification stays in the Redis replay buffer (older ones are replayed "
        "from PostgreSQL)")
    dedup_window: float = setting("NOTIFQ_DEDUP_WINDOW", 600.0, ge=0, shown="`600` (10 min)",
        description="seconds within which a second message with the same subscriber and `dedupKey` is skipped")
    subscriber_rate_limit: PerWindow = setting("NOTIFQ_SUBSCRIBER_RATE_LIMIT", (0, 0), shown="`0` (no limit)",
        description="bulk messages per subscriber and channel, e.g. `20/min` (also `sec`, `hour`, `day`); over "
        "it they are skipped (`throttled`); transactional ones are never throttled")
    subscriber_token_ttl_seconds: int = setting("NOTIFQ_SUBSCRIBER_TOKEN_TTL_SECONDS", 24 * 3600, ge=60,
        description="lifetime of a subscriber token (`POST /subscribers/{id}/token`)")
    # The deliverability loop (docs/deliverability.md).
    public_url: str | None = setting("NOTIFQ_PUBLIC_URL", None, shown="`http://NOTIFQ_HOST:NOTIFQ_PORT`",
        description="the API's address as recipients reach it: the base of one-click unsubscribe links")
    unsubscribe_secret: str = secret("NOTIFQ_UNSUBSCRIBE_SECRET", "", shown="derived from NOTIFQ_JWT_SECRET",
        description="HMAC key of unsubscribe links; changing it breaks the links already sent")
    sns_topics: CommaList = setting("NOTIFQ_SNS_TOPICS", (), shown="none",
        description="comma-separated SNS topic ARNs whose messages `POST /webhooks/ses` accepts (and whose "
        "subscriptions it confirms); others get a 403")
    sns_cert_url_regex: str = setting("NOTIFQ_SNS_CERT_URL_REGEX", r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/",
        min_length=1, description="SNS signing certificates and SubscribeURLs are fetched only from URLs matching this")
    max_bounce_rate: float = setting("NOTIFQ_MAX_BOUNCE_RATE", 0.05, ge=0, le=1,
        description="a campaign pauses itself when its hard bounces exceed this share of its sent messages")
    max_complaint_rate: float = setting("NOTIFQ_MAX_COMPLAINT_RATE", 0.001, ge=0, le=1,
        description="a campaign pauses itself when its complaints exceed this share of its sent messages")
    guard_min_sent: int = setting("NOTIFQ_GUARD_MIN_SENT", 500, ge=1,
        description="sent messages (since the last resume) before a campaign's bounce and complaint rates count")
    sns_opt_out_sync_seconds: float = setting("NOTIFQ_SNS_OPT_OUT_SYNC_SECONDS", 3600.0, ge=0, shown="`3600` (1 h)",
        description="how often SNS's list of opted-out phone numbers is copied onto the suppression list (when "
        "SMS goes through SNS); `0` = never")
    # Outbound webhooks (docs/webhooks.md).
    webhooks_allow_private: bool = setting("NOTIFQ_WEBHOOKS_ALLOW_PRIVATE", False,
        description="let webhook URLs resolve to loopback, private, link-local or metadata addresses (tests, "
        "receivers on a private network); refused by default, at creation and at every delivery")
    webhook_timeout: float = setting("NOTIFQ_WEBHOOK_TIMEOUT", 10.0, ge=0.1, le=300,
        description="seconds a webhook receiver has to answer one POST")
    webhook_concurrency: int = setting("NOTIFQ_WEBHOOK_CONCURRENCY", 32, ge=1, le=1000,
        description="POSTs in flight per webhook endpoint")
    webhook_backoff_max_seconds: float = setting("NOTIFQ_WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0, ge=0.1,
        description="longest wait between two tries of a failing webhook endpoint (the waits double from 1 s)")
    webhook_give_up_seconds: float = setting("NOTIFQ_WEBHOOK_GIVE_UP_SECONDS", 86400.0, ge=1, shown="`86400` (24 h)",
        description="an event tried and not delivered this long after it happened is given up (logged as `abandoned`)")
    webhook_disable_after_seconds: float = setting("NOTIFQ_WEBHOOK_DISABLE_AFTER_SECONDS", 259200.0, ge=1,
        shown="`259200` (3 days)", description="an endpoint failing without a success this long is disabled")
    state_dir: Path = setting("NOTIFQ_STATE_DIR", Path(".notifq"),
        description="where dev mode keeps its servers, secret and state")
    log_format: LogFormat = setting("NOTIFQ_LOG_FORMAT", "json", description="`json`: one object per line with "
        "campaign/message/worker ids, secrets masked; `text` for humans")
    # fmt: on

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_JWT_SECRET_BYTES} bytes")
        return value

    @property
    def job_timeout(self) -> float:
        """arq's per-job limit: one slice plus one chunk's sends; also bounds a dead worker's in-progress claim."""
        return self.job_slice_seconds + self.provider_timeout + 15

    def providers_for(self, channel: str) -> tuple[str, ...]:
        """The channel's providers in order of preference (failover): the list, or the single provider."""
        listed = {"email": self.email_providers, "sms": self.sms_providers, "push": self.push_providers}[channel]
        if listed:
            return listed
        return ({"email": self.email_provider, "sms": self.sms_provider, "push": self.push_provider}[channel],)

    def with_(self, **changes: object) -> Settings:
        """A validated copy (pydantic's `model_copy(update=...)` would skip validation)."""
        return _build({**dict(self), **changes})

    def to_env(self) -> dict[str, str]:
        """Every setting as its variable, defaults too: a child builds an equal Settings whatever its .env says."""
        return {ENV_VARS[name]: _text(field, getattr(self, name)) for name, field in type(self).model_fields.items()}


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


ENV_VARS: dict[str, str] = {name: _extra(field)["env"] for name, field in Settings.model_fields.items()}
# `<variable>_FILE` names a file holding the value, for the settings that take one (secrets, and URLs with passwords).
FILE_VARS: dict[str, str] = {name: f"{ENV_VARS[name]}_FILE" for name, field in Settings.model_fields.items()
                             if _extra(field).get("from_file")}  # fmt: skip


def _text(field: FieldInfo, value: object) -> str:
    """A value as its variable's text; `load_settings` reads it back to the same value."""
    custom = next((m for m in field.metadata if isinstance(m, EnvText)), None)
    if custom:
        return custom.render(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(_text(field, item) for item in value)
    return str(value)


def child_env(settings: Settings, base: Mapping[str, str] | None = None, *, isolated: bool = False) -> dict[str, str]:
    """The environment for a notifq child process: `base` (default os.environ) with every setting written over it.

    `isolated` also drops the parent's other NOTIFQ_ variables (tests and the bench: a developer's
    NOTIFQ_API_URL or NOTIFQ_TOKEN must not reach the processes they start). The `<variable>_FILE`
    ones are emptied (unset): the child gets the values themselves, and both set would be refused.
    """
    env = dict(os.environ if base is None else base)
    if isolated:
        env = {k: v for k, v in env.items() if not k.startswith("NOTIFQ_")}
    return env | settings.to_env() | dict.fromkeys(FILE_VARS.values(), "")


def load_dotenv(path: Path) -> dict[str, str]:
    """Minimal KEY=VALUE reader: the environment always wins over the file."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build and validate Settings; a bad value raises ConfigError naming the variable.

    An empty variable counts as unset (the default), except for a list, where it is the empty list.
    A setting in FILE_VARS may come from the file its `<variable>_FILE` names instead (not both).
    """
    merged: dict[str, str] = dict(load_dotenv(dotenv)) if dotenv else {}
    merged.update(os.environ if env is None else env)
    values: dict[str, object] = {}
    from_files: set[str] = set()
    for name, field in Settings.model_fields.items():
        raw = merged.get(ENV_VARS[name])
        if name in FILE_VARS and merged.get(FILE_VARS[name]):
            if raw:
                raise ConfigError(f"{ENV_VARS[name]} and {FILE_VARS[name]} are both set: set one of them")
            raw = _read_setting_file(FILE_VARS[name], merged[FILE_VARS[name]])
            from_files.add(name)
        if raw is not None and (raw != "" or isinstance(field.default, tuple)):
            values[name] = raw
    return check_consistency(_build(values, from_files))


def _read_setting_file(variable: str, path: str) -> str:
    """The value a `<variable>_FILE` holds, without the line break `echo` or an editor leaves at its end."""
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{variable} names {path!r}, which cannot be read: {why}") from None
    if not value:
        raise ConfigError(f"{variable} names {path!r}, which is empty")
    return value


def _build(values: Mapping[str, object], from_files: Set[str] = frozenset()) -> Settings:
    try:
        return Settings.model_validate(values)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        if error["type"] == "extra_forbidden":  # a keyword with_() does not know: a bug, not a bad setting
            raise TypeError(f"Settings has no field {name!r}") from None
        shown = "" if not Settings.model_fields[name].repr else f", got {values.get(name)!r}"
        where = f" (read from {FILE_VARS[name]})" if name in from_files else ""
        raise ConfigError(f"{ENV_VARS[name]}{where} {_reason(error)}{shown}") from None


def _reason(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in ("float_parsing", "float_type", "finite_number"):
        return "must be a number"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"must be {'>=' if 'ge' in ctx else '<='} {ctx.get('ge', ctx.get('le')):g}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(ctx["error"])
    return f"is not valid ({error['msg']})"


def parse_latency(raw: str) -> tuple[int, int]:
    """`100-500` or `250`: a range of milliseconds for the mock provider (scripts/naive.py reads it too)."""
    try:
        return _ordered(_latency(raw))
    except ValueError as exc:
        raise ConfigError(f"NOTIFQ_MOCK_LATENCY_MS {exc}, got {raw!r}") from None


def settings_table() -> str:
    """README's "Settings" table, one row per variable in declaration order."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        text = _text(field, field.default)
        default = _extra(field).get("shown_default") or (f"`{text}`" if text else "—")
        also = f"; or `{FILE_VARS[name]}`, a file that holds it" if name in FILE_VARS else ""
        rows.append(f"| `{ENV_VARS[name]}` | {default} | {field.description}{also} |")
    return "\n".join(rows) + "\n"


def check_consistency(settings: Settings) -> Settings:
    if settings.lease_seconds <= settings.provider_timeout:
        raise ConfigError("NOTIFQ_LEASE_SECONDS must exceed NOTIFQ_PROVIDER_TIMEOUT, or live sends would be re-claimed")
    return settings


def require_jwt_secret(settings: Settings) -> str:
    if len(settings.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            f"NOTIFQ_JWT_SECRET must be set to at least {MIN_JWT_SECRET_BYTES} bytes "
            "(`make run` generates one under .notifq/ in dev mode)"
        )
    return settings.jwt_secret
