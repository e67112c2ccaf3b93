"""The chaos suite's private stack: its servers, one `notifq api`, and worker slots under a supervisor.

A slot (w1, w2) is a place for one worker process on one host; a fault kills or stops the
slot's process and the supervisor (`Stack.supervise`, called by the watcher every 50 ms)
starts the next one, as `notifq dev` or a compose restart policy would. Each worker process is
an `Incarnation`, with its own log and its own file of provider calls (scripts/chaos_worker.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chaos_procs import Registry, tail
from chaos_servers import LOCALHOST, Host, Postgres, Valkey, free_port

from notifq.settings import Settings, child_env, load_settings

SCRIPTS = Path(__file__).resolve().parent
WORKER_SCRIPT = SCRIPTS / "chaos_worker.py"
ADMIN_EMAIL = "chaos@notifq.dev"
ADMIN_PASSWORD = "chaos password, not a secret"
JWT_SECRET = "c" * 48
CRASH_LOOP_SECONDS = 2.0  # a worker that lived less than this is restarted after RESTART_BACKOFF, not at once
RESTART_BACKOFF = 1.0


@dataclass
class Incarnation:
    """One worker process of a slot: a slot's worker is replaced, the slot (w1, w2) stays."""

    slot: str
    number: int
    pid: int
    calls: Path
    log: Path
    started: float
    ended: float | None = None
    how: str = ""  # how it ended: SIGKILL, SIGTERM, or its exit status


@dataclass
class Slot:
    name: str
    host: Host
    proc: subprocess.Popen[bytes] | None = None
    held: bool = False  # a fault owns the slot: the supervisor leaves it alone
    restart_at: float = 0.0
    incarnations: list[Incarnation] = field(default_factory=list)

    @property
    def current(self) -> Incarnation:
        return self.incarnations[-1]


