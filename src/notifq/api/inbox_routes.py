"""The in-app inbox: the `/ws` WebSocket (AUTH, replay, live frames, ACK/READ) and `/inbox` over HTTP.

Protocol (docs/inapp.md): the client's first frame is `{"type":"AUTH","token":…}` within
AUTH_TIMEOUT_SECONDS (else close 4401); the server replays every un-ACKed notification,
oldest first, sends `{"type":"READY","replayed":N}`, then live NOTIFICATION frames. The
client answers `{"type":"ACK","id"}` (deliveredAt) and `{"type":"READ","id"}` (readAt);
both are written in batches (inbox.Receipts). Anything else gets an ERROR frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from notifq.api.contract import Operation, Reply, json_reply, parse_query
from notifq.api.models.subscribers import InboxNotification, InboxPage, InboxQuery, ReadAllResult
from notifq.api.requests import require_subscriber
from notifq.auth import SubscriberClaims, verify_subscriber_token
from notifq.db.messages_repo import MAX_ID
from notifq.errors import NotifqError, Unauthorized
from notifq.fanout import Hub
from notifq.inbox import Admission, InboxService, frame_id
from notifq.notifications import parse_message_id

log = logging.getLogger("notifq.inbox")
AUTH_TIMEOUT_SECONDS = 5.0
UNAUTHORIZED = 4401
OUTBOX_LIMIT = 5000  # frames queued for one socket; past it the client is too slow: closed (1013), it replays later
SENT_MEMORY = 10_000  # ids sent and not yet ACKed, remembered per socket (to not repeat them on a resync)
READY = '{{"type":"READY","replayed":{n}}}'


def _error(message: str) -> str:
    return json.dumps({"type": "ERROR", "message": message})


class _Started:
    """A coroutine already run up to its first suspension, awaitable from there (so a task can finish it)."""

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        value = self.yielded
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # a cancellation, passed on to the coroutine
                try:
                    value = self.coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = self.coro.send(sent)
                except StopIteration:
                    return


class LiveSocket:
    """One authenticated socket: frames from the hub (live) and from replays, sent in order, never blocking the hub.

    A frame is sent at once, in the caller's loop turn, when nothing is queued before it:
    uvicorn's `send` only suspends while the transport's buffer is full, so the coroutine is
    stepped by hand and only one that suspends is handed to a task, which also sends what
    queues up behind it. Measured (2026-12-01, uvloop, 10,000 sockets with a frame each, the
    send chain reduced to its awaits): a task per frame cost ~3.5 µs of CPU, stepping ~0.9 µs;
    small beside the ~60 µs a notification costs the API in all (`make bench --only inapp`).
    """

    def __init__(self, ws: WebSocket, subscriber_id: str, inbox: InboxService, hub: Hub) -> None:
        self.ws = ws
        self.subscriber_id = subscriber_id
        self.inbox = inbox
        self.hub = hub
        self.replaying = True
        self.held: list[bytes] = []  # live frames that arrive while a replay runs
        self.sent: set[int] = set()
        self.out: deque[str] = deque()
        self.sender: asyncio.Task[None] | None = None
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()

    def deliver(self, frame: bytes) -> None:
        if self.closed:
            return
        if self.replaying:
            self.held.append(frame)
            return
        mid = frame_id(frame)
        if mid in self.sent:
            return
        self._remember(mid)
        self._queue(frame.decode())

    def _remember(self, mid: int) -> None:
        if len(self.sent) >= SENT_MEMORY:
            self.sent.clear()
        self.sent.add(mid)

    def _queue(self, text: str) -> None:
        if self.sender is not None:  # a send is waiting for the transport: in line behind it
            self.out.append(text)
            if len(self.out) > OUTBOX_LIMIT:
                self.close(1013, "client too slow; reconnect to replay")
            return
        coro = self.ws.send({"type": "websocket.send", "text": text})
        try:
            yielded = coro.send(None)
        except StopIteration:
            return  # written to the transport
        except Exception:
            self.closed = True
            return
        self.sender = asyncio.create_task(self._drain(_Started(coro, yielded)))

    async def _drain(self, first: _Started) -> None:
        try:
            await first
            while self.out and not self.closed:
                await self.ws.send({"type": "websocket.send", "text": self.out.popleft()})
        except Exception:
            self.closed = True
        finally:
            self.sender = None

    async def _replay_batch(self, frames: list[bytes]) -> None:
        for frame in frames:
            mid = frame_id(frame)
            if mid not in self.sent:
                self._remember(mid)
                self._queue(frame.decode())

    async def replay(self, admission: Admission | None = None) -> int:
        """Un-ACKed notifications, oldest first; live frames that came meanwhile follow, without repeats."""
        self.replaying = True
        try:
            replayed = await self.inbox.replay(self.subscriber_id, self._replay_batch, admission)
        finally:
            held, self.held = self.held, []
            self.replaying = False
        for frame in held:
            self.deliver(frame)
        return len(replayed)

    def resync(self) -> None:
        self._spawn(self.replay())

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._spawn(self.ws.close(code, reason))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def acknowledge(self, mid: int, read: bool) -> None:
        self.sent.discard(mid)
        self.inbox.receipts.add(mid, self.subscriber_id, read)


async def _authenticate(ws: WebSocket) -> SubscriberClaims | None:
    """The AUTH frame's token claims (subscriber id, expiry, key); None after closing with 4401.

    Whether the subscriber still exists is the admission's to say (`inbox_socket`): it is looked
    up with the other sockets connecting at the same time, once the socket's channel is subscribed.
    """
    settings = ws.app.state.settings
    try:
        raw = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_SECONDS)
        frame = _json(raw)
        if not isinstance(frame, dict) or frame.get("type") != "AUTH" or not isinstance(frame.get("token"), str):
            raise Unauthorized('the first frame must be {"type":"AUTH","token":"..."}')
        return verify_subscriber_token(settings.jwt_secret, settings.jwt_issuer, frame["token"])
    except TimeoutError:
        await ws.close(UNAUTHORIZED, f"AUTH expected within {AUTH_TIMEOUT_SECONDS:g} s")
    except (WebSocketDisconnect, RuntimeError):
        return None
    except NotifqError as exc:
        await ws.close(UNAUTHORIZED, exc.message[:120])
    except (ValueError, KeyError, TypeError):
        await ws.close(UNAUTHORIZED, "malformed AUTH frame")
    return None


def _json(raw: str) -> Any:
    """A client frame parsed; too deep a frame is malformed (a ValueError), never a RecursionError, which is a
    RuntimeError and would read as the client gone."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("frame nested too deeply") from None


