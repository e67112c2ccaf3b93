"""HTTP handlers: parse, call the service, serialise. No SQL and no business rules here."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifq.api.openapi import openapi_spec
from notifq.api.requests import client_address, read_json, require_admin
from notifq.api.serializers import campaign_json, iso, message_json
from notifq.auth import LoginThrottle, issue_token, verify_password
from notifq.campaigns import CampaignService, parse_id
from notifq.db import admins_repo
from notifq.db.campaigns_repo import CAMPAIGN_STATUSES, MESSAGE_STATUSES
from notifq.errors import Unauthorized, ValidationError
from notifq.validation import check_storable, parse_campaign, parse_choice, parse_limit

MAX_LOGIN_BODY = 16 * 1024


def _service(request: Request) -> CampaignService:
    service: CampaignService = request.app.state.campaigns
    return service


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
    async with request.app.state.engine.connect() as conn:
        admin = await admins_repo.by_email(conn, email)
    ok = await asyncio.to_thread(verify_password, password, admin.password_hash if admin else None)
    if not ok or admin is None:
        await throttle.failed(email, address)
        raise Unauthorized("wrong email or password")
    await throttle.succeeded(email, address)
    issued = issue_token(settings.jwt_secret, settings.jwt_issuer, str(admin.id), settings.jwt_ttl_seconds)
    return JSONResponse({"token": issued.token, "tokenType": "Bearer", "expiresAt": iso(issued.expires_at)})


async def create_campaign(request: Request) -> Response:
    admin_id = require_admin(request)
    settings = request.app.state.settings
    body = await read_json(request, settings.max_body_bytes)
    campaign_request = parse_campaign(body, settings.max_campaign_size)
    campaign = await _service(request).create(campaign_request, admin_id)
    return JSONResponse(campaign_json(campaign), 202, headers={"Location": f"/campaigns/{campaign.id}"})


async def get_campaign(request: Request) -> Response:
    require_admin(request)
    campaign = await _service(request).get(parse_id(request.path_params["campaign_id"]))
    return JSONResponse(campaign_json(campaign))


async def list_campaigns(request: Request) -> Response:
    require_admin(request)
    q = request.query_params
    rows, cursor = await _service(request).list_page(
        limit=parse_limit(q.get("limit")),
        status=parse_choice(q.get("status"), CAMPAIGN_STATUSES, "status"),
        cursor=q.get("cursor") or None,
    )
    return JSONResponse({"items": [campaign_json(r) for r in rows], "nextCursor": cursor})


async def list_messages(request: Request) -> Response:
    require_admin(request)
    q = request.query_params
    rows, cursor = await _service(request).messages(
        parse_id(request.path_params["campaign_id"]),
        status=parse_choice(q.get("status"), MESSAGE_STATUSES, "status"),
        cursor=q.get("cursor") or None,
        limit=parse_limit(q.get("limit"), default=100, maximum=1000),
    )
    return JSONResponse({"items": [message_json(r) for r in rows], "nextCursor": cursor})


async def retry_campaign(request: Request) -> Response:
    require_admin(request)
    count = await _service(request).retry(parse_id(request.path_params["campaign_id"]))
    return JSONResponse({"requeued": count}, 202)


async def cancel_campaign(request: Request) -> Response:
    require_admin(request)
    campaign = await _service(request).cancel(parse_id(request.path_params["campaign_id"]))
    return JSONResponse(campaign_json(campaign), 202)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    checks: dict[str, Any] = {}

    async def check_db() -> None:
        async with request.app.state.engine.connect() as conn:
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
    Route("/campaigns", create_campaign, methods=["POST"]),
    Route("/campaigns", list_campaigns, methods=["GET"]),
    Route("/campaigns/{campaign_id}", get_campaign, methods=["GET"]),
    Route("/campaigns/{campaign_id}/messages", list_messages, methods=["GET"]),
    Route("/campaigns/{campaign_id}/retry", retry_campaign, methods=["POST"]),
    Route("/campaigns/{campaign_id}/cancel", cancel_campaign, methods=["POST"]),
]
