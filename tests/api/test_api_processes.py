"""`notifq api` with NOTIFQ_API_PROCESSES=2: one port, two real processes, and everything still holds across them.

The API runs as an operator starts it (`python -m notifq api`: notifq's supervisor and two
spawned uvicorn processes, each on its own SO_REUSEPORT socket) over the test PostgreSQL and
Redis. The kernel hands each new connection to one process; psutil says which one holds the
server side of a connection, so a client can be pinned to a process (one keep-alive
connection) and a test can send through one process and watch through the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websockets
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from notifq.auth import REVOCATION_REFRESH_SECONDS
from notifq.settings import Settings, child_env
from tests.api.support import assert_error, bearer, stateless_token
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.harness import running_worker
from tests.live import _free_port, wait_until_serving
from tests.subscribers.inapp_support import Inbox, subscriber_token

PROCESSES = 2
NOTIFICATION = {"channel": "email", "to": "otp@example.com", "subject": "Code", "body": "123456"}
CAMPAIGN = {"name": "Launch", "recipients": ["a@example.com", "b@example.com"], "subject": "Hi", "body": "Hello"}


@dataclass
class Api:
    """A running multi-process `notifq api`: its supervisor, port and log."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serving(self) -> set[int]:
        """The supervisor's children that listen on the port (not multiprocessing's resource tracker)."""
        found = set()
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.Error):
                if any(s.status == psutil.CONN_LISTEN and s.laddr.port == self.port
                       for s in child.net_connections("tcp")):  # fmt: skip
                    found.add(child.pid)
        return found

    def owners(self) -> dict[int, int]:
        """Client port -> the process holding the server side of that (accepted) connection."""
        found = {}
        for pid in self.serving():
            with contextlib.suppress(psutil.Error):
                for s in psutil.Process(pid).net_connections("tcp"):
                    if s.laddr.port == self.port and s.raddr:
                        found[s.raddr.port] = pid
        return found

    def owner(self, client_port: int) -> int:
        pid = self.owners().get(client_port)
        assert pid is not None, f"no API process holds the connection from port {client_port}"
        return pid

    def served_by(self, response: httpx.Response) -> int:
        return self.owner(_client_port(response))

    def ws_served_by(self, conn: ClientConnection) -> int:
        return self.owner(conn.local_address[1])

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _client_port(response: httpx.Response) -> int:
    _, port = response.extensions["network_stream"].get_extra_info("client_addr")
    return int(port)


