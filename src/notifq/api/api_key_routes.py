"""API keys: create (the secret shown once), list, get, revoke. An admin's token or a key with the `admin` scope.

A key's id is a UUID, matched by the route itself (`{api_key_id:uuid}`): anything else under /api-keys/
is no route at all, a 404.
"""

from __future__ import annotations

import logging
import uuid

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from notifq.api.campaign_routes import ERRORS
from notifq.api.contract import Operation, Reply, json_reply, parse_json, read_body
from notifq.api.models.api_keys import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyList
from notifq.api.requests import authenticate, require_admin
from notifq.api_keys import MAX_ACTIVE_KEYS, ApiKeys
from notifq.vocabulary import Scope

log = logging.getLogger("notifq.api")
CREATE = TypeAdapter(ApiKeyCreate)
MAX_API_KEY_BODY = 4 * 1024
BY_ID = (*ERRORS, "ApiKeyNotFound")


def _service(request: Request) -> ApiKeys:
    service: ApiKeys = request.app.state.api_keys
    return service


def _id(request: Request) -> uuid.UUID:
    key_id: uuid.UUID = request.path_params["api_key_id"]
    return key_id


async def create_api_key(request: Request) -> Response:
    principal = await authenticate(request)
    body: ApiKeyCreate = parse_json(await read_body(request, MAX_API_KEY_BODY), CREATE)
    row, secret = await _service(request).create(body.name, body.scopes, body.expires_at, admin_id=principal.admin_id,
                                                 by_key=principal.key)  # fmt: skip
    log.info("API key %s created with scopes %s", row.id, ",".join(row.scopes), extra={"admin_id": principal.admin_id})
    return json_reply(ApiKeyCreated.created(row, secret), 201, {"Location": f"/api-keys/{row.id}"})


async def list_api_keys(request: Request) -> Response:
    await require_admin(request)
    return json_reply(ApiKeyList(items=[ApiKey.of(k) for k in await _service(request).list_all()]))


async def get_api_key(request: Request) -> Response:
    await require_admin(request)
    return json_reply(ApiKey.of(await _service(request).get(_id(request))))


async def revoke_api_key(request: Request) -> Response:
    admin_id = await require_admin(request)
    revoked = await _service(request).revoke(_id(request))
    log.info("API key %s revoked (%d key(s) with the ones it created)", _id(request), len(revoked),
             extra={"admin_id": admin_id, "count": len(revoked)})  # fmt: skip
    return Response(status_code=204)


PATH = "/api-keys/{api_key_id:uuid}"
OPERATIONS = [
    Operation("POST", "/api-keys", create_api_key, "createApiKey", "Create an API key (its secret shown once)",
              "api-keys", {201: Reply("Created; the only answer that holds its `secret`.", ApiKeyCreated,
                                      headers=("Location",)),
                           403: Reply("An API key without the `admin` scope, or one asking for a scope it does not "
                                      'have (`forbidden`, details `{"scope": ...}`).', "Error"),
                           409: Reply(f"There are {MAX_ACTIVE_KEYS} usable keys already, the most allowed "
                                      '(`conflict`, details `{"max": N}`).', "Error")},
              body=ApiKeyCreate, scope=Scope.ADMIN,
              description="For the services that call notifq: send the secret as `Authorization: Bearer nq_…`. "
              "It acts for the admin who created it (audit columns such as a campaign's creator name that admin; "
              "logs name the key), limited to its scopes. notifq keeps only its SHA-256: a lost secret cannot be "
              "shown again (revoke the key and create another). An API key with the `admin` scope may create keys, "
              "with no scope it lacks and no later expiry than its own. The body is limited to "
              f"{MAX_API_KEY_BODY} bytes. See docs/api.md, \"API keys and scopes\".",
              errors=(*ERRORS, "ValidationFailed", "PayloadTooLarge")),
    Operation("GET", "/api-keys", list_api_keys, "listApiKeys", "List the API keys", "api-keys",
              {200: Reply("Every key (never its secret), revoked ones included, newest first.", ApiKeyList)},
              scope=Scope.ADMIN, errors=ERRORS),
    Operation("GET", PATH, get_api_key, "getApiKey", "Get an API key", "api-keys",
              {200: Reply("The key (never its secret).", ApiKey)}, scope=Scope.ADMIN,
              description="A revoked key is a 404 here (GET /api-keys still lists it, with `revokedAt`).",
              errors=BY_ID),
    Operation("DELETE", PATH, revoke_api_key, "revokeApiKey", "Revoke an API key, and the keys it created", "api-keys",
              {204: Reply("Revoked (or already revoked): refused from now on by this API process, and by every "
                          "other within 2 s.")}, scope=Scope.ADMIN,
              description="The keys this key created (at any depth) are revoked with it. The row stays, for the "
              "record: GET /api-keys lists it with `revokedAt`.", errors=BY_ID),
]  # fmt: skip
