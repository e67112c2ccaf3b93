"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Components come from the models (`TypeAdapter.json_schemas`: request bodies and query
strings in validation mode, answers in serialization mode), paths from `routes.OPERATIONS`.
Limits that are settings (the largest campaign) are filled in from the app's settings,
so the served document is as strict as the API it describes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter

from notifq import __version__
from notifq.addresses import SUBSCRIBER_ID_RE
from notifq.api.contract import Operation
from notifq.api.models.api_keys import SCOPES_DOC
from notifq.api.models.base import Error
from notifq.api.models.campaigns import RecipientWithVars
from notifq.api.models.notifications import RedriveFilter
from notifq.settings import Settings
from notifq.vocabulary import Scope

REF = "#/components/schemas/{model}"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "campaign_id": {"description": "The campaign's UUID; anything else is a 422.",
                    "schema": {"type": "string", "format": "uuid"}},
    "notification_id": {"description": "A message id (a positive 64-bit integer); anything else is a 422.",
                        "schema": {"type": "string", "pattern": r"^0*[1-9][0-9]*$", "maxLength": 19}},
    "subscriber_id": {"description": "Your own user id: 1 to 128 of `A-Z a-z 0-9 . _ : @ -`, not `.` or `..`; "
                      "anything else is a 422.",
                      "schema": {"type": "string", "pattern": f"^{SUBSCRIBER_ID_RE.pattern}$"}},
    "channel": {"description": "`email`, `sms` or `push`; anything else is a 422.",
                "schema": {"type": "string", "enum": ["email", "sms", "push"]}},
    "address": {"description": "The address as written (it is normalised like on POST /suppressions).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 4096}},
    # Matched by the route's `uuid` convertor (Starlette's own pattern): anything else is no route, a 404.
    "webhook_id": {"description": "The webhook endpoint's id (a UUID); anything else is a 404.",
                   "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                              "[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"}},
    "api_key_id": {"description": "The API key's id (a UUID); anything else is a 404.",
                   "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                              "[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"}},
    "token": {"description": "The token of an unsubscribe link (32 URL-safe base64 characters); a forged or "
              "altered one is a 404.", "schema": {"type": "string", "pattern": "^[A-Za-z0-9_=-]{1,64}$"}},
}  # fmt: skip
SUBSCRIBER_AUTH: list[dict[str, list[str]]] = [{"subscriberAuth": []}]
HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "Where the new resource is.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when this answer replays an earlier request with the same "
                            "`Idempotency-Key`; absent otherwise.", "schema": {"type": "string", "const": "true"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "The authentication scheme expected.", "schema": {"type": "string"}},
}  # fmt: skip
REQUEST_HEADERS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "Makes a retry of this request safe (see the operation's description).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
    },
}  # fmt: skip
ERRORS: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "Unauthorized": (401, "Missing, malformed, expired, revoked or invalid bearer token (`unauthorized`).",
                     ("WWW-Authenticate",)),
    "NotFound": (404, "No campaign with that id (`not_found`).", ()),
    "NotificationNotFound": (404, "No message with that id (`not_found`).", ()),
    "SubscriberNotFound": (404, "No subscriber with that id (`not_found`).", ()),
    "SuppressionNotFound": (404, "The address is not on that channel's suppression list (`not_found`).", ()),
    "WebhookNotFound": (404, "No webhook endpoint with that id (`not_found`).", ()),
    "ApiKeyNotFound": (404, "No API key with that id, or it was revoked (`not_found`).", ()),
    "LinkNotFound": (404, "Not an unsubscribe link notifq made: forged, altered or cut short (`not_found`).", ()),
    "Forbidden": (403, "The SNS message is not one (`malformed`), is unsigned, its signature or certificate does "
                  "not verify, it is older than 7 days, or its topic is not in NOTIFQ_SNS_TOPICS (`forbidden`, "
                  "`details.reason`); nothing was written.", ()),
    "MissingScope": (403, "The API key is valid but lacks the operation's scope (`forbidden`, details "
                     '`{"scope": ...}` naming the scope needed).', ()),
    "ValidationFailed": (422, "The request is invalid (`validation_error`); `details.field` names the offending "
                         "field where there is one.", ()),
    "PayloadTooLarge": (413, 'The request body is larger than allowed (`payload_too_large`, details '
                        '`{"maxBytes": N}`).', ()),
    "IdempotencyInProgress": (409, "A request with the same `Idempotency-Key` is still being processed "
                              "(`conflict`); retry shortly to get its response.", ()),
    "ServiceUnavailable": (503, "PostgreSQL or Redis is unavailable (`service_unavailable`); nothing was changed, so "
                           "the request is safe to repeat.", ("Retry-After",)),
}  # fmt: skip
DESCRIPTION = (
    "Send notifications by email, SMS, push and in-app (a subscriber's inbox, live over `/ws`), one at a time, "
    "in batches or as campaigns, and follow their "
    "delivery.\n\nAuthenticate with `POST /auth/login`, then send `Authorization: Bearer <token>` to every "
    "operation except the public ones (`security: []`). Services send an API key instead (`Bearer nq_…`, from "
    "`POST /api-keys`): each operation names the scope a key needs (its `security` requirement and description; "
    "`admin` implies every scope, an admin's login token holds them all).\n\nEvery error, including 404/405 for "
    "unknown routes or methods and 500 `internal_error`, uses the `Error` envelope "
    '`{"error": {"code", "message", "details"}}`.'
)


