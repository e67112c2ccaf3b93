"""`notifq dev` (what `make run` calls): one command for the whole stack on one machine.

It starts embedded PostgreSQL and Valkey unless DATABASE_URL / REDIS_URL are set,
migrates, makes sure the admin exists, then supervises the API and N worker processes.
`notifq scale N` (`make scale WORKERS=N`) writes the wanted count and signals the
supervisor, which starts or drains workers to match. Ctrl-C drains workers first
(their statuses reach PostgreSQL), then stops the API and the embedded servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from notifq.admins import DEFAULT_ADMIN, ensure_default_admin
from notifq.db.engine import create_engine
from notifq.embedded import ensure_servers, stop_servers
from notifq.errors import ConfigError
from notifq.migrate import upgrade_head
from notifq.runtime import dev_jwt_secret
from notifq.settings import Settings, child_env

SUPERVISOR_FILE = "dev.json"
TARGET_FILE = "workers.target"


class Supervisor:
    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        # Every setting, resolved URLs and secret included, over this process's environment.
        self.env = child_env(settings)
        self.target = workers
        self.workers: list[subprocess.Popen[bytes]] = []
        self.api: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.rescale = False

    def _spawn(self, command: str) -> subprocess.Popen[bytes]:
        # Children get their own process group so a terminal Ctrl-C reaches only the supervisor,
        # which then stops them in order (workers first, so their statuses are flushed).
        return subprocess.Popen([sys.executable, "-m", "notifq", command], env=self.env, start_new_session=True)

    def scale_to(self, n: int) -> None:
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            self.workers.append(self._spawn("worker"))
        for extra in self.workers[n:]:
            extra.send_signal(signal.SIGTERM)
        self.workers = self.workers[:n]
        print(f"notifq dev: {n} worker process(es)", flush=True)

    def run(self) -> int:
        self.api = self._spawn("api")
        self.scale_to(self.target)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_scale)
        code = 0
        while not self.stopping:
            time.sleep(0.2)
            if self.rescale:
                self.rescale = False
                self.scale_to(read_target(self.settings.state_dir, self.target))
            if self.api.poll() is not None:
                print("notifq dev: the API exited; stopping", file=sys.stderr)
                code = 1
                break
            for w in list(self.workers):
                if w.poll() is not None:  # a crashed worker is replaced; the reconciler covers its messages
                    print(f"notifq dev: worker {w.pid} exited ({w.returncode}); starting another", file=sys.stderr)
                    self.workers.remove(w)
                    self.workers.append(self._spawn("worker"))
        self.shutdown()
        return code

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_scale(self, signum: int, frame: object) -> None:
        self.rescale = True

    def shutdown(self) -> None:
        print("notifq dev: draining workers…", flush=True)
        for w in self.workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.worker_drain_seconds + 10
        for w in self.workers:
            try:
                w.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.kill()
        if self.api and self.api.poll() is None:
            self.api.send_signal(signal.SIGTERM)
            try:
                self.api.wait(15)
            except subprocess.TimeoutExpired:
                self.api.kill()


def read_target(state_dir: Path, default: int) -> int:
    try:
        return max(0, int((state_dir / TARGET_FILE).read_text().strip()))
    except (OSError, ValueError):
        return default


def run_dev(settings: Settings, workers: int = 1) -> int:
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    settings = settings.with_(state_dir=state)
    embedded = not (settings.database_url and settings.redis_url)
    if embedded:
        print("notifq dev: starting embedded servers under", state, flush=True)
    urls = ensure_servers(state, database_url=settings.database_url, redis_url=settings.redis_url)
    settings = dev_jwt_secret(settings.with_(database_url=urls.database_url, redis_url=urls.redis_url))
    try:
        upgrade_head(urls.database_url)
        generated = asyncio.run(_ensure_admin(settings))
    except ConfigError as exc:
        print(f"notifq: {exc.message}", file=sys.stderr)
        return 2
    base = f"http://{settings.host}:{settings.port}"
    print(f"notifq dev: dashboard {base}/   API {base}  (OpenAPI: {base}/openapi.json, metrics: {base}/metrics)")
    if generated:
        print(f"notifq dev: admin login {DEFAULT_ADMIN} / {generated}   (shown once; "
              f"reset with `notifq create-admin {DEFAULT_ADMIN}`)")  # fmt: skip
    else:
        print(f"notifq dev: admin login {DEFAULT_ADMIN} (password from NOTIFQ_ADMIN_PASSWORD or set earlier)")
    (state / TARGET_FILE).write_text(str(workers))
    (state / SUPERVISOR_FILE).write_text(json.dumps({"pid": os.getpid()}))
    supervisor = Supervisor(settings, workers)
    try:
        return supervisor.run()
    finally:
        (state / SUPERVISOR_FILE).unlink(missing_ok=True)
        if embedded:
            stop_servers(state)
            print("notifq dev: embedded servers stopped (data kept under .notifq/)")


async def _ensure_admin(settings: Settings) -> str | None:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        return await ensure_default_admin(engine, settings.admin_password)
    finally:
        await engine.dispose()


def request_scale(settings: Settings, workers: int) -> int:
    state = settings.state_dir.resolve()
    try:
        pid = int(json.loads((state / SUPERVISOR_FILE).read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError):
        print("notifq scale: no running `make run` stack found here. With Docker: "
              f"docker compose -f docker/compose.yaml up -d --scale worker={workers}", file=sys.stderr)  # fmt: skip
        return 1
    if workers < 0:
        print("notifq scale: the worker count must be >= 0", file=sys.stderr)
        return 2
    (state / TARGET_FILE).write_text(str(workers))
    os.kill(pid, signal.SIGUSR1)
    print(f"notifq scale: asked the stack (pid {pid}) for {workers} worker(s)")
    return 0
