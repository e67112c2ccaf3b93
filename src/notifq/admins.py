"""Admins: creating them (CLI, `make run`), changing a password, deleting one.

A new password or a deletion revokes every token of that admin: API processes refuse
them within `auth.REVOCATION_REFRESH_SECONDS` (see `auth.AdminSessions`).
"""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.addresses import is_email
from notifq.auth import hash_password, verify_password
from notifq.db import admins_repo
from notifq.errors import NotFound

DEFAULT_ADMIN = "admin@notifq.dev"


async def set_admin(engine: AsyncEngine, email: str, password: str) -> None:
    """Create the admin, or give it a new password (which revokes its tokens)."""
    if not is_email(email):
        raise ValueError(f"not an email address: {email!r}")
    password_hash = await asyncio.to_thread(hash_password, password)
    async with engine.begin() as conn:
        await admins_repo.upsert(conn, email, password_hash)


async def set_password(engine: AsyncEngine, email: str, password: str) -> None:
    """An existing admin's new password; every token it had is revoked. NotFound if there is no such admin."""
    password_hash = await asyncio.to_thread(hash_password, password)
    async with engine.begin() as conn:
        if not await admins_repo.set_password(conn, email, password_hash):
            raise NotFound(f"no admin {email!r}")


async def delete_admin(engine: AsyncEngine, email: str) -> None:
    """Delete the admin; its tokens are refused, its campaigns stay. NotFound if there is no such admin."""
    async with engine.begin() as conn:
        if not await admins_repo.delete(conn, email):
            raise NotFound(f"no admin {email!r}")


async def ensure_default_admin(engine: AsyncEngine, password: str | None) -> str | None:
    """Make sure admin@notifq.dev exists; returns a generated password when one was made.

    A configured password that is already the admin's changes nothing, so restarting
    `make run` does not log the dashboard out.
    """
    async with engine.connect() as conn:
        admin = await admins_repo.by_email(conn, DEFAULT_ADMIN)
    if password:
        if admin is None or not await asyncio.to_thread(_is_password, password, admin.password_hash):
            await set_admin(engine, DEFAULT_ADMIN, password)
        return None
    if admin is not None:
        return None
    generated = secrets.token_urlsafe(18)
    await set_admin(engine, DEFAULT_ADMIN, generated)
    return generated


def _is_password(password: str, password_hash: str) -> bool:
    try:
        return verify_password(password, password_hash)
    except ValueError:  # not a bcrypt hash (a row written by hand): not this password
        return False
