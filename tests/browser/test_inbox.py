"""The Inbox page and /inbox.js, in Chromium against the live API and a real worker.

On the page (at 1280 and 390 px): a subscriber created in the page receives, live, a notification sent by the
page's form and one sent by the HTTP API; "Mark read" (a READ frame) and "Mark all read" reach the database. Then
/inbox.js on its own: a page of another origin loads it from the API and receives a notification; and the
client's protocol duties (AUTH first, ACK, dropping repeats, reconnecting, stopping on 4401) against a scripted
server (Playwright's WebSocket routing), where the server can misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, WebSocketRoute, expect

from tests.browser.conftest import open_ui
from tests.browser.test_session import OVERFLOW
from tests.conftest import wait_for
from tests.harness import running_worker
from tests.live import LiveApi

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


async def _notification(api: httpx.AsyncClient, mid: str) -> dict[str, Any]:
    r = await api.get(f"/notifications/{mid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _read(api: httpx.AsyncClient, mid: str) -> dict[str, Any] | None:
    n = await _notification(api, mid)
    return n if n["readAt"] else None


async def _delivered(api: httpx.AsyncClient, mid: str) -> dict[str, Any] | None:
    n = await _notification(api, mid)
    return n if n["deliveredAt"] else None


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
async def test_a_new_subscriber_receives_both_sends_live_and_reads_them(
    browser: Browser, live_api: LiveApi, api: httpx.AsyncClient, viewport: dict[str, int]
) -> None:
    ui = await open_ui(browser, live_api, viewport=viewport)
    width = viewport["width"]
    try:
        page = ui.page
        async with running_worker(live_api.settings):
            await ui.login()
            await ui.nav("Inbox")
            await expect(page.locator("#main h1")).to_have_text("Inbox")
            # No subscriber exists yet (every test starts clean): the page offers to create one.
            await expect(page.locator("#inbox-mode-new")).to_be_checked()
            await expect(page.locator("#inbox-send")).to_be_hidden()  # until an inbox is open
            await ui.screenshot(f"inbox-start-{width}")
            await page.fill("#inbox-new-id", "ada-1")
            await page.fill("#inbox-new-email", "ada@example.com")
            await page.click("#inbox-open")
            live = page.locator("#inbox-card [data-role=live-indicator]")
            await expect(live).to_have_attribute("data-state", "live")
            await expect(page.locator("#inbox-title")).to_have_text("Inbox of ada-1")
            created = await api.get("/subscribers/ada-1")
            assert created.status_code == 200 and created.json()["email"] == "ada@example.com"
            assert "subscriber=ada-1" in page.url  # a reload opens the same inbox
            await ui.screenshot(f"inbox-empty-{width}")

            # One through the page's form, one from "the backend" (this test, over HTTP).
            await page.fill("#inbox-send-subject", "From the page")
            await page.fill("#inbox-send-body", "Sent with the dashboard's form")
            await page.click("#inbox-send")
            rows = page.locator("#inbox-table tbody tr")
            await expect(rows).to_have_count(1)
            await expect(page.locator("#inbox-send-message")).to_contain_text("arrived live")
            form_id = await rows.first.get_attribute("data-notification-id")
            assert form_id
            sent = {"channel": "inapp", "subscriber": "ada-1", "subject": "From the API", "body": "Sent over HTTP",
                    "category": "comments"}  # fmt: skip
            r = await api.post("/notifications", json=sent)
            assert r.status_code == 202, r.text
            api_id = str(r.json()["id"])
            await expect(rows).to_have_count(2)
            # Newest first, both unread; the live client ACKed each on receipt.
            await expect(rows.first).to_have_attribute("data-notification-id", api_id)
            await expect(rows.first).to_contain_text("From the API")
            await expect(rows.first).to_contain_text("comments")
            await expect(rows.nth(1)).to_contain_text("From the page")
            for row in (rows.first, rows.nth(1)):
                await expect(row).to_have_attribute("data-read", "false")
            unread = page.locator("#inbox-unread")
            await expect(unread).to_have_attribute("data-count", "2")
            for mid in (form_id, api_id):
                got = await wait_for(functools.partial(_delivered, api, mid), within=10)
                assert got["readAt"] is None and got["status"] == "sent"
            await ui.screenshot(f"inbox-two-{width}")
            assert await page.evaluate(OVERFLOW) <= 0, f"the page scrolls sideways at {width} px"

            # "Mark read" on the API's one: a READ frame; readAt (and deliveredAt) in the database.
            await page.click(f'[data-read-id="{api_id}"]')
            await expect(rows.first).to_have_attribute("data-read", "true")
            await expect(rows.first.locator("[data-read-id]")).to_be_hidden()
            read = await wait_for(lambda: _read(api, api_id), within=10)
            assert read["deliveredAt"] and read["readAt"] >= read["deliveredAt"]
            assert [e["event"] for e in read["events"]].count("read") == 1
            assert (await _notification(api, form_id))["readAt"] is None
            await expect(unread).to_have_attribute("data-count", "1")
            await ui.screenshot(f"inbox-read-{width}")

            # "Mark all read": POST /inbox/read-all with the subscriber's token.
            await page.click("#inbox-read-all")
            await expect(rows.nth(1)).to_have_attribute("data-read", "true")
            await expect(unread).to_have_attribute("data-count", "0")
            assert (await _notification(api, form_id))["readAt"]

        # The subscriber's token never went into a URL, and the admin's never into /inbox calls.
        admin = await ui.token()
        inbox_calls = [r for r in ui.requests if "/inbox" in r.url and "/assets/" not in r.url]
        assert inbox_calls
        for request in inbox_calls:
            auth = (await request.all_headers()).get("authorization", "")
            assert auth.startswith("Bearer ") and auth != f"Bearer {admin}", request.url
            assert auth.removeprefix("Bearer ") not in request.url
        assert await ui.csp_violations() == []
        assert ui.console_errors == [] and ui.page_errors == []
    finally:
        await ui.context.close()


async def test_an_existing_subscriber_is_picked_from_the_list_and_the_address_reopens_it(
    browser: Browser, live_api: LiveApi, api: httpx.AsyncClient
) -> None:
    for sid in ("bob", "cy"):
        assert (await api.put(f"/subscribers/{sid}", json={"email": f"{sid}@example.com"})).status_code == 201
    # Notified before anyone looked: the inbox shows it (replayed, un-ACKed), and ACKs it.
    async with running_worker(live_api.settings):
        sent = {"channel": "inapp", "subscriber": "cy", "body": "While you were out"}
        r = await api.post("/notifications", json=sent)
        early = str(r.json()["id"])
        await wait_for(lambda: _status(api, early, "sent"), within=20)
    ui = await open_ui(browser, live_api)
    try:
        page = ui.page
        await ui.login()
        await ui.nav("Inbox")
        await expect(page.locator("#inbox-mode-existing")).to_be_checked()
        options = page.locator("#inbox-existing option")
        await expect(options).to_have_text(["bob (bob@example.com)", "cy (cy@example.com)"])
        await page.select_option("#inbox-existing", "cy")
        await page.click("#inbox-open")
        rows = page.locator("#inbox-table tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("While you were out")
        await expect(page.locator("#inbox-card [data-role=live-indicator]")).to_have_attribute("data-state", "live")
        await wait_for(lambda: _delivered(api, early), within=10)

        # Creating "bob" again would replace his profile: refused, his email kept.
        await page.check("#inbox-mode-new")
        await page.fill("#inbox-new-id", "bob")
        await page.click("#inbox-open")
        await expect(page.locator("#inbox-new-id-error")).to_contain_text("exists already")
        await ui.screenshot("inbox-exists-1280")
        assert (await api.get("/subscribers/bob")).json()["email"] == "bob@example.com"

        # A reload opens cy's inbox again; the notification is shown once (it is no longer replayed).
        await page.reload()
        await expect(page.locator("#inbox-title")).to_have_text("Inbox of cy")
        await expect(page.locator("#inbox-card [data-role=live-indicator]")).to_have_attribute("data-state", "live")
        await expect(rows).to_have_count(1)
        assert ui.console_errors == [] and ui.page_errors == []
    finally:
        await ui.context.close()


async def _status(api: httpx.AsyncClient, mid: str, status: str) -> bool:
    return bool((await _notification(api, mid))["status"] == status)


# --- /inbox.js embedded in another site -------------------------------------------------------------------------

EMBED_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Another site</title></head>
<body>
<p id="status">not started</p>
<ul id="notifications"></ul>
<script type="module">
  import { NotifqInbox } from '__API__/inbox.js';
  const list = document.getElementById('notifications');
  const inbox = new NotifqInbox({
    token: '__TOKEN__',
    onNotification(n) {
      const item = document.createElement('li');
      item.dataset.id = n.id;
      item.textContent = `${n.subject}: ${n.body}`;
      list.prepend(item);
    },
    onStatus(status) {
      document.getElementById('status').textContent = status;
    },
  });
  inbox.connect();
  window.pageInbox = inbox;
</script>
</body>
</html>
"""


