"""verify_token remembers tokens that passed, never one that did not, and not past its expiry."""

from __future__ import annotations

import time
import uuid

import pytest

from notifq.auth import issue_token, verify_token
from notifq.errors import Unauthorized

SECRET = "s" * 40


def test_a_remembered_token_still_expires() -> None:
    token = issue_token(SECRET, "notifq", str(uuid.uuid4()), ttl_seconds=2, now=time.time() - 1).token
    first = verify_token(SECRET, "notifq", token)
    assert verify_token(SECRET, "notifq", token) is first  # remembered
    time.sleep(max(0.0, first.exp - time.time()) + 0.05)
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(SECRET, "notifq", token)


def test_a_remembered_token_is_only_good_for_its_secret_and_issuer() -> None:
    token = issue_token(SECRET, "notifq", str(uuid.uuid4()), ttl_seconds=60).token
    verify_token(SECRET, "notifq", token)
    with pytest.raises(Unauthorized):
        verify_token("t" * 40, "notifq", token)
    with pytest.raises(Unauthorized):
        verify_token(SECRET, "other", token)


def test_a_refused_token_is_refused_every_time() -> None:
    token = issue_token(SECRET, "notifq", str(uuid.uuid4()), ttl_seconds=60).token
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verify_token(SECRET, "notifq", tampered)
