"""The dashboard: static files shipped inside the package, served by the API itself (no build step).

Every response carries a strict Content-Security-Policy: scripts, styles and connections
only from this origin, no inline code, no frames. The dashboard is plain HTML plus one
script that renders user data with `textContent` only.

One of its modules is for other sites too: the in-app inbox client, also at `/inbox.js`
(docs/inbox-js.md), which any origin may load (`Access-Control-Allow-Origin: *`; a module
script from another origin is fetched with CORS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from notifq.api.contract import Operation, Reply

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"


class DashboardAssets(StaticFiles):
    """`no-cache`: browsers revalidate (ETag) instead of mixing old and new modules after an upgrade."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


async def index(request: Request) -> Response:
    return FileResponse(DASHBOARD_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def inbox_script(request: Request) -> Response:
    return FileResponse(DASHBOARD_DIR / "assets" / "inbox.js", media_type="application/javascript",
                        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"})  # fmt: skip


OPERATIONS = [
    Operation(
        "GET",
        "/",
        index,
        "dashboard",
        "The web dashboard (HTML; its scripts and styles are under /assets/)",
        "operations",
        {200: Reply("The dashboard page.", str, media_type="text/html")},
        public=True,
    ),
    Operation(
        "GET",
        "/inbox.js",
        inbox_script,
        "inboxScript",
        "The in-app inbox client for web pages (JavaScript module)",
        "inbox",
        {200: Reply("The module `NotifqInbox` (docs/inbox-js.md).", str, media_type="application/javascript")},
        description="A dependency-free ES module for any page, of any origin (`Access-Control-Allow-Origin: *`): "
        "it opens `/ws` with a subscriber token, ACKs what arrives, drops repeated ids and reconnects with "
        "backoff. `Cache-Control: no-cache`: browsers revalidate, so an upgrade reaches every page.",
        public=True,
    ),
]
# Static files: served, but not operations of the API (a Mount has no methods of its own).
MOUNTS = [
    Mount("/assets", app=DashboardAssets(directory=DASHBOARD_DIR / "assets", check_dir=False), name="assets"),
]