class Stack:
    """PostgreSQL + Valkey on `db_host`, the API on `api_host`, one worker slot per entry of `worker_hosts`."""

    def __init__(self, root: Path, registry: Registry, *, db_host: Host = LOCALHOST, api_host: Host = LOCALHOST,
                 worker_hosts: Mapping[str, Host], overrides: Mapping[str, str] = {}) -> None:  # fmt: skip
        self.root, self.registry = root, registry
        self.logs = root / "logs"
        self.calls = root / "calls"
        self.logs.mkdir(parents=True)
        self.calls.mkdir()
        self.postgres = Postgres(root, db_host, free_port(), registry)
        self.valkey = Valkey(root, db_host, free_port(), registry)
        self.api_host, self.api_port = api_host, free_port()
        self.slots = {name: Slot(name, host) for name, host in worker_hosts.items()}
        self.overrides = dict(overrides)
        self.api: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.spawned = 0

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host.address}:{self.api_port}"

    def start(self, trusted_subnet: str = "127.0.0.1/32") -> None:
        self.postgres.start(trusted_subnet)
        self.valkey.start()
        settings = Settings(database_url=self.postgres.url, redis_url=self.valkey.url, jwt_secret=JWT_SECRET,
                            host=self.api_host.address, port=self.api_port, api_processes=1, rate_limit=0,
                            mock_latency_ms=(0, 0), mock_failure_rate=0.0, mock_seed=1,
                            state_dir=self.root / "state")  # fmt: skip
        self.env = child_env(settings, isolated=True) | self.overrides | {"PYTHONUNBUFFERED": "1"}
        load_settings(self.env, dotenv=None)  # a bad --set fails here, before anything runs
        self._run_cli(["migrate"])
        self._run_cli(["create-admin", ADMIN_EMAIL], stdin=ADMIN_PASSWORD + "\n")
        with (self.logs / "api.log").open("ab") as log:
            self.api = subprocess.Popen(self.api_host.argv([sys.executable, "-m", "notifq", "api"]), env=self.env,
                                        cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.registry.add("api", self.api.pid)
        for slot in self.slots.values():
            self.spawn(slot)

    def _run_cli(self, args: list[str], stdin: str | None = None) -> None:
        done = subprocess.run([sys.executable, "-m", "notifq", *args], env=self.env, cwd=self.root, input=stdin,
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"notifq {args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def spawn(self, slot: Slot) -> Incarnation:
        self.spawned += 1
        number = len(slot.incarnations) + 1
        calls = self.calls / f"{slot.name}-{number}.calls"
        log_path = self.logs / f"{slot.name}-{number}.log"
        env = self.env | {"NOTIFQ_CHAOS_CALLS": str(calls)}
        with log_path.open("ab") as log:
            slot.proc = subprocess.Popen(slot.host.argv([sys.executable, str(WORKER_SCRIPT)]), env=env, cwd=self.root,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # fmt: skip
        self.registry.add(f"worker {slot.name}", slot.proc.pid)
        slot.incarnations.append(Incarnation(slot.name, number, slot.proc.pid, calls, log_path, time.monotonic()))
        return slot.current

    def _ended(self, slot: Slot, how: str) -> None:
        assert slot.proc is not None
        slot.current.ended = time.monotonic()
        slot.current.how = how
        self.registry.remove(slot.proc.pid)
        slot.proc = None

    def supervise(self) -> list[str]:
        """Restart exited workers (as `notifq dev` or compose would): at once, or after a pause if one crash-loops."""
        notes = []
        now = time.monotonic()
        for slot in self.slots.values():
            if slot.held:
                continue
            if slot.proc is not None and slot.proc.poll() is not None:
                inc = slot.current
                self._ended(slot, f"exit {slot.proc.returncode}")
                notes.append(f"worker {slot.name} (pid {inc.pid}) exited ({inc.how}); restarting")
                slot.restart_at = now + (RESTART_BACKOFF if now - inc.started < CRASH_LOOP_SECONDS else 0.0)
            if slot.proc is None and now >= slot.restart_at:
                self.spawn(slot)
        return notes

    def kill(self, slot: Slot) -> tuple[Incarnation, Incarnation]:
        """SIGKILL the slot's worker and start its replacement at once; (killed, replacement)."""
        assert slot.proc is not None
        killed = slot.current
        slot.proc.kill()
        slot.proc.wait()
        self._ended(slot, "SIGKILL")
        return killed, self.spawn(slot)

    def terminate(self, slot: Slot, within: float) -> Incarnation:
        """SIGTERM the slot's worker and wait for it to drain and exit (SIGKILL after `within` seconds)."""
        assert slot.proc is not None
        stopped = slot.current
        slot.proc.terminate()
        try:
            code = slot.proc.wait(within)
            how = f"SIGTERM, exit {code}"
        except subprocess.TimeoutExpired:
            slot.proc.kill()
            slot.proc.wait()
            how = f"SIGTERM, SIGKILL after {within:g} s"
        self._ended(slot, how)
        return stopped

    def incarnations(self) -> list[Incarnation]:
        return [inc for slot in self.slots.values() for inc in slot.incarnations]

    def stop_workers(self, within: float) -> None:
        for slot in self.slots.values():
            slot.held = True
            if slot.proc is not None:
                slot.proc.terminate()
        for slot in self.slots.values():
            if slot.proc is not None:
                try:
                    code = slot.proc.wait(within)
                    self._ended(slot, f"SIGTERM, exit {code}")
                except subprocess.TimeoutExpired:
                    slot.proc.kill()
                    slot.proc.wait()
                    self._ended(slot, "SIGKILL at shutdown")

    def close(self) -> None:
        """Everything down, whatever state a fault left it in (each step on its own)."""
        with contextlib.suppress(Exception):
            self.stop_workers(10)
        if self.api is not None and self.api.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.api.pid, signal.SIGTERM)
            try:
                self.api.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.api.pid, signal.SIGKILL)
                self.api.wait(5)
        if self.api is not None:
            self.registry.remove(self.api.pid)
        with contextlib.suppress(Exception):
            self.valkey.stop()
        with contextlib.suppress(Exception):
            self.postgres.stop()

    def tail(self, name: str, lines: int = 20) -> str:
        return tail(self.logs / f"{name}.log", lines)
