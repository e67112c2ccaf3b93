"""Single notifications, dead letters and statistics."""

from __future__ import annotations

import logging

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from notifq.api import idempotent
from notifq.api.campaign_routes import ERRORS, IDEMPOTENCY_NOTE
from notifq.api.contract import Operation, Reply, json_reply, parse_json, parse_query, read_body
from notifq.api.models.notifications import (
    MAX_BATCH,
    DeadLetterQuery,
    Notification,
    NotificationBatch,
    NotificationBatchResult,
    NotificationCreate,
    NotificationPage,
    NotificationQuery,
    NotificationWithEvents,
    RedriveRequest,
    RedriveResult,
    Stats,
)
from notifq.api.requests import require_admin
from notifq.db.messages_repo import MessageRow
from notifq.idempotency import Replay, Ticket
from notifq.notifications import NotificationService, parse_message_id
from notifq.vocabulary import Scope

log = logging.getLogger("notifq.api")
ONE = TypeAdapter(NotificationCreate)
BATCH: TypeAdapter[list[NotificationCreate]] = TypeAdapter(NotificationBatch)
REDRIVE = TypeAdapter(RedriveRequest)
REDRIVE_BODY_BYTES = 1024 * 1024


def _service(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.notifications
    return service


def _created(rows: list[MessageRow], is_batch: bool, status: int = 202) -> Response:
    if is_batch:
        items = [Notification.of(r) for r in rows]
        return json_reply(NotificationBatchResult(ids=[n.id for n in items], items=items), status)
    return json_reply(Notification.of(rows[0]), status, {"Location": f"/notifications/{rows[0].id}"})


async def create_notifications(request: Request) -> Response:
    admin_id = await require_admin(request)
    raw = await read_body(request, request.app.state.settings.max_body_bytes)
    is_batch = raw.lstrip()[:1] == b"["  # one object, or a JSON array of them (the batch API)
    items = parse_json(raw, BATCH) if is_batch else [parse_json(raw, ONE)]
    requests = [item.request() for item in items]

    async def create(ticket: Ticket | None) -> Response:
        rows = await _service(request).create(requests, admin_id, ticket)
        first = rows[0].id if len(rows) == 1 else None  # a batch logs its size, not a thousand ids
        log.info("notifications accepted: %d", len(rows), extra={"message_id": first, "admin_id": admin_id,
                                                                 "count": len(rows)})  # fmt: skip
        return _created(rows, is_batch)

    async def replay(previous: Replay) -> Response:
        return _created(await _service(request).rows([int(i) for i in previous.ids]), is_batch, previous.status)

    return await idempotent.run(request, admin_id, raw, create, replay)


async def get_notification(request: Request) -> Response:
    await require_admin(request)
    view = await _service(request).get(parse_message_id(request.path_params["notification_id"]))
    return json_reply(NotificationWithEvents.with_events(view.message, view.events))


async def list_notifications(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, NotificationQuery)
    rows, cursor = await _service(request).list_page(status=q.status, channel=q.channel, to=q.to, cursor=q.cursor,
                                                     limit=q.limit, since=q.since, until=q.until)  # fmt: skip
    return json_reply(NotificationPage(items=[Notification.of(r) for r in rows], next_cursor=cursor))


async def cancel_notification(request: Request) -> Response:
    await require_admin(request)
    row = await _service(request).cancel(parse_message_id(request.path_params["notification_id"]))
    return json_reply(Notification.of(row), 202)


async def list_dead_letters(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, DeadLetterQuery)
    rows, cursor = await _service(request).dead_letters(channel=q.channel, campaign_id=q.campaign_id,
                                                        cursor=q.cursor, limit=q.limit)  # fmt: skip
    return json_reply(NotificationPage(items=[Notification.of(r) for r in rows], next_cursor=cursor))


async def redrive(request: Request) -> Response:
    await require_admin(request)
    body: RedriveRequest = parse_json(await read_body(request, REDRIVE_BODY_BYTES), REDRIVE)
    f = body.filter
    count = await _service(request).redrive(ids=body.message_ids(), channel=f.channel if f else None,
                                            campaign_id=f.campaign_id if f else None)  # fmt: skip
    return json_reply(RedriveResult(redriven=count), 202)


async def stats(request: Request) -> Response:
    await require_admin(request)
    return json_reply(Stats.model_validate(await _service(request).stats()))


BY_ID = (*ERRORS, "NotificationNotFound", "ValidationFailed")
OPERATIONS = [
    Operation(
        "POST", "/notifications", create_notifications, "createNotifications", "Send one notification, or a batch",
        "notifications",
        {202: Reply("Accepted (or replayed). For one object: the Notification, with `Location: /notifications/{id}`. "
                    "For an array: `{ids, items}` in request order.", Notification | NotificationBatchResult,
                    headers=("Location", "Idempotent-Replayed"))},
        description="One notification (an object) or a batch (an array of 1 to "
        f"{MAX_BATCH}, all created or none). The address is checked against the channel; the row is written, then "
        "its delivery job is queued on its lane (`transactional` by default: ahead of campaigns).\n\n"
        + IDEMPOTENCY_NOTE,
        body=NotificationCreate | NotificationBatch, headers=("Idempotency-Key",),
        errors=(*ERRORS, "ValidationFailed", "PayloadTooLarge", "IdempotencyInProgress"),
        scope=Scope.NOTIFICATIONS_SEND,
    ),
    Operation("GET", "/notifications", list_notifications, "listNotifications",
              "List single notifications, newest first", "notifications",
              {200: Reply("One page of notifications.", NotificationPage)}, query=NotificationQuery,
              description="Campaign messages are listed per campaign. Filters combine. With `since` or `until` "
              "(createdAt in [since, until)) the page is ordered by createdAt, newest first; without, by id. "
              "Pass `nextCursor` as `cursor`, with the same filters, for the next page.",
              errors=(*ERRORS, "ValidationFailed"), scope=Scope.READ),
    Operation("GET", "/notifications/{notification_id}", get_notification, "getNotification",
              "Get a notification (or any campaign message) with its audit trail", "notifications",
              {200: Reply("The notification and its events, oldest first.", NotificationWithEvents)}, errors=BY_ID,
              scope=Scope.READ),
    Operation("POST", "/notifications/{notification_id}/cancel", cancel_notification, "cancelNotification",
              "Cancel a notification that has not started", "notifications",
              {202: Reply("Cancelled.", Notification),
               409: Reply("It already started or finished (`conflict`, details `{\"status\": ...}`).", "Error")},
              description="No request body.", errors=BY_ID, scope=Scope.CAMPAIGNS_WRITE),
    Operation("GET", "/dead-letters", list_dead_letters, "listDeadLetters",
              "List permanently failed messages, newest first", "dead-letters",
              {200: Reply("One page of dead letters.", NotificationPage)}, query=DeadLetterQuery,
              errors=(*ERRORS, "ValidationFailed"), scope=Scope.READ),
    Operation("POST", "/dead-letters/redrive", redrive, "redriveDeadLetters",
              "Send dead letters again with fresh attempts", "dead-letters",
              {202: Reply("Queued again.", RedriveResult)}, body=RedriveRequest,
              description=f"The body is limited to {REDRIVE_BODY_BYTES} bytes.",
              errors=(*ERRORS, "ValidationFailed", "PayloadTooLarge"), scope=Scope.CAMPAIGNS_WRITE),
    Operation("GET", "/stats", stats, "getStats", "Message counts, send rate and queue depth", "stats",
              {200: Reply("The figures.", Stats)}, errors=ERRORS, scope=Scope.READ),
]  # fmt: skip
