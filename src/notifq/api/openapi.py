"""The OpenAPI 3.1 document served at GET /openapi.json.

Starlette has no schema generator, so this is written by hand and lives next to the
routes it describes (`routes.py`, `serializers.py`, `validation.py`): change a handler,
change this file. Enums and limits are imported from the code that enforces them so the
two cannot drift; limits that are settings are described with their defaults.
"""

from __future__ import annotations

from typing import Any, Final

from notifq import __version__
from notifq.addresses import EMAIL_RE
from notifq.auth import BCRYPT_MAX_BYTES
from notifq.db.campaigns_repo import CAMPAIGN_STATUSES, MESSAGE_STATUSES
from notifq.settings import Settings
from notifq.validation import MAX_BODY, MAX_NAME, MAX_SUBJECT

JSON: Final = "application/json"
_DEFAULTS: Final = Settings()
# Mirrors routes.MAX_LOGIN_BODY: routes.py imports this module, so it cannot be imported from there.
LOGIN_BODY_BYTES: Final = 16 * 1024
BEARER: Final[list[dict[str, list[str]]]] = [{"bearerAuth": []}]


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict[str, str]:
    return _ref("schemas", name)


def _response(name: str) -> dict[str, str]:
    return _ref("responses", name)


def _param(name: str) -> dict[str, str]:
    return _ref("parameters", name)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(_schema("Error"))}
    if headers:
        response["headers"] = headers
    return response


def _timestamp(description: str, *, nullable: bool = False) -> dict[str, Any]:
    return {
        "type": ["string", "null"] if nullable else "string",
        "format": "date-time",
        "description": f"{description} ISO 8601 in UTC with a `Z` suffix.",
        "examples": ["2026-01-15T09:30:00.123456Z"],
    }


def _campaign_fields() -> dict[str, Any]:
    """The fields both forms of the create body share (a fresh dict per use, no shared nodes)."""
    return {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NAME,
            "pattern": r"^[^\r\n]*\S[^\r\n]*$",
            "description": f"Required, not blank, at most {MAX_NAME} characters, no line breaks.",
        },
        "subject": {
            "type": ["string", "null"],
            "maxLength": MAX_SUBJECT,
            "pattern": r"^[^\r\n]*$",
            "description": f"Optional; at most {MAX_SUBJECT} characters (RFC 5322's line limit), no line breaks.",
        },
        "body": {
            "type": ["string", "null"],
            "maxLength": MAX_BODY,
            "description": f"Optional message text, at most {MAX_BODY} characters. Not returned by the API.",
        },
    }


_MAX_SIZE_NOTE: Final = f"at most the server's `NOTIFQ_MAX_CAMPAIGN_SIZE` (default {_DEFAULTS.max_campaign_size:,})"

SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every error response (4xx and 5xx) has this shape.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Stable machine-readable code.",
                        "examples": [
                            "validation_error",
                            "unauthorized",
                            "not_found",
                            "conflict",
                            "too_many_attempts",
                            "payload_too_large",
                            "service_unavailable",
                            "method_not_allowed",
                            "internal_error",
                        ],
                    },
                    "message": {"type": "string", "description": "Human-readable explanation."},
                    "details": {
                        "description": (
                            'Any JSON value giving context, or null: e.g. `{"field": "limit"}`, '
                            '`{"maxBytes": 1024}`, `{"retryAfterSeconds": 300}`, '
                            '`{"field": "recipients", "invalid": [{"index": 3, "value": "x"}]}`.'
                        ),
                    },
                },
            },
        },
        "examples": [
            {
                "error": {
                    "code": "validation_error",
                    "message": "`limit` must be an integer between 1 and 500",
                    "details": {"field": "limit"},
                }
            }
        ],
    },
    "LoginRequest": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {
            "email": {"type": "string", "minLength": 1, "description": "The admin's email address."},
            "password": {
                "type": "string",
                "minLength": 1,
                "maxLength": BCRYPT_MAX_BYTES,
                "description": f"At most {BCRYPT_MAX_BYTES} bytes once UTF-8 encoded (bcrypt's limit).",
            },
        },
    },
    "LoginResponse": {
        "type": "object",
        "required": ["token", "tokenType", "expiresAt"],
        "properties": {
            "token": {"type": "string", "description": "A JWT (HS256); send it as `Authorization: Bearer <token>`."},
            "tokenType": {"type": "string", "const": "Bearer"},
            "expiresAt": _timestamp(
                f"When the token stops being accepted (default lifetime {_DEFAULTS.jwt_ttl_seconds} s)."
            ),
        },
    },
    "CampaignCreate": {
        "description": (
            "Exactly one of `recipients` (explicit addresses) or `recipientCount` (load-test mode: "
            "user1@example.com … userN@example.com). Sending both or neither is a 422. Unknown fields are ignored."
        ),
        "oneOf": [_schema("CampaignCreateWithRecipients"), _schema("CampaignCreateWithCount")],
    },
    "CampaignCreateWithRecipients": {
        "type": "object",
        "required": ["name", "recipients"],
        "properties": {
            **_campaign_fields(),
            "recipients": {
                "type": "array",
                "minItems": 1,
                "description": (
                    f"Non-empty list of email addresses, {_MAX_SIZE_NOTE} entries. "
                    "The 422 lists up to 10 invalid entries by index."
                ),
                "items": {"type": "string", "maxLength": 254, "pattern": f"^{EMAIL_RE.pattern}$"},
            },
        },
        "examples": [{"name": "Spring launch", "subject": "We're live", "recipients": ["ada@example.com"]}],
    },
    "CampaignCreateWithCount": {
        "type": "object",
        "required": ["name", "recipientCount"],
        "properties": {
            **_campaign_fields(),
            "recipientCount": {
                "type": "integer",
                "minimum": 1,
                "description": f"How many synthetic recipients to generate: 1 to {_MAX_SIZE_NOTE}.",
            },
        },
        "examples": [{"name": "Load test", "recipientCount": 100000}],
    },
    "CampaignStatus": {
        "type": "string",
        "enum": list(CAMPAIGN_STATUSES),
        "description": (
            "pending → processing → completed | completed_with_failures, or cancelled from pending/processing. "
            "`pending`: committed, batches not yet on the queue; `processing`: batches queued; "
            "`completed_with_failures`: finished with at least one failed message. "
            "A retry moves a campaign with requeued messages back to `processing`."
        ),
    },
    "MessageStatus": {
        "type": "string",
        "enum": list(MESSAGE_STATUSES),
        "description": (
            "pending → queued → sending → sent | failed, plus cancelled (from pending/queued). "
            "Transient delivery errors go back to `queued` and are retried until the attempt limit; "
            "then the message is `failed`."
        ),
    },
    "Progress": {
        "type": "object",
        "description": "How many of the campaign's messages are in each status; the values sum to totalMessages.",
        "required": list(MESSAGE_STATUSES),
        "properties": {status: {"type": "integer", "minimum": 0} for status in MESSAGE_STATUSES},
        "additionalProperties": False,
    },
    "Campaign": {
        "type": "object",
        "required": [
            "id",
            "name",
            "subject",
            "status",
            "totalMessages",
            "sentCount",
            "failedCount",
            "progress",
            "createdAt",
            "updatedAt",
            "completedAt",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "subject": {"type": ["string", "null"]},
            "status": _schema("CampaignStatus"),
            "totalMessages": {"type": "integer", "minimum": 0},
            "sentCount": {"type": "integer", "minimum": 0, "description": "Same as progress.sent."},
            "failedCount": {"type": "integer", "minimum": 0, "description": "Same as progress.failed."},
            "progress": _schema("Progress"),
            "createdAt": _timestamp("When the campaign was accepted."),
            "updatedAt": _timestamp("Last change to the campaign or its counters."),
            "completedAt": _timestamp(
                "When it reached completed, completed_with_failures or cancelled; null while pending/processing.",
                nullable=True,
            ),
        },
    },
    "CampaignPage": {
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": _schema("Campaign"), "description": "Newest first."},
            "nextCursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "recipient", "status", "attempts", "lastError", "updatedAt"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "A 64-bit integer id, sent as a string.",
            },
            "recipient": {"type": "string"},
            "status": _schema("MessageStatus"),
            "attempts": {
                "type": "integer",
                "minimum": 0,
                "description": "Delivery attempts so far (reset to 0 by a retry).",
            },
            "lastError": {"type": ["string", "null"], "description": "The last delivery error, if any."},
            "updatedAt": _timestamp("Last status change."),
        },
    },
    "MessagePage": {
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": _schema("Message"), "description": "In creation order."},
            "nextCursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    },
    "RetryResult": {
        "type": "object",
        "required": ["requeued"],
        "properties": {
            "requeued": {
                "type": "integer",
                "minimum": 0,
                "description": "How many failed messages went back to `queued`; 0 if there were none.",
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": "ok"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "checks": {
                "type": "object",
                "required": ["postgres", "redis"],
                "description": "Each is `ok` or `unavailable: <exception type>` (2 s timeout per check).",
                "properties": {
                    "postgres": {"type": "string", "examples": ["ok", "unavailable: TimeoutError"]},
                    "redis": {"type": "string", "examples": ["ok", "unavailable: ConnectionError"]},
                },
            },
        },
    },
}

