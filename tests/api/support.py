"""Helpers shared by the API tests: clients with other settings, error-envelope and nothing-written checks."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from notifq.api.app import create_app
from notifq.auth import issue_token
from notifq.settings import Settings

ERROR_KEYS = {"code", "message", "details"}
CLIENT_ADDRESS = "203.0.113.7"  # what conftest's `client` fixture reports as the peer


@asynccontextmanager
async def app_and_client(
    settings: Settings, address: str = CLIENT_ADDRESS, *, raise_app_exceptions: bool = True
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """A fresh app built from `settings`, lifespan included, and an httpx client over it.

    The app is yielded too, for tests that reach into `app.state` (swap an engine, break Redis).
    """
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(address, 5555), raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifq.test") as c:
            yield app, c


@asynccontextmanager
async def app_client(settings: Settings, address: str = CLIENT_ADDRESS) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over a fresh app built from `settings` (as conftest's `client`)."""
    async with app_and_client(settings, address) as (_, c):
        yield c


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has `status` and the `{"error": {code, message, details}}` envelope; returns the inner dict."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == ERROR_KEYS, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


async def row_counts(engine: AsyncEngine) -> tuple[int, int]:
    """(campaign rows, message rows)."""
    async with engine.connect() as conn:
        campaigns = (await conn.execute(text("SELECT count(*) FROM campaigns"))).scalar_one()
        messages = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one()
    return int(campaigns), int(messages)


async def assert_nothing_written(engine: AsyncEngine, redis: Redis, settings: Settings) -> None:
    assert await row_counts(engine) == (0, 0)
    assert await redis.zcard(settings.queue_name) == 0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stateless_token(settings: Settings, subject: uuid.UUID | None = None) -> str:
    """A valid token without logging in (tokens are stateless JWTs)."""
    sub = str(subject or uuid.uuid4())
    return issue_token(settings.jwt_secret, settings.jwt_issuer, sub, settings.jwt_ttl_seconds).token


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


async def create_campaign(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    """POST /campaigns and insist on a 202; returns the campaign JSON."""
    r = await client.post("/campaigns", json=body, headers=auth)
    assert r.status_code == 202, r.text
    data = r.json()
    assert isinstance(data, dict)
    return data
