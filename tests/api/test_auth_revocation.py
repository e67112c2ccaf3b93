"""Revocable sessions: logout, a new password and a deleted admin end tokens on every authenticated route.

Each API process keeps a copy of what is revoked (`auth.AdminSessions`): the process that
handled a logout refuses the token at once, the others within `REVOCATION_REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from notifq.admins import delete_admin, ensure_default_admin, set_admin, set_password
from notifq.auth import REVOCATION_REFRESH_SECONDS
from notifq.db import admins_repo
from notifq.errors import NotFound
from notifq.settings import Settings
from tests.api.support import app_and_client, assert_error, bearer
from tests.api.test_auth import PUBLIC_PATHS, SUBSCRIBER_PATHS, login
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.harness import worker_env
from tests.live import LiveApi

NEW_PASSWORD = "a brand new long password"
WINDOW = REVOCATION_REFRESH_SECONDS + 1.0  # the documented bound, plus slack for a loaded machine
STREAMS = ("/events/campaigns",)  # answer forever with a good token: left out of the "still works" sweep


def authenticated_routes(app: Starlette) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves that needs a token, path parameters filled in."""
    routes: list[tuple[str, str]] = []
    for route in app.router.routes:
        methods = getattr(route, "methods", None)
        path = getattr(route, "path", "")
        if not methods or path in PUBLIC_PATHS or path in SUBSCRIBER_PATHS:  # admin tokens only
            continue
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        routes.extend((method, concrete) for method in sorted(methods - {"HEAD"}))
    assert ("POST", "/auth/logout") in routes and ("POST", "/notifications") in routes and len(routes) > 15
    return routes


async def _request(client: httpx.AsyncClient, method: str, path: str, token: str) -> httpx.Response:
    body: dict[str, Any] | None = {} if method == "POST" else None
    return await client.request(method, path, json=body, headers=bearer(token))


async def assert_refused_everywhere(app: Starlette, client: httpx.AsyncClient, token: str) -> None:
    for method, path in authenticated_routes(app):
        assert_error(await _request(client, method, path, token), 401, "unauthorized")


async def assert_accepted_everywhere(app: Starlette, client: httpx.AsyncClient, token: str) -> None:
    """Not a 401 anywhere (404s and 422s are fine: the bodies and ids are made up); logout is left out."""
    for method, path in authenticated_routes(app):
        if path in STREAMS or path == "/auth/logout":
            continue
        r = await _request(client, method, path, token)
        assert r.status_code != 401, (method, path, r.text)


async def _event_names(response: httpx.Response) -> AsyncIterator[str]:
    """The names of the server-sent events on `response`, as they arrive."""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            yield line[len("event: ") :]


async def _token(client: httpx.AsyncClient, password: str = ADMIN_PASSWORD) -> str:
    r = await login(client, ADMIN_EMAIL, password)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


async def _refused_within(client: httpx.AsyncClient, token: str, seconds: float) -> float:
    """Seconds until `token` gets a 401 on GET /campaigns; fails past `seconds`."""
    started = time.monotonic()
    while (await client.get("/campaigns", headers=bearer(token))).status_code != 401:
        assert time.monotonic() - started < seconds, f"still accepted after {seconds} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _cli(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "notifq", *args], env=worker_env(settings),
                                   input=stdin, capture_output=True, text=True, timeout=60)  # fmt: skip