def _receipt(raw: str | None) -> tuple[str, int] | str:
    """(`ACK` or `READ`, id), or an error message."""
    try:
        frame = _json(raw or "")
    except ValueError:
        return "frames are JSON objects"
    if not isinstance(frame, dict):
        return "frames are JSON objects"
    kind, mid = frame.get("type"), frame.get("id")
    if kind not in ("ACK", "READ", "PING"):
        return "unknown frame type (expected ACK, READ or PING)"
    if kind == "PING":
        return ("PING", 0)
    text = str(mid) if isinstance(mid, (str, int)) and not isinstance(mid, bool) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or not 1 <= int(text) <= MAX_ID:
        return "`id` must be a notification id"
    return (kind, int(text))


async def inbox_socket(ws: WebSocket) -> None:
    await ws.accept()
    authed = await _authenticate(ws)
    if authed is None:
        return
    subscriber_id, expires = authed.subscriber_id, float(authed.exp)
    state = ws.app.state
    socket = LiveSocket(ws, subscriber_id, state.inbox, state.hub)
    await state.hub.add(socket)
    try:
        admission = await state.inbox.admit(subscriber_id, authed.key)
    except BaseException:
        await state.hub.remove(socket)
        raise
    if not admission.exists:
        await state.hub.remove(socket)
        await ws.close(UNAUTHORIZED, "this subscriber no longer exists")
        return
    expiry = asyncio.get_running_loop().call_later(max(0.0, expires - time.time()), socket.close, UNAUTHORIZED,
                                                   "token expired")  # fmt: skip
    try:
        replayed = await socket.replay(admission)
        socket._queue(READY.format(n=replayed))
        while not socket.closed:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            parsed = _receipt(message.get("text"))
            if isinstance(parsed, str):
                socket._queue(_error(parsed))
            elif parsed[0] == "PING":
                socket._queue('{"type":"PONG"}')
            else:
                socket.acknowledge(parsed[1], parsed[0] == "READ")
    except (WebSocketDisconnect, RuntimeError):
        pass
    except Exception:
        log.warning("inbox socket failed", exc_info=True)
        with contextlib.suppress(Exception):
            await ws.close(1011)
    finally:
        expiry.cancel()
        socket.closed = True
        await state.hub.remove(socket)


