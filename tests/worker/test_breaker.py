"""The circuit breaker's hold for configuration errors, on its own (the worker's use of it is tested
in test_breaker_templates.py, test_provider_config.py and test_ses_delivery.py)."""

from __future__ import annotations

import time

from notifq.worker.breaker import CircuitBreaker

COOLDOWN = 0.2


def test_a_configuration_error_holds_the_provider_at_once() -> None:
    breaker = CircuitBreaker(failures=5, cooldown=COOLDOWN)
    assert breaker.misconfigured("ses", "no credentials") is True  # news: log it
    assert COOLDOWN - 0.05 < breaker.wait_for("ses") <= COOLDOWN
    assert breaker.problem("ses") == "no credentials" and breaker.held() == {"ses": "no credentials"}
    assert breaker.wait_for("smtp") == 0 and breaker.problem("smtp") is None  # per provider
    assert breaker.misconfigured("ses", "no credentials") is False  # the same error again: said already
    assert breaker.misconfigured("ses", "sender not verified") is True  # a new reason is news


def test_after_the_cooldown_one_send_tries_and_the_others_keep_waiting() -> None:
    breaker = CircuitBreaker(failures=5, cooldown=COOLDOWN)
    breaker.misconfigured("ses", "no credentials")
    time.sleep(COOLDOWN + 0.02)
    assert breaker.wait_for("ses") == 0  # the cool-down's one try
    assert breaker.wait_for("ses") > COOLDOWN - 0.05  # everyone else waits for its outcome
    assert breaker.problem("ses") == "no credentials"


def test_a_delivered_message_ends_the_hold_for_everyone() -> None:
    breaker = CircuitBreaker(failures=5, cooldown=COOLDOWN)
    breaker.misconfigured("smtp", "535")
    time.sleep(COOLDOWN + 0.02)
    assert breaker.wait_for("smtp") == 0
    assert breaker.success("smtp") == "535"  # what ended (for the "works again" line)
    assert breaker.wait_for("smtp") == 0 and breaker.held() == {}
    assert breaker.success("smtp") is None


def test_a_refused_message_does_not_end_the_hold() -> None:
    """A message refused on its own (often by the adapter's local checks) proves nothing about credentials."""
    breaker = CircuitBreaker(failures=5, cooldown=COOLDOWN)
    breaker.misconfigured("sns", "AuthorizationError")
    breaker.refused("sns")
    assert breaker.problem("sns") == "AuthorizationError" and breaker.wait_for("sns") > 0


def test_another_answer_ends_the_hold_and_counts_as_usual() -> None:
    """The server now answers something else (a 4xx, a throttle): the ordinary breaker takes over."""
    breaker = CircuitBreaker(failures=2, cooldown=COOLDOWN)
    breaker.misconfigured("smtp", "connection refused")
    breaker.failure("smtp")
    assert breaker.problem("smtp") is None and breaker.wait_for("smtp") == 0
    breaker.failure("smtp")  # the second consecutive failure opens the circuit
    assert breaker.wait_for("smtp") > 0 and breaker.problem("smtp") is None

    breaker.misconfigured("fcm", "invalid_grant")
    breaker.hold("fcm", 0.05)
    assert breaker.problem("fcm") is None and breaker.wait_for("fcm") <= 0.05
