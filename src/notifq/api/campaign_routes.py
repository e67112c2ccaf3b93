"""Campaign endpoints: parse with the models, call the service, answer with the models. No SQL here."""

from __future__ import annotations

import logging

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from notifq.api import idempotent
from notifq.api.contract import Operation, Reply, json_reply, parse_json, parse_query, read_body
from notifq.api.models.campaigns import (
    Campaign,
    CampaignCreate,
    CampaignPage,
    CampaignQuery,
    Message,
    MessagePage,
    MessageQuery,
    RetryResult,
)
from notifq.api.requests import require_admin
from notifq.campaigns import CampaignService, parse_id
from notifq.idempotency import Replay, Ticket
from notifq.vocabulary import Scope

log = logging.getLogger("notifq.api")
CREATE = TypeAdapter(CampaignCreate)


def campaign_service(request: Request) -> CampaignService:
    service: CampaignService = request.app.state.campaigns
    return service


def _created(campaign: Campaign, status: int) -> Response:
    return json_reply(campaign, status, {"Location": f"/campaigns/{campaign.id}"})


async def create_campaign(request: Request) -> Response:
    admin_id = await require_admin(request)
    settings = request.app.state.settings
    raw = await read_body(request, settings.max_body_bytes)
    body: CampaignCreate = parse_json(raw, CREATE, {"max_campaign_size": settings.max_campaign_size})

    async def create(ticket: Ticket | None) -> Response:
        campaign = await campaign_service(request).create(body.request(), admin_id, ticket)
        context = {"campaign_id": campaign.id, "admin_id": admin_id, "count": campaign.total_messages}
        log.info("campaign created: %d messages on %s", campaign.total_messages, campaign.channel, extra=context)
        return _created(Campaign.of(campaign), 202)

    async def replay(previous: Replay) -> Response:
        return _created(Campaign.of(await campaign_service(request).get(parse_id(previous.ids[0]))), previous.status)

    return await idempotent.run(request, admin_id, raw, create, replay)


async def get_campaign(request: Request) -> Response:
    await require_admin(request)
    return json_reply(Campaign.of(await campaign_service(request).get(parse_id(request.path_params["campaign_id"]))))


async def list_campaigns(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, CampaignQuery)
    rows, cursor = await campaign_service(request).list_page(limit=q.limit, status=q.status, cursor=q.cursor)
    return json_reply(CampaignPage(items=[Campaign.of(r) for r in rows], next_cursor=cursor))


async def list_messages(request: Request) -> Response:
    await require_admin(request)
    campaign_id = parse_id(request.path_params["campaign_id"])
    q = parse_query(request, MessageQuery)
    rows, cursor = await campaign_service(request).messages(campaign_id, status=q.status, cursor=q.cursor,
                                                            limit=q.limit)  # fmt: skip
    return json_reply(MessagePage(items=[Message.of(r) for r in rows], next_cursor=cursor))


async def retry_campaign(request: Request) -> Response:
    admin_id = await require_admin(request)
    campaign_id = parse_id(request.path_params["campaign_id"])
    count = await campaign_service(request).retry(campaign_id)
    log.info("campaign retry: %d messages requeued", count,
             extra={"campaign_id": campaign_id, "admin_id": admin_id, "count": count})  # fmt: skip
    return json_reply(RetryResult(requeued=count), 202)


def _action(verb: str) -> object:
    async def act(request: Request) -> Response:
        admin_id = await require_admin(request)
        service = campaign_service(request)
        campaign = await getattr(service, verb)(parse_id(request.path_params["campaign_id"]))
        log.info("campaign %s: now %s", verb, campaign.status, extra={"campaign_id": campaign.id, "admin_id": admin_id})
        return json_reply(Campaign.of(campaign), 202)

    act.__name__ = f"{verb}_campaign"
    return act


