"""Failover (worker/failover.py): email providers `smtp,ses`; while the SMTP server is down its circuit opens and
messages go through SES (moto's server), each recording the provider that sent it and the switch in its audit
trail; once SMTP is back and the cool-down is over, new messages go to it again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.providers.factory import ProviderFactory
from notifq.settings import Settings
from notifq.worker.breaker import CircuitBreaker
from tests.aws import moto_sent_messages, unique_address
from tests.conftest import wait_for
from tests.harness import finished_campaign, get_json, running_worker
from tests.smtp_server import SERVER_NAME, RecordingHandler, free_port

COOLDOWN = 3.0


class RestartableSmtp:
    """aiosmtpd on a fixed port, stopped and started again: connection refused while it is down."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, server_hostname=SERVER_NAME)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[RestartableSmtp]:
    server = RestartableSmtp()  # not started: connection refused
    yield server
    server.stop()


@pytest.fixture
def settings(base_settings: Settings, smtp: RestartableSmtp, moto_server: str, verified_sender: str) -> Settings:
    """The API's too: it shows each channel's providers in order (GET /workers)."""
    return base_settings.with_(
        email_providers=("smtp", "ses"), smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
        ses_endpoint_url=moto_server, from_email=verified_sender, breaker_failures=2, breaker_cooldown=COOLDOWN,
        max_attempts=10, retry_delays=(0.2,), provider_timeout=10.0, lease_seconds=20.0,
    )  # fmt: skip


async def _send(client: httpx.AsyncClient, auth: dict[str, str], n: int, name: str) -> tuple[str, list[str]]:
    addresses = [unique_address(f"r{i}") for i in range(n)]
    r = await client.post("/campaigns", headers=auth, json={"name": name, "subject": "Hi", "body": "Hello",
                                                            "recipients": addresses})  # fmt: skip
    assert r.status_code == 202, r.text
    return str(r.json()["id"]), addresses


async def _messages(engine: AsyncEngine, campaign_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(
            "SELECT id, status, provider, last_error FROM messages WHERE campaign_id = :c ORDER BY id"
        ), {"c": campaign_id})).all())  # fmt: skip


async def _trail(engine: AsyncEngine, campaign_id: str) -> dict[int, list[tuple[str, str | None, str | None]]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT e.message_id, e.event, e.provider, e.detail FROM message_events e JOIN messages m "
            "ON m.id = e.message_id WHERE m.campaign_id = :c ORDER BY e.id"
        ), {"c": campaign_id})).all()  # fmt: skip
    trail: dict[int, list[tuple[str, str | None, str | None]]] = {}
    for r in rows:
        trail.setdefault(r.message_id, []).append((r.event, r.provider, r.detail))
    return trail


