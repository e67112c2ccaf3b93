"""Live progress as server-sent events: the dashboard's progress bars move without polling requests.

Each stream polls one cheap query (the campaign rows carry their own counters) and sends
an event only when the JSON changed, plus a comment line every `KEEPALIVE_SECONDS` so
proxies keep the connection open. Bearer authentication as everywhere: browsers read the
stream with fetch() (EventSource cannot send headers, and a token in a URL would leak to
logs and history).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from notifq.api.campaign_routes import campaign_service
from notifq.api.contract import Operation, Reply, json_reply
from notifq.api.models.campaigns import Campaign, Timeline, TimelinePoint
from notifq.api.requests import require_admin
from notifq.campaigns import parse_id
from notifq.errors import NotFound, Unauthorized
from notifq.vocabulary import Scope

LIST_INTERVAL_SECONDS = 1.0
DETAIL_INTERVAL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
LIST_SIZE = 50
log = logging.getLogger("notifq.api")
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # nginx would otherwise buffer the stream


async def _events(
    request: Request, event: str, snapshot: Callable[[], Awaitable[dict[str, Any] | None]], interval: float
) -> AsyncIterator[str]:
    """Ends (the client reconnects) when the token expires, the subject disappears or a read fails."""
    last, last_sent = "", time.monotonic()
    while True:
        try:
            await require_admin(request)  # the token was checked when the stream opened; it may expire since
            body = await snapshot()
        except Unauthorized:
            return
        except Exception as exc:  # PostgreSQL gone mid-stream: end it cleanly, not with a traceback
            log.warning("event stream %s ended: %s: %s", request.url.path, type(exc).__name__, exc)
            return
        if body is None:  # the subject disappeared (e.g. deleted): end the stream
            return
        data = json.dumps(body, separators=(",", ":"))
        if data != last:
            last, last_sent = data, time.monotonic()
            yield f"event: {event}\ndata: {data}\n\n"
        elif time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(interval)  # a disconnect cancels this generator (Starlette's StreamingResponse)


async def campaigns_stream(request: Request) -> Response:
    await require_admin(request)
    service = campaign_service(request)

    async def snapshot() -> dict[str, Any]:
        rows, _ = await service.list_page(limit=LIST_SIZE, status=None, cursor=None)
        return {"items": [Campaign.of(r).model_dump(mode="json") for r in rows]}

    stream = _events(request, "campaigns", snapshot, LIST_INTERVAL_SECONDS)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def campaign_stream(request: Request) -> Response:
    await require_admin(request)
    service = campaign_service(request)
    campaign_id = parse_id(request.path_params["campaign_id"])
    await service.get(campaign_id)  # an unknown id is a 404 JSON error, before the stream starts

    async def snapshot() -> dict[str, Any] | None:
        try:
            return Campaign.of(await service.get(campaign_id)).model_dump(mode="json")
        except NotFound:
            return None

    stream = _events(request, "campaign", snapshot, DETAIL_INTERVAL_SECONDS)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def campaign_timeline(request: Request) -> Response:
    await require_admin(request)
    width, points = await campaign_service(request).timeline(parse_id(request.path_params["campaign_id"]))
    return json_reply(Timeline(bucket_seconds=width, points=[TimelinePoint.model_validate(p, from_attributes=True)
                                                             for p in points]))  # fmt: skip


SSE = "text/event-stream"
OPERATIONS = [
    Operation("GET", "/events/campaigns", campaigns_stream, "streamCampaigns",
              "Live progress of the newest campaigns (server-sent events)", "campaigns",
              {200: Reply(f'`event: campaigns` with `{{"items": [Campaign, …]}}` (the newest {LIST_SIZE}) whenever it '
                          f"changes, checked every {LIST_INTERVAL_SECONDS:g} s; a comment every "
                          f"{KEEPALIVE_SECONDS:g} s keeps the connection open.", str, media_type=SSE)},
              errors=("Unauthorized", "ServiceUnavailable"), scope=Scope.READ),
    Operation("GET", "/events/campaigns/{campaign_id}", campaign_stream, "streamCampaign",
              "Live progress of one campaign (server-sent events)", "campaigns",
              {200: Reply("`event: campaign` with the Campaign (as GET /campaigns/{id}) whenever it changes, checked "
                          f"every {DETAIL_INTERVAL_SECONDS:g} s.", str, media_type=SSE)},
              errors=("Unauthorized", "ServiceUnavailable", "NotFound", "ValidationFailed"), scope=Scope.READ),
    Operation("GET", "/campaigns/{campaign_id}/timeline", campaign_timeline, "getCampaignTimeline",
              "Messages finished, attempts started and retries per second (or wider buckets), for the progress chart",
              "campaigns", {200: Reply("The timeline.", Timeline)},
              description="At most about 300 buckets, wider for long campaigns. `sent` and `failed` count messages by "
              "their final status, so they add up to the campaign's counts; `attempts` and `retried` come from the "
              "audit trail (events pruned by NOTIFQ_EVENT_RETENTION_DAYS are not counted).",
              errors=("Unauthorized", "ServiceUnavailable", "NotFound", "ValidationFailed"), scope=Scope.READ),
]  # fmt: skip
