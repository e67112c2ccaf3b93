"""The webhook signature recipe and the address policy, case by case."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from notifq.webhook_http import (
    address_problem,
    body_of,
    envelope,
    new_secret,
    signature,
    url_problem,
    url_syntax_problem,
    verify,
)


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    secret, body = new_secret(), b'{"id":"evt_1"}'
    assert secret.startswith("whsec_") and len(secret) > 40 and secret != new_secret()
    header = signature(secret, 1_700_000_000, body)
    expected = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_refuses_tampering_old_timestamps_and_other_secrets() -> None:
    secret, body = new_secret(), b'{"a":1}'
    now = int(time.time())
    header = signature(secret, now, body)
    assert verify(secret, header, body)
    assert not verify(secret, header, b'{"a":2}')
    assert not verify(new_secret(), header, body)
    assert not verify(secret, signature(secret, now - 301, body), body)
    assert not verify(secret, "t=abc,v1=00", body) and not verify(secret, "", body)
    # A rotated-secret style header with several v1 values: any matching one is enough.
    assert verify(secret, f"t={now},v1=deadbeef,v1={header.rpartition('v1=')[2]}", body)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "169.254.1.1", "0.0.0.0",
     "::1", "::ffff:127.0.0.1", "fe80::1", "fc00::1", "fd00:ec2::254", "224.0.0.1", "100.64.0.1", "198.18.0.1",
     "240.0.0.1", "255.255.255.255"],
)  # fmt: skip
def test_private_and_special_addresses_are_refused(address: str) -> None:
    problem = address_problem(address, allow_private=False)
    assert problem is not None and ("NOTIFQ_WEBHOOKS_ALLOW_PRIVATE" in problem or "metadata" in problem), problem
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(address, allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [("ftp://example.com/x", "https://"), ("https:///x", "no host"), ("https://u:p@example.com/", "user name"),
     ("https://example.com/\x00", "control"), ("https://exa mple.com/", "spaces"),
     ("https://example.com/#f", "fragment"),
     ("https://example.com:0/", "port 0"), ("https://example.com:99999/", "valid URL"), ("x" * 3000, "longer"),
     ("javascript:alert(1)", "https://")],
)  # fmt: skip
def test_url_syntax(url: str, words: str) -> None:
    problem = url_syntax_problem(url)
    assert problem is not None and words in problem, problem


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/", "http://0177.0.0.1/", "http://127.1/", "http://0x7f.0.0.1/", "http://1.2.3.4.5/"],
)
def test_numeric_hosts_other_than_dotted_quads_are_refused(url: str) -> None:
    """The system resolver reads these as IPv4 addresses (2130706433 is 127.0.0.1) and the HTTP client would
    connect to them without the guarded resolver: refused outright."""
    assert "a.b.c.d" in (url_syntax_problem(url) or "")


@pytest.mark.parametrize(
    "url",
    ["http://[2002:7f00:1::]/", "http://[64:ff9b::a00:1]/", "http://[::ffff:169.254.169.254]/",
     "http://\u2460\u2461\u2466.0.0.1/", "http://127.0.0.1./", "http://localhost./"],
)  # fmt: skip
async def test_addresses_hidden_in_other_forms_are_refused(url: str) -> None:
    problem = await url_problem(url, allow_private=False)
    assert problem is not None and ("loopback" in problem or "private" in problem or "metadata" in problem), problem


def test_the_index_covers_exactly_the_subscribable_message_events() -> None:
    """Migration 0009's partial index on message_events.tx lists the events webhooks can ask for."""
    import importlib.util
    from pathlib import Path

    from notifq.vocabulary import MESSAGE_WEBHOOK_EVENTS

    path = Path(__file__).parents[2] / "migrations" / "versions" / "0009_webhooks.py"
    spec = importlib.util.spec_from_file_location("m0009", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    listed = ", ".join(f"'{e}'" for e in MESSAGE_WEBHOOK_EVENTS.values())
    assert listed == module.WEBHOOK_EVENTS


async def test_url_problem_resolves_names() -> None:
    assert await url_problem("http://localhost:8080/hook", allow_private=True) is None
    problem = await url_problem("http://localhost:8080/hook", allow_private=False)
    assert problem is not None and "localhost" in problem and "loopback" in problem
    assert "does not resolve" in (await url_problem("https://no-such-host.invalid/", allow_private=False) or "")
    assert "metadata" in (await url_problem("http://169.254.169.254/latest/meta-data", allow_private=False) or "")
    assert "private" in (await url_problem("http://10.0.0.1/", allow_private=False) or "")
    assert "loopback" in (await url_problem("http://[::ffff:127.0.0.1]/", allow_private=False) or "")


def test_envelope_and_bodies() -> None:
    import datetime as dt
    import json

    at = dt.datetime(2026, 12, 1, 12, 0, 0, 5, tzinfo=dt.UTC)
    event = envelope("evt_9", "message.sent", at, {"notificationId": "9"})
    assert event == {"id": "evt_9", "type": "message.sent", "createdAt": "2026-12-01T12:00:00.000005Z",
                     "data": {"notificationId": "9"}}  # fmt: skip
    assert json.loads(body_of([event], batch=False)) == event
    assert json.loads(body_of([event, event], batch=True)) == {"events": [event, event]}
