"""One immutable Settings object, read from the environment (and an optional .env) once.

Nothing in notifq reads the environment anywhere else: `create_app(settings)` and the
worker receive it explicitly, which keeps tests free to build their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from notifq.errors import ConfigError

MIN_JWT_SECRET_BYTES = 32


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    jwt_secret: str = ""
    jwt_issuer: str = "notifq"
    jwt_ttl_seconds: int = 24 * 3600
    admin_password: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    rate_limit: float = 10.0
    mock_latency_ms: tuple[int, int] = (100, 500)
    mock_failure_rate: float = 0.2
    mock_seed: int | None = None
    mock_domains: tuple[str, ...] = ("example.com",)
    max_campaign_size: int = 1_000_000
    max_body_bytes: int = 64 * 1024 * 1024
    # Delivery machinery (documented in docs/operations.md).
    max_attempts: int = 4
    retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    job_batch_size: int = 500
    # In flight >= jobs x batch: otherwise claimed messages wait for a send slot while their lease runs.
    worker_jobs: int = 8
    worker_max_in_flight: int = 4000
    worker_drain_seconds: float = 35.0
    job_slice_seconds: float = 10.0
    lease_seconds: float = 60.0
    reconcile_interval: float = 10.0
    reconcile_grace: float = 30.0
    # Audit-trail retention in days; 0 keeps every event forever (the default: an audit
    # trail's lifetime is a compliance decision, not ours).
    event_retention_days: float = 0.0
    login_max_failures: int = 5
    login_lockout_seconds: int = 300
    queue_name: str = "notifq:queue"
    # Every Redis key notifq writes starts with this, so deployments can share one Redis.
    redis_prefix: str = "notifq"
    # SES (email to non-mock domains).
    aws_region: str = "us-east-1"
    ses_endpoint_url: str | None = None
    from_email: str = "notifications@notifq.dev"
    provider_timeout: float = 30.0
    # Providers per channel (issue 3). Mock routes win first: example.com, +1555…, "mock-" tokens.
    email_provider: str = "ses"  # ses | smtp
    sms_provider: str = "sns"  # sns | mock
    push_provider: str = "fcm"  # fcm | mock
    mock_phone_prefixes: tuple[str, ...] = ("+1555",)
    mock_push_prefix: str = "mock-"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls | tls | none
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_pool_size: int = 4
    sns_endpoint_url: str | None = None
    fcm_credentials_file: str | None = None  # a Google service-account JSON
    fcm_endpoint_url: str = "https://fcm.googleapis.com"
    breaker_failures: int = 5  # consecutive transient failures that open a provider's circuit
    breaker_cooldown: float = 30.0  # seconds a provider is skipped once its circuit is open
    state_dir: Path = field(default_factory=lambda: Path(".notifq"))
    log_format: str = "json"  # json | text

    @property
    def job_timeout(self) -> float:
        """arq's per-job limit: one slice plus one chunk's sends; also bounds a dead worker's in-progress claim."""
        return self.job_slice_seconds + self.provider_timeout + 15

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


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


def _number(env: Mapping[str, str], key: str, default: float, *, minimum: float = 0) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], key: str, default: int, *, minimum: int = 0) -> int:
    value = _number(env, key, default, minimum=minimum)
    if value != int(value):
        raise ConfigError(f"{key} must be a whole number, got {env.get(key)!r}")
    return int(value)


