"""The chaos suite brings its own servers (scripts/chaos.py starts fresh PostgreSQL and Valkey per scenario)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def clean() -> None:
    """Replaces the suite-wide `clean` (tests/conftest.py): nothing here uses the shared servers it empties, so
    `pytest tests/chaos` starts none."""
