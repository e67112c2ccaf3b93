"""Reading request bodies with a size cap (Starlette has none) and the bearer token."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request

from notifq.auth import verify_token
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


def require_admin(request: Request) -> uuid.UUID:
    """The admin id from `Authorization: Bearer <jwt>`; anything else is a 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    settings = request.app.state.settings
    subject = verify_token(settings.jwt_secret, settings.jwt_issuer, token.strip())
    try:
        return uuid.UUID(subject)
    except ValueError:
        raise Unauthorized("invalid token") from None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