ERRORS = ("Unauthorized", "ServiceUnavailable")
BY_ID = (*ERRORS, "NotFound", "ValidationFailed")
IDEMPOTENCY_NOTE = (
    "With an `Idempotency-Key` header (1 to 255 printable ASCII characters, per admin), the same key with the same "
    "request body (byte for byte) within 24 h replays the first response: its status code, the created resources "
    "in their current state, and `Idempotent-Replayed: true`; nothing new is created. The same key with a different "
    "body is a 422; a duplicate arriving while the first is still being processed is a 409 (retry it shortly). A "
    "request that failed frees its key, and a claim older than 120 s that never finished is taken over. The body is "
    "checked before the key, so an invalid body is a 422 whatever the key."
)
_CAMPAIGN = Reply("Done; the updated campaign.", Campaign)
_CONFLICT = Reply('The campaign\'s status does not allow it (`conflict`, details `{"status": ...}`).', "Error")


def _act(verb: str, summary: str, description: str) -> Operation:
    return Operation("POST", f"/campaigns/{{campaign_id}}/{verb}", _action(verb),  # type: ignore[arg-type]
                     f"{verb}Campaign", summary, "campaigns", {202: _CAMPAIGN, 409: _CONFLICT},
                     description=description + " No request body.", errors=BY_ID,
                     scope=Scope.CAMPAIGNS_WRITE)  # fmt: skip


OPERATIONS = [
    Operation(
        "POST", "/campaigns", create_campaign, "createCampaign",
        "Create a campaign and queue (or schedule) its messages", "campaigns",
        {202: Reply("Accepted (or replayed); delivery proceeds in the background.", Campaign,
                    headers=("Location", "Idempotent-Replayed"))},
        description="The whole request (addresses in the channel's format, templates and every recipient's "
        "variables, `sendAt`) is checked before anything is written. The campaign and all its messages are then "
        "written in one PostgreSQL transaction; the delivery batches are queued in Redis after the commit. The "
        "response shows `processing` once the batches are queued; if Redis failed between the commit and the "
        "enqueue it shows `pending`, and the reconciler queues the batches later (nothing is lost). With a future "
        "`sendAt` the campaign is `scheduled` and its messages `pending` until then. Redis is checked first, so a "
        "503 means nothing was written. The body is limited to `NOTIFQ_MAX_BODY_BYTES`.\n\n" + IDEMPOTENCY_NOTE,
        body=CampaignCreate, headers=("Idempotency-Key",),
        errors=(*ERRORS, "ValidationFailed", "PayloadTooLarge", "IdempotencyInProgress"), scope=Scope.CAMPAIGNS_WRITE,
    ),
    Operation("GET", "/campaigns", list_campaigns, "listCampaigns", "List campaigns, newest first", "campaigns",
              {200: Reply("One page of campaigns.", CampaignPage)}, query=CampaignQuery,
              description="Keyset-paginated on (createdAt, id): follow `nextCursor` until it is null.",
              errors=(*ERRORS, "ValidationFailed"), scope=Scope.READ),
    Operation("GET", "/campaigns/{campaign_id}", get_campaign, "getCampaign", "Get a campaign and its progress",
              "campaigns", {200: Reply("The campaign.", Campaign)}, errors=BY_ID, scope=Scope.READ),
    Operation("GET", "/campaigns/{campaign_id}/messages", list_messages, "listCampaignMessages",
              "List a campaign's messages in creation order", "campaigns",
              {200: Reply("One page of messages.", MessagePage)}, query=MessageQuery, errors=BY_ID,
              description="Paginated by message id: follow `nextCursor` until it is null. A message's full history "
              "is at GET /notifications/{id}.", scope=Scope.READ),
    Operation("POST", "/campaigns/{campaign_id}/retry", retry_campaign, "retryCampaign",
              "Requeue the campaign's failed messages", "campaigns",
              {202: Reply("The failed messages are queued again with fresh attempts.", RetryResult), 409: _CONFLICT},
              description="No request body.", errors=BY_ID, scope=Scope.CAMPAIGNS_WRITE),
    _act("cancel", "Cancel a campaign", "Messages not yet sent are cancelled; the campaign becomes `cancelled`."),
    _act("pause", "Pause a campaign", "Queued messages are held (`pending`) until POST …/resume."),
    _act("resume", "Resume a paused campaign", "Held messages are queued again."),
]  # fmt: skip