class TestLogout:
    """Defect: there was no logout at all; a token lived its whole 24 h whatever happened."""

    async def test_logout_revokes_that_token_on_every_route_and_only_it(
        self, settings: Settings, admin_id: uuid.UUID
    ) -> None:
        async with app_and_client(settings) as (app, client):
            revoked, other = await _token(client), await _token(client)
            await assert_accepted_everywhere(app, client, revoked)
            r = await client.post("/auth/logout", headers=bearer(revoked))
            assert r.status_code == 204, r.text
            assert r.content == b""
            await assert_refused_everywhere(app, client, revoked)  # at once on this process: no waiting
            await assert_accepted_everywhere(app, client, other)

    async def test_logout_needs_a_valid_token(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.post("/auth/logout"), 401, "unauthorized")
        assert_error(await client.post("/auth/logout", headers=bearer("not.a.jwt")), 401, "unauthorized")

    async def test_logout_is_recorded_in_postgresql_and_other_processes_follow(
        self, settings: Settings, engine: AsyncEngine, admin_id: uuid.UUID
    ) -> None:
        """Another API process refuses the token within the documented window, and a new process at once."""
        async with app_and_client(settings) as (_, here), app_and_client(settings) as (_, elsewhere):
            token = await _token(here)
            assert (await elsewhere.get("/campaigns", headers=bearer(token))).status_code == 200  # its copy is loaded
            assert (await here.post("/auth/logout", headers=bearer(token))).status_code == 204
            assert_error(await here.get("/campaigns", headers=bearer(token)), 401, "unauthorized")
            assert await _refused_within(elsewhere, token, WINDOW) <= WINDOW
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT admin_id, expires_at > now() AS live FROM revoked_tokens"))).all()
        assert [(r.admin_id, r.live) for r in rows] == [(admin_id, True)]
        async with app_and_client(settings) as (_, fresh):
            assert_error(await fresh.get("/campaigns", headers=bearer(token)), 401, "unauthorized")

    async def test_a_reload_that_read_before_the_logout_keeps_it(
        self, settings: Settings, admin_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A due reload whose read of revoked_tokens predates this process's logout must not forget it."""
        async with app_and_client(settings) as (app, client):
            token = await _token(client)
            assert (await client.post("/auth/logout", headers=bearer(token))).status_code == 204

            async def read_before_the_logout(conn: Any) -> set[str]:
                return set()

            monkeypatch.setattr(admins_repo, "revoked", read_before_the_logout)
            app.state.sessions._loaded_at = -math.inf  # the copy is due
            assert_error(await client.get("/campaigns", headers=bearer(token)), 401, "unauthorized")

    async def test_expired_revocations_are_pruned(
        self, settings: Settings, engine: AsyncEngine, admin_id: uuid.UUID
    ) -> None:
        """revoked_tokens only holds tokens that could still be shown: a logout prunes the expired ones."""
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO revoked_tokens (jti, admin_id, expires_at) "
                                    "VALUES ('old', :a, now() - interval '1 second')"), {"a": admin_id})  # fmt: skip
        async with app_and_client(settings) as (_, client):
            assert (await client.post("/auth/logout", headers=bearer(await _token(client)))).status_code == 204
        async with engine.connect() as conn:
            jtis = (await conn.execute(text("SELECT jti FROM revoked_tokens"))).scalars().all()
        assert len(jtis) == 1 and jtis[0] != "old"

    async def test_an_open_stream_ends_when_its_token_is_logged_out(
        self, live_api: LiveApi, admin_id: uuid.UUID
    ) -> None:
        """The dashboard's event streams check the token on every poll, revocation included."""
        async with httpx.AsyncClient(base_url=live_api.url, timeout=30) as api:
            token = await _token(api)
            async with api.stream("GET", "/events/campaigns", headers=bearer(token)) as response:
                assert response.status_code == 200
                events = _event_names(response)
                assert await anext(events) == "campaigns"
                assert (await api.post("/auth/logout", headers=bearer(token))).status_code == 204
                started = time.monotonic()
                rest = [event async for event in events]  # returns once the server ends the stream
            assert time.monotonic() - started < 5, rest


