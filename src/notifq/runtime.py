"""Resolving where the servers are, for every entry point (CLI, dev supervisor, tests).

Also who owns a state directory: one `notifq dev` at a time holds `dev.lock` there
(`claim_stack`), and only the holder starts or stops that directory's embedded servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from notifq.embedded import running_urls
from notifq.errors import ConfigError
from notifq.settings import Settings

JWT_SECRET_FILE = "jwt_secret"
LOCK_FILE = "dev.lock"


def with_server_urls(settings: Settings) -> Settings:
    """Use DATABASE_URL / REDIS_URL when set, else the embedded servers a running `notifq dev` recorded."""
    if settings.database_url and settings.redis_url:
        return settings
    recorded = running_urls(settings.state_dir)
    if recorded is None:
        raise ConfigError(
            "DATABASE_URL and REDIS_URL are not set and no embedded servers are running: "
            "set them, or start the stack with `make run` (notifq dev)"
        )
    return settings.with_(
        database_url=settings.database_url or recorded.database_url,
        redis_url=settings.redis_url or recorded.redis_url,
    )


def dev_jwt_secret(settings: Settings) -> Settings:
    """Dev mode keeps a generated secret under the state dir so tokens survive restarts."""
    if settings.jwt_secret:
        return settings
    path = settings.state_dir / JWT_SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return settings.with_(jwt_secret=path.read_text().strip())


def state_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class RunningStack:
    """The `notifq dev` that holds a state directory, as its lock file describes it."""

    pid: int | None  # None: it holds the lock but has not written its details yet (it is starting)
    url: str | None


class StackClaim:
    """This process's hold on a state directory; the kernel drops it when the process ends, however it ends."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = -1


def claim_stack(state_dir: Path, url: str) -> StackClaim | RunningStack:
    """Take the state dir's lock for this process, or describe the live `notifq dev` that holds it.

    An flock rather than a pid file alone: a pid file outlives a killed process (and its pid may be
    reused), while the lock is held exactly as long as its owner lives. The pid and URL written into
    the file are for the message a second `notifq dev` prints. The descriptor is not inheritable
    (PEP 446), so the servers and children the owner starts never hold the lock after it exits.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with contextlib.closing(os.fdopen(fd)) as held:
            return _describe(held.read())
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "url": url}).encode())
    return StackClaim(fd)


def _describe(text: str) -> RunningStack:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return RunningStack(pid=None, url=None)
    pid, url = data.get("pid"), data.get("url")
    return RunningStack(pid=pid if isinstance(pid, int) else None, url=url if isinstance(url, str) else None)
