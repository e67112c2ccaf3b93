"""A real HTTP API for tests that need a socket (browser, CLI): uvicorn in a thread (a pytest plugin).

The server lives for the session (start-up costs a second); it shares the session's
database and Redis, which the autouse `clean` fixture empties before every test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from notifq.api.app import create_app
from notifq.settings import Settings


@dataclass(frozen=True)
class LiveApi:
    url: str
    settings: Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, alive: Callable[[], bool], within: float = 60) -> None:
    """Poll `url` until it answers 200; fail early if the server died (`alive` turns false)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive() or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not become ready")
        time.sleep(0.05)


@contextlib.contextmanager
def serving(settings: Settings, name: str = "live-api") -> Iterator[LiveApi]:
    """The app built from `settings` served on a free 127.0.0.1 port by uvicorn in its own thread and loop."""
    port = _free_port()
    settings = settings.with_(host="127.0.0.1", port=port)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None,
                            access_log=False, lifespan="on", timeout_graceful_shutdown=2)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(f"{url}/health", thread.is_alive, within=30)
    try:
        yield LiveApi(url, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def live_api(base_settings: Settings) -> Iterator[LiveApi]:
    """The app served on 127.0.0.1 for the session."""
    with serving(base_settings) as api:
        yield api
