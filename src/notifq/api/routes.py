"""Login, health, readiness and the OpenAPI document; the resource routes live beside this module."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifq.api import campaign_routes, dashboard_routes, notification_routes, ops_routes, stream_routes
from notifq.api.openapi import openapi_spec
from notifq.api.requests import client_address, read_json
from notifq.api.serializers import iso
from notifq.auth import LoginThrottle, issue_token, verify_password
from notifq.db import admins_repo
from notifq.errors import Unauthorized, ValidationError
from notifq.validation import check_storable

MAX_LOGIN_BODY = 16 * 1024
log = logging.getLogger("notifq.api")


async def login(request: Request) -> Response:
    body = await read_json(request, MAX_LOGIN_BODY)
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    email, password = body.get("email"), body.get("password")
    for field, value in (("email", email), ("password", password)):
        if not isinstance(value, str) or not value:
            raise ValidationError(f"`{field}` is required and must be a string", {"field": field})
        check_storable(value, field)
    assert isinstance(email, str) and isinstance(password, str)
    settings = request.app.state.settings
    throttle: LoginThrottle = request.app.state.login_throttle
    address = client_address(request)
    await throttle.check(email, address)
    async with request.app.state.read_engine.connect() as conn:
        admin = await admins_repo.by_email(conn, email)
    ok = await asyncio.to_thread(verify_password, password, admin.password_hash if admin else None)
    if not ok or admin is None:
        await throttle.failed(email, address)
        log.warning("login failed for %r from %s", email[:100], address)
        raise Unauthorized("wrong email or password")
    await throttle.succeeded(email, address)
    log.info("admin %s logged in from %s", email, address, extra={"admin_id": admin.id})
    issued = issue_token(settings.jwt_secret, settings.jwt_issuer, str(admin.id), settings.jwt_ttl_seconds)
    return JSONResponse({"token": issued.token, "tokenType": "Bearer", "expiresAt": iso(issued.expires_at)})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    checks: dict[str, Any] = {}

    async def check_db() -> None:
        async with request.app.state.probe_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    for name, probe in (("postgres", check_db), ("redis", request.app.state.redis.ping)):
        try:
            await asyncio.wait_for(probe(), timeout=2)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if healthy else "unavailable", "checks": checks}, 200 if healthy else 503)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_spec())


ROUTES = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/auth/login", login, methods=["POST"]),
    *campaign_routes.ROUTES,
    *notification_routes.ROUTES,
    *stream_routes.ROUTES,
    *ops_routes.ROUTES,
    *dashboard_routes.ROUTES,
]
