"""Server-sent progress streams, the timeline, and the dashboard's serving and headers, over a real socket."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from notifq.api.security_headers import CONTENT_SECURITY_POLICY
from notifq.auth import issue_token
from notifq.settings import Settings
from tests.api.support import app_and_client, assert_error, bearer
from tests.conftest import wait_for
from tests.harness import finished_campaign, running_worker
from tests.live import LiveApi


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, object]]]:
    event, data = "", ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and data:
            yield event, json.loads(data)
            event, data = "", ""


async def test_campaign_stream_follows_progress_to_the_end(
    live_api: LiveApi, fast_auth: dict[str, str], settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=live_api.url, headers=fast_auth, timeout=30) as api:
        campaign = (await api.post("/campaigns", json={"name": "streamed", "recipientCount": 400})).json()
        seen: list[dict[str, object]] = []
        async with running_worker(settings.with_(rate_limit=200.0)):
            async with api.stream("GET", f"/events/campaigns/{campaign['id']}") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["cache-control"] == "no-store"
                async for event, body in _events(response):
                    assert event == "campaign"
                    seen.append(body)
                    if str(body["status"]).startswith("completed"):
                        break
            final = (await api.get(f"/campaigns/{campaign['id']}")).json()
    assert seen[-1] == final
    sent = [int(str(b["sentCount"])) for b in seen]
    assert sent == sorted(sent) and len(set(sent)) >= 3  # it moved, in several steps, never backwards
    assert len(seen) == len({json.dumps(b, sort_keys=True) for b in seen})  # an event only when something changed


async def test_list_stream_sends_the_newest_campaigns(live_api: LiveApi, fast_auth: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=live_api.url, headers=fast_auth, timeout=30) as api:
        names = [f"c{i}" for i in range(3)]
        for name in names:
            await api.post("/campaigns", json={"name": name, "recipientCount": 5})
        async with api.stream("GET", "/events/campaigns") as response:
            async for event, body in _events(response):
                assert event == "campaigns"
                items = body["items"]
                assert isinstance(items, list)
                assert [c["name"] for c in items] == names[::-1]
                assert items == (await api.get("/campaigns")).json()["items"]
                break


async def test_streams_refuse_without_a_token_or_for_an_unknown_campaign(
    live_api: LiveApi, fast_auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=live_api.url, timeout=10) as api:
        r = await api.get("/events/campaigns")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await api.get(f"/events/campaigns/{uuid.uuid4()}", headers=fast_auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await api.get("/events/campaigns/not-a-uuid", headers=fast_auth)
        assert r.status_code == 422


async def test_timeline_adds_up_to_the_campaign_counts(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings
) -> None:
    campaign = (await client.post("/campaigns", json={"name": "t", "recipientCount": 500}, headers=fast_auth)).json()
    empty = (await client.get(f"/campaigns/{campaign['id']}/timeline", headers=fast_auth)).json()
    assert empty == {"bucketSeconds": 1, "points": []}
    async with running_worker(settings.with_(rate_limit=250.0, mock_failure_rate=0.2, max_attempts=1)):
        final = await wait_for(lambda: finished_campaign(client, fast_auth, campaign["id"]), within=30)
    r = await client.get(f"/campaigns/{campaign['id']}/timeline", headers=fast_auth)
    assert r.status_code == 200
    timeline = r.json()
    points = timeline["points"]
    assert sum(p["sent"] for p in points) == final["sentCount"]
    assert sum(p["failed"] for p in points) == final["failedCount"] > 0
    assert len(points) >= 2  # 500 messages at 250/s span more than one second
    assert [p["at"] for p in points] == sorted(p["at"] for p in points)
    r = await client.get(f"/campaigns/{uuid.uuid4()}/timeline", headers=fast_auth)
    assert r.status_code == 404


async def test_dashboard_is_served_with_a_strict_content_security_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/assets/' in page.text or '<script type="module" src="/assets/' in page.text
    script = await client.get("/assets/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    missing = await client.get("/assets/nope.js")
    assert missing.status_code == 404
    # API answers carry the same headers (a JSON error rendered as HTML by mistake still runs no script).
    assert "content-security-policy" in (await client.get("/health")).headers


async def test_an_unexpected_500_keeps_the_envelope_and_the_security_headers(settings: Settings) -> None:
    """Starlette sends a 500 from outside every middleware; its handler adds the headers itself."""

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug, not a dependency")

    async with app_and_client(settings, raise_app_exceptions=False) as (app, c):
        app.router.routes.append(Route("/boom", boom))
        r = await c.get("/boom")
    assert_error(r, 500, "internal_error")
    assert "a bug" not in r.text  # no internals leak
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


async def test_a_stream_ends_when_its_token_expires(live_api: LiveApi, fast_admin: uuid.UUID) -> None:
    """The token is checked on every poll, not only when the stream opened."""
    settings = live_api.settings
    short = issue_token(settings.jwt_secret, settings.jwt_issuer, str(fast_admin), ttl_seconds=2).token
    async with httpx.AsyncClient(base_url=live_api.url, headers=bearer(short), timeout=30) as api:
        started = time.monotonic()
        async with api.stream("GET", "/events/campaigns") as response:
            assert response.status_code == 200
            events = [event async for event, _ in _events(response)]  # returns once the server ends the stream
    assert events == ["campaigns"]
    assert time.monotonic() - started < 15