def _choice(env: Mapping[str, str], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(key, default).strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def parse_latency(raw: str) -> tuple[int, int]:
    """`100-500` or `250`: a range of milliseconds for the mock provider."""
    try:
        if "-" in raw:
            low, high = (int(p.strip()) for p in raw.split("-", 1))
        else:
            low = high = int(raw.strip())
    except ValueError:
        raise ConfigError(f"NOTIFQ_MOCK_LATENCY_MS must be 'min-max' or one number, got {raw!r}") from None
    if low < 0 or high < low:
        raise ConfigError(f"NOTIFQ_MOCK_LATENCY_MS needs 0 <= min <= max, got {raw!r}")
    return low, high


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build and validate Settings; a bad value raises ConfigError naming the variable."""
    merged: dict[str, str] = dict(load_dotenv(dotenv)) if dotenv else {}
    merged.update(os.environ if env is None else env)
    e = merged

    secret = e.get("NOTIFQ_JWT_SECRET", "")
    if secret and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(f"NOTIFQ_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")
    failure_rate = _number(e, "NOTIFQ_MOCK_FAILURE_RATE", 0.2)
    if failure_rate > 1:
        raise ConfigError("NOTIFQ_MOCK_FAILURE_RATE must be between 0 and 1")
    domains = tuple(d.strip().lower() for d in e.get("NOTIFQ_MOCK_DOMAINS", "example.com").split(",") if d.strip())
    seed_raw = e.get("NOTIFQ_MOCK_SEED")
    return check_consistency(
        Settings(
            database_url=e.get("DATABASE_URL") or None,
            redis_url=e.get("REDIS_URL") or None,
            jwt_secret=secret,
            admin_password=e.get("NOTIFQ_ADMIN_PASSWORD") or None,
            host=e.get("NOTIFQ_HOST", "127.0.0.1"),
            port=_integer(e, "NOTIFQ_PORT", 8000, minimum=1),
            rate_limit=_number(e, "NOTIFQ_RATE_LIMIT", 10.0),
            mock_latency_ms=parse_latency(e.get("NOTIFQ_MOCK_LATENCY_MS", "100-500")),
            mock_failure_rate=failure_rate,
            mock_seed=_integer(e, "NOTIFQ_MOCK_SEED", 0) if seed_raw else None,
            mock_domains=domains,
            max_campaign_size=_integer(e, "NOTIFQ_MAX_CAMPAIGN_SIZE", 1_000_000, minimum=1),
            max_body_bytes=_integer(e, "NOTIFQ_MAX_BODY_BYTES", 64 * 1024 * 1024, minimum=1024),
            max_attempts=_integer(e, "NOTIFQ_MAX_ATTEMPTS", 4, minimum=1),
            job_batch_size=_integer(e, "NOTIFQ_JOB_BATCH_SIZE", 500, minimum=1),
            worker_jobs=_integer(e, "NOTIFQ_WORKER_JOBS", 8, minimum=1),
            worker_max_in_flight=_integer(e, "NOTIFQ_WORKER_MAX_IN_FLIGHT", 4000, minimum=1),
            worker_drain_seconds=_number(e, "NOTIFQ_WORKER_DRAIN_SECONDS", 35.0),
            job_slice_seconds=_number(e, "NOTIFQ_JOB_SLICE_SECONDS", 10.0, minimum=0.1),
            lease_seconds=_number(e, "NOTIFQ_LEASE_SECONDS", 60.0, minimum=1),
            reconcile_interval=_number(e, "NOTIFQ_RECONCILE_INTERVAL", 10.0, minimum=0.1),
            reconcile_grace=_number(e, "NOTIFQ_RECONCILE_GRACE", 30.0),
            event_retention_days=_number(e, "NOTIFQ_EVENT_RETENTION_DAYS", 0.0),
            login_max_failures=_integer(e, "NOTIFQ_LOGIN_MAX_FAILURES", 5, minimum=1),
            login_lockout_seconds=_integer(e, "NOTIFQ_LOGIN_LOCKOUT_SECONDS", 300, minimum=1),
            queue_name=e.get("NOTIFQ_QUEUE", "notifq:queue"),
            redis_prefix=e.get("NOTIFQ_REDIS_PREFIX", "notifq") or "notifq",
            aws_region=e.get("AWS_REGION", "us-east-1"),
            ses_endpoint_url=e.get("NOTIFQ_SES_ENDPOINT_URL") or None,
            from_email=e.get("FROM_EMAIL", "notifications@notifq.dev"),
            provider_timeout=_number(e, "NOTIFQ_PROVIDER_TIMEOUT", 30.0, minimum=0.1),
            state_dir=Path(e.get("NOTIFQ_STATE_DIR", ".notifq")),
            email_provider=_choice(e, "NOTIFQ_EMAIL_PROVIDER", "ses", ("ses", "smtp")),
            sms_provider=_choice(e, "NOTIFQ_SMS_PROVIDER", "sns", ("sns", "mock")),
            push_provider=_choice(e, "NOTIFQ_PUSH_PROVIDER", "fcm", ("fcm", "mock")),
            mock_phone_prefixes=tuple(
                p.strip() for p in e.get("NOTIFQ_MOCK_PHONE_PREFIXES", "+1555").split(",") if p.strip()
            ),
            mock_push_prefix=e.get("NOTIFQ_MOCK_PUSH_PREFIX", "mock-"),
            smtp_host=e.get("NOTIFQ_SMTP_HOST", "localhost"),
            smtp_port=_integer(e, "NOTIFQ_SMTP_PORT", 587, minimum=1),
            smtp_security=_choice(e, "NOTIFQ_SMTP_SECURITY", "starttls", ("starttls", "tls", "none")),
            smtp_username=e.get("NOTIFQ_SMTP_USERNAME") or None,
            smtp_password=e.get("NOTIFQ_SMTP_PASSWORD") or None,
            smtp_pool_size=_integer(e, "NOTIFQ_SMTP_POOL_SIZE", 4, minimum=1),
            sns_endpoint_url=e.get("NOTIFQ_SNS_ENDPOINT_URL") or None,
            fcm_credentials_file=e.get("NOTIFQ_FCM_CREDENTIALS_FILE") or None,
            fcm_endpoint_url=e.get("NOTIFQ_FCM_ENDPOINT_URL", "https://fcm.googleapis.com"),
            breaker_failures=_integer(e, "NOTIFQ_BREAKER_FAILURES", 5, minimum=1),
            breaker_cooldown=_number(e, "NOTIFQ_BREAKER_COOLDOWN", 30.0, minimum=0.1),
            log_format=_choice(e, "NOTIFQ_LOG_FORMAT", "json", ("json", "text")),
        )
    )


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
