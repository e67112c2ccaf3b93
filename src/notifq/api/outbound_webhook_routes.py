"""Outbound webhooks: the endpoints notifq POSTs its events to (docs/webhooks.md). Admin bearer tokens only.

(`POST /webhooks/ses`, the SES events notifq receives, is api/webhook_routes.py.) An endpoint's id
is a UUID, matched by the route itself (`{webhook_id:uuid}`): anything else under /webhooks/ is no
route at all, a 404, so `/webhooks/ses` keeps answering 405 to the methods it does not take.
"""

from __future__ import annotations

import logging
import uuid

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from notifq.api.campaign_routes import ERRORS
from notifq.api.contract import Operation, Reply, json_reply, parse_json, parse_query, read_body
from notifq.api.models.webhooks import (
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookDeliveryQuery,
    WebhookList,
    WebhookTestResult,
    WebhookUpdate,
)
from notifq.api.requests import require_admin
from notifq.vocabulary import Scope
from notifq.webhooks import MAX_ENDPOINTS, WebhookService

log = logging.getLogger("notifq.api")
CREATE = TypeAdapter(WebhookCreate)
UPDATE = TypeAdapter(WebhookUpdate)
MAX_WEBHOOK_BODY = 16 * 1024
BY_ID = (*ERRORS, "WebhookNotFound")


def _service(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.webhooks
    return service


def _id(request: Request) -> uuid.UUID:
    endpoint_id: uuid.UUID = request.path_params["webhook_id"]
    return endpoint_id


async def create_webhook(request: Request) -> Response:
    admin_id = await require_admin(request)
    body: WebhookCreate = parse_json(await read_body(request, MAX_WEBHOOK_BODY), CREATE)
    endpoint = await _service(request).create(url=body.url, events=body.events, description=body.description,
                                              batch=body.batch, admin_id=admin_id)  # fmt: skip
    log.info("webhook endpoint %s created", endpoint.id, extra={"admin_id": admin_id})
    return json_reply(WebhookCreated.created(endpoint), 201, {"Location": f"/webhooks/{endpoint.id}"})


async def list_webhooks(request: Request) -> Response:
    await require_admin(request)
    return json_reply(WebhookList(items=[Webhook.of(e) for e in await _service(request).list_all()]))


async def get_webhook(request: Request) -> Response:
    await require_admin(request)
    return json_reply(Webhook.of(await _service(request).get(_id(request))))


async def update_webhook(request: Request) -> Response:
    admin_id = await require_admin(request)
    body: WebhookUpdate = parse_json(await read_body(request, MAX_WEBHOOK_BODY), UPDATE)
    endpoint = await _service(request).update(_id(request), admin_id=admin_id, url=body.url, events=body.events,
                                              description=body.description, batch=body.batch,
                                              enabled=body.enabled)  # fmt: skip
    if body.enabled is not None:
        log.info("webhook endpoint %s %s", endpoint.id, "enabled" if body.enabled else "disabled",
                 extra={"admin_id": admin_id})  # fmt: skip
    return json_reply(Webhook.of(endpoint))


async def delete_webhook(request: Request) -> Response:
    admin_id = await require_admin(request)
    await _service(request).delete(_id(request))
    log.info("webhook endpoint %s deleted", _id(request), extra={"admin_id": admin_id})
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, WebhookDeliveryQuery)
    rows, cursor = await _service(request).deliveries(_id(request), cursor=q.cursor, outcome=q.outcome, limit=q.limit)
    return json_reply(WebhookDeliveryPage(items=[WebhookDelivery.of(d) for d in rows], next_cursor=cursor))


async def send_test_webhook(request: Request) -> Response:
    await require_admin(request)
    return json_reply(WebhookTestResult.of(await _service(request).send_test(_id(request))))