async def _email_route(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    body = await get_json(client, auth, "/workers")
    (email,) = [route for route in body["providerRoutes"] if route["channel"] == "email"]
    return email


async def _deliver(client: httpx.AsyncClient, auth: dict[str, str], n: int, name: str) -> tuple[str, list[str]]:
    campaign_id, addresses = await _send(client, auth, n, name)
    final = await wait_for(lambda: finished_campaign(client, auth, campaign_id), within=30)
    assert final["status"] == "completed", final
    return campaign_id, addresses


def _sent_events(
    trail: dict[int, list[tuple[str, str | None, str | None]]],
) -> dict[int, tuple[str | None, str | None]]:
    out = {}
    for message_id, events in trail.items():
        (out[message_id],) = [(p, d) for e, p, d in events if e == "sent"]
    return out


async def test_email_fails_over_from_a_failing_smtp_server_to_ses_and_comes_back(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, engine: AsyncEngine, moto_server: str,
    verified_sender: str, smtp: RestartableSmtp, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Three phases: SMTP down (connection refused: held as a configuration error), messages go through
    SES; SMTP back, after the cool-down messages go to it again; SMTP answering 451 (transient failures
    open its circuit after NOTIFQ_BREAKER_FAILURES), the retries go through SES."""
    caplog.set_level(logging.INFO, logger="notifq")
    async with running_worker(settings) as runtime:
        assert runtime.deps is not None
        worker_id = runtime.deps.metrics.id

        # 1. SMTP down: every message goes through SES (moto has them all), and each says so.
        down_id, down_to = await _deliver(client, auth, 6, "while smtp is down")
        sent = [m for m in await moto_sent_messages(moto_server) if m["source"] == verified_sender]
        assert sorted(d for m in sent for d in m["destinations"]["ToAddresses"]) == sorted(down_to)
        rows = await _messages(engine, down_id)
        assert {(r.status, r.provider) for r in rows} == {("sent", "ses")}
        trail = await _trail(engine, down_id)
        for r in rows:
            provider, detail = _sent_events(trail)[r.id]
            assert provider == "ses" and detail is not None, trail[r.id]
            assert detail.startswith("failover: smtp unavailable (configuration error: cannot connect to the "
                                     f"SMTP server 127.0.0.1:{smtp.port}") and detail.endswith(
                "), sent through ses"), detail  # fmt: skip
            # A message that met the dead server keeps that error as its lastError (not the failover's detail).
            tried = [d for e, p, d in trail[r.id] if e == "config_error" and p == "smtp"]
            assert r.last_error == (tried[-1] if tried else None), (r, trail[r.id])
        assert await _email_route(client, auth) == {"channel": "email", "providers": ["smtp", "ses"],
                                                    "active": "ses", "failingOver": {worker_id: "ses"}}  # fmt: skip

        # 2. SMTP is back: after the cool-down one message tries it (a held provider's one try), which ends
        # the hold; the messages after it go to SMTP again.
        smtp.start()
        await asyncio.sleep(COOLDOWN)
        probe_id, probe_to = await _deliver(client, auth, 1, "the cool-down's try")
        back_id, back_to = await _deliver(client, auth, 3, "smtp is back")
        assert sorted(r for m in smtp.handler.received for r in m.rcpt_tos) == sorted([*probe_to, *back_to])
        for campaign_id in (probe_id, back_id):
            rows = await _messages(engine, campaign_id)
            assert {(r.status, r.provider, r.last_error) for r in rows} == {("sent", "smtp", None)}
            assert set(_sent_events(await _trail(engine, campaign_id)).values()) == {("smtp", None)}

        async def routed_back() -> bool:
            return (await _email_route(client, auth)) == {"channel": "email", "providers": ["smtp", "ses"],
                                                           "active": "smtp", "failingOver": {}}  # fmt: skip

        await wait_for(routed_back, within=5)

        # 3. SMTP answers 451 to four messages: two failures open its circuit; the retries go through SES.
        smtp.handler.replies["DATA"].extend(["451 4.3.0 Mail server temporarily unavailable"] * 4)
        busy_id, _ = await _deliver(client, auth, 4, "smtp fails")
        rows = await _messages(engine, busy_id)
        trail = await _trail(engine, busy_id)
        assert {(r.status, r.provider) for r in rows} == {("sent", "ses")}, trail
        assert set(_sent_events(trail).values()) == {
            ("ses", "failover: smtp unavailable (circuit open), sent through ses")}  # fmt: skip
        assert all(r.last_error == "SMTP 451 4.3.0 Mail server temporarily unavailable" for r in rows), rows
    # One line when the worker starts failing over and one when it returns, not one per message.
    lines = [r.getMessage() for r in caplog.records if r.name == "notifq.worker"]
    away = [line for line in lines if "; failing over to ses" in line]
    back = [line for line in lines if "back to provider smtp" in line]
    assert len(away) == 2 and "smtp unavailable (circuit open)" in away[1], lines
    assert len(back) == 1, lines


def test_blocked_says_why_without_taking_a_held_providers_try() -> None:
    """Failover asks every provider of the list; asking must not use up a held provider's one try."""
    breaker = CircuitBreaker(failures=2, cooldown=0.05)
    assert breaker.blocked("ses") is None
    breaker.failure("ses")
    breaker.failure("ses")
    assert breaker.blocked("ses") == "circuit open"
    breaker.hold("smtp", 0.05)
    assert breaker.blocked("smtp") == "throttled"
    breaker.misconfigured("sns", "no credentials")
    assert breaker.blocked("sns") == "configuration error: no credentials"
    time.sleep(0.06)
    assert breaker.blocked("sns") is None and breaker.blocked("sns") is None  # asked twice, nothing taken
    assert breaker.wait_for("sns") == 0  # the cool-down's one try is still there
    assert breaker.blocked("sns") == "configuration error: no credentials"


async def test_test_recipients_and_single_provider_channels_have_no_backups(settings: Settings) -> None:
    factory = ProviderFactory(settings.with_(sms_providers=("sns", "mock")))
    smtp = factory.for_message("email", "ana@real.test")  # the module's settings list smtp, then ses
    assert smtp.name == "smtp" and [p.name for p in factory.backups("email", "ana@real.test", smtp)] == ["ses"]
    mock = factory.for_message("email", "load@example.com")
    assert mock.name == "mock" and factory.backups("email", "load@example.com", mock) == ()
    sns = factory.for_message("sms", "+33612345678")
    assert [p.name for p in factory.backups("sms", "+33612345678", sns)] == ["mock"]
    assert factory.backups("sms", "+15551234567", factory.for_message("sms", "+15551234567")) == ()
    await factory.aclose()