@pytest.fixture
def other_site() -> Iterator[dict[str, Any]]:
    """A site of its own origin (http://localhost:<port>, the API being http://127.0.0.1:<port>): it serves the
    page its backend rendered (`site["page"]`), as a site that embeds the inbox would."""
    site: dict[str, Any] = {"page": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = site["page"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="other-site", daemon=True)
    thread.start()
    site["url"] = f"http://localhost:{server.server_address[1]}/"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_a_page_of_another_origin_loads_inbox_js_and_receives_a_notification(
    browser: Browser, live_api: LiveApi, api: httpx.AsyncClient, other_site: dict[str, Any]
) -> None:
    served = await api.get("/inbox.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/javascript")
    assert served.headers["access-control-allow-origin"] == "*"
    assert served.headers["cache-control"] == "no-cache"
    assert "export class NotifqInbox" in served.text

    # The site's backend: creates its user's subscriber, asks for a token, renders it into the page.
    assert (await api.put("/subscribers/site-user-7", json={})).status_code == 201
    token = (await api.post("/subscribers/site-user-7/token")).json()["token"]
    other_site["page"] = EMBED_PAGE.replace("__API__", live_api.url).replace("__TOKEN__", token)

    context = await browser.new_context()
    try:
        page = await context.new_page()
        errors: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(other_site["url"])
        assert page.url.startswith("http://localhost:")  # not the API's origin
        await expect(page.locator("#status")).to_have_text("live")
        assert await page.evaluate("window.NotifqInbox === window.pageInbox.constructor")
        # The address of the socket came from where the script was loaded: the API, not this page.
        assert await page.evaluate("window.pageInbox.url") == live_api.url.replace("http://", "ws://") + "/ws"

        async with running_worker(live_api.settings):
            r = await api.post("/notifications", json={"channel": "inapp", "subscriber": "site-user-7",
                                                       "subject": "Hello", "body": "from notifq"})  # fmt: skip
            mid = str(r.json()["id"])
            item = page.locator(f'#notifications li[data-id="{mid}"]')
            await expect(item).to_have_text("Hello: from notifq")
            await wait_for(lambda: _delivered(api, mid), within=10)  # ACKed by inbox.js
            await page.evaluate("(id) => window.pageInbox.read(id)", mid)
            await wait_for(lambda: _read(api, mid), within=10)
        # Erased (GDPR): the server closes the socket with 4403, and the client stays closed.
        assert (await api.delete("/subscribers/site-user-7")).status_code == 204
        await expect(page.locator("#status")).to_have_text("forbidden")
        await page.evaluate("window.pageInbox.close()")
        await expect(page.locator("#status")).to_have_text("closed")
        assert errors == []
    finally:
        await context.close()


# --- the client's protocol duties, against a scripted server ----------------------------------------------------

# Loads the module and records everything the client reports.
START_CLIENT = """async ({ api, url, token, pingInterval }) => {
  const { NotifqInbox } = await import(`${api}/inbox.js`);
  window.seen = { notifications: [], statuses: [], ready: [] };
  window.client = new NotifqInbox({
    url, token, pingInterval,
    onNotification: (n, info) => window.seen.notifications.push([n.id, n.subject, info.replayed]),
    onReady: (info) => window.seen.ready.push(info.replayed),
    onStatus: (status, detail) => window.seen.statuses.push([status, detail.code ?? null, detail.delay ?? null]),
  });
  window.client.connect();
}"""


class ScriptedServer:
    """Each connection the page opens to the fake /ws: the route to answer with, and the frames the page sent."""

    def __init__(self) -> None:
        self.connections: list[tuple[WebSocketRoute, list[dict[str, Any]]]] = []
        self.changed = asyncio.Event()

    def handle(self, ws: WebSocketRoute) -> None:
        frames: list[dict[str, Any]] = []

        def received(message: str | bytes) -> None:
            frames.append(json.loads(message))
            self.changed.set()

        ws.on_message(received)
        self.connections.append((ws, frames))
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], within: float = 10) -> None:
        """Wait until `predicate()` holds, checking after every connection and frame."""
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def connection(self, number: int) -> tuple[WebSocketRoute, list[dict[str, Any]]]:
        """The page's `number`th connection (from 1), once it has sent its first frame."""
        await self.until(lambda: len(self.connections) >= number and bool(self.connections[number - 1][1]))
        return self.connections[number - 1]