SCOPE_NOTE = "**Scope:** `{scope}` (an API key needs it{or_admin}; an admin's login token has every scope)."


def _scope_note(scope: Scope | None) -> str:
    return SCOPE_NOTE.format(scope=scope, or_admin=", or `admin`" if scope != Scope.ADMIN else "") if scope else ""


def documented_path(path: str) -> str:
    """A route's path as OpenAPI writes it: Starlette's convertors dropped (`{address:path}` → `{address}`)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _content(schema: dict[str, Any], media_type: str) -> dict[str, Any]:
    return {media_type: {"schema": schema}}


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        description = prop.pop("description", "")
        prop.pop("title", None)
        parameters.append({"name": name, "in": "query", "required": name in required, "description": description,
                           "schema": prop})  # fmt: skip
    return parameters


def build(operations: list[Operation], settings: Settings) -> dict[str, Any]:
    """The whole document; called once per app (it depends on the settings' limits)."""
    inputs: list[tuple[tuple[str, str], Any, TypeAdapter[Any]]] = [
        (("Error", ""), "serialization", TypeAdapter(Error)),
        (("RecipientWithVars", ""), "validation", TypeAdapter(RecipientWithVars)),
        (("RedriveFilter", ""), "validation", TypeAdapter(RedriveFilter)),
    ]
    for op in operations:
        if op.body is not None:
            inputs.append(((op.operation_id, "body"), "validation", TypeAdapter(op.body)))
        if op.query is not None:
            inputs.append(((op.operation_id, "query"), "validation", TypeAdapter(op.query)))
        for status, reply in op.replies.items():
            if reply.model is not None and not isinstance(reply.model, str):
                inputs.append(((op.operation_id, str(status)), "serialization", TypeAdapter(reply.model)))
    schemas, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
    components = defs.get("$defs", {})
    _apply_limits(components, settings)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = documented_path(op.path)
        item = paths.setdefault(path, {})
        params = [{"name": n, "in": "path", "required": True, **PATH_PARAMETERS[n]}
                  for n in PATH_PARAMETERS if f"{{{n}}}" in path]  # fmt: skip
        params += [{"$ref": f"#/components/parameters/{h}"} for h in op.headers]
        if op.query is not None:
            query = schemas[((op.operation_id, "query"), "validation")]
            params += _query_parameters(components[query["$ref"].rsplit("/", 1)[1]])
        responses: dict[str, Any] = {}
        for status, reply in op.replies.items():
            answer: dict[str, Any] = {"description": reply.description}
            if reply.model == "Error":
                answer["content"] = _content({"$ref": REF.format(model="Error")}, reply.media_type)
            elif reply.model is not None:
                answer["content"] = _content(schemas[((op.operation_id, str(status)), "serialization")],
                                             reply.media_type)  # fmt: skip
            if reply.headers:
                answer["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in reply.headers}
            responses[str(status)] = answer
        scope = None if op.public or op.subscriber else op.scope or Scope.ADMIN
        for name in (*op.errors, *(("MissingScope",) if scope else ())):
            responses.setdefault(str(ERRORS[name][0]), {"$ref": f"#/components/responses/{name}"})
        operation: dict[str, Any] = {
            "operationId": op.operation_id, "tags": [op.tag], "summary": op.summary,
            "security": [] if op.public else SUBSCRIBER_AUTH if op.subscriber else [{"bearerAuth": [str(scope)]}],
            "responses": responses,
        }  # fmt: skip
        description = "\n\n".join(p for p in (op.description, _scope_note(scope)) if p)
        if description:
            operation["description"] = description
        if params:
            operation["parameters"] = params
        if op.body is not None:
            body = schemas[((op.operation_id, "body"), "validation")]
            operation["requestBody"] = {"required": True, "content": _content(body, op.body_media_type)}
        item[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "notifq", "version": __version__, "description": DESCRIPTION,
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "security": BEARER,
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {name: {"description": text, "content": _content({"$ref": REF.format(model="Error")},
                                                                         "application/json"),
                                 **({"headers": {h: {"$ref": f"#/components/headers/{h}"} for h in hs}} if hs else {})}
                          for name, (_, text, hs) in ERRORS.items()},
            "parameters": REQUEST_HEADERS,
            "headers": HEADERS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "The `token` returned by POST /auth/login (an admin: "
                                               "every scope), or an API key (`nq_…`, POST /api-keys) holding the "
                                               "scope the operation's security requirement names. Scopes: "
                                               + SCOPES_DOC + "."},
                                "subscriberAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                                   "description": "A subscriber's token, from POST "
                                                   "/subscribers/{subscriber_id}/token (its inbox only)."}},
        },
    }  # fmt: skip


def _apply_limits(components: dict[str, Any], settings: Settings) -> None:
    create = components["CampaignCreate"]["properties"]
    create["recipients"]["maxItems"] = settings.max_campaign_size
    create["subscribers"]["maxItems"] = settings.max_campaign_size
    create["recipientCount"]["maximum"] = settings.max_campaign_size