def _start(settings: Settings, log: Path) -> Api:
    port = _free_port()
    served = settings.with_(host="127.0.0.1", port=port, api_processes=PROCESSES, log_format="text")
    with log.open("wb") as out:
        # Its own session: should a test fail midway, the group (supervisor and processes) is killed at once.
        proc = subprocess.Popen([sys.executable, "-m", "notifq", "api"], env=child_env(served, isolated=True),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    api = Api(proc, port, log)
    try:
        wait_until_serving(f"{api.url}/ready", lambda: proc.poll() is None, within=60)
        deadline = time.monotonic() + 30
        while len(api.serving()) < PROCESSES:
            assert time.monotonic() < deadline, api.output()
            time.sleep(0.1)
    except BaseException:
        _kill(api)
        raise
    return api


def _kill(api: Api) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(api.proc.pid, signal.SIGKILL)
    api.proc.wait()


def _stop(api: Api, within: float = 30) -> int:
    """SIGTERM, as docker and `notifq dev` stop it; its exit status."""
    api.proc.send_signal(signal.SIGTERM)
    try:
        return api.proc.wait(within)
    except subprocess.TimeoutExpired:
        _kill(api)
        raise AssertionError(f"notifq api did not stop within {within} s on SIGTERM\n{api.output()}") from None


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def api(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    started = _start(base_settings, tmp_path_factory.mktemp("api-processes") / "api.log")
    try:
        yield started
    finally:
        code = _stop(started)
        assert code == 0, started.output()


async def _pinned(api: Api, pid: int) -> httpx.AsyncClient:
    """A client whose one keep-alive connection is served by process `pid`."""
    for _ in range(200):
        client = httpx.AsyncClient(base_url=api.url, timeout=30, limits=httpx.Limits(max_connections=1))
        r = await client.get("/ready")
        assert r.status_code == 200, r.text  # the process's lifespan ran: its own pools answer
        if api.served_by(r) == pid:
            return client
        await client.aclose()
    raise AssertionError(f"200 connections and none went to process {pid}")


@contextlib.asynccontextmanager
async def one_client_per_process(api: Api) -> AsyncIterator[list[tuple[int, httpx.AsyncClient]]]:
    pids = sorted(api.serving())
    assert len(pids) == PROCESSES
    clients = [(pid, await _pinned(api, pid)) for pid in pids]
    try:
        yield clients
    finally:
        for _, client in clients:
            await client.aclose()


def _checked(api: Api, pid: int, response: httpx.Response) -> httpx.Response:
    """The response, after making sure the pinned connection was not replaced by one to another process."""
    assert api.served_by(response) == pid
    return response


@contextlib.asynccontextmanager
async def _connected(api: Api, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` clients of one connection each, connected at once (a pool opening under load)."""
    clients = [httpx.AsyncClient(base_url=api.url, timeout=30, limits=httpx.Limits(max_connections=1))
               for _ in range(count)]  # fmt: skip
    try:
        await asyncio.gather(*(c.get("/health") for c in clients))
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def test_connections_opened_at_once_spread_over_the_processes(api: Api) -> None:
    """The reason for a socket per process: with one shared socket the first process to wake accepted 63 of
    64 such connections. By address hash, each process here gets half of them, give or take."""
    async with _connected(api, 64) as clients:
        owners = api.owners()
        counts = [list(owners.values()).count(pid) for pid in api.serving()]
        assert sum(counts) == len(clients)
    assert min(counts) >= 16, counts  # binomial(64, 1/2): below 16 once in 30,000 runs


def test_a_second_api_on_the_port_refuses_to_start(api: Api, base_settings: Settings) -> None:
    """SO_REUSEPORT would let it join the group and take connections unnoticed: it exits 3 instead."""
    second = base_settings.with_(host="127.0.0.1", port=api.port, api_processes=PROCESSES, log_format="text")
    done = subprocess.run([sys.executable, "-m", "notifq", "api"], env=child_env(second, isolated=True),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "Address already in use" in done.stderr
    assert len(api.serving()) == PROCESSES


async def test_two_processes_serve_one_port(api: Api) -> None:
    """Two processes besides the supervisor, each with its own lifespan (its /ready uses its own pools)."""
    pids = api.serving()
    assert len(pids) == PROCESSES and api.proc.pid not in pids
    async with one_client_per_process(api) as clients:
        for pid, client in clients:
            r = _checked(api, pid, await client.get("/ready"))
            assert r.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_keyed_sends_racing_across_processes_create_one_message(
    api: Api, fast_admin: uuid.UUID, settings: Settings, engine: AsyncEngine
) -> None:
    """The same Idempotency-Key and body from 24 connections at once, spread over both processes: one message."""
    headers = {**bearer(stateless_token(settings, fast_admin)), "Idempotency-Key": f"race-{uuid.uuid4()}"}
    async with _connected(api, 24) as clients:  # connected first: the race is the POSTs alone
        responses = await asyncio.gather(*(c.post("/notifications", json=NOTIFICATION, headers=headers)
                                           for c in clients))  # fmt: skip
        owners = api.owners()
        served = [owners[_client_port(r)] for r in responses]
    assert all(served.count(pid) >= 2 for pid in api.serving()), served  # both processes took part
    created = [r for r in responses if r.status_code == 202 and "idempotent-replayed" not in r.headers]
    assert len(created) == 1, [(r.status_code, r.text) for r in responses]
    message_id = created[0].json()["id"]
    for r in responses:
        if r.status_code == 202:
            assert r.json()["id"] == message_id
        else:
            error = assert_error(r, 409, "conflict")
            assert "still being processed" in error["message"] and error["details"] == {"header": "Idempotency-Key"}
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one() == 1
    async with one_client_per_process(api) as pinned:
        for pid, client in pinned:  # afterwards every process replays it, and refuses another body for the key
            again = _checked(api, pid, await client.post("/notifications", json=NOTIFICATION, headers=headers))
            assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
            assert again.json()["id"] == message_id
            other = await client.post("/notifications", json={**NOTIFICATION, "body": "654321"}, headers=headers)
            error = assert_error(_checked(api, pid, other), 422, "validation_error")
            assert error["details"] == {"header": "Idempotency-Key", "reason": "key_reused"}
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one() == 1


async def test_failed_logins_count_across_processes(api: Api, admin_id: uuid.UUID, settings: Settings) -> None:
    """Wrong passwords alternate between the processes; the lockout comes after `login_max_failures` in all,
    and holds on both, for the right password too."""
    wrong = {"email": ADMIN_EMAIL, "password": "not the password"}
    async with one_client_per_process(api) as pinned:
        statuses = []
        for i in range(settings.login_max_failures):
            pid, client = pinned[i % PROCESSES]
            statuses.append((_checked(api, pid, await client.post("/auth/login", json=wrong))).status_code)
        assert statuses == [401] * settings.login_max_failures
        for pid, client in pinned:
            for body in (wrong, {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}):
                r = _checked(api, pid, await client.post("/auth/login", json=body))
                assert_error(r, 429, "too_many_attempts")
                assert 0 < int(r.headers["retry-after"]) <= settings.login_lockout_seconds


async def test_a_logout_is_refused_by_every_process_within_the_bound(
    api: Api, fast_admin: uuid.UUID, settings: Settings
) -> None:
    """At once on the process that logged out; on the other within REVOCATION_REFRESH_SECONDS (docs/operations.md)."""
    token, other = stateless_token(settings, fast_admin), stateless_token(settings, fast_admin)
    async with one_client_per_process(api) as pinned:
        (here_pid, here), (there_pid, there) = pinned
        for pid, client in pinned:  # both processes know the token (their copies are loaded)
            assert (_checked(api, pid, await client.get("/campaigns", headers=bearer(token)))).status_code == 200
        r = _checked(api, here_pid, await here.post("/auth/logout", headers=bearer(token)))
        assert r.status_code == 204, r.text
        logged_out = time.monotonic()
        assert_error(_checked(api, here_pid, await here.get("/campaigns", headers=bearer(token))), 401)
        while True:
            r = _checked(api, there_pid, await there.get("/campaigns", headers=bearer(token)))
            if r.status_code == 401:
                break
            assert r.status_code == 200, r.text
            assert time.monotonic() - logged_out < REVOCATION_REFRESH_SECONDS + 1, "still accepted past the bound"
            await asyncio.sleep(0.05)
        for pid, client in pinned:  # refused everywhere from then on; the admin's other token is not affected
            assert_error(_checked(api, pid, await client.get("/campaigns", headers=bearer(token))), 401)
            assert (_checked(api, pid, await client.get("/campaigns", headers=bearer(other)))).status_code == 200


async def _next_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The data of the next `event:` (keepalive comments skipped)."""
    async for line in lines:
        if line.startswith("data: "):
            return dict(json.loads(line.removeprefix("data: ")))
    raise AssertionError("the stream ended")


async def test_a_stream_on_one_process_follows_changes_made_through_the_other(
    api: Api, fast_admin: uuid.UUID, settings: Settings
) -> None:
    auth = bearer(stateless_token(settings, fast_admin))
    async with one_client_per_process(api) as pinned:
        (watch_pid, watcher), (act_pid, actor) = pinned
        async with watcher.stream("GET", "/events/campaigns", headers=auth) as stream:
            assert stream.status_code == 200 and api.served_by(stream) == watch_pid
            events = stream.aiter_lines()
            assert (await asyncio.wait_for(_next_event(events), 10)) == {"items": []}
            r = _checked(api, act_pid, await actor.post("/campaigns", json=CAMPAIGN, headers=auth))
            assert r.status_code == 202, r.text
            campaign_id = r.json()["id"]
            seen = await asyncio.wait_for(_next_event(events), 10)
            assert [c["id"] for c in seen["items"]] == [campaign_id]
            r = _checked(api, act_pid, await actor.post(f"/campaigns/{campaign_id}/cancel", headers=auth))
            assert r.status_code == 202, r.text
            async with asyncio.timeout(10):
                while seen["items"][0]["status"] != "cancelled":
                    seen = await _next_event(events)


async def test_an_inbox_on_either_process_gets_what_is_sent_through_either(
    api: Api, fast_admin: uuid.UUID, settings: Settings
) -> None:
    """One WebSocket per process, one send through each: both sockets get both notifications (a real worker
    delivers; it publishes to Redis, and each process's hub forwards to its own sockets)."""
    auth = bearer(stateless_token(settings, fast_admin))
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        token = await subscriber_token(client, auth, "u-multi")
    async with contextlib.AsyncExitStack() as stack:
        boxes: dict[int, Inbox] = {}
        for _ in range(200):
            if len(boxes) == PROCESSES:
                break
            conn = await stack.enter_async_context(websockets.connect(api.url.replace("http", "ws") + "/ws"))
            await conn.send(json.dumps({"type": "AUTH", "token": token}))
            box = Inbox(conn)
            stack.push_async_callback(box.close)
            await asyncio.wait_for(box.ready.wait(), 20)
            boxes.setdefault(api.ws_served_by(conn), box)
        assert set(boxes) == api.serving()
        await stack.enter_async_context(running_worker(settings))
        pinned = await stack.enter_async_context(one_client_per_process(api))
        sent = []
        for pid, client in pinned:
            r = await client.post("/notifications", json={"channel": "inapp", "subscriber": "u-multi",
                                                          "body": f"via {pid}"}, headers=auth)  # fmt: skip
            assert _checked(api, pid, r).status_code == 202, r.text
            sent.append(r.json()["id"])
        for box in boxes.values():
            got = await box.wait_for(PROCESSES)
            assert sorted(f["id"] for f in got) == sorted(sent)


def _served_now(api: Api) -> tuple[int, int]:
    """GET /ready on a new connection: its status and the process that answered."""
    with httpx.Client(base_url=api.url, timeout=30) as client:
        r = client.get("/ready")
        return r.status_code, api.served_by(r)


@pytest.mark.timeout(180)
def test_the_supervisor_replaces_a_dead_process_and_stops_them_all(base_settings: Settings, tmp_path: Path) -> None:
    """A killed process is replaced on its socket, where the connections that came meanwhile waited (none is
    refused); SIGHUP replaces them all without a refused request; SIGTERM stops every process gracefully
    (exit 0); and should the supervisor itself be killed, its processes stop rather than serve on as orphans."""
    api = _start(base_settings, tmp_path / "api.log")
    try:
        victim = min(api.serving())
        os.kill(victim, signal.SIGKILL)
        with ThreadPoolExecutor(16) as pool:  # half of them hash to the dead process's socket
            answers = list(pool.map(lambda _: _served_now(api), range(16)))
        assert all(status == 200 for status, _ in answers), answers
        survivors = api.serving()
        assert len(survivors) == PROCESSES and victim not in survivors
        assert {pid for _, pid in answers} == survivors  # the replacement took its socket's waiting connections

        api.proc.send_signal(signal.SIGHUP)  # a rolling replacement: every request meanwhile is answered
        statuses = []
        deadline = time.monotonic() + 60
        while api.serving() & survivors or len(api.serving()) < PROCESSES:
            assert time.monotonic() < deadline, api.output()
            # Status only: the process that answered may be the old one, closing its connections as it stops.
            with httpx.Client(base_url=api.url, timeout=30) as client:
                statuses.append(client.get("/ready").status_code)
        assert set(statuses) == {200}, statuses
        survivors = api.serving()
        assert _stop(api) == 0, api.output()
        assert not [pid for pid in survivors if _running(pid)]
        assert "Application shutdown complete" in api.output()
    finally:
        if api.proc.poll() is None:
            _kill(api)

    api = _start(base_settings, tmp_path / "api-killed.log")
    children = api.serving()
    try:
        api.proc.kill()  # the supervisor alone; its processes are left to notice
        api.proc.wait()
        deadline = time.monotonic() + 20
        while alive := [pid for pid in children if _running(pid)]:
            assert time.monotonic() < deadline, f"{alive} still running without their supervisor\n{api.output()}"
            time.sleep(0.1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{api.url}/health", timeout=2)
    finally:
        _kill(api)
