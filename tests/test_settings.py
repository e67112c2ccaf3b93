"""Settings come from the environment once, and a bad value stops start-up with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifq.errors import ConfigError
from notifq.settings import (
    ENV_VARS,
    FILE_VARS,
    Settings,
    child_env,
    load_settings,
    parse_latency,
    settings_table,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_match_the_documented_ones() -> None:
    """With nothing set, the defaults are those the README lists."""
    s = load_settings({}, dotenv=None)
    assert (s.port, s.rate_limit, s.mock_latency_ms, s.mock_failure_rate) == (8000, 10.0, (100, 500), 0.2)
    assert s.mock_domains == ("example.com",)
    assert (s.max_campaign_size, s.max_attempts, s.retry_delays) == (1_000_000, 4, (1.0, 2.0, 4.0))
    assert s.database_url is None and s.redis_url is None
    assert s.event_retention_days == 0  # the audit trail is kept forever unless asked


def test_environment_values_are_parsed() -> None:
    """Every documented variable reaches the Settings object."""
    s = load_settings(
        {
            "DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0", "NOTIFQ_PORT": "9000",
            "NOTIFQ_RATE_LIMIT": "0", "NOTIFQ_MOCK_LATENCY_MS": "250", "NOTIFQ_MOCK_FAILURE_RATE": "0.5",
            "NOTIFQ_MOCK_DOMAINS": "Example.com, test.invalid", "NOTIFQ_MAX_CAMPAIGN_SIZE": "5000",
            "NOTIFQ_MAX_BODY_BYTES": "4096", "NOTIFQ_JWT_SECRET": "s" * 32, "NOTIFQ_ADMIN_PASSWORD": "pw",
            "NOTIFQ_EVENT_RETENTION_DAYS": "365",
        },
        dotenv=None,
    )  # fmt: skip
    assert s.database_url == "postgresql://u@h/db" and s.redis_url == "redis://h:6379/0"
    assert (s.port, s.rate_limit, s.mock_latency_ms, s.mock_failure_rate) == (9000, 0.0, (250, 250), 0.5)
    assert s.mock_domains == ("example.com", "test.invalid")
    assert (s.max_campaign_size, s.max_body_bytes, s.admin_password) == (5000, 4096, "pw")
    assert s.event_retention_days == 365


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"NOTIFQ_JWT_SECRET": "short"}, "NOTIFQ_JWT_SECRET"),
        ({"NOTIFQ_PORT": "eighty"}, "NOTIFQ_PORT"),
        ({"NOTIFQ_RATE_LIMIT": "-1"}, "NOTIFQ_RATE_LIMIT"),
        ({"NOTIFQ_MOCK_FAILURE_RATE": "1.5"}, "NOTIFQ_MOCK_FAILURE_RATE"),
        ({"NOTIFQ_MOCK_LATENCY_MS": "500-100"}, "NOTIFQ_MOCK_LATENCY_MS"),
        ({"NOTIFQ_MOCK_LATENCY_MS": "fast"}, "NOTIFQ_MOCK_LATENCY_MS"),
        ({"NOTIFQ_MAX_CAMPAIGN_SIZE": "0"}, "NOTIFQ_MAX_CAMPAIGN_SIZE"),
        ({"NOTIFQ_MAX_CAMPAIGN_SIZE": "2.5"}, "NOTIFQ_MAX_CAMPAIGN_SIZE"),
        ({"NOTIFQ_LEASE_SECONDS": "10", "NOTIFQ_PROVIDER_TIMEOUT": "30"}, "NOTIFQ_LEASE_SECONDS"),
        ({"NOTIFQ_EVENT_RETENTION_DAYS": "-7"}, "NOTIFQ_EVENT_RETENTION_DAYS"),
        ({"NOTIFQ_PORT": "70000"}, "NOTIFQ_PORT"),
        ({"NOTIFQ_RATE_LIMIT": "nan"}, "NOTIFQ_RATE_LIMIT"),
        ({"NOTIFQ_EMAIL_PROVIDER": "sendgrid"}, "NOTIFQ_EMAIL_PROVIDER"),
        ({"NOTIFQ_SMTP_SECURITY": "ssl"}, "NOTIFQ_SMTP_SECURITY"),
        ({"NOTIFQ_LOG_FORMAT": "xml"}, "NOTIFQ_LOG_FORMAT"),
        ({"NOTIFQ_RETRY_DELAYS": "1,soon"}, "NOTIFQ_RETRY_DELAYS"),
        ({"NOTIFQ_RETRY_DELAYS": ""}, "NOTIFQ_RETRY_DELAYS"),
        ({"NOTIFQ_MOCK_SEED": "-1"}, "NOTIFQ_MOCK_SEED"),
    ],
)
def test_bad_values_are_refused_with_their_name(env: dict[str, str], names: str) -> None:
    """A clear message at start beats a confusing failure later."""
    with pytest.raises(ConfigError) as error:
        load_settings(env, dotenv=None)
    assert names in error.value.message


def test_dotenv_fills_in_but_environment_wins(tmp_path: Path) -> None:
    """`.env` is optional; a variable in the environment overrides it."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nNOTIFQ_PORT=9100\nexport NOTIFQ_RATE_LIMIT='25'\n")
    assert load_settings({}, dotenv=dotenv).rate_limit == 25.0
    assert load_settings({}, dotenv=dotenv).port == 9100
    assert load_settings({"NOTIFQ_PORT": "9200"}, dotenv=dotenv).port == 9200