HEADERS: Final[dict[str, Any]] = {
    "RetryAfter": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "WWWAuthenticate": {
        "description": "The authentication scheme expected.",
        "schema": {"type": "string", "examples": ['Bearer realm="notifq"']},
    },
}

RESPONSES: Final[dict[str, Any]] = {
    "Unauthorized": _error_response(
        "Missing, malformed, expired or invalid bearer token (`unauthorized`).",
        {"WWW-Authenticate": _ref("headers", "WWWAuthenticate")},
    ),
    "NotFound": _error_response("No campaign with that id (`not_found`)."),
    "ValidationFailed": _error_response(
        "The request is invalid (`validation_error`); `details` names the offending field where there is one."
    ),
    "PayloadTooLarge": _error_response(
        'The request body is larger than allowed (`payload_too_large`, details `{"maxBytes": N}`).'
    ),
    "ServiceUnavailable": _error_response(
        "PostgreSQL or Redis is unavailable (`service_unavailable`); nothing was changed, so the request is safe "
        "to repeat.",
        {"Retry-After": _ref("headers", "RetryAfter")},
    ),
}

PARAMETERS: Final[dict[str, Any]] = {
    "CampaignId": {
        "name": "campaign_id",
        "in": "path",
        "required": True,
        "description": "The campaign's UUID; anything else is a 422.",
        "schema": {"type": "string", "format": "uuid"},
    },
    "Cursor": {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Opaque `nextCursor` from the previous page; a malformed cursor is a 422.",
        "schema": {"type": "string"},
    },
}