def _ids(frames: list[dict[str, Any]], kind: str) -> list[str]:
    return [f["id"] for f in frames if f["type"] == kind]


async def _seen(page: Page) -> dict[str, Any]:
    seen: dict[str, Any] = await page.evaluate("window.seen")
    return seen


def _notification_frame(mid: str, subject: str) -> str:
    return json.dumps({"type": "NOTIFICATION", "id": mid, "category": None, "subject": subject, "body": "b",
                       "data": None, "createdAt": "2026-12-01T09:00:00Z"})  # fmt: skip


async def test_the_client_acks_drops_repeats_pings_reconnects_and_stops_on_4401(
    browser: Browser, live_api: LiveApi, other_site: dict[str, Any]
) -> None:
    server = ScriptedServer()
    other_site["page"] = "<!doctype html><title>A page</title>"  # no CSP: it may connect anywhere
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.route_web_socket("ws://fake.notifq.test/ws", server.handle)
        await page.goto(other_site["url"])
        options = {"api": live_api.url, "url": "http://fake.notifq.test", "token": "tok-1", "pingInterval": 300}
        await page.evaluate(START_CLIENT, options)

        ws, frames = await server.connection(1)
        assert frames[0] == {"type": "AUTH", "token": "tok-1"}  # AUTH first
        ws.send(_notification_frame("7", "replayed"))
        ws.send(json.dumps({"type": "READY", "replayed": 1}))
        ws.send(_notification_frame("8", "live"))
        ws.send(_notification_frame("8", "live again"))  # at least once: a repeat
        # Each one ACKed, the repeat too (its first ACK may not have been written), but shown once.
        await server.until(lambda: _ids(frames, "ACK") == ["7", "8", "8"])
        got = await _seen(page)
        assert got["notifications"] == [["7", "replayed", True], ["8", "live", False]]
        assert got["ready"] == [1]
        await server.until(lambda: {"type": "PING"} in frames)  # every pingInterval (25 s by default)
        await page.evaluate("window.client.read('7')")
        await server.until(lambda: {"type": "READ", "id": "7"} in frames)

        # An unexpected close: a new connection after a backoff delay; a replay of 8 is not shown again.
        await ws.close(code=1011, reason="server restart")
        ws2, frames2 = await server.connection(2)
        statuses = (await _seen(page))["statuses"]
        reconnecting = [s for s in statuses if s[0] == "reconnecting"]
        assert reconnecting and reconnecting[0][1] == 1011 and 500 <= reconnecting[0][2] <= 1000
        assert frames2[0] == {"type": "AUTH", "token": "tok-1"}
        ws2.send(_notification_frame("8", "replayed repeat"))
        ws2.send(json.dumps({"type": "READY", "replayed": 1}))
        await server.until(lambda: {"type": "ACK", "id": "8"} in frames2)
        await page.wait_for_function("window.client.status === 'live'")
        assert [n[0] for n in (await _seen(page))["notifications"]] == ["7", "8"]

        # 4401 (a bad or expired token): reported, and no reconnection.
        await ws2.close(code=4401, reason="token expired")
        await page.wait_for_function("window.client.status === 'unauthorized'")
        await asyncio.sleep(1.5)  # longer than any first backoff
        assert len(server.connections) == 2
        assert (await _seen(page))["statuses"][-1] == ["unauthorized", 4401, None]
    finally:
        await context.close()
