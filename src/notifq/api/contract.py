"""The HTTP contract in one table: each `Operation` is both a Starlette route and an OpenAPI path.

A route cannot exist without its description (the app's routes are built from the same
objects `openapi.py` reads), and bodies and query strings are parsed by the pydantic
models the document is generated from, so what the API accepts and what it says it
accepts cannot drift apart. Pydantic's errors are translated here into notifq's own
envelope (`{"error": {"code", "message", "details": {"field": ...}}}`); the offending
input is never echoed back (it may not even be encodable: lone surrogates, NUL).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from notifq.errors import PayloadTooLarge, ValidationError
from notifq.vocabulary import Scope

M = TypeVar("M", bound=pydantic.BaseModel)
Handler = Callable[[Request], Awaitable[Response]]
# Where the route puts its operation's scope in the ASGI scope, for `requests.authenticate` to enforce.
REQUIRED_SCOPE = "notifq.required_scope"


@dataclass(frozen=True)
class Reply:
    """One documented answer: a status, its model (None: no JSON body), and what it means."""

    description: str
    model: Any = None
    headers: tuple[str, ...] = ()  # names of components/headers
    media_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    replies: Mapping[int, Reply]
    description: str = ""
    body: Any = None  # the request body's model (or a TypeAdapter-able type)
    body_media_type: str = "application/json"  # how the body is sent (SNS: text/plain; RFC 8058: a form)
    query: type[pydantic.BaseModel] | None = None
    public: bool = False
    subscriber: bool = False  # authenticated by a subscriber token (the inbox), not an admin's
    # What an API key needs to call it (an admin's token has every scope). None only on public and subscriber
    # operations; an undeclared one is enforced as `admin` (and tests/api/test_api_keys.py fails).
    scope: Scope | None = None
    headers: tuple[str, ...] = ()  # names of components/parameters sent as request headers
    errors: tuple[str, ...] = ()  # names of components/responses this operation may answer
    extra: dict[str, Any] = field(default_factory=dict)


def _scoped(op: Operation) -> Handler:
    """The handler, told which scope its operation needs (read by `requests.authenticate`)."""
    if op.public or op.subscriber:
        return op.handler
    needed, handler = op.scope or Scope.ADMIN, op.handler

    @functools.wraps(handler)
    async def scoped(request: Request) -> Response:
        request.scope[REQUIRED_SCOPE] = needed
        return await handler(request)

    return scoped


def routes(operations: list[Operation]) -> list[Route]:
    """One Starlette route per path: a 405 then lists every method the path takes in `Allow`
    (Starlette answers a 405 from the first route whose path matches)."""
    by_path: dict[str, dict[str, Handler]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = _scoped(op)
    table = []
    for path, handlers in by_path.items():
        if len(handlers) == 1:
            ((method, handler),) = handlers.items()
            table.append(Route(path, handler, methods=[method]))
            continue

        async def dispatch(request: Request, handlers: dict[str, Handler] = handlers) -> Response:
            return await handlers["GET" if request.method == "HEAD" else request.method](request)

        table.append(Route(path, dispatch, methods=list(handlers)))
    return table


def field_path(loc: tuple[int | str, ...]) -> str:
    """`("recipients", 3, "vars", "k")` → `recipients[3].vars.k`; a batch item `(3, "to")` → `[3].to`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """notifq's wording for pydantic's error types (the existing API's messages, kept)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    name = where or "the request body"
    details: dict[str, Any] = {"field": where} if where else {}
    if kind == "missing":
        return f"`{name}` is required", details
    if kind == "string_type":
        return f"`{name}` must be a string", details
    if kind == "string_too_short":
        return f"`{name}` must not be empty", details
    if kind == "string_too_long":
        limit = ctx.get("max_length")
        return f"`{name}` is longer than {limit} characters", {**details, "maxLength": limit}
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"`{name}` must be an integer", details
    if kind in ("float_type", "float_parsing"):
        return f"`{name}` must be a number", details
    if kind in ("bool_type", "bool_parsing"):
        return f"`{name}` must be true or false", details
    if kind in ("enum", "literal_error"):
        allowed = [s.strip().strip("'") for s in str(ctx.get("expected", "")).replace(" or ", ", ").split(",")]
        return f"`{name}` must be one of {', '.join(allowed)}", {**details, "allowed": allowed}
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = next(iter(ctx.values()), None)
        words = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "more than",
                 "less_than": "less than"}[kind]  # fmt: skip
        return f"`{name}` must be {words} {bound}", details
    if kind == "too_short":
        return f"`{name}` must hold at least {ctx.get('min_length')} items", {**details, "min": ctx.get("min_length")}
    if kind == "too_long":
        return f"`{name}` must hold at most {ctx.get('max_length')} items", {**details, "max": ctx.get("max_length")}
    if kind in ("list_type", "tuple_type"):
        return f"`{name}` must be a list", details
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"`{name}` must be a JSON object", details
    if kind == "string_pattern_mismatch":
        return f"`{name}` has an invalid format", details
    if kind in ("uuid_type", "uuid_parsing"):
        return f"`{name}` must be a UUID", details
    if kind in ("datetime_type", "datetime_parsing", "datetime_from_date_parsing"):
        return f"`{name}` is not an ISO 8601 date-time", details
    if kind == "extra_forbidden":
        return f"`{name}` is not allowed here", details
    return f"`{name}` is invalid", details


INVALID = "notifq_invalid"  # the pydantic error type of notifq's own checks (see `invalid`)


def _join(where: str, name: str) -> str:
    if not where:
        return name
    return where + name if name.startswith("[") or not name else f"{where}.{name}"


def translate(exc: pydantic.ValidationError, *, prefix: str = "") -> ValidationError:
    """The first error, in notifq's words; our own checks (`invalid`) keep their message and details."""
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = tuple(error["loc"])
    where = prefix + field_path(loc)
    ctx = error.get("ctx") or {}
    if error["type"] == "json_invalid":
        return ValidationError("malformed JSON", {"reason": str(ctx.get("error", ""))[:200]})
    if error["type"] == INVALID:
        details = dict(ctx.get("details") or {})
        if "field" in details:
            details["field"] = _join(where, details["field"])
        return ValidationError(str(ctx["message"]).replace("{field}", where or "body"), details or None)
    if not loc and error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return ValidationError(f"{where or 'the request body'} must be a JSON object", {"field": where or None})
    message, details = _message(error, where)
    return ValidationError(message, details)


