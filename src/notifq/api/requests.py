"""Reading request bodies with a size cap (Starlette has none) and the bearer token."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request

from notifq.auth import AdminSessions, TokenClaims, verify_subscriber_token, verify_token
from notifq.errors import PayloadTooLarge, Unauthorized, ValidationError


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes", {"maxBytes": limit})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes", {"maxBytes": limit})
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ValidationError("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError("malformed JSON", {"reason": str(exc)[:200] or type(exc).__name__}) from None


def bearer_token(request: Request) -> str:
    """The token of `Authorization: Bearer <jwt>`; no such header is a 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


def bearer_claims(request: Request) -> TokenClaims:
    """The verified claims of an admin's bearer token (signature and expiry only); else a 401."""
    settings = request.app.state.settings
    return verify_token(settings.jwt_secret, settings.jwt_issuer, bearer_token(request))


async def require_admin(request: Request) -> uuid.UUID:
    """The admin id of a valid, unrevoked bearer token; anything else is a 401.

    Revocation (logout, a new password, a deleted admin) is checked against this process's
    copy (`AdminSessions`), so a request costs no PostgreSQL round trip.
    """
    claims = bearer_claims(request)
    sessions: AdminSessions = request.app.state.sessions
    await sessions.check(claims)
    return claims.admin_id


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def require_subscriber(request: Request) -> str:
    """The subscriber id of a valid subscriber token (`POST /subscribers/{id}/token`) whose subscriber
    still exists; an admin token, a bad one or an erased subscriber's is a 401."""
    settings = request.app.state.settings
    claims = verify_subscriber_token(settings.jwt_secret, settings.jwt_issuer, bearer_token(request))
    if not await request.app.state.inbox.exists(claims.subscriber_id, claims.key):
        raise Unauthorized("this subscriber no longer exists")
    return claims.subscriber_id
