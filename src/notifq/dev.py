"""`notifq dev` (what `make run` calls): one command for the whole stack on one machine.

It starts embedded PostgreSQL and Valkey unless DATABASE_URL / REDIS_URL are set,
migrates, makes sure the admin exists, then supervises the API (`notifq api`: itself
NOTIFQ_API_PROCESSES processes on one port, by default one per CPU) and N worker processes.
`notifq scale N` (`make scale WORKERS=N`) writes the wanted count and signals the
supervisor, which starts or drains workers to match. Ctrl-C drains workers first
(their statuses reach PostgreSQL), then stops the API and the embedded servers.

One stack per state directory: a second `notifq dev` beside a running one says where that one
runs and exits 1 before starting (or stopping) anything; only the lock's holder stops the
directory's embedded servers (runtime.claim_stack).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from notifq.admins import DEFAULT_ADMIN, ensure_default_admin
from notifq.db.engine import create_engine
from notifq.embedded import ensure_servers, stop_servers
from notifq.errors import ConfigError
from notifq.migrate import upgrade_head
from notifq.runtime import RunningStack, claim_stack, dev_jwt_secret
from notifq.settings import ENV_VARS, Settings, child_env

SUPERVISOR_FILE = "dev.json"
TARGET_FILE = "workers.target"
EXIT_ALREADY_RUNNING = 1
# The banner waits this long for the API's /ready before it is printed anyway.
READY_WAIT_SECONDS = 30.0


class Supervisor:
    def __init__(self, settings: Settings, workers: int, banner: str = "", api_processes: int = 1) -> None:
        self.settings = settings
        self.banner = banner
        # Every setting, resolved URLs and secret included, over this process's environment; the API's
        # process count as the banner shows it (resolved by the CLI: `0` would be the CPU count again).
        self.env = child_env(settings) | {ENV_VARS["api_processes"]: str(api_processes)}
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
        # SIGHUP too: a closed terminal must drain the stack, not orphan its children (they have their own sessions).
        for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_scale)
        code = 0
        banner_by = time.monotonic() + READY_WAIT_SECONDS
        while not self.stopping:
            time.sleep(0.2)
            if self.banner and (_ready(self.settings) or time.monotonic() > banner_by):
                # Printed once the API answers, so the login is the last thing on screen, below the start-up logs.
                print(self.banner, flush=True)
                self.banner = ""
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
            self.api.send_signal(signal.SIGTERM)  # `notifq api` stops its processes gracefully
            try:
                self.api.wait(15)
            except subprocess.TimeoutExpired:
                # The whole group (its own session): the supervisor and every API process it started.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.api.pid, signal.SIGKILL)
                self.api.wait()


def read_target(state_dir: Path, default: int) -> int:
    try:
        return max(0, int((state_dir / TARGET_FILE).read_text().strip()))
    except (OSError, ValueError):
        return default


def dev_settings(settings: Settings) -> Settings:
    """The settings `notifq dev` runs with: an absolute state dir, and text logs unless NOTIFQ_LOG_FORMAT is set.

    Text because a person reads this terminal (the one-time password must not drown in JSON); `notifq api`
    and `notifq worker` keep JSON by default. load_settings passes only the variables it found, so
    `model_fields_set` names exactly the settings that were given.
    """
    text = {} if "log_format" in settings.model_fields_set else {"log_format": "text"}
    return settings.with_(state_dir=settings.state_dir.resolve(), **text)


def run_dev(settings: Settings, workers: int = 1, api_processes: int = 1) -> int:
    settings = dev_settings(settings)
    state = settings.state_dir
    base = f"http://{settings.host}:{settings.port}"
    claim = claim_stack(state, base)
    if isinstance(claim, RunningStack):
        print(already_running(claim, state), file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    try:
        if _port_in_use(settings.host, settings.port):
            print(port_taken(settings.host, settings.port), file=sys.stderr)
            return EXIT_ALREADY_RUNNING
        return _run_claimed(settings, workers, api_processes)
    finally:
        claim.release()


def already_running(stack: RunningStack, state: Path) -> str:
    pid = str(stack.pid) if stack.pid is not None else "(starting up)"
    return "\n".join([
        f"notifq dev: a stack is already running from {state}",
        f"  pid         {pid}",
        f"  dashboard   {stack.url}/" if stack.url else "  dashboard   (its address is not written yet)",
        "Nothing was started or stopped. Use that stack (`make scale WORKERS=N` sets its",
        f"workers), stop it with Ctrl-C in its terminal or `kill -INT {stack.pid or '<pid>'}`,",
        "or give a second stack its own NOTIFQ_STATE_DIR and NOTIFQ_PORT.",
    ])  # fmt: skip


def port_taken(host: str, port: int) -> str:
    return "\n".join([
        f"notifq dev: {host}:{port} is already in use by another program (a notifq stack",
        "started from another directory?). Nothing was started. Stop that program, or",
        f"choose another port: NOTIFQ_PORT={port + 1 if port < 65535 else 8000} make run",
    ])  # fmt: skip


def _port_in_use(host: str, port: int) -> bool:
    """Whether another program listens there; bound like uvicorn binds (SO_REUSEADDR), so TIME_WAIT is free."""
    try:
        with socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET):
            return False
    except OSError as exc:
        return exc.errno == errno.EADDRINUSE  # anything else (a bad host) is uvicorn's to report


def _ready(settings: Settings) -> bool:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    host = f"[{host}]" if ":" in host else host
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP_PROXY
    try:
        with direct.open(f"http://{host}:{settings.port}/ready", timeout=0.5) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, timed out, or an HTTPError (503 while it starts)
        return False


def _run_claimed(settings: Settings, workers: int, api_processes: int) -> int:
    state = settings.state_dir
    embedded = not (settings.database_url and settings.redis_url)
    if embedded:
        print("notifq dev: starting embedded servers under", state, flush=True)
    try:
        return _serve(settings, workers, embedded, api_processes)
    finally:
        if embedded:
            # This process holds the state dir's lock, so the embedded servers there are its own to stop:
            # started now, or left running by a stack that was killed (no live process holds them).
            if still := stop_servers(state):
                print(f"notifq dev: could not stop {' and '.join(still)}; see above", file=sys.stderr)
            else:
                print(f"notifq dev: embedded servers stopped (data kept under {state})")


def _serve(settings: Settings, workers: int, embedded: bool, api_processes: int) -> int:
    state = settings.state_dir
    urls = ensure_servers(state, database_url=settings.database_url, redis_url=settings.redis_url)
    settings = dev_jwt_secret(settings.with_(database_url=urls.database_url, redis_url=urls.redis_url))
    try:
        upgrade_head(urls.database_url)
        generated = asyncio.run(_ensure_admin(settings))
    except ConfigError as exc:
        print(f"notifq: {exc.message}", file=sys.stderr)
        return 2
    (state / TARGET_FILE).write_text(str(workers))
    (state / SUPERVISOR_FILE).write_text(json.dumps({"pid": os.getpid()}))
    try:
        text = banner(settings, workers, generated, embedded, api_processes)
        return Supervisor(settings, workers, text, api_processes).run()
    finally:
        (state / SUPERVISOR_FILE).unlink(missing_ok=True)


def banner(settings: Settings, workers: int, generated_password: str | None, embedded: bool,
           api_processes: int = 1) -> str:  # fmt: skip
    """What `make run` prints once the API answers: where it is, the login, and why delivery is as fast as it is.

    Plain lines within 80 columns (but the copy-paste command), each setting with the variable that changes it.
    """
    base, var = f"http://{settings.host}:{settings.port}", ENV_VARS
    if generated_password:
        login = [f"{DEFAULT_ADMIN} / {generated_password}", f"shown once; reset: notifq create-admin {DEFAULT_ADMIN}"]
    else:
        login = [DEFAULT_ADMIN, "password: NOTIFQ_ADMIN_PASSWORD, or the one set earlier"]
    lines = [f"notifq dev: ready, pid {os.getpid()} (Ctrl-C drains the workers, then stops it all)"]
    lines += _rows([
        ("dashboard", [f"{base}/   (the API too: /openapi.json, /metrics)"]),
        ("admin", login),
        ("api", [f"{api_processes} process{'es' if api_processes > 1 else ''}   ({var['api_processes']}, "
                 "default: one per CPU)"]),
        ("workers", [f"{workers}   (make scale WORKERS=N)"]),
        *_delivery(settings, workers),
    ])  # fmt: skip
    if settings.rate_limit or settings.mock_failure_rate or settings.mock_latency_ms[1]:
        lines.append("  fast demo   stop this stack, then start it with")
        lines.append(f"  {var['rate_limit']}=0 {var['mock_failure_rate']}=0 {var['mock_latency_ms']}=0 make run")
    other = "json" if settings.log_format == "text" else "text"
    lines += _rows([
        *([("servers", [f"embedded PostgreSQL and Valkey, data in {settings.state_dir}"])] if embedded else []),
        ("logs", [f"{settings.log_format} on stderr   ({var['log_format']}={other} for {other})"]),
    ])  # fmt: skip
    return "\n".join(lines)


def _rows(rows: list[tuple[str, list[str]]]) -> list[str]:
    return [f"  {label if i == 0 else '':<11} {text}" for label, texts in rows for i, text in enumerate(texts)]


def _delivery(settings: Settings, workers: int) -> list[tuple[str, list[str]]]:
    """The effective rate limit and mock settings. The defaults model a real provider (10 msg/s per worker,
    100-500 ms, 20 % transient failures): the README's 10,000-message campaign then takes some 20 minutes."""
    rate, (low, high), failing = settings.rate_limit, settings.mock_latency_ms, settings.mock_failure_rate
    var = ENV_VARS
    if rate:
        n = max(workers, 1)
        limit = [f"{rate:g} msg/s per worker ({var['rate_limit']}, 0 = none)",
                 f"10,000 messages take at least {10_000 / (rate * n) / 60:.0f} min with {n} "
                 f"worker{'s' if n > 1 else ''}"]  # fmt: skip
    else:
        limit = [f"none ({var['rate_limit']}=0)"]
    latency = f"{low}-{high}" if high > low else f"{low}"
    mock = [f"{latency} ms per send ({var['mock_latency_ms']})"]
    if failing:
        delays = ", ".join(f"{d:g}" for d in settings.retry_delays)
        attempts = f"{settings.max_attempts} attempts ({var['max_attempts']})"
        mock += [f"{failing:.0%} of attempts fail ({var['mock_failure_rate']}), retried after",
                 f"{delays} s ({var['retry_delays']}), {attempts}"]  # fmt: skip
    else:
        mock.append(f"no attempt fails ({var['mock_failure_rate']}=0)")
    return [("rate limit", limit), ("mock", mock)]


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