def invalid(message: str, details: Mapping[str, Any] | None = None) -> PydanticCustomError:
    """Raise from a validator: a 422 with this message and details.

    `details["field"]` is relative to where the validator runs, and `{field}` in the message
    becomes the full path (`recipients[3].vars.name`, `[2].to` in a batch).
    """
    return PydanticCustomError(INVALID, "{message}", {"message": message, "details": dict(details or {})})


async def read_body(request: Request, limit: int, *, allow_empty: bool = False) -> bytes:
    """The raw body, capped (Starlette has no limit of its own); empty is a 422 unless `allow_empty`."""
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
    if not raw.strip() and not allow_empty:
        raise ValidationError("the request body is empty; send a JSON object")
    return raw


def parse_json(raw: bytes, adapter: pydantic.TypeAdapter[Any], context: Mapping[str, Any] | None = None) -> Any:
    try:
        return adapter.validate_json(raw, context=dict(context or {}))
    except pydantic.ValidationError as exc:
        raise translate(exc) from None


def parse_query(request: Request, model: type[M]) -> M:
    """Query parameters as the document describes them: an empty `?status=` is a bad status, not "any"."""
    try:
        return model.model_validate(dict(request.query_params))
    except pydantic.ValidationError as exc:
        raise translate(exc) from None


def json_reply(model: pydantic.BaseModel, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(by_alias=True), status, headers=dict(headers or {}),
                    media_type="application/json")  # fmt: skip
