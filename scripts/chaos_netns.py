"""The partition scenario's hosts: network namespaces on one bridge, created and removed by the suite itself.

    root namespace: bridge nqchaos-br, 10.213.0.1/24 (the suite itself: it creates the campaign and checks the rows)
      ├─ veth nqchaos-db ── eth0 10.213.0.10 in netns nqchaos-db  (PostgreSQL and Valkey)
      ├─ veth nqchaos-api ─ eth0 10.213.0.20 in netns nqchaos-api (notifq api)
      ├─ veth nqchaos-w1 ── eth0 10.213.0.31 in netns nqchaos-w1  (a worker)
      └─ veth nqchaos-w2 ── eth0 10.213.0.32 in netns nqchaos-w2  (a worker)

A host is cut off by setting its veth's bridge end down (`ip link set nqchaos-w1 down`): its
packets go nowhere and nothing answers, not even a reset, as when a host's network dies; the
processes on it keep running. Healing sets the link up again; the connections that waited are
still there. Everything is named `nqchaos-*`, so `remove_leftovers` can end a crashed run's
namespaces (and the processes still in them) before a new run starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping

from chaos_servers import Host

PREFIX = "nqchaos"
BRIDGE = f"{PREFIX}-br"
SUBNET = "10.213.0"
SUBNET_CIDR = f"{SUBNET}.0/24"
GATEWAY = f"{SUBNET}.1"
ADDRESSES = {"db": 10, "api": 20, "w1": 31, "w2": 32}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why the partition scenario cannot run here, or None."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (run the suite as root)"
    probe = f"{PREFIX}-probe"
    added = _ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _namespaces() -> list[str]:
    listed = _ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in listed if line.startswith(f"{PREFIX}-")]


def remove_leftovers() -> list[str]:
    """Remove every `nqchaos-*` namespace (SIGKILLing what still runs in it) and the bridge; what was removed."""
    removed = []
    for ns in _namespaces():
        for pid in _ip("netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)  # stopped ones (SIGSTOP) die too
        _ip("netns", "del", ns, check=False)
        removed.append(f"netns {ns}")
    if _ip("link", "show", BRIDGE, check=False).returncode == 0:
        _ip("link", "del", BRIDGE, check=False)
        removed.append(f"bridge {BRIDGE}")
    for name in ADDRESSES:  # a veth whose namespace vanished goes with it; this is for one left half-made
        if _ip("link", "show", f"{PREFIX}-{name}", check=False).returncode == 0:
            _ip("link", "del", f"{PREFIX}-{name}", check=False)
            removed.append(f"link {PREFIX}-{name}")
    return removed


class Network:
    """The four hosts above; `up()` builds them, `down()` removes them (and what still runs in them)."""

    def __init__(self) -> None:
        self.hosts: Mapping[str, Host] = {
            name: Host(name, f"{SUBNET}.{last}", f"{PREFIX}-{name}") for name, last in ADDRESSES.items()
        }
        self.cut_hosts: set[str] = set()

    def up(self) -> None:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for name, host in self.hosts.items():
            assert host.netns is not None
            veth = f"{PREFIX}-{name}"
            _ip("netns", "add", host.netns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            _ip("link", "set", veth, "master", BRIDGE, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")

    def cut(self, name: str) -> None:
        _ip("link", "set", f"{PREFIX}-{name}", "down")
        self.cut_hosts.add(name)

    def heal(self, name: str) -> None:
        _ip("link", "set", f"{PREFIX}-{name}", "up")
        self.cut_hosts.discard(name)

    def down(self) -> list[str]:
        return remove_leftovers()
