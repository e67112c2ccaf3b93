"""One-click unsubscribe (RFC 8058): `GET /u/{token}` asks, `POST /u/{token}` unsubscribes.

Public: the link's HMAC is the authorisation (unsubscribe_links.py). A GET never changes
anything, because mail scanners and link previews fetch every URL in an email; the page it
shows has a button that POSTs. Mailbox providers (Gmail's and Yahoo's unsubscribe buttons)
POST `List-Unsubscribe=One-Click` straight to the URL from the List-Unsubscribe header.
Using a link twice is harmless: it changes and counts nothing the second time.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from notifq.api.contract import Operation, Reply, read_body
from notifq.api.models.deliverability import OneClick
from notifq.errors import NotFound
from notifq.feedback import FeedbackService, mask
from notifq.unsubscribe_links import message_of

MAX_UNSUBSCRIBE_BODY = 1024  # `List-Unsubscribe=One-Click`, or a form's empty body
NO_STORE = {"Cache-Control": "no-store"}


def _message_id(request: Request) -> int:
    message_id = message_of(request.app.state.unsubscribe_key, request.path_params["token"])
    if message_id is None:
        raise NotFound("this is not a valid unsubscribe link", {"field": "token"})
    return message_id


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>{body}</main></body>"
        "</html>",
        headers=NO_STORE,
    )


async def confirm_page(request: Request) -> Response:
    message_id = _message_id(request)
    feedback: FeedbackService = request.app.state.feedback
    target = await feedback.unsubscribe_target(message_id)
    what = f"{target.category} messages" if target.category else "these messages"
    return _page("Unsubscribe", (
        f"<p>Stop sending {html.escape(what)} to {html.escape(mask(target.recipient))}?</p>"
        # action="": the URL of this page, whatever prefix a proxy serves it under.
        '<form method="post" action=""><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    ))  # fmt: skip


async def unsubscribe(request: Request) -> Response:
    message_id = _message_id(request)
    # Whatever it says, empty included: the URL alone decides (RFC 8058 §3.2).
    await read_body(request, MAX_UNSUBSCRIBE_BODY, allow_empty=True)
    feedback: FeedbackService = request.app.state.feedback
    what = await feedback.unsubscribe(message_id)
    return _page("You are unsubscribed", f"<p>You will no longer receive {html.escape(what)}.</p>")


ERRORS = ("LinkNotFound", "ServiceUnavailable")
OPERATIONS = [
    Operation("GET", "/u/{token}", confirm_page, "unsubscribePage", "The unsubscribe confirmation page",
              "deliverability", {200: Reply("An HTML page with an Unsubscribe button (a POST to the same URL).",
                                            str, media_type="text/html")}, public=True,
              description="Changes nothing (mail scanners prefetch links). Public: the token is the authorisation.",
              errors=ERRORS),
    Operation("POST", "/u/{token}", unsubscribe, "unsubscribe", "One-click unsubscribe (RFC 8058)",
              "deliverability", {200: Reply("Unsubscribed (or already): an HTML confirmation.", str,
                                            media_type="text/html")}, public=True,
              description="What mailbox providers POST (`List-Unsubscribe=One-Click`, form-encoded) when the "
              "recipient presses their Unsubscribe button; the page's button posts the same. Public, no login. A "
              "subscriber's message with a category turns that category off for the channel in the subscriber's "
              "preferences; otherwise the address is suppressed (`unsubscribed`) for bulk messages of the "
              "message's category (of every category when it had none). Transactional messages are never stopped "
              "by an unsubscribe. The message's audit trail gets `unsubscribed` and its campaign's unsubscribe "
              f"count moves, once. The body (at most {MAX_UNSUBSCRIBE_BODY} bytes) is not read.",
              body=OneClick, body_media_type="application/x-www-form-urlencoded",
              errors=(*ERRORS, "PayloadTooLarge")),
]  # fmt: skip