async def ws_over_http(request: Request) -> Response:
    return JSONResponse(
        {"error": {"code": "upgrade_required", "message": "GET /ws is a WebSocket: send Upgrade: websocket",
                   "details": None}}, 426, headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )  # fmt: skip


def _inbox(request: Request) -> InboxService:
    service: InboxService = request.app.state.inbox
    return service


async def list_inbox(request: Request) -> Response:
    subscriber_id = await require_subscriber(request)
    q = parse_query(request, InboxQuery)
    cursor = min(int(q.cursor), MAX_ID) if q.cursor else None
    page = await _inbox(request).page(subscriber_id, unread=q.unread, cursor=cursor, limit=q.limit)
    return json_reply(InboxPage(items=[InboxNotification.of(i) for i in page.items], unread_count=page.unread_count,
                                next_cursor=page.next_cursor))  # fmt: skip


async def read_one(request: Request) -> Response:
    subscriber_id = await require_subscriber(request)
    mid = parse_message_id(request.path_params["notification_id"])
    return json_reply(InboxNotification.of(await _inbox(request).mark_read(subscriber_id, mid)))


async def read_all(request: Request) -> Response:
    subscriber_id = await require_subscriber(request)
    return json_reply(ReadAllResult(updated=await _inbox(request).read_all(subscriber_id)))


SUBSCRIBER_ERRORS = ("Unauthorized", "ServiceUnavailable")
OPERATIONS = [
    Operation("GET", "/ws", ws_over_http, "openInboxSocket", "The in-app WebSocket (upgrade only)", "inbox",
              {426: Reply("A plain GET: this path only takes a WebSocket upgrade (`upgrade_required`).", "Error")},
              description="Open with `Upgrade: websocket`. First frame within 5 s: `{\"type\": \"AUTH\", \"token\": "
              "<subscriber token>}` (else close 4401). The server replays un-ACKed notifications oldest first, "
              "sends `{\"type\": \"READY\", \"replayed\": N}`, then live `NOTIFICATION` frames `{type, id, "
              "category, subject, body, data, createdAt}`. Send `{\"type\": \"ACK\", \"id\"}` on receipt and "
              "`{\"type\": \"READ\", \"id\"}` when read. Close codes: 4401 (no or bad AUTH, token expired), 4403 "
              "(subscriber erased), 1013 (client too slow: reconnect). See docs/inapp.md.", public=True),
    Operation("GET", "/inbox", list_inbox, "listInbox", "The subscriber's inbox, newest first", "inbox",
              {200: Reply("One page, and the inbox's unread count.", InboxPage)}, query=InboxQuery, subscriber=True,
              errors=(*SUBSCRIBER_ERRORS, "ValidationFailed")),
    Operation("POST", "/inbox/{notification_id}/read", read_one, "readInboxNotification", "Mark one notification read",
              "inbox", {200: Reply("The notification, read.", InboxNotification)}, subscriber=True,
              description="Idempotent: reading it again keeps the first readAt. No request body.",
              errors=(*SUBSCRIBER_ERRORS, "NotificationNotFound", "ValidationFailed")),
    Operation("POST", "/inbox/read-all", read_all, "readAllInbox", "Mark every notification read", "inbox",
              {200: Reply("How many changed.", ReadAllResult)}, subscriber=True, description="No request body.",
              errors=SUBSCRIBER_ERRORS),
]  # fmt: skip
MOUNTS = [WebSocketRoute("/ws", inbox_socket)]
