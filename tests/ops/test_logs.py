"""Structured JSON logs carry campaign and message ids and never a password, token or credential."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Iterator

import httpx
import pytest

from notifq.logs import JsonFormatter, RedactingTextFormatter, redact
from notifq.settings import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, wait_for
from tests.harness import finished_campaign, running_worker, spawn_worker, stop_process


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("connect to postgresql://notifq:s3cr3t@db:5432/notifq failed", "postgresql://notifq:***@db:5432/notifq"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: ***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: ***"),
        ("env SMTP_PASSWORD=abc123 NOTIFQ_JWT_SECRET=xyz", "SMTP_PASSWORD=*** NOTIFQ_JWT_SECRET=***"),
        ("access_token=t0k&client_secret: s3", "access_token=***&client_secret: ***"),
        ("aws_secret_access_key=AKIA9", "aws_secret_access_key=***"),
        ("dsn postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),
        ("header bearer abc.def-ghi", "bearer ***"),
        ("login with password=hunter2 and api_key: AKIA123", "password=*** and api_key: ***"),
        ('{"secret": "xyz", "token":"t0k"}', '{"secret": "***", "token":"***"}'),
        ("got eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln back", "got *** back"),
    ],
)
def test_redact_masks_credentials(raw: str, masked: str) -> None:
    assert masked in redact(raw)
    for secret in ("s3cr3t", "hunter2", "AKIA123", "dXNlcjpwYXNz", "abc123", "xyz", "t0k", "s3", "AKIA9", "p@ss"):
        assert secret not in redact(raw).replace("***", "")


def test_redact_keeps_ordinary_text() -> None:
    text = "campaign 7 created: 500 messages to redis://127.0.0.1:6379/0 (no credentials)"
    assert redact(text) == text


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything the notifq loggers write, formatted as in production."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("notifq")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_logs_carry_ids_and_no_secrets(
    client: httpx.AsyncClient, admin_id: object, settings: Settings, captured: io.StringIO
) -> None:
    login = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    token = login.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong-password-123"})
    campaign = (await client.post("/campaigns", json={"name": "logged", "recipientCount": 50}, headers=auth)).json()
    async with running_worker(settings.with_(mock_failure_rate=0.5, max_attempts=1)):
        await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=30)
    output = captured.getvalue()
    for secret in (ADMIN_PASSWORD, "wrong-password-123", token, settings.jwt_secret):
        assert secret not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert all({"ts", "level", "logger", "msg", "pid"} <= set(line) for line in lines)
    created = [line for line in lines if line["msg"].startswith("campaign created")]
    assert created and created[0]["campaign_id"] == campaign["id"] and created[0]["count"] == 50
    failures = [line for line in lines if line["msg"].startswith("message failed permanently")]
    assert failures and all(f["campaign_id"] == campaign["id"] and isinstance(f["message_id"], int) for f in failures)
    assert any(line["msg"].startswith("login failed") for line in lines)


async def test_worker_process_logs_json_lines(settings: Settings, redis: object) -> None:
    """A real `notifq worker` writes one JSON object per line, with its id."""
    proc = spawn_worker(settings)
    try:
        await wait_for(lambda: _has_worker(redis), within=30)
    finally:
        output = stop_process(proc, signal.SIGTERM)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert any(line["msg"].startswith("worker ") and "worker_id" in line for line in lines)
    assert all(line["level"] in {"debug", "info", "warning", "error", "critical"} for line in lines)


def test_text_format_keeps_one_record_per_line_and_masks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingTextFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("notifq.test-text")
    logger.addHandler(handler)
    try:
        logger.warning("login failed for %s", "x@y.z\nINFO forged line password=hunter2", extra={"campaign_id": 7})
    finally:
        logger.removeHandler(handler)
    assert out.getvalue().count("\n") == 1 and "hunter2" not in out.getvalue()
    assert "campaign_id=7" in out.getvalue()


def test_json_format_masks_what_call_sites_pass_by_mistake() -> None:
    record = logging.LogRecord("notifq.x", logging.ERROR, __file__, 1, "connect failed: %s", (
        "postgresql://notifq:s3cr3t@db/notifq",), None)  # fmt: skip
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "connect failed: postgresql://notifq:***@db/notifq"


async def _has_worker(redis: object) -> bool:
    from redis.asyncio import Redis

    from notifq.keys import RedisKeys

    assert isinstance(redis, Redis)
    return bool(await redis.zcard(RedisKeys.for_prefix("notifq").workers))