PATHS: Final[dict[str, Any]] = {
    "/auth/login": {
        "post": {
            "operationId": "login",
            "tags": ["auth"],
            "summary": "Exchange an admin's email and password for a bearer token",
            "description": (
                f"Failed logins are counted per account and per client address; after "
                f"{_DEFAULTS.login_max_failures} failures (default) further attempts get a 429 for "
                f"{_DEFAULTS.login_lockout_seconds} s (default). The body is limited to {LOGIN_BODY_BYTES} bytes."
            ),
            "requestBody": {"required": True, "content": _json(_schema("LoginRequest"))},
            "responses": {
                "200": {"description": "Logged in.", "content": _json(_schema("LoginResponse"))},
                "401": _error_response(
                    "Wrong email or password (`unauthorized`).",
                    {"WWW-Authenticate": _ref("headers", "WWWAuthenticate")},
                ),
                "413": _response("PayloadTooLarge"),
                "422": _error_response(
                    "Empty or malformed JSON, not an object, `email`/`password` missing or not a non-empty string, "
                    f"or a password over {BCRYPT_MAX_BYTES} bytes (`validation_error`)."
                ),
                "429": _error_response(
                    "Too many failed logins for this account or address (`too_many_attempts`, "
                    'details `{"retryAfterSeconds": N}`).',
                    {"Retry-After": _ref("headers", "RetryAfter")},
                ),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns": {
        "post": {
            "operationId": "createCampaign",
            "tags": ["campaigns"],
            "summary": "Create a campaign and queue its messages",
            "description": (
                "The campaign and all its messages (status `queued`) are written in one PostgreSQL transaction; "
                "the delivery batches are queued in Redis after the commit. The response shows `processing` "
                "once the batches are queued; if Redis failed between the commit and the enqueue it shows "
                "`pending`, and the reconciler queues the batches later (nothing is lost). "
                "Redis is checked first, so a 503 means nothing was written. "
                "The body is limited to `NOTIFQ_MAX_BODY_BYTES` "
                f"(default {_DEFAULTS.max_body_bytes} bytes)."
            ),
            "security": BEARER,
            "requestBody": {"required": True, "content": _json(_schema("CampaignCreate"))},
            "responses": {
                "202": {
                    "description": "Accepted; delivery proceeds in the background.",
                    "headers": {
                        "Location": {
                            "description": "`/campaigns/{id}` of the new campaign.",
                            "schema": {"type": "string"},
                        },
                    },
                    "content": _json(_schema("Campaign")),
                },
                "401": _response("Unauthorized"),
                "413": _response("PayloadTooLarge"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
        "get": {
            "operationId": "listCampaigns",
            "tags": ["campaigns"],
            "summary": "List campaigns, newest first",
            "description": "Keyset-paginated on (createdAt, id): follow `nextCursor` until it is null.",
            "security": BEARER,
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Page size.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
                _param("Cursor"),
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "description": "Only campaigns in this status.",
                    "schema": _schema("CampaignStatus"),
                },
            ],
            "responses": {
                "200": {"description": "One page of campaigns.", "content": _json(_schema("CampaignPage"))},
                "401": _response("Unauthorized"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}": {
        "parameters": [_param("CampaignId")],
        "get": {
            "operationId": "getCampaign",
            "tags": ["campaigns"],
            "summary": "Get a campaign and its progress",
            "security": BEARER,
            "responses": {
                "200": {"description": "The campaign.", "content": _json(_schema("Campaign"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}/messages": {
        "parameters": [_param("CampaignId")],
        "get": {
            "operationId": "listCampaignMessages",
            "tags": ["campaigns"],
            "summary": "List a campaign's messages in creation order",
            "description": "Paginated by message id: follow `nextCursor` until it is null.",
            "security": BEARER,
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "description": "Only messages in this status.",
                    "schema": _schema("MessageStatus"),
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Page size.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
                _param("Cursor"),
            ],
            "responses": {
                "200": {"description": "One page of messages.", "content": _json(_schema("MessagePage"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}/retry": {
        "parameters": [_param("CampaignId")],
        "post": {
            "operationId": "retryCampaign",
            "tags": ["campaigns"],
            "summary": "Requeue the campaign's failed messages",
            "description": (
                "Every `failed` message goes back to `queued` with its attempts reset to 0, in new batches. "
                "If any were requeued the campaign returns to `processing` (also from `completed_with_failures`). "
                "No request body."
            ),
            "security": BEARER,
            "responses": {
                "202": {"description": "Requeued.", "content": _json(_schema("RetryResult"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "409": _error_response('The campaign is cancelled (`conflict`, details `{"status": ...}`).'),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}/cancel": {
        "parameters": [_param("CampaignId")],
        "post": {
            "operationId": "cancelCampaign",
            "tags": ["campaigns"],
            "summary": "Cancel a pending or processing campaign",
            "description": (
                "`pending` and `queued` messages become `cancelled`; messages already `sending` finish and land "
                "in `sent` or `failed`. The campaign is `cancelled` at once, with completedAt set. No request body."
            ),
            "security": BEARER,
            "responses": {
                "202": {"description": "Cancelled; the updated campaign.", "content": _json(_schema("Campaign"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "409": _error_response(
                    "The campaign is already completed, completed_with_failures or cancelled "
                    '(`conflict`, details `{"status": ...}`).'
                ),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/health": {
        "get": {
            "operationId": "health",
            "tags": ["operations"],
            "summary": "Liveness: the process answers",
            "description": "Touches neither PostgreSQL nor Redis.",
            "responses": {"200": {"description": "Alive.", "content": _json(_schema("Health"))}},
        },
    },
    "/ready": {
        "get": {
            "operationId": "ready",
            "tags": ["operations"],
            "summary": "Readiness: PostgreSQL and Redis both answer",
            "responses": {
                "200": {
                    "description": "Ready: `status` is `ready` and every check is `ok`.",
                    "content": _json(_schema("Readiness")),
                },
                "503": {
                    "description": "Not ready: `status` is `unavailable`; `checks` says which dependency failed.",
                    "content": _json(_schema("Readiness")),
                },
            },
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "tags": ["operations"],
            "summary": "This OpenAPI 3.1 document",
            "responses": {
                "200": {"description": "The OpenAPI document.", "content": _json({"type": "object"})},
            },
        },
    },
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "notifq",
        "version": __version__,
        "summary": "Notification campaign engine",
        "description": (
            "Create notification campaigns and follow their delivery.\n\n"
            "Authenticate with `POST /auth/login`, then send `Authorization: Bearer <token>` to every "
            "`/campaigns` operation.\n\n"
            "Campaign lifecycle: pending → processing → completed | completed_with_failures | cancelled.\n"
            "Message lifecycle: pending → queued → sending → sent | failed, plus cancelled.\n\n"
            "Every error, including 404/405 for unknown routes or methods and 500 `internal_error`, uses the "
            '`Error` envelope `{"error": {"code", "message", "details"}}`.'
        ),
        "license": {"name": "MIT", "identifier": "MIT"},
    },
    "tags": [
        {"name": "auth", "description": "Admin login."},
        {"name": "campaigns", "description": "Campaigns and their messages (bearer token required)."},
        {"name": "operations", "description": "Health, readiness and this document."},
    ],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": RESPONSES,
        "parameters": PARAMETERS,
        "headers": HEADERS,
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "The `token` returned by POST /auth/login (HS256 JWT).",
            },
        },
    },
}


def openapi_spec() -> dict[str, Any]:
    """The document, built once at import. Shared: callers must not mutate it."""
    return OPENAPI
