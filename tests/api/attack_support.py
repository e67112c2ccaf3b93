"""Helpers for the attack tests and the schemathesis run: bad text, forged tokens, the spec's parameters.

Everything here talks to the API over HTTP or reads its published document; nothing imports
notifq.api (the API is rewritten beneath these tests, its contract is what they pin down).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import jwt
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.routing import Mount

from notifq.settings import Settings
from tests.api.support import assert_nothing_written, b64url, b64url_json

# Text PostgreSQL cannot store. JSON can carry both as escapes (`"\ud800"`, `"\u0000"`), and
# json.dumps writes exactly those escapes (ASCII output), so `raw_json` bodies carry them verbatim.
BAD_TEXT: dict[str, str] = {"surrogate": "\ud800", "nul": "\x00"}
# The same two in a URL: a lone surrogate has no UTF-8 form, so its WTF-8 bytes stand in for it.
BAD_URL_TEXT: dict[str, str] = {"surrogate": "%ED%A0%80", "nul": "%00"}
IDEMPOTENCY_MODES: dict[str, dict[str, str]] = {"no-key": {}, "with-key": {"Idempotency-Key": "k1"}}
JSON_HEADERS = {"Content-Type": "application/json"}
TOKEN_KINDS = ("missing", "malformed", "not-bearer", "wrong-signature", "alg-none", "alg-hs512", "expired",
               "wrong-issuer", "api-key-unknown", "api-key-malformed")  # fmt: skip


def raw_json(value: Any) -> bytes:
    """The request body as sent: ASCII JSON whose strings may hold `\\ud800` and `\\u0000` escapes."""
    return json.dumps(value).encode("ascii")


async def assert_nothing_kept(engine: AsyncEngine, redis: Redis, settings: Settings) -> None:
    """Nothing written (support's check), no Idempotency-Key left claimed, no job in any lane.

    Redis may hold login-throttle counters (a refused login counts); nothing else.
    """
    await assert_nothing_written(engine, redis, settings)
    async with engine.connect() as conn:
        keys = (await conn.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar_one()
    assert keys == 0, f"{keys} idempotency key(s) kept by a refused request"
    stored = [k for k in await redis.keys("*") if b":login:" not in k]
    assert not stored, f"Redis keys written by a refused request: {stored[:10]}"


def forged_authorization(kind: str, settings: Settings, valid: dict[str, str]) -> dict[str, str]:
    """Authorization headers that must all be refused, each made from a valid token's claims.

    Only the one thing under test is wrong (its signature, algorithm, expiry, issuer...), so
    a refusal cannot come from some other claim the API also checks.
    """
    token = valid["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    if kind == "missing":
        return {}
    if kind == "malformed":
        return {"Authorization": "Bearer not.a.jwt"}
    if kind == "not-bearer":  # the valid token under another scheme
        return {"Authorization": "Basic " + token}
    if kind == "wrong-signature":
        return {"Authorization": "Bearer " + _hs(claims, "x" * 48, "HS256")}
    if kind == "alg-none":
        unsigned = b64url_json({"alg": "none", "typ": "JWT"}) + "." + b64url_json(claims) + "."
        return {"Authorization": "Bearer " + unsigned}
    if kind == "alg-hs512":  # the right secret, an algorithm the API does not pin
        return {"Authorization": "Bearer " + _hs(claims, settings.jwt_secret, "HS512")}
    if kind == "expired":
        return {"Authorization": "Bearer " + _hs({**claims, "iat": now - 7200, "exp": now - 3600},
                                                 settings.jwt_secret, "HS256")}  # fmt: skip
    if kind == "wrong-issuer":
        return {"Authorization": "Bearer " + _hs({**claims, "iss": "someone-else"}, settings.jwt_secret, "HS256")}
    if kind == "api-key-unknown":  # an API key's shape (`nq_` and 43 URL-safe characters), no such key
        return {"Authorization": "Bearer nq_" + hashlib.sha256(token.encode()).hexdigest()[:43]}
    if kind == "api-key-malformed":  # the prefix of an API key, then a JWT
        return {"Authorization": "Bearer nq_" + token}
    raise ValueError(kind)


def _hs(claims: dict[str, Any], secret: str, algorithm: str) -> str:
    """An HMAC-signed JWT, built by hand (PyJWT refuses a 48-byte secret for HS512)."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[algorithm]
    signed = b64url_json({"alg": algorithm, "typ": "JWT"}) + "." + b64url_json(claims)
    return f"{signed}.{b64url(hmac.new(secret.encode(), signed.encode(), digest).digest())}"


def concrete_path(template: str) -> str:
    """A route template with its placeholders filled: a UUID for campaign, webhook and API key ids, 1 for anything
    else."""
    out = template
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        name = out[start + 1 : end].split(":")[0]
        value = str(uuid.UUID(int=1)) if any(kind in name for kind in ("campaign", "webhook", "api_key")) else "1"
        out = out[:start] + value + out[end + 1 :]
    return out


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """`node` with its local `$ref`s replaced by what they point at (recursively)."""
    if isinstance(node, dict):
        if "$ref" in node and isinstance(node["$ref"], str) and node["$ref"].startswith("#/"):
            target: Any = spec
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return resolve(spec, {**target, **rest})
        return {k: resolve(spec, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(spec, v) for v in node]
    return node


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation of the document, `$ref`s resolved."""
    for path, item in spec.get("paths", {}).items():
        item = resolve(spec, item)
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}:
                own = operation.get("parameters", [])
                names = {(p["name"], p["in"]) for p in own}
                merged = own + [p for p in shared if (p["name"], p["in"]) not in names]
                yield method.upper(), path, {**operation, "parameters": merged}


def route_methods(app: Starlette) -> dict[str, set[str]]:
    """Each route path (static mounts left out) with every method the app serves on it."""
    methods: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, Mount) or not getattr(route, "methods", None):
            continue
        methods.setdefault(route.path, set()).update(route.methods)
    return methods


async def fetch_spec(client: httpx.AsyncClient) -> dict[str, Any]:
    """The document the API publishes at /openapi.json."""
    r = await client.get("/openapi.json")
    assert r.status_code == 200, r.text
    spec: dict[str, Any] = r.json()
    return spec


def is_valid(schema: dict[str, Any], value: Any) -> bool:
    """`value` is valid per `schema` (JSON Schema 2020-12, formats such as uuid and date-time checked)."""
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).is_valid(value)


def parameters(
    spec: dict[str, Any], name: str | None = None, where: str | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, parameter) for every parameter named `name` (any if None) in `where`."""
    return [
        (method, path, p)
        for method, path, op in operations(spec)
        for p in op["parameters"]
        if (name is None or p["name"] == name) and (where is None or p["in"] == where)
    ]


def send_at_schemas(node: Any) -> list[Any]:
    """Every schema given to a property named `sendAt`, anywhere under `node`."""
    found: list[Any] = []
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "sendAt" in node["properties"]:
            found.append(node["properties"]["sendAt"])
        for value in node.values():
            found += send_at_schemas(value)
    elif isinstance(node, list):
        for value in node:
            found += send_at_schemas(value)
    return found


def allows(schema: dict[str, Any], key: str, value: str) -> bool:
    """Whether `schema` (possibly a union with null) says `key: value` for its string form."""
    options = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
    return any(o.get(key) == value for o in options if isinstance(o, dict))


def draw(strategy: Any, count: int) -> list[Any]:
    """`count` examples of a hypothesis strategy, the same every run."""
    drawn: list[Any] = []

    @hypothesis_settings(max_examples=count, derandomize=True, database=None, deadline=None,
                         suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def collect(example: Any) -> None:
        drawn.append(example)

    collect()
    return drawn
