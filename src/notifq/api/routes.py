"""The route table: every operation the API serves, from which both the app and /openapi.json are built."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from notifq.api import (
    api_key_routes,
    auth_routes,
    campaign_routes,
    dashboard_routes,
    inbox_routes,
    notification_routes,
    ops_routes,
    outbound_webhook_routes,
    stream_routes,
    subscriber_routes,
    suppression_routes,
    unsubscribe_routes,
    webhook_routes,
)
from notifq.api.contract import Operation, Reply, json_reply, routes
from notifq.api.models.ops import Health, LoginRequest, LoginResponse, Readiness
from notifq.vocabulary import Scope


async def health(request: Request) -> Response:
    return json_reply(Health(status="ok"))


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
    body = Readiness.model_validate({"status": "ready" if healthy else "unavailable", "checks": checks})
    return json_reply(body, 200 if healthy else 503)


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


AUTH = [
    Operation("POST", "/auth/login", auth_routes.login, "login", "Exchange an admin's email and password for a token",
              "auth", {200: Reply("Logged in.", LoginResponse),
                       401: Reply("Wrong email or password (`unauthorized`).", "Error", headers=("WWW-Authenticate",)),
                       429: Reply("Too many failed logins for this account or address (`too_many_attempts`, details "
                                  '`{"retryAfterSeconds": N}`).', "Error", headers=("Retry-After",))},
              description="Failed logins are counted per account and per client address; after "
              "`NOTIFQ_LOGIN_MAX_FAILURES` failures further attempts get a 429 for `NOTIFQ_LOGIN_LOCKOUT_SECONDS`. "
              f"The body is limited to {auth_routes.MAX_LOGIN_BODY} bytes.",
              body=LoginRequest, public=True, errors=("ValidationFailed", "PayloadTooLarge", "ServiceUnavailable")),
    Operation("POST", "/auth/logout", auth_routes.logout, "logout", "Revoke the presented token", "auth",
              {204: Reply("Revoked: the token gets a 401 from now on.")},
              description="No request body. An API key (with the `admin` scope) revokes itself, as DELETE "
              "/api-keys/{api_key_id} would.",
              errors=("Unauthorized", "ServiceUnavailable"), scope=Scope.ADMIN),
]  # fmt: skip
OPS = [
    Operation("GET", "/health", health, "health", "Liveness: the process answers", "operations",
              {200: Reply("Alive.", Health)}, public=True),
    Operation("GET", "/ready", ready, "ready", "Readiness: PostgreSQL and Redis both answer", "operations",
              {200: Reply("Ready.", Readiness), 503: Reply("PostgreSQL or Redis does not answer.", Readiness)},
              public=True),
    Operation("GET", "/openapi.json", openapi, "getOpenApi", "This OpenAPI 3.1 document", "operations",
              {200: Reply("The document.", dict[str, Any])}, public=True),
]  # fmt: skip

OPERATIONS: list[Operation] = [
    *OPS,
    *AUTH,
    *campaign_routes.OPERATIONS,
    *notification_routes.OPERATIONS,
    *subscriber_routes.OPERATIONS,
    *suppression_routes.OPERATIONS,
    *webhook_routes.OPERATIONS,
    *outbound_webhook_routes.OPERATIONS,
    *api_key_routes.OPERATIONS,
    *unsubscribe_routes.OPERATIONS,
    *inbox_routes.OPERATIONS,
    *stream_routes.OPERATIONS,
    *ops_routes.OPERATIONS,
    *dashboard_routes.OPERATIONS,
]
ROUTES: list[BaseRoute] = [*routes(OPERATIONS), *inbox_routes.MOUNTS, *dashboard_routes.MOUNTS]
