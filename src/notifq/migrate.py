"""Run Alembic programmatically, so `notifq migrate` knows the embedded server's URL."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

# A source checkout keeps migrations/ beside src/; an installed image keeps it in the working directory.
CANDIDATE_ROOTS = (Path.cwd(), Path(__file__).resolve().parents[2])


def project_root() -> Path:
    for root in CANDIDATE_ROOTS:
        if (root / "migrations" / "env.py").is_file():
            return root
    raise FileNotFoundError("migrations/ not found in the working directory or the source checkout")


def alembic_config(database_url: str) -> Config:
    root = project_root()
    ini = root / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["skip_logging"] = True
    return config


def upgrade_head(database_url: str) -> None:
    """Alembic's async env runs its own event loop, so from inside a loop it runs in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(database_url), "head")
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, alembic_config(database_url), "head").result()