def test_latency_forms() -> None:
    """`min-max` or a single number."""
    assert parse_latency("100-500") == (100, 500)
    assert parse_latency(" 0 ") == (0, 0)


def test_errors_say_what_is_wrong_and_echo_the_value() -> None:
    """The message names the variable, the rule and what was given."""
    cases = {
        "NOTIFQ_RATE_LIMIT": ("x", "NOTIFQ_RATE_LIMIT must be a number, got 'x'"),
        "NOTIFQ_MAX_CAMPAIGN_SIZE": ("2.5", "NOTIFQ_MAX_CAMPAIGN_SIZE must be a whole number, got '2.5'"),
        "NOTIFQ_MOCK_FAILURE_RATE": ("1.5", "NOTIFQ_MOCK_FAILURE_RATE must be <= 1, got '1.5'"),
        "NOTIFQ_PUSH_PROVIDER": ("apns", "NOTIFQ_PUSH_PROVIDER must be one of 'fcm' or 'mock', got 'apns'"),
        "NOTIFQ_MOCK_LATENCY_MS": ("fast", "NOTIFQ_MOCK_LATENCY_MS must be 'min-max' or one number, got 'fast'"),
    }
    for name, (raw, message) in cases.items():
        with pytest.raises(ConfigError) as error:
            load_settings({name: raw}, dotenv=None)
        assert error.value.message == message


def test_secrets_stay_out_of_repr_and_errors() -> None:
    """Settings get logged and errors get printed: neither may carry a secret."""
    s = Settings(jwt_secret="j" * 32, admin_password="admin-pw-42", smtp_password="smtp-pw-42")
    assert not [secret for secret in ("j" * 32, "admin-pw-42", "smtp-pw-42") if secret in repr(s) or secret in str(s)]
    with pytest.raises(ConfigError) as error:
        load_settings({"NOTIFQ_JWT_SECRET": "too-short-secret"}, dotenv=None)
    assert "too-short-secret" not in error.value.message


