"""`notifq dev` (`make run`) as a new user meets it: one stack per state directory, a readable start.

The first test runs real embedded PostgreSQL and Valkey in its own state directory, as `make run`
does on a fresh machine, and starts a second `notifq dev` beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notifq.api.processes import api_process_count
from notifq.dev import banner, dev_settings
from notifq.runtime import RunningStack, StackClaim, claim_stack
from notifq.settings import Settings, load_settings
from tests.live import wait_until_serving

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    """No NOTIFQ_*, URLs or XDG_RUNTIME_DIR from the developer's shell: a fresh machine without a login session."""
    dropped = ("NOTIFQ_", "DATABASE_URL", "REDIS_URL", "XDG_RUNTIME_DIR")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)} | extra


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workers(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if "notifq worker" in line}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _server_pids(state: Path) -> tuple[int, int]:
    """The embedded PostgreSQL's postmaster and the Valkey server, from the files they and notifq write."""
    postmaster = int((state / "pg" / "postmaster.pid").read_text().split()[0])
    return postmaster, int(json.loads((state / "servers.json").read_text())["valkey_pid"])


def _dev(env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifq", "dev"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, **kwargs)  # type: ignore[call-overload]  # fmt: skip


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """Outside pytest's tmp_path: as root, PostgreSQL runs as `embedded_postgres`, and every pytest session
    (other test runs on the machine included) resets /tmp/pytest-of-root to 0700, locking it out of its data."""
    path = Path(tempfile.mkdtemp(prefix="notifq-dev-test-"))
    yield path / "state"
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(300)
def test_a_second_dev_in_the_same_directory_leaves_the_first_stack_running(tmp_path: Path, state_dir: Path) -> None:
    state, port = state_dir, _free_port()
    env = _env(NOTIFQ_STATE_DIR=str(state), NOTIFQ_PORT=str(port))
    log = (tmp_path / "first.log").open("w+")
    first = subprocess.Popen([sys.executable, "-m", "notifq", "dev"], env=env, cwd=ROOT, stdout=log,
                             stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_serving(f"{base}/ready", lambda: first.poll() is None, within=180)
        except AssertionError:
            raise AssertionError((tmp_path / "first.log").read_text()) from None
        deadline = time.monotonic() + 30
        while "fast demo" not in (tmp_path / "first.log").read_text():  # the banner follows /ready
            assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        workers, servers = _workers(first.pid), _server_pids(state)
        assert len(workers) == 1
        # `make run` serves the API with one process per CPU (NOTIFQ_API_PROCESSES unset), and says so.
        processes = api_process_count(load_settings({}, dotenv=None))
        assert f"\n  api         {processes} process" in (tmp_path / "first.log").read_text()

        # Same directory, same port (a second `make run` in the checkout): refused before anything starts.
        second = _dev(env)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"a stack is already running from {state}" in second.stderr
        assert f"pid         {first.pid}" in second.stderr and f"dashboard   {base}/" in second.stderr
        assert "Nothing was started or stopped" in second.stderr and "stopped (data kept" not in second.stdout
        assert "starting embedded servers" not in second.stdout
        # Same directory on another port: the directory's lock refuses it, not the port.
        other_port = _dev(_env(NOTIFQ_STATE_DIR=str(state), NOTIFQ_PORT=str(_free_port())))
        assert other_port.returncode == 1 and "already running" in other_port.stderr, other_port.stderr
        # Another directory on the same port: refused before it starts servers of its own.
        elsewhere = _dev(_env(NOTIFQ_STATE_DIR=str(state.parent / "elsewhere"), NOTIFQ_PORT=str(port)))
        assert elsewhere.returncode == 1 and f"127.0.0.1:{port} is already in use" in elsewhere.stderr
        assert not (state.parent / "elsewhere" / "pg").exists()

        # The first stack is whole: same servers, same workers, ready, and delivering.
        assert httpx.get(f"{base}/ready").status_code == 200
        assert _server_pids(state) == servers and all(map(_alive, servers))
        assert _workers(first.pid) == workers
        output = (tmp_path / "first.log").read_text()
        password = re.search(r"^  admin       admin@notifq\.dev / (\S+)$", output, re.M)
        assert password, output
        login = httpx.post(f"{base}/auth/login", json={"email": "admin@notifq.dev", "password": password[1]})
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        created = httpx.post(f"{base}/campaigns", headers=auth, json={"name": "After", "recipientCount": 5})
        assert created.status_code == 202, created.text
        deadline = time.monotonic() + 60
        while (campaign := httpx.get(f"{base}/campaigns/{created.json()['id']}", headers=auth).json())[
            "status"
        ] not in ("completed", "completed_with_failures"):
            assert time.monotonic() < deadline, campaign
            time.sleep(0.3)
        assert _workers(first.pid) == workers and "exited" not in (tmp_path / "first.log").read_text()
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(90)
        log.close()
    output = (tmp_path / "first.log").read_text()
    assert first.returncode == 0, output[-3000:]
    assert f"embedded servers stopped (data kept under {state})" in output
    deadline = time.monotonic() + 10  # stopped, and then reaped by init: a moment after the message
    while any(map(_alive, servers)):
        assert time.monotonic() < deadline, f"embedded servers still running: {servers}"
        time.sleep(0.1)

    # What a new user reads (defects 3 and 7): the delivery settings beside the login, in text, no warning.
    assert "10 msg/s per worker (NOTIFQ_RATE_LIMIT, 0 = none)" in output
    assert "100-500 ms per send (NOTIFQ_MOCK_LATENCY_MS)" in output
    assert "20% of attempts fail (NOTIFQ_MOCK_FAILURE_RATE)" in output
    assert "\n  NOTIFQ_RATE_LIMIT=0 NOTIFQ_MOCK_FAILURE_RATE=0 NOTIFQ_MOCK_LATENCY_MS=0 make run\n" in output
    assert "XDG_RUNTIME_DIR" not in output and "Warning" not in output
    assert not [line for line in output.splitlines() if line.startswith("{")], "JSON log lines in dev mode"
    assert re.search(r"^\S+ \S+ INFO uvicorn\.error \[\d+\] Application startup complete\.$", output, re.M)


def test_the_state_directory_lock_is_freed_by_its_owners_death(tmp_path: Path) -> None:
    """A killed `notifq dev` leaves no stale claim: the lock goes with the process, whatever its pid file says."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from notifq.runtime import claim_stack; "
        f"claim_stack(Path({str(tmp_path)!r}), 'http://127.0.0.1:1'); print('held', flush=True); time.sleep(60)"
    )], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert claim_stack(tmp_path, "http://127.0.0.1:2") == RunningStack(pid=holder.pid, url="http://127.0.0.1:1")
    finally:
        holder.kill()
        holder.communicate()
    mine = claim_stack(tmp_path, "http://127.0.0.1:2")
    assert isinstance(mine, StackClaim)
    try:
        assert json.loads((tmp_path / "dev.lock").read_text()) == {"pid": os.getpid(), "url": "http://127.0.0.1:2"}
    finally:
        mine.release()


def test_dev_logs_text_unless_the_log_format_is_given() -> None:
    assert dev_settings(load_settings({}, dotenv=None)).log_format == "text"
    assert dev_settings(load_settings({"NOTIFQ_LOG_FORMAT": "json"}, dotenv=None)).log_format == "json"
    assert load_settings({}, dotenv=None).log_format == "json"  # `notifq api` / `notifq worker` in production


def test_the_banner_names_the_login_and_what_slows_delivery_down() -> None:
    text = banner(Settings(state_dir=Path("/srv/.notifq"), log_format="text"), 2, "Gen3rated-pw", True, 4)
    lines = text.splitlines()
    assert "  admin       admin@notifq.dev / Gen3rated-pw" in lines
    assert "  api         4 processes   (NOTIFQ_API_PROCESSES, default: one per CPU)" in lines
    assert "  rate limit  10 msg/s per worker (NOTIFQ_RATE_LIMIT, 0 = none)" in lines
    assert "              10,000 messages take at least 8 min with 2 workers" in lines
    assert "  mock        100-500 ms per send (NOTIFQ_MOCK_LATENCY_MS)" in lines
    assert "              20% of attempts fail (NOTIFQ_MOCK_FAILURE_RATE), retried after" in lines
    assert "  NOTIFQ_RATE_LIMIT=0 NOTIFQ_MOCK_FAILURE_RATE=0 NOTIFQ_MOCK_LATENCY_MS=0 make run" in lines
    assert "  logs        text on stderr   (NOTIFQ_LOG_FORMAT=json for json)" in lines
    # The copy-paste command aside, it fits an 80-column terminal.
    assert all(len(line) <= 80 for line in lines if "make run" not in line), text

    fast = banner(Settings(rate_limit=0, mock_failure_rate=0, mock_latency_ms=(0, 0)), 1, None, False)
    assert "  rate limit  none (NOTIFQ_RATE_LIMIT=0)" in fast and "no attempt fails" in fast
    assert "fast demo" not in fast and "servers" not in fast
    assert "password: NOTIFQ_ADMIN_PASSWORD, or the one set earlier" in fast
    assert "  api         1 process   (NOTIFQ_API_PROCESSES, default: one per CPU)" in fast.splitlines()
