"""Creating admins (CLI, `make run`)."""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.addresses import is_email
from notifq.auth import hash_password
from notifq.db import admins_repo

DEFAULT_ADMIN = "admin@notifq.dev"


async def set_admin(engine: AsyncEngine, email: str, password: str) -> None:
    if not is_email(email):
        raise ValueError(f"not an email address: {email!r}")
    password_hash = await asyncio.to_thread(hash_password, password)
    async with engine.begin() as conn:
        await admins_repo.upsert(conn, email, password_hash)


async def ensure_default_admin(engine: AsyncEngine, password: str | None) -> str | None:
    """Make sure admin@notifq.dev exists; returns a generated password when one was made."""
    if password:
        await set_admin(engine, DEFAULT_ADMIN, password)
        return None
    async with engine.connect() as conn:
        if await admins_repo.exists(conn, DEFAULT_ADMIN):
            return None
    generated = secrets.token_urlsafe(18)
    await set_admin(engine, DEFAULT_ADMIN, generated)
    return generated
