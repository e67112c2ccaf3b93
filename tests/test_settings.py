"""Settings come from the environment once, and a bad value stops start-up with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifq.errors import ConfigError
from notifq.settings import load_settings, parse_latency


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