PATH = "/webhooks/{webhook_id:uuid}"
OPERATIONS = [
    Operation("POST", "/webhooks", create_webhook, "createWebhook", "Add an endpoint that receives notifq's events",
              "webhooks", {201: Reply("Created; the only answer that shows its signing `secret`.", WebhookCreated,
                                      headers=("Location",)),
                           409: Reply(f'There are {MAX_ENDPOINTS} endpoints already, the most allowed (`conflict`, '
                                      'details `{"max": N}`).', "Error")},
              body=WebhookCreate, description="notifq POSTs each subscribed event (`{\"id\", \"type\", \"createdAt\", "
              "\"data\"}`) to `url`, signed with the endpoint's secret: `Notifq-Signature: t=<unix>,v1=<hex "
              "HMAC-SHA256 of \"<t>.<raw body>\">`, and names it in `Notifq-Event-Id`. A 2xx answer is a delivery; "
              "anything else is retried with backoff for up to NOTIFQ_WEBHOOK_GIVE_UP_SECONDS, and an endpoint "
              "failing for NOTIFQ_WEBHOOK_DISABLE_AFTER_SECONDS is disabled. Delivery is at least once: dedup by "
              "event id. The URL's host is resolved now and refused on a loopback, private, link-local or metadata "
              "address (unless NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1). The body is limited to "
              f"{MAX_WEBHOOK_BODY} bytes. See docs/webhooks.md.",
              errors=(*ERRORS, "ValidationFailed", "PayloadTooLarge"), scope=Scope.ADMIN),
    Operation("GET", "/webhooks", list_webhooks, "listWebhooks", "List the webhook endpoints", "webhooks",
              {200: Reply("Every endpoint (never its secret), newest first.", WebhookList)}, errors=ERRORS,
              scope=Scope.ADMIN),
    Operation("GET", PATH, get_webhook, "getWebhook", "Get a webhook endpoint and how it is doing", "webhooks",
              {200: Reply("The endpoint (never its secret).", Webhook)}, errors=BY_ID, scope=Scope.ADMIN),
    Operation("PATCH", PATH, update_webhook, "updateWebhook", "Change, disable or re-enable a webhook endpoint",
              "webhooks", {200: Reply("The endpoint as it is now.", Webhook)}, body=WebhookUpdate,
              description="Only the fields sent change. A new `url` is checked as on POST. `enabled: false` stops "
              "its deliveries (`status` `disabled`; `disabledReason` names who); `enabled: true` on a disabled "
              "endpoint delivers again from now on, its failures forgotten. The secret does not change. "
              f"The body is limited to {MAX_WEBHOOK_BODY} bytes.",
              errors=(*BY_ID, "ValidationFailed", "PayloadTooLarge"), scope=Scope.ADMIN),
    Operation("DELETE", PATH, delete_webhook, "deleteWebhook", "Delete a webhook endpoint", "webhooks",
              {204: Reply("Deleted, with its queued events and its delivery log.")}, errors=BY_ID, scope=Scope.ADMIN),
    Operation("GET", f"{PATH}/deliveries", list_deliveries, "listWebhookDeliveries",
              "List an endpoint's delivery attempts, newest first", "webhooks",
              {200: Reply("One page of the log.", WebhookDeliveryPage)}, query=WebhookDeliveryQuery,
              description="One entry per POST (a batch is one POST), per test, and per batch of events given up. "
              "Kept 30 days. Follow `nextCursor` until it is null.", errors=(*BY_ID, "ValidationFailed"),
              scope=Scope.ADMIN),
    Operation("POST", f"{PATH}/test", send_test_webhook, "testWebhook", "Send a test event to a webhook endpoint now",
              "webhooks", {200: Reply("What the endpoint answered (also logged in its deliveries).",
                                      WebhookTestResult)},
              description="POSTs a `webhook.test` event (`data`: `endpointId`, `message`), signed like any other, "
              "and waits for the answer (at most NOTIFQ_WEBHOOK_TIMEOUT). Works on a disabled endpoint too, to "
              "check a fix before enabling it; the endpoint's status is left as it is. No request body.",
              errors=BY_ID, scope=Scope.ADMIN),
]  # fmt: skip
