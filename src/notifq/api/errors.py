"""One table from exceptions to JSON error responses: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import redis.exceptions
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from notifq import errors
from notifq.api.security_headers import SECURITY_HEADERS_DICT

log = logging.getLogger("notifq.api")

STATUS_BY_ERROR: dict[type[errors.NotifqError], int] = {
    errors.ValidationError: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.TooManyAttempts: 429,
    errors.PayloadTooLarge: 413,
    errors.ServiceUnavailable: 503,
}


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
                   ) -> JSONResponse:  # fmt: skip
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status, headers=headers)


async def notifq_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.NotifqError)
    status = next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
    headers = None
    if isinstance(exc, errors.TooManyAttempts):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, errors.Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="notifq"'}
    return error_response(status, exc.code, exc.message, exc.details, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    # Keep the framework's headers: a 405 must say what is allowed (`Allow`, RFC 9110 §15.5.6).
    return error_response(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))


def is_unavailable(exc: BaseException) -> bool:
    """A dependency did not answer (as opposed to a bug): PostgreSQL or Redis down, refused, timed out."""
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError)):
        return True
    # sa_exc.TimeoutError: every pooled connection is busy (the pools never overflow, db/engine.py).
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    cause = getattr(cause, "__cause__", None) or cause
    return isinstance(
        cause,
        (
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            asyncpg.PostgresConnectionError,
            OSError,
        ),
    )


async def dependency_error(request: Request, exc: Exception) -> Response:
    """Registered for database/Redis/socket errors so a 503 is answered without a 500 traceback."""
    if is_unavailable(exc):
        log.warning(
            "dependency unavailable on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc
        )
        return error_response(
            503,
            "service_unavailable",
            "PostgreSQL or Redis is unavailable; nothing was changed",
            headers={"Retry-After": "5"},
        )
    log.exception("database or Redis error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Runs in ServerErrorMiddleware, outside the SecurityHeaders middleware: adds them itself."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error", headers=SECURITY_HEADERS_DICT)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    errors.NotifqError: notifq_error,
    HTTPException: http_error,
    redis.exceptions.RedisError: dependency_error,
    sa_exc.SQLAlchemyError: dependency_error,
    asyncpg.PostgresError: dependency_error,
    asyncpg.InterfaceError: dependency_error,
    OSError: dependency_error,
    TimeoutError: dependency_error,
    Exception: unexpected_error,
}
