"""Login hardening found by attacking a running stack: parallel guesses, timing, forged client addresses."""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from notifq.auth import BCRYPT_ROUNDS, dummy_hash, hash_password
from notifq.settings import Settings
from tests.api.support import app_client
from tests.api.test_auth import login
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.harness import stop_process, worker_env
from tests.live import wait_until_serving


class TestParallelGuesses:
    """Defect: the failure count was checked before bcrypt and raised after it, so 50 simultaneous
    guesses from one address were all checked (49 x 401, 1 x 200) where one at a time gave five 401s, then 429."""

    async def test_parallel_wrong_passwords_meet_the_lockout(
        self, client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings, redis: Redis
    ) -> None:
        answers = await asyncio.gather(*(login(client, ADMIN_EMAIL, f"guess {i}") for i in range(50)))
        statuses = Counter(r.status_code for r in answers)
        assert set(statuses) == {401, 429}, statuses
        assert 1 <= statuses[401] <= settings.login_max_failures, statuses
        assert (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 429  # locked, as one at a time

    async def test_parallel_guesses_spread_over_emails_meet_the_address_lockout(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        answers = await asyncio.gather(*(login(client, f"guess{i}@notifq.dev", "password") for i in range(50)))
        statuses = Counter(r.status_code for r in answers)
        assert set(statuses) == {401, 429} and statuses[401] <= settings.login_max_failures, statuses

    async def test_parallel_right_passwords_all_get_in_and_leave_no_count(
        self, client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings, redis: Redis
    ) -> None:
        """More simultaneous logins than the failure limit, all right: each waits for a slot, none is a 429."""
        answers = await asyncio.gather(*(login(client, ADMIN_EMAIL, ADMIN_PASSWORD) for _ in range(6)))
        assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
        assert await redis.keys("notifq:login:*") == []

    async def test_a_right_password_after_parallel_typos_below_the_limit(
        self, client: httpx.AsyncClient, admin_id: uuid.UUID, settings: Settings, redis: Redis
    ) -> None:
        typos = settings.login_max_failures - 1
        answers = await asyncio.gather(*(login(client, ADMIN_EMAIL, "typo") for _ in range(typos)))
        assert [r.status_code for r in answers] == [401] * typos
        assert (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
        assert await redis.keys("notifq:login:acct:*") == []  # the account's failures are forgotten


class TestLoginTiming:
    """Defect: the dummy hash checked for unknown emails cost 10 rounds, real hashes 12, so a login's
    time told which emails are admins. Measured with the real cost (no test lowers it)."""

    def test_the_dummy_hash_costs_what_a_real_hash_costs(self) -> None:
        prefix = f"$2b${BCRYPT_ROUNDS:02d}$"
        assert hash_password("any password").startswith(prefix)
        assert dummy_hash().decode().startswith(prefix)
        assert BCRYPT_ROUNDS >= 12

    async def test_unknown_email_takes_as_long_as_a_wrong_password(
        self, settings: Settings, admin_id: uuid.UUID
    ) -> None:
        async with app_client(settings.with_(login_max_failures=1000)) as client:
            await login(client, "warm-up@notifq.dev", "password")
            unknown: list[float] = []
            known: list[float] = []
            for i in range(7):  # interleaved, so a busy moment of the machine hits both alike
                for email, times in ((f"nobody{i}@notifq.dev", unknown), (ADMIN_EMAIL, known)):
                    started = time.perf_counter()
                    r = await login(client, email, "wrong password")
                    times.append(time.perf_counter() - started)
                    assert r.status_code == 401, r.text
        ratio = statistics.median(unknown) / statistics.median(known)
        assert 0.5 <= ratio <= 2, (ratio, unknown, known)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_api(settings: Settings) -> Iterator[str]:
    """The real `notifq api` process, as an operator starts it, on 127.0.0.1."""
    port = _free_port()
    env = worker_env(settings)
    env.update(NOTIFQ_HOST="127.0.0.1", NOTIFQ_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "notifq", "api"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/health", lambda: proc.poll() is None, within=30)
        yield url
    finally:
        stop_process(proc)


class TestForwardedFor:
    """Defect: uvicorn trusted X-Forwarded-For from 127.0.0.1 by default, so a local client naming a new
    address on every try never met the per-address lockout."""

    async def test_notifq_api_ignores_x_forwarded_for(self, served_api: str, settings: Settings) -> None:
        async with httpx.AsyncClient(base_url=served_api, timeout=30) as api:
            statuses = []
            for i in range(settings.login_max_failures + 2):
                r = await api.post("/auth/login", json={"email": f"spray{i}@notifq.dev", "password": "password"},
                                   headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})  # fmt: skip
                statuses.append(r.status_code)
        failures = settings.login_max_failures
        assert statuses == [401] * failures + [429, 429], statuses
