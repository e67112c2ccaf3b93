"""The chaos suite's bookkeeping of processes: run directories, the pids a run started, and what a crashed run left.

Processes run in their own sessions; every pid the suite starts is written to
`/tmp/notifq-chaos/<run>/pids.json` with its start time, and `end_leftovers` ends those of an
earlier run whose suite process is gone (killed before its `finally`), and only those (same pid,
same start time).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

RUNS_DIR = Path(tempfile.gettempdir()) / "notifq-chaos"


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): with the pid, its identity. None if it
    is gone (or a zombie: dead, not yet reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


class Registry:
    """The pids this run started (with their start times), on disk, for the next run if this one is killed."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "pids.json"
        self.entries: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()  # faults stop workers in threads while the supervisor starts others
        self.kept = False
        with self._lock:
            self._write()

    def add(self, name: str, pid: int, *, tree: bool = False) -> None:
        with self._lock:
            self.entries[str(pid)] = {"name": name, "ticks": start_ticks(pid), "tree": tree}
            self._write()

    def remove(self, pid: int) -> None:
        with self._lock:
            if self.entries.pop(str(pid), None) is not None:
                self._write()

    def keep(self) -> None:
        """The run's directory stays (its logs are wanted); a later run ends its processes but keeps the files."""
        with self._lock:
            self.kept = True
            self._write()

    def _write(self) -> None:
        me = {"pid": os.getpid(), "ticks": start_ticks(os.getpid())}
        self.path.write_text(json.dumps({"owner": me, "processes": self.entries, "kept": self.kept}))


def live_runs() -> list[int]:
    """The suite processes of other runs still going (their network namespaces must be left alone)."""
    pids = []
    for state_file in RUNS_DIR.glob("*/pids.json") if RUNS_DIR.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            owner = json.loads(state_file.read_text())["owner"]
            if owner["pid"] != os.getpid() and start_ticks(int(owner["pid"])) == owner["ticks"]:
                pids.append(int(owner["pid"]))
    return pids


def end_leftovers() -> list[str]:
    """End the processes of earlier runs whose suite process is gone, and remove their directories."""
    ended: list[str] = []
    if not RUNS_DIR.is_dir():
        return ended
    for run in RUNS_DIR.iterdir():
        try:
            state = json.loads((run / "pids.json").read_text())
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict):
            owner = state.get("owner", {})
            ticks = owner.get("ticks")
            if ticks is not None and start_ticks(int(owner.get("pid", 0))) == ticks:
                continue  # that run is still going
            for pid_text, entry in state.get("processes", {}).items():
                pid = int(pid_text)
                if entry.get("ticks") is None or start_ticks(pid) != entry["ticks"]:
                    continue  # gone, or the pid now belongs to another process
                if entry.get("tree"):  # PostgreSQL's children, then the postmaster; stopped ones (SIGSTOP) die too
                    kill_tree(pid, signal.SIGKILL)
                else:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)  # its own session: the API's processes with it
                ended.append(f"{entry.get('name')} (pid {pid})")
        if not (isinstance(state, dict) and state.get("kept")):
            shutil.rmtree(run, ignore_errors=True)
    return ended


def new_run_dir() -> Path:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    RUNS_DIR.chmod(0o755)  # PostgreSQL runs as another user and must reach its data directory
    run = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%dT%H%M%S-"), dir=RUNS_DIR))
    run.chmod(0o755)
    return run


def tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def descendants(root: int) -> list[int]:
    """The process and every process below it (PostgreSQL's children each start a session of their own, so its
    process group holds the postmaster alone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def kill_tree(root: int, sig: int) -> list[int]:
    """Signal `root` first (a stopped postmaster forks no new child), then everything below it; the pids."""
    before = descendants(root)  # a killed postmaster's children are soon reparented: listed before
    pids = [root] if start_ticks(root) is not None else []
    with contextlib.suppress(ProcessLookupError):
        os.kill(root, sig)
    for pid in dict.fromkeys([*before[1:], *descendants(root)[1:]]):  # and any forked meanwhile
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            pids.append(pid)
    return pids