def test_every_format_is_read() -> None:
    """Lists, ranges, case-insensitive choices, and empty meaning unset (an empty list for lists)."""
    s = load_settings(
        {
            "NOTIFQ_MOCK_LATENCY_MS": " 5 - 7 ", "NOTIFQ_MOCK_PHONE_PREFIXES": "+1555, +4470 ,",
            "NOTIFQ_EMAIL_PROVIDER": " SMTP", "NOTIFQ_SMTP_SECURITY": "TLS", "NOTIFQ_LOG_FORMAT": "Text",
            "NOTIFQ_RETRY_DELAYS": "0.5,3", "NOTIFQ_STATE_DIR": "/var/lib/notifq", "DATABASE_URL": "",
            "NOTIFQ_SES_ENDPOINT_URL": "", "NOTIFQ_MOCK_SEED": "", "NOTIFQ_PORT": "", "NOTIFQ_REDIS_PREFIX": "",
            "NOTIFQ_MOCK_DOMAINS": "",
        },
        dotenv=None,
    )  # fmt: skip
    assert s.mock_latency_ms == (5, 7) and s.mock_phone_prefixes == ("+1555", "+4470")
    assert (s.email_provider, s.smtp_security, s.log_format) == ("smtp", "tls", "text")
    assert s.retry_delays == (0.5, 3.0) and s.state_dir == Path("/var/lib/notifq")
    assert s.database_url is None and s.ses_endpoint_url is None and s.mock_seed is None
    assert (s.port, s.redis_prefix, s.mock_domains) == (8000, "notifq", ())


def test_keywords_do_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build Settings directly; only load_settings looks at variables."""
    monkeypatch.setenv("NOTIFQ_RATE_LIMIT", "77")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    s = Settings(rate_limit=0)
    assert (s.rate_limit, s.database_url) == (0, None)
    assert load_settings(dotenv=None).rate_limit == 77


def test_settings_are_immutable_and_with_validates() -> None:
    """`with_` returns a validated copy; the original never changes."""
    s = Settings()
    with pytest.raises(ValueError):
        s.port = 1
    moved = s.with_(port=9000, mock_domains=("Example.ORG",))
    assert (s.port, moved.port, moved.mock_domains) == (8000, 9000, ("example.org",))
    with pytest.raises(ConfigError, match="NOTIFQ_PORT"):
        s.with_(port=0)
    with pytest.raises(TypeError):
        s.with_(prot=9000)


def _every_field_changed() -> Settings:
    return Settings(
        database_url="postgresql://u:p@db:5432/n", database_read_url="postgresql://u:p@replica:5432/n",
        redis_url="redis://r:6379/1", redis_prefix="tenant-a",
        jwt_secret="k" * 40, jwt_issuer="issuer", jwt_ttl_seconds=60, admin_password="pw", host="0.0.0.0",
        port=9000, rate_limit=2.5, mock_latency_ms=(3, 9), mock_failure_rate=0.125, mock_seed=7,
        mock_domains=("a.test", "b.test"), mock_phone_prefixes=(), mock_push_prefix="fake-",
        trusted_proxies=("10.0.0.1", "::1"), api_processes=3, send_linger_ms=2.5, worker_lanes="bulk",
        max_campaign_size=10, max_body_bytes=2048, max_attempts=2, retry_delays=(0.25,), job_batch_size=3,
        worker_jobs=2, worker_max_in_flight=9, worker_drain_seconds=0.5, job_slice_seconds=0.3, lease_seconds=5,
        reconcile_interval=0.2, reconcile_grace=1.5, event_retention_days=0.5, provider_timeout=1.1,
        login_max_failures=2, login_lockout_seconds=9, queue_name="q", email_provider="smtp", sms_provider="mock",
        push_provider="mock", aws_region="eu-west-1", from_email="a@b.test", ses_endpoint_url="http://ses",
        sns_endpoint_url="http://sns", smtp_host="mail", smtp_port=25, smtp_security="none", smtp_username="u",
        smtp_password="p", smtp_pool_size=1, fcm_credentials_file="/f.json", fcm_endpoint_url="http://fcm",
        breaker_failures=9, breaker_cooldown=0.5, state_dir=Path("/tmp/state"), log_format="text",
        inapp_buffer_ttl=60.0, dedup_window=5.0, subscriber_rate_limit=(20, 60), subscriber_token_ttl_seconds=120,
        public_url="https://notify.example", unsubscribe_secret="u" * 32, sns_topics=("arn:a", "arn:b"),
        sns_cert_url_regex="^https://certs/", max_bounce_rate=0.5, max_complaint_rate=0.25, guard_min_sent=7,
        sns_opt_out_sync_seconds=0.0, email_providers=("smtp", "ses"), sms_providers=("mock",),
        push_providers=("fcm", "mock"), provider_rates=(("ses", 14.0, 0.0), ("fcm", 100.5, 300.0)),
        provider_recovery_seconds=5.0, webhooks_allow_private=True, webhook_timeout=3.0, webhook_concurrency=4,
        webhook_backoff_max_seconds=60.0, webhook_give_up_seconds=600.0, webhook_disable_after_seconds=3600.0,
    )  # fmt: skip


def test_child_env_round_trips(tmp_path: Path) -> None:
    """A child given child_env() builds an equal Settings, whatever its .env says, for every field."""
    changed, default = _every_field_changed(), Settings()
    assert [name for name in ENV_VARS if getattr(changed, name) == getattr(default, name)] == []
    dotenv = tmp_path / ".env"
    dotenv.write_text("NOTIFQ_PORT=1234\nNOTIFQ_MOCK_SEED=5\n")
    for settings in (changed, default):
        assert load_settings(child_env(settings, {}), dotenv=dotenv) == settings


def test_child_env_keeps_the_rest_of_the_environment() -> None:
    """Other variables pass through; `isolated` drops the parent's unrelated NOTIFQ_ ones."""
    base = {"PATH": "/bin", "NOTIFQ_TOKEN": "t", "NOTIFQ_PORT": "1"}
    kept = child_env(Settings(), base)
    assert (kept["PATH"], kept["NOTIFQ_TOKEN"], kept["NOTIFQ_PORT"]) == ("/bin", "t", "8000")
    isolated = child_env(Settings(), base, isolated=True)
    assert isolated["PATH"] == "/bin" and "NOTIFQ_TOKEN" not in isolated
    assert set(ENV_VARS.values()) <= set(isolated)


