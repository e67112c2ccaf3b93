"""Reading request bodies with a size cap (Starlette has none) and the bearer token (an admin's or an API key)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from notifq.api.contract import REQUIRED_SCOPE
from notifq.api_keys import ActiveKey, ApiKeys, is_api_key
from notifq.auth import AdminSessions, TokenClaims, verify_subscriber_token, verify_token
from notifq.errors import Forbidden, PayloadTooLarge, Unauthorized, ValidationError
from notifq.logs import API_KEY_ID
from notifq.vocabulary import Scope


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
    """The token of `Authorization: Bearer <jwt or API key>`; no such header is a 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


def bearer_claims(request: Request) -> TokenClaims:
    """The verified claims of an admin's bearer token (signature and expiry only); else a 401."""
    settings = request.app.state.settings
    return verify_token(settings.jwt_secret, settings.jwt_issuer, bearer_token(request))


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin (its login token: every scope), or an API key acting for its admin."""

    admin_id: uuid.UUID  # for an API key, the admin who created it (what `created_by` columns record)
    key: ActiveKey | None = None


async def authenticate(request: Request) -> Principal:
    """The caller of a valid, unrevoked bearer token allowed the operation's scope; else a 401 or 403.

    A token starting with `nq_` is an API key (`ApiKeys.check`), anything else an admin's JWT.
    The scope is the one the route's `Operation` declares (`contract.REQUIRED_SCOPE`; `admin`
    when none is known). Revocation of either kind is checked against this process's copy
    (`AdminSessions`, `ApiKeys`), so a request costs no PostgreSQL round trip. The key's id goes
    on every log line of the request (`logs.API_KEY_ID`).
    """
    token = bearer_token(request)
    if not is_api_key(token):
        claims = verify_token(request.app.state.settings.jwt_secret, request.app.state.settings.jwt_issuer, token)
        sessions: AdminSessions = request.app.state.sessions
        await sessions.check(claims)
        API_KEY_ID.set(None)
        return Principal(claims.admin_id)
    keys: ApiKeys = request.app.state.api_keys
    key = await keys.check(token)
    API_KEY_ID.set(str(key.id))
    needed: Scope = request.scope.get(REQUIRED_SCOPE, Scope.ADMIN)
    if not key.allows(needed):
        raise Forbidden(f"this API key lacks the scope `{needed}`, which this operation needs", {"scope": str(needed)})
    return Principal(key.created_by, key)


async def require_admin(request: Request) -> uuid.UUID:
    """The admin a request acts for, once `authenticate` let it through (an API key's: its creator)."""
    return (await authenticate(request)).admin_id


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
