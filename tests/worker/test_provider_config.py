"""A provider whose configuration is wrong holds its messages (no attempt used, an ERROR naming it)
until the configuration works, without restarting the worker; the worker says what is wrong at start.

Real servers: aiosmtpd (tests/smtp_server.py) and the fake FCM server (tests/fcm_server.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests.conftest import wait_for
from tests.fcm_server import FakeFcmServer
from tests.harness import finished_campaign, running_worker
from tests.smtp_server import SERVER_NAME, SMTP_PASSWORD, SMTP_USER, RecordingHandler, SmtpTestServer, free_port

SENDER = "campaigns@mail.notifq.test"
HELD = {"breaker_cooldown": 0.5, "max_attempts": 2}  # without the hold, 2 attempts fail a message in ~1 s
Rows = list[dict[str, Any]]


@pytest.fixture
def auth(fast_auth: dict[str, str]) -> dict[str, str]:
    return fast_auth


async def _rows(engine: AsyncEngine) -> Rows:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT m.id, m.status, m.attempts, m.last_error, (SELECT count(*) FROM message_events e "
            "WHERE e.message_id = m.id AND e.event = 'attempt') AS taken, (SELECT array_agg(e.event ORDER BY e.id) "
            "FROM message_events e WHERE e.message_id = m.id) AS events FROM messages m ORDER BY m.id"))  # fmt: skip
        return [dict(r._mapping) for r in rows]


async def _held_long_enough(engine: AsyncEngine, n: int) -> Rows | None:
    """Every message taken at least 3 times (past its 2 attempts) and none in flight, or one ended."""
    rows = await _rows(engine)
    ended = any(r["status"] in ("sent", "failed") for r in rows)
    waiting = all(r["taken"] >= 3 and r["status"] == "queued" for r in rows)
    return rows if len(rows) == n and (ended or waiting) else None


def assert_held(rows: Rows, reason: str) -> None:
    """Nothing failed; every message waits in the queue with its attempts given back, and says why."""
    assert [(r["status"], r["attempts"]) for r in rows] == [("queued", 0)] * len(rows), rows
    for r in rows:
        assert r["last_error"].startswith("configuration error: ") and reason in r["last_error"], r
        assert "config_error" in r["events"] and not {"failed", "retry"} & set(r["events"]), r


def errors_naming(caplog: pytest.LogCaptureFixture, *words: str, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= level and all(w in r.getMessage() for w in words)]  # fmt: skip


async def _email_campaign(client: httpx.AsyncClient, auth: dict[str, str], recipients: list[str]) -> str:
    body = {"name": "relay", "subject": "Hi", "body": "Hello", "recipients": recipients}
    r = await client.post("/campaigns", headers=auth, json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def smtp_settings(settings: Settings, port: int, **changes: Any) -> Settings:
    return settings.with_(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                          from_email=SENDER, **HELD, **changes)  # fmt: skip


# --- SMTP -----------------------------------------------------------------------------------------


class Accounts:
    """The relay's accounts; the password it accepts can change while the worker runs."""

    def __init__(self, password: str) -> None:
        self.password = password

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(), self.password.encode())  # fmt: skip
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


async def test_wrong_smtp_password_holds_the_campaign_until_the_relay_accepts_it(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    start_smtp_server: Callable[..., SmtpTestServer], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """535 to AUTH: every message would fail alike, so none uses an attempt; once the relay takes
    the password (the account was fixed), they are delivered without restarting the worker."""
    accounts = Accounts(SMTP_PASSWORD)
    relay = start_smtp_server(authenticator=accounts, auth_require_tls=False)
    recipients = ["ana@elsewhere.test", "li@elsewhere.test"]
    campaign_id = await _email_campaign(client, auth, recipients)
    caplog.set_level(logging.INFO, logger="notifq")
    wrong = smtp_settings(settings, relay.port, smtp_username=SMTP_USER, smtp_password="not the password")
    async with running_worker(wrong):
        rows = await wait_for(lambda: _held_long_enough(engine, 2), within=20)
        assert_held(rows, "535")
        assert errors_naming(caplog, "smtp", "535"), [r.getMessage() for r in caplog.records]
        assert relay.received == []

        accounts.password = "not the password"
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=20)
    assert final["status"] == "completed" and final["sentCount"] == 2
    assert sorted(m.rcpt_tos[0] for m in relay.received) == recipients
    assert [r["attempts"] for r in await _rows(engine)] == [1, 1]
    assert errors_naming(caplog, "smtp", "works again", level=logging.INFO)


