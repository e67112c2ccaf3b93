"""The suppression list: addresses no message goes to. Admin bearer tokens only."""

from __future__ import annotations

import logging

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from notifq.api.campaign_routes import ERRORS
from notifq.api.contract import Operation, Reply, json_reply, parse_json, parse_query, read_body
from notifq.api.models.deliverability import Suppression, SuppressionCreate, SuppressionPage, SuppressionQuery
from notifq.api.requests import require_admin
from notifq.suppressions import SuppressionService
from notifq.vocabulary import Channel, Scope, SuppressionReason

log = logging.getLogger("notifq.api")
CREATE = TypeAdapter(SuppressionCreate)
MAX_SUPPRESSION_BODY = 16 * 1024


def _service(request: Request) -> SuppressionService:
    service: SuppressionService = request.app.state.suppressions
    return service


async def list_suppressions(request: Request) -> Response:
    await require_admin(request)
    q = parse_query(request, SuppressionQuery)
    rows, cursor = await _service(request).list_page(Channel(q.channel) if q.channel else None, q.reason, q.cursor,
                                                     q.limit)  # fmt: skip
    return json_reply(SuppressionPage(items=[Suppression.of(r) for r in rows], next_cursor=cursor))


async def add_suppression(request: Request) -> Response:
    admin_id = await require_admin(request)
    body: SuppressionCreate = parse_json(await read_body(request, MAX_SUPPRESSION_BODY), CREATE)
    row, created = await _service(request).add(Channel(body.channel), body.address, SuppressionReason(body.reason),
                                               body.detail)  # fmt: skip
    if created:
        log.info("address suppressed by hand", extra={"admin_id": admin_id, "channel": body.channel})
    return json_reply(Suppression.of(row), 201 if created else 200)


async def delete_suppression(request: Request) -> Response:
    admin_id = await require_admin(request)
    channel = request.path_params["channel"]
    removed = await _service(request).remove(channel, request.path_params["address"])
    log.info("address removed from the suppression list", extra={"admin_id": admin_id, "count": removed})
    return Response(status_code=204)


OPERATIONS = [
    Operation("GET", "/suppressions", list_suppressions, "listSuppressions", "List the suppression list",
              "deliverability", {200: Reply("One page.", SuppressionPage)}, query=SuppressionQuery,
              description="Every address no message goes to, and why. Workers check the list when they take each "
              "message: a suppressed one ends `skipped` with skipReason `suppressed`, and no provider is called.",
              errors=(*ERRORS, "ValidationFailed"), scope=Scope.ADMIN),
    Operation("POST", "/suppressions", add_suppression, "addSuppression", "Suppress an address by hand",
              "deliverability", {201: Reply("Added.", Suppression),
                                 200: Reply("Already suppressed: the existing entry (an unsubscribe becomes `manual`, "
                                            "which stops every message).", Suppression)},
              body=SuppressionCreate, description="The address is normalised (email domains in lower case, phones "
              f"to E.164). The body is limited to {MAX_SUPPRESSION_BODY} bytes.",
              errors=(*ERRORS, "ValidationFailed", "PayloadTooLarge"), scope=Scope.ADMIN),
    # `:path`: an email address may hold a `/` (sent as %2F, which the server decodes before routing).
    Operation("DELETE", "/suppressions/{channel}/{address:path}", delete_suppression, "deleteSuppression",
              "Take an address off the suppression list", "deliverability",
              {204: Reply("Removed (every entry of the address, unsubscribes of any category included).")},
              description="The address in the path is normalised as on POST (`Ann@Example.COM` finds "
              "`Ann@example.com`); one that is not an address of the channel is a 404 (it cannot be on the list). "
              "Messages already skipped stay skipped; new ones are sent.",
              errors=(*ERRORS, "SuppressionNotFound", "ValidationFailed"), scope=Scope.ADMIN),
]  # fmt: skip