def test_readme_table_is_the_declaration() -> None:
    """README's Settings table is generated from Settings; regenerate it with `settings_table()`."""
    section = README.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == settings_table(), "README's settings table is stale: paste notifq.settings.settings_table()"
    assert "| `NOTIFQ_REDIS_PREFIX` | `notifq` |" in table


@pytest.mark.parametrize(
    ("env", "words"),
    [({"NOTIFQ_PROVIDER_RATES": "ses"}, "<provider>=<per second>"), ({"NOTIFQ_PROVIDER_RATES": "ses=x"}, "per second"),
     ({"NOTIFQ_PROVIDER_RATES": "postal=5"}, "unknown provider"), ({"NOTIFQ_PROVIDER_RATES": "ses=0"}, "rate > 0"),
     ({"NOTIFQ_PROVIDER_RATES": "ses=1,ses=2"}, "twice"), ({"NOTIFQ_PROVIDER_RATES": "ses=nan"}, "number"),
     ({"NOTIFQ_EMAIL_PROVIDERS": "ses,sns"}, "not a email provider"), ({"NOTIFQ_SMS_PROVIDERS": "sns,sns"}, "twice")],
)  # fmt: skip
def test_provider_lists_and_rates_are_checked(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, dotenv=None)
    assert words in str(caught.value) and next(iter(env)) in str(caught.value)


def test_providers_for_a_channel() -> None:
    assert Settings().providers_for("email") == ("ses",)
    assert Settings(email_provider="smtp").providers_for("email") == ("smtp",)
    s = load_settings({"NOTIFQ_EMAIL_PROVIDERS": "SES, smtp", "NOTIFQ_PROVIDER_RATES": "ses=14:28,mock=500"},
                      dotenv=None)  # fmt: skip
    assert s.providers_for("email") == ("ses", "smtp") and s.providers_for("sms") == ("sns",)
    assert s.provider_rates == (("ses", 14.0, 28.0), ("mock", 500.0, 0.0))
    assert s.to_env()["NOTIFQ_PROVIDER_RATES"] == "ses=14:28,mock=500"


