"""Token fixtures without bcrypt work (a pytest plugin of tests/conftest.py): an admin row and its bearer headers."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from tests.api.support import bearer, stateless_token


@pytest.fixture
async def fast_admin(engine: AsyncEngine) -> uuid.UUID:
    """An admin row inserted directly (no bcrypt work), for tests that need a token but never log in."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text("INSERT INTO admins (email, password_hash) VALUES ('fast@notifq.dev', '!') RETURNING id")
        )
        admin: uuid.UUID = result.scalar_one()
    return admin


@pytest.fixture
def fast_auth(fast_admin: uuid.UUID, settings: Settings) -> dict[str, str]:
    """Bearer headers for `fast_admin`, signed like a login token."""
    return bearer(stateless_token(settings, fast_admin))
