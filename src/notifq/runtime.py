"""Resolving where the servers are, for every entry point (CLI, dev supervisor, tests)."""

from __future__ import annotations

import secrets
from pathlib import Path

from notifq.embedded import running_urls
from notifq.errors import ConfigError
from notifq.settings import Settings

JWT_SECRET_FILE = "jwt_secret"


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