def test_secrets_and_urls_are_read_from_files(tmp_path: Path) -> None:
    """`X_FILE` names a file holding X (Docker and Kubernetes secrets); the final line break is not part of it."""
    files = {"NOTIFQ_JWT_SECRET": "j" * 40 + "\n", "DATABASE_URL": "postgresql://u:p@db/n\r\n",
             "REDIS_URL": "redis+sentinel://s1,s2:26380/mymaster/1", "NOTIFQ_SMTP_PASSWORD": " spaced pw \n",
             "NOTIFQ_ADMIN_PASSWORD": "admin", "NOTIFQ_UNSUBSCRIBE_SECRET": "u" * 32,
             "DATABASE_READ_URL": "postgresql://u:p@replica/n"}  # fmt: skip
    env = {}
    for variable, content in files.items():
        (tmp_path / variable).write_text(content)
        env[f"{variable}_FILE"] = str(tmp_path / variable)
    s = load_settings(env, dotenv=None)
    assert (s.jwt_secret, s.database_url, s.redis_url) == ("j" * 40, "postgresql://u:p@db/n", files["REDIS_URL"])
    assert (s.smtp_password, s.admin_password, s.unsubscribe_secret) == (" spaced pw ", "admin", "u" * 32)
    assert s.database_read_url == "postgresql://u:p@replica/n"
    assert set(FILE_VARS.values()) == set(env)  # every secret takes a file, and the three URLs


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "NOTIFQ_JWT_SECRET_FILE names"), ("", "is empty"), ("\n", "is empty"),
     ("short-secret\n", "NOTIFQ_JWT_SECRET (read from NOTIFQ_JWT_SECRET_FILE) must be at least 32 bytes")],
)  # fmt: skip
def test_a_bad_secret_file_is_refused_by_name(tmp_path: Path, content: str | None, words: str) -> None:
    """Missing, empty or invalid: the message names the variable and the file, never the secret."""
    path = tmp_path / "jwt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as error:
        load_settings({"NOTIFQ_JWT_SECRET_FILE": str(path)}, dotenv=None)
    assert words in error.value.message and "short-secret" not in error.value.message


def test_a_variable_and_its_file_together_are_refused(tmp_path: Path) -> None:
    """Which one would win is a guess an operator should not have to make; an empty one counts as unset."""
    (tmp_path / "jwt").write_text("f" * 32)
    with pytest.raises(ConfigError, match="NOTIFQ_JWT_SECRET and NOTIFQ_JWT_SECRET_FILE are both set"):
        load_settings({"NOTIFQ_JWT_SECRET": "e" * 32, "NOTIFQ_JWT_SECRET_FILE": str(tmp_path / "jwt")}, dotenv=None)
    assert load_settings({"NOTIFQ_JWT_SECRET": "e" * 32, "NOTIFQ_JWT_SECRET_FILE": ""}, dotenv=None).jwt_secret
    assert load_settings({"NOTIFQ_JWT_SECRET": "", "NOTIFQ_JWT_SECRET_FILE": str(tmp_path / "jwt")},
                         dotenv=None).jwt_secret == "f" * 32  # fmt: skip


def test_a_child_of_a_process_configured_by_files_gets_the_values(tmp_path: Path) -> None:
    """`notifq api` hands its processes every setting: a `_FILE` it inherited must not clash with the value."""
    (tmp_path / "jwt").write_text("f" * 32 + "\n")
    parent_env = {"NOTIFQ_JWT_SECRET_FILE": str(tmp_path / "jwt"), "PATH": "/bin"}
    parent = load_settings(parent_env, dotenv=None)
    child = child_env(parent, parent_env)
    assert child["NOTIFQ_JWT_SECRET_FILE"] == "" and child["NOTIFQ_JWT_SECRET"] == "f" * 32
    assert load_settings(child, dotenv=None) == parent
