"""Revoking an API key across two real API server processes (`notifq api`, one process each, on its own port):
the process that handled the DELETE refuses the key at once, the other within REVOCATION_REFRESH_SECONDS."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from notifq.auth import REVOCATION_REFRESH_SECONDS
from notifq.settings import Settings
from tests.api.support import bearer, stateless_token
from tests.harness import api_process

WINDOW = REVOCATION_REFRESH_SECONDS + 1.0  # the documented bound, plus slack for a loaded machine


@pytest.mark.timeout(120)
def test_a_revoked_key_is_refused_by_every_api_process(
    settings: Settings, fast_admin: uuid.UUID, tmp_path: Path
) -> None:
    admin = bearer(stateless_token(settings, fast_admin))
    with ExitStack() as stack:
        one = stack.enter_context(api_process(settings, tmp_path / "api-1.log"))
        two = stack.enter_context(api_process(settings, tmp_path / "api-2.log"))
        created = httpx.post(f"{one}/api-keys", headers=admin, json={"name": "svc", "scopes": ["read"]}, timeout=10)
        assert created.status_code == 201, created.text
        key, key_id = bearer(created.json()["secret"]), created.json()["id"]
        # Usable at once on both: the other process has never seen it, and loads its copy again on the miss.
        for url in (one, two):
            loaded = time.monotonic()  # (two) its copy is loaded during this request: the refresh counts from here
            r = httpx.get(f"{url}/stats", headers=key, timeout=10)
            assert r.status_code == 200, (url, r.text)
        assert httpx.get(f"{two}/stats", headers=key, timeout=10).status_code == 200  # from its copy now

        revoked = httpx.delete(f"{one}/api-keys/{key_id}", headers=admin, timeout=10)
        assert revoked.status_code == 204, revoked.text
        started = time.monotonic()
        assert httpx.get(f"{one}/stats", headers=key, timeout=10).status_code == 401  # the revoking process: at once
        while (r := httpx.get(f"{two}/stats", headers=key, timeout=10)).status_code != 401:
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < WINDOW, f"process two still accepts the key after {WINDOW} s"
            time.sleep(0.05)
        took = time.monotonic() - started
        assert r.json()["error"]["code"] == "unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
        print(
            f"\nrevoked key refused by the other API process {took:.2f} s after the DELETE answered, "
            f"{time.monotonic() - loaded:.2f} s after its copy was loaded"
        )
        # And it stays refused on both (a later load does not bring it back).
        time.sleep(REVOCATION_REFRESH_SECONDS + 0.2)
        for url in (one, two):
            assert httpx.get(f"{url}/stats", headers=key, timeout=10).status_code == 401
        # The admin's token is untouched.
        assert httpx.get(f"{two}/stats", headers=admin, timeout=10).status_code == 200
