"""Single notifications, dead letters and statistics."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifq.addresses import CHANNELS
from notifq.api import idempotent
from notifq.api.requests import read_json, require_admin
from notifq.api.serializers import notification_json
from notifq.campaigns import parse_id
from notifq.db.campaigns_repo import MESSAGE_STATUSES
from notifq.errors import ValidationError
from notifq.idempotency import Replay, Ticket
from notifq.notifications import NotificationService, parse_message_id
from notifq.validation import check_storable, parse_choice, parse_limit, parse_notifications

MAX_BATCH = 1000
log = logging.getLogger("notifq.api")


def _service(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.notifications
    return service


def _storable(value: str | None, field: str) -> str | None:
    if value is not None:
        check_storable(value, field)
    return value


def _created(rows: list[Any], is_batch: bool, status: int = 202) -> Response:
    if is_batch:
        return JSONResponse({"ids": [str(r.id) for r in rows], "items": [notification_json(r) for r in rows]}, status)
    return JSONResponse(notification_json(rows[0]), status, headers={"Location": f"/notifications/{rows[0].id}"})


async def create_notifications(request: Request) -> Response:
    admin_id = require_admin(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    items, is_batch = parse_notifications(body, MAX_BATCH)

    async def create(ticket: Ticket | None) -> Response:
        rows = await _service(request).create(items, admin_id, ticket)
        first = rows[0].id if len(rows) == 1 else None  # a batch logs its size, not a thousand ids
        log.info("notifications accepted: %d", len(rows), extra={"message_id": first, "admin_id": admin_id,
                                                                 "count": len(rows)})  # fmt: skip
        return _created(rows, is_batch)

    async def replay(previous: Replay) -> Response:
        rows = await _service(request).rows([int(i) for i in previous.ids])
        return _created(rows, is_batch, previous.status)

    return await idempotent.run(request, admin_id, body, create, replay)


async def get_notification(request: Request) -> Response:
    require_admin(request)
    view = await _service(request).get(parse_message_id(request.path_params["notification_id"]))
    return JSONResponse(notification_json(view.message, view.events))


async def list_notifications(request: Request) -> Response:
    require_admin(request)
    q = request.query_params
    rows, cursor = await _service(request).list_page(
        status=parse_choice(q.get("status"), MESSAGE_STATUSES, "status"),
        channel=parse_choice(q.get("channel"), CHANNELS, "channel"),
        to=_storable(q.get("to") or None, "to"),
        cursor=q.get("cursor") or None,
        limit=parse_limit(q.get("limit"), default=50, maximum=500),
    )
    return JSONResponse({"items": [notification_json(r) for r in rows], "nextCursor": cursor})


async def cancel_notification(request: Request) -> Response:
    require_admin(request)
    row = await _service(request).cancel(parse_message_id(request.path_params["notification_id"]))
    return JSONResponse(notification_json(row), 202)


async def list_dead_letters(request: Request) -> Response:
    require_admin(request)
    q = request.query_params
    campaign = q.get("campaignId")
    rows, cursor = await _service(request).dead_letters(
        channel=parse_choice(q.get("channel"), CHANNELS, "channel"),
        campaign_id=parse_id(campaign) if campaign else None,
        cursor=q.get("cursor") or None,
        limit=parse_limit(q.get("limit"), default=50, maximum=500),
    )
    return JSONResponse({"items": [notification_json(r) for r in rows], "nextCursor": cursor})


async def redrive(request: Request) -> Response:
    require_admin(request)
    body = await read_json(request, 1024 * 1024)
    if not isinstance(body, dict) or ("ids" in body) == ("filter" in body):
        raise ValidationError("give exactly one of `ids` (a list of message ids) or `filter`",
                              {"fields": ["ids", "filter"]})  # fmt: skip
    ids = None
    channel = campaign = None
    if "ids" in body:
        raw = body["ids"]
        if not isinstance(raw, list) or not raw or len(raw) > 10_000:
            raise ValidationError("`ids` must be a list of 1 to 10,000 message ids", {"field": "ids"})
        ids = [parse_message_id(str(i)) for i in raw]
    else:
        f = body["filter"]
        if not isinstance(f, dict) or set(f) - {"channel", "campaignId"}:
            raise ValidationError("`filter` may hold `channel` and `campaignId`", {"field": "filter"})
        channel = parse_choice(f.get("channel"), CHANNELS, "filter.channel")
        campaign = parse_id(str(f["campaignId"])) if f.get("campaignId") else None
    count = await _service(request).redrive(ids=ids, channel=channel, campaign_id=campaign)
    return JSONResponse({"redriven": count}, 202)


async def stats(request: Request) -> Response:
    require_admin(request)
    return JSONResponse(await _service(request).stats())


ROUTES = [
    Route("/notifications", create_notifications, methods=["POST"]),
    Route("/notifications", list_notifications, methods=["GET"]),
    Route("/notifications/{notification_id}", get_notification, methods=["GET"]),
    Route("/notifications/{notification_id}/cancel", cancel_notification, methods=["POST"]),
    Route("/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/dead-letters/redrive", redrive, methods=["POST"]),
    Route("/stats", stats, methods=["GET"]),
]
