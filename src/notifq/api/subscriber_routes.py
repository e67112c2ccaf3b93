"""Subscriber endpoints: profiles, preferences, inbox tokens, erasure. Admin bearer tokens only."""

from __future__ import annotations

import logging

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from notifq.api.campaign_routes import ERRORS
from notifq.api.contract import Operation, Reply, json_reply, parse_json, parse_query, read_body
from notifq.api.models.subscribers import (
    Preferences,
    Subscriber,
    SubscriberPage,
    SubscriberPut,
    SubscriberQuery,
    SubscriberToken,
    subscriber_id,
)
from notifq.api.requests import require_admin
from notifq.subscribers import SubscriberService
from notifq.vocabulary import Scope

log = logging.getLogger("notifq.api")
PUT = TypeAdapter(SubscriberPut)
PREFERENCES = TypeAdapter(Preferences)
MAX_SUBSCRIBER_BODY = 64 * 1024


def _service(request: Request) -> SubscriberService:
    service: SubscriberService = request.app.state.subscribers
    return service


def _id(request: Request) -> str:
    return subscriber_id(request.path_params["subscriber_id"])


async def put_subscriber(request: Request) -> Response:
    await require_admin(request)
    sid = _id(request)
    body: SubscriberPut = parse_json(await read_body(request, MAX_SUBSCRIBER_BODY), PUT)
    row, created = await _service(request).put(sid, body.profile())
    return json_reply(Subscriber.of(row), 201 if created else 200, {"Location": f"/subscribers/{sid}"})


async def get_subscriber(request: Request) -> Response:
    await require_admin(request)
    return json_reply(Subscriber.of(await _service(request).get(_id(request))))


async def list_subscribers(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, SubscriberQuery)
    rows, cursor = await _service(request).list_page(q.cursor, q.limit)
    return json_reply(SubscriberPage(items=[Subscriber.of(r) for r in rows], next_cursor=cursor))


async def delete_subscriber(request: Request) -> Response:
    admin_id = await require_admin(request)
    redacted = await _service(request).erase(_id(request))
    log.info("subscriber erased", extra={"admin_id": admin_id, "count": redacted})
    return Response(status_code=204)


async def get_preferences(request: Request) -> Response:
    await require_admin(request)
    row = await _service(request).get(_id(request))
    return json_reply(Preferences.model_validate(row.preferences, strict=False))


async def put_preferences(request: Request) -> Response:
    await require_admin(request)
    sid = _id(request)
    body: Preferences = parse_json(await read_body(request, MAX_SUBSCRIBER_BODY), PREFERENCES)
    await _service(request).set_preferences(sid, body.stored())
    return json_reply(body)


async def issue_token(request: Request) -> Response:
    await require_admin(request)
    issued = await _service(request).issue_token(_id(request))
    return json_reply(SubscriberToken(token=issued.token, expires_at=issued.expires_at), 201)


BY_ID = (*ERRORS, "SubscriberNotFound", "ValidationFailed")
ONE = "/subscribers/{subscriber_id}"
OPERATIONS = [
    Operation("PUT", ONE, put_subscriber, "putSubscriber", "Create or replace a subscriber's profile", "subscribers",
              {200: Reply("Replaced.", Subscriber), 201: Reply("Created.", Subscriber, headers=("Location",))},
              description="The id is your own user id (1 to 128 of `A-Z a-z 0-9 . _ : @ -`, not `.` or `..`). A PUT "
              "replaces the whole profile (a field left out is cleared); preferences are kept. The address a message "
              "uses is read from the profile when a worker takes the message. The body is limited to "
              f"{MAX_SUBSCRIBER_BODY} bytes.",
              body=SubscriberPut, errors=(*BY_ID, "PayloadTooLarge"), scope=Scope.ADMIN),
    Operation("GET", ONE, get_subscriber, "getSubscriber", "Get a subscriber", "subscribers",
              {200: Reply("The profile.", Subscriber)}, errors=BY_ID, scope=Scope.ADMIN),
    Operation("DELETE", ONE, delete_subscriber, "deleteSubscriber", "Erase a subscriber (GDPR)", "subscribers",
              {204: Reply("Erased.")},
              description="Deletes the profile and preferences, and redacts the personal data of the subscriber's "
              "messages and their audit trail (addresses, texts, data, the subscriber id become `[erased]` or "
              "null). Messages not yet sent end `skipped` (`erased`); statuses and counts stay. Open inbox sockets "
              "are closed (code 4403) and its tokens stop working.", errors=BY_ID, scope=Scope.ADMIN),
    Operation("GET", "/subscribers", list_subscribers, "listSubscribers", "List subscribers, in id order",
              "subscribers", {200: Reply("One page.", SubscriberPage)}, query=SubscriberQuery,
              errors=(*ERRORS, "ValidationFailed"), scope=Scope.ADMIN),
    Operation("GET", f"{ONE}/preferences", get_preferences, "getPreferences", "Get a subscriber's preferences",
              "subscribers", {200: Reply("The preferences.", Preferences)}, errors=BY_ID, scope=Scope.ADMIN),
    Operation("PUT", f"{ONE}/preferences", put_preferences, "putPreferences", "Replace a subscriber's preferences",
              "subscribers", {200: Reply("Stored.", Preferences)}, body=Preferences,
              description="Honoured when a worker takes each message (so a change applies to messages already "
              "queued): an opted-out message ends `skipped` (`opted_out`). Transactional messages ignore category "
              "opt-outs, not channel ones.", errors=(*BY_ID, "PayloadTooLarge"), scope=Scope.ADMIN),
    Operation("POST", f"{ONE}/token", issue_token, "issueSubscriberToken", "Issue an inbox token for a subscriber",
              "subscribers", {201: Reply("The token, for `/ws` and `/inbox`.", SubscriberToken)},
              description="Your backend calls this and hands the token to its user's browser or app. It opens only "
              "this subscriber's inbox; it lasts NOTIFQ_SUBSCRIBER_TOKEN_TTL_SECONDS. No request body.",
              errors=BY_ID, scope=Scope.ADMIN),
]  # fmt: skip
