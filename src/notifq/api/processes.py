"""`notifq api` with several processes on one port: a supervisor of uvicorn processes, a socket each.

In its own module because it is process management, not request handling; the CLI starts it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING

from notifq.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from uvicorn.supervisors.multiprocess import Process as UvicornProcess

log = logging.getLogger("notifq.api")


def api_process_count(settings: Settings) -> int:
    """NOTIFQ_API_PROCESSES, or one per CPU this process may run on.

    The affinity mask rather than `os.cpu_count()`: a container limited with `--cpuset-cpus`, or
    a `taskset`, sees the CPUs it may use, not the host's (a CPU quota, `--cpus`, is not visible
    either way: set the variable there).
    """
    if settings.api_processes:
        return settings.api_processes
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on macOS
        return os.cpu_count() or 1


# SO_REUSEPORT spreads connections over the sockets of a group on Linux only (BSD and macOS hand
# them all to one socket): elsewhere the processes share one socket, as with uvicorn's supervisor.
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
SUPERVISOR_TICK_SECONDS = 0.5


class ApiSupervisor:
    """`notifq api`'s N processes on one port: uvicorn's processes, each on a listening socket of its own.

    Why not uvicorn's `Multiprocess`: it binds one socket that every process accepts from, and
    the first process the kernel wakes accepts every connection then pending (libuv's accept
    loop). Measured (2 processes, an httpx client with a pool of 32 connections opened at once):
    one process got 63 of 64 connections and did 2.38 s of the 2.41 s CPU of the load, the
    other sat idle. Here each process has its own socket, all bound to the port with
    SO_REUSEPORT, and the kernel spreads new connections over them by address hash, whatever
    the timing (the same load: 1.0 s and 1.6 s of CPU).

    What it keeps from uvicorn: its `Process` (a spawned interpreter running `uvicorn.Server`
    with the app's lifespan, answering a ping over a pipe) and uvicorn's behaviour around it. A
    process that exits or misses its ping (`timeout_worker_healthcheck`, 5 s) is killed and
    replaced on the same socket, where the connections that came meanwhile wait (this process
    holds every socket); one that fails before serving (STARTUP_FAILURE: its lifespan could
    not start) stops them all, and `run` returns that status. SIGINT or SIGTERM stop every
    process gracefully (SIGTERM: uvicorn's shutdown, then the lifespan's), SIGHUP replaces them
    one by one, each new one serving before the old one stops.

    A plain bind is tried first: one fails while anything listens on the port, so a second
    `notifq api` there refuses to start rather than silently take a share of the connections.
    """

    def __init__(self, config: uvicorn.Config, processes: int) -> None:
        self.config = config
        self.count = processes
        self.listeners: list[socket.socket] = []
        self.processes: list[UvicornProcess] = []
        self.signals: list[int] = []
        self.stop_signalled = threading.Event()  # set by the handler: a rolling replacement stops waiting at once
        self.stopping = False
        self.failed = False

    def run(self) -> int:
        from uvicorn.config import STARTUP_FAILURE

        try:
            self.listeners = _listeners(self.config.host, self.config.port, self.count)
        except OSError as exc:
            log.error("notifq api: cannot listen on %s:%d: %s", self.config.host, self.config.port, exc)
            return STARTUP_FAILURE
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        log.info("notifq api: %d processes on http://%s:%d (%s)", self.count, host, self.config.port,
                 "a socket each, SO_REUSEPORT" if REUSE_PORT else "one shared socket")  # fmt: skip
        self.processes = [self._start(slot) for slot in range(self.count)]
        while not self.stopping:
            self.stop_signalled.wait(SUPERVISOR_TICK_SECONDS)
            self._handle_signals()
            self._replace_dead()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join()
        for listener in self.listeners:
            listener.close()
        return STARTUP_FAILURE if self.failed else 0

    def _start(self, slot: int) -> UvicornProcess:
        from uvicorn.supervisors.multiprocess import Process

        process = Process(self.config, [self.listeners[slot % len(self.listeners)]])
        process.start()
        return process

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)
        if signum != signal.SIGHUP:
            self.stop_signalled.set()

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == signal.SIGHUP:
                log.info("notifq api: SIGHUP, replacing the processes one by one")
                self._replace_all()
            else:
                log.info("notifq api: %s, stopping the processes", signal.Signals(signum).name)
                self.stopping = True

    def _replace_dead(self) -> None:
        from uvicorn.config import STARTUP_FAILURE

        for slot, process in enumerate(self.processes):
            if self.stopping:
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # a process that stopped answering is hung: it goes too
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("notifq api: process %s failed to start; stopping", process.pid)
                self.failed = self.stopping = True
                return
            log.warning("notifq api: process %s ended (exit code %s); starting another", process.pid,
                        process.exitcode)  # fmt: skip
            self.processes[slot] = self._start(slot)

    def _replace_all(self) -> None:
        for slot, old in enumerate(self.processes):
            if self.stop_signalled.is_set():
                return
            new = self._start(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.stop_signalled):
                new.kill()
                new.join()
                if not self.stop_signalled.is_set():
                    log.error("notifq api: a new process was not ready in time; the old ones keep serving")
                return
            old.terminate()
            old.join()
            self.processes[slot] = new


def _listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """Bound, not listening yet (each process listens on its own): `count` sockets, or one off Linux."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        probe.bind((host, port))
    listeners: list[socket.socket] = []
    try:
        for _ in range(count if REUSE_PORT else 1):
            listener = socket.socket(family)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if REUSE_PORT:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners
