"""Campaign endpoints: parse, call the service, serialise. No SQL and no business rules here."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifq.api import idempotent
from notifq.api.requests import read_json, require_admin
from notifq.api.serializers import campaign_json, message_json
from notifq.campaigns import CampaignService, parse_id
from notifq.db.campaigns_repo import CAMPAIGN_STATUSES, MESSAGE_STATUSES
from notifq.idempotency import Replay, Ticket
from notifq.validation import parse_campaign, parse_choice, parse_limit

log = logging.getLogger("notifq.api")


def campaign_service(request: Request) -> CampaignService:
    service: CampaignService = request.app.state.campaigns
    return service


async def create_campaign(request: Request) -> Response:
    admin_id = require_admin(request)
    settings = request.app.state.settings
    body = await read_json(request, settings.max_body_bytes)
    campaign_request = parse_campaign(body, settings.max_campaign_size)

    async def create(ticket: Ticket | None) -> Response:
        campaign = await campaign_service(request).create(campaign_request, admin_id, ticket)
        context = {"campaign_id": campaign.id, "admin_id": admin_id, "count": campaign.total_messages}
        log.info("campaign created: %d messages on %s", campaign.total_messages, campaign.channel, extra=context)
        return JSONResponse(campaign_json(campaign), 202, headers={"Location": f"/campaigns/{campaign.id}"})

    async def replay(previous: Replay) -> Response:
        campaign = await campaign_service(request).get(parse_id(previous.ids[0]))
        return JSONResponse(campaign_json(campaign), previous.status, headers={"Location": f"/campaigns/{campaign.id}"})

    return await idempotent.run(request, admin_id, body, create, replay)


async def get_campaign(request: Request) -> Response:
    require_admin(request)
    campaign = await campaign_service(request).get(parse_id(request.path_params["campaign_id"]))
    return JSONResponse(campaign_json(campaign))


async def list_campaigns(request: Request) -> Response:
    require_admin(request)
    q = request.query_params
    rows, cursor = await campaign_service(request).list_page(
        limit=parse_limit(q.get("limit")),
        status=parse_choice(q.get("status"), CAMPAIGN_STATUSES, "status"),
        cursor=q.get("cursor") or None,
    )
    return JSONResponse({"items": [campaign_json(r) for r in rows], "nextCursor": cursor})


async def list_messages(request: Request) -> Response:
    require_admin(request)
    q = request.query_params
    rows, cursor = await campaign_service(request).messages(
        parse_id(request.path_params["campaign_id"]),
        status=parse_choice(q.get("status"), MESSAGE_STATUSES, "status"),
        cursor=q.get("cursor") or None,
        limit=parse_limit(q.get("limit"), default=100, maximum=1000),
    )
    return JSONResponse({"items": [message_json(r) for r in rows], "nextCursor": cursor})


async def retry_campaign(request: Request) -> Response:
    admin_id = require_admin(request)
    campaign_id = parse_id(request.path_params["campaign_id"])
    count = await campaign_service(request).retry(campaign_id)
    log.info("campaign retry: %d messages requeued", count,
             extra={"campaign_id": campaign_id, "admin_id": admin_id, "count": count})  # fmt: skip
    return JSONResponse({"requeued": count}, 202)


async def cancel_campaign(request: Request) -> Response:
    admin_id = require_admin(request)
    campaign = await campaign_service(request).cancel(parse_id(request.path_params["campaign_id"]))
    log.info("campaign cancel: now %s", campaign.status, extra={"campaign_id": campaign.id, "admin_id": admin_id})
    return JSONResponse(campaign_json(campaign), 202)


async def pause_campaign(request: Request) -> Response:
    admin_id = require_admin(request)
    campaign = await campaign_service(request).pause(parse_id(request.path_params["campaign_id"]))
    log.info("campaign pause: now %s", campaign.status, extra={"campaign_id": campaign.id, "admin_id": admin_id})
    return JSONResponse(campaign_json(campaign), 202)


async def resume_campaign(request: Request) -> Response:
    admin_id = require_admin(request)
    campaign = await campaign_service(request).resume(parse_id(request.path_params["campaign_id"]))
    log.info("campaign resume: now %s", campaign.status, extra={"campaign_id": campaign.id, "admin_id": admin_id})
    return JSONResponse(campaign_json(campaign), 202)


ROUTES = [
    Route("/campaigns", create_campaign, methods=["POST"]),
    Route("/campaigns", list_campaigns, methods=["GET"]),
    Route("/campaigns/{campaign_id}", get_campaign, methods=["GET"]),
    Route("/campaigns/{campaign_id}/messages", list_messages, methods=["GET"]),
    Route("/campaigns/{campaign_id}/retry", retry_campaign, methods=["POST"]),
    Route("/campaigns/{campaign_id}/cancel", cancel_campaign, methods=["POST"]),
    Route("/campaigns/{campaign_id}/pause", pause_campaign, methods=["POST"]),
    Route("/campaigns/{campaign_id}/resume", resume_campaign, methods=["POST"]),
]
