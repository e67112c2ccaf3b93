"""Login (email and password for a bearer token) and logout (that token revoked); routes.py describes both."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response

from notifq.api.contract import json_reply
from notifq.api.models.ops import LoginResponse
from notifq.api.requests import authenticate, bearer_claims, bearer_token, client_address, read_json
from notifq.api_keys import ApiKeys, is_api_key
from notifq.auth import AdminSessions, LoginThrottle, check_password_length, issue_token, verify_password
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
    check_password_length(password)  # a 422 before the attempt is counted
    settings = request.app.state.settings
    throttle: LoginThrottle = request.app.state.login_throttle
    address = client_address(request)
    await throttle.reserve(email, address)
    try:
        async with request.app.state.read_engine.connect() as conn:
            admin = await admins_repo.by_email(conn, email)
        ok = await asyncio.to_thread(verify_password, password, admin.password_hash if admin else None)
    except BaseException:
        await throttle.release(email, address)  # an outage is not a wrong password
        raise
    if not ok or admin is None:
        await throttle.failed(email, address)
        log.warning("login failed for %r from %s", email[:100], address)
        raise Unauthorized("wrong email or password")
    await throttle.succeeded(email, address)
    log.info("admin %s logged in from %s", email, address, extra={"admin_id": admin.id})
    issued = issue_token(settings.jwt_secret, settings.jwt_issuer, str(admin.id), settings.jwt_ttl_seconds,
                         generation=admin.token_generation)  # fmt: skip
    return json_reply(LoginResponse(token=issued.token, token_type="Bearer", expires_at=issued.expires_at))


async def logout(request: Request) -> Response:
    """Revokes the presented token (only that one): 204, then 401 wherever it is shown.

    An API key (with the `admin` scope the operation needs) revokes itself, as DELETE /api-keys/{id} would.
    """
    if is_api_key(bearer_token(request)):
        principal = await authenticate(request)
        assert principal.key is not None
        keys: ApiKeys = request.app.state.api_keys
        await keys.revoke(principal.key.id)
        log.info("API key %s revoked itself", principal.key.id, extra={"admin_id": principal.admin_id})
        return Response(status_code=204)
    claims = bearer_claims(request)
    sessions: AdminSessions = request.app.state.sessions
    await sessions.check(claims)
    await sessions.revoke(claims)
    log.info("admin logged out", extra={"admin_id": claims.admin_id})
    return Response(status_code=204)