class TestNewPassword:
    """Defect: changing a password left every token issued before it working."""

    async def test_set_password_command_revokes_every_token_of_that_admin(
        self, settings: Settings, admin_id: uuid.UUID, engine: AsyncEngine
    ) -> None:
        await set_admin(engine, "other@notifq.dev", "the other admin's password")
        async with app_and_client(settings) as (app, client):
            tokens = [await _token(client), await _token(client)]
            r = await login(client, "other@notifq.dev", "the other admin's password")
            other_admin = str(r.json()["token"])
            done = await _cli(settings, "set-password", ADMIN_EMAIL.upper(), stdin=NEW_PASSWORD + "\n")
            assert done.returncode == 0, done.stderr
            assert "revoked" in done.stdout and NEW_PASSWORD not in done.stdout + done.stderr
            for token in tokens:
                await _refused_within(client, token, WINDOW)
                await assert_refused_everywhere(app, client, token)
            await assert_accepted_everywhere(app, client, other_admin)
            assert_error(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD), 401, "unauthorized")
            await assert_accepted_everywhere(app, client, await _token(client, NEW_PASSWORD))

    async def test_set_password_of_unknown_admin_fails_and_creates_nobody(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        done = await _cli(settings, "set-password", "nobody@notifq.dev", stdin=NEW_PASSWORD + "\n")
        assert done.returncode != 0 and "no admin" in done.stderr
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM admins"))).scalar_one() == 0
        with pytest.raises(NotFound):
            await set_password(engine, "nobody@notifq.dev", NEW_PASSWORD)

    async def test_create_admin_on_an_existing_admin_revokes_too(
        self, settings: Settings, admin_id: uuid.UUID, engine: AsyncEngine
    ) -> None:
        """`create-admin` resets a password when the admin exists: the same revocation as set-password."""
        async with app_and_client(settings) as (_, client):
            token = await _token(client)
        await set_admin(engine, ADMIN_EMAIL, NEW_PASSWORD)
        async with app_and_client(settings) as (_, client):
            assert_error(await client.get("/campaigns", headers=bearer(token)), 401, "unauthorized")

    async def test_restarting_with_the_same_default_password_keeps_tokens(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        """`make run` re-applies NOTIFQ_ADMIN_PASSWORD at every start: unchanged, it must not log anyone out."""
        await ensure_default_admin(engine, ADMIN_PASSWORD)
        async with app_and_client(settings) as (_, client):
            token = await _token(client)
            await ensure_default_admin(engine, ADMIN_PASSWORD)
        async with app_and_client(settings) as (_, client):
            assert (await client.get("/campaigns", headers=bearer(token))).status_code == 200
        await ensure_default_admin(engine, NEW_PASSWORD)
        async with app_and_client(settings) as (_, client):
            assert_error(await client.get("/campaigns", headers=bearer(token)), 401, "unauthorized")


class TestDeletedAdmin:
    """Defect: a deleted admin's token kept working on every endpoint but POST /campaigns."""

    async def test_delete_admin_command_revokes_every_token_everywhere(
        self, settings: Settings, admin_id: uuid.UUID, engine: AsyncEngine
    ) -> None:
        async with app_and_client(settings) as (app, client):
            tokens = [await _token(client), await _token(client)]
            created = await client.post("/campaigns", json={"name": "Kept", "recipients": ["a@example.com"]},
                                        headers=bearer(tokens[0]))  # fmt: skip
            assert created.status_code == 202, created.text
            done = await _cli(settings, "delete-admin", ADMIN_EMAIL)
            assert done.returncode == 0, done.stderr
            for token in tokens:
                await _refused_within(client, token, WINDOW)
                await assert_refused_everywhere(app, client, token)
            assert_error(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD), 401, "unauthorized")
        async with engine.connect() as conn:
            kept = (await conn.execute(text("SELECT created_by FROM campaigns"))).scalars().all()
        assert kept == [None]  # the campaign stays, without its author

    async def test_delete_admin_through_the_function_and_unknown_admins(
        self, settings: Settings, admin_id: uuid.UUID, engine: AsyncEngine
    ) -> None:
        async with app_and_client(settings) as (_, client):
            token = await _token(client)
        await delete_admin(engine, ADMIN_EMAIL)
        async with app_and_client(settings) as (app, client):
            await assert_refused_everywhere(app, client, token)
        done = await _cli(settings, "delete-admin", ADMIN_EMAIL)
        assert done.returncode != 0 and "no admin" in done.stderr