@pytest.fixture
def late_relay() -> Iterator[tuple[int, Callable[[], RecordingHandler]]]:
    """A port with nothing listening yet, and a function that starts an SMTP server on it."""
    port = free_port()
    started: list[Controller] = []

    def start() -> RecordingHandler:
        handler = RecordingHandler()
        controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname=SERVER_NAME)
        controller.start()
        started.append(controller)
        return handler

    yield port, start
    for controller in started:
        controller.stop()


async def test_smtp_server_down_holds_the_campaign_until_it_is_started(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    late_relay: tuple[int, Callable[[], RecordingHandler]], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Nothing listens on NOTIFQ_SMTP_PORT (a wrong port, or the relay not started yet): hold, then
    deliver once the server is up."""
    port, start_relay = late_relay
    campaign_id = await _email_campaign(client, auth, ["ana@elsewhere.test", "li@elsewhere.test"])
    caplog.set_level(logging.INFO, logger="notifq")
    async with running_worker(smtp_settings(settings, port)):
        rows = await wait_for(lambda: _held_long_enough(engine, 2), within=20)
        assert_held(rows, f"127.0.0.1:{port}")
        assert errors_naming(caplog, "smtp", f"127.0.0.1:{port}"), [r.getMessage() for r in caplog.records]

        handler = start_relay()
        final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=20)
    assert final["status"] == "completed" and final["sentCount"] == 2
    assert len(handler.received) == 2


# --- FCM ------------------------------------------------------------------------------------------


async def test_worker_start_names_a_missing_fcm_credentials_file_and_keeps_serving(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    fcm_server: FakeFcmServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The start-up check warns about the file (the worker keeps running); mock pushes go out, a
    real device's push waits, and is sent once the file exists."""
    missing = tmp_path / "service-account.json"
    caplog.set_level(logging.INFO, logger="notifq")
    push = settings.with_(push_provider="fcm", fcm_credentials_file=str(missing), fcm_endpoint_url=fcm_server.url,
                          **HELD)  # fmt: skip
    async with running_worker(push):
        await wait_for(lambda: _logged(caplog, "fcm", str(missing)), within=10)
        r = await client.post("/notifications", headers=auth, json=[
            {"channel": "push", "to": "mock-device", "body": "to the mock"},
            {"channel": "push", "to": "real-device-token", "body": "to FCM"}])  # fmt: skip
        assert r.status_code == 202, r.text
        mock_id, real_id = (int(i) for i in r.json()["ids"])

        async def mock_sent_and_real_held() -> Rows | None:
            rows = {row["id"]: row for row in await _rows(engine)}
            real = rows[real_id]
            waiting = rows[mock_id]["status"] == "sent" and real["taken"] >= 3 and real["status"] == "queued"
            return [real] if waiting or real["status"] in ("sent", "failed") else None

        assert_held(await wait_for(mock_sent_and_real_held, within=20), str(missing))

        shutil.copy(fcm_server.credentials_file, missing)

        async def real_sent() -> bool:
            return bool({row["id"]: row["status"] for row in await _rows(engine)}[real_id] == "sent")

        await wait_for(real_sent, within=20)
    assert [m for m in fcm_server.sent if "real-device-token" in str(m)]


async def _logged(caplog: pytest.LogCaptureFixture, *words: str) -> bool:
    return bool(errors_naming(caplog, *words, level=logging.WARNING))
