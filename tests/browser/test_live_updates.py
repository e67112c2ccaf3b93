"""The event-stream reader: parsing, reconnecting after a dropped stream, stopping when leaving a page."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Request, Route, expect

from tests.browser.conftest import Ui
from tests.harness import running_worker
from tests.live import LiveApi

# Run in the page (Playwright's evaluate is not subject to the page's CSP): the real modules,
# fed with the awkward inputs a network can produce.
PARSE_CHUNKS = """async (chunks) => {
  const { createEventParser } = await import('/assets/sse.js');
  const events = [];
  const feed = createEventParser((e) => events.push([e.event, e.data]));
  for (const chunk of chunks) feed(chunk);
  return events;
}"""
PARSE_CSV = """async (text) => {
  const { recipientsFromCsv } = await import('/assets/csv.js');
  return recipientsFromCsv(text);
}"""
# What request() makes of a 2xx answer that is not JSON (a proxy's page): the error's name, code and status.
NOT_JSON = """async () => {
  const { request, saveSession } = await import('/assets/api.js');
  saveSession('some-token', null);
  try {
    await request('/not-json');
    return null;
  } catch (error) {
    return [error.name, error.code, error.status];
  }
}"""


async def test_the_event_parser_handles_split_lines_comments_and_multiline_data(ui: Ui) -> None:
    await ui.page.goto(ui.base_url + "/")
    chunks = [
        "\ufeff: keepalive\n\nevent: campaign\r",  # a BOM, a comment, and CR LF split across chunks
        '\ndata: {"a":\r\ndata: 1}\r\n\r\n',  # two data lines join with a newline
        "data: no event name\n\n",  # the default event type
        "event: campaigns\ndata: x",
        "y\n",
        "\n: keepalive\n\nevent: ignored-without-data\n\n",
    ]
    events = await ui.page.evaluate(PARSE_CHUNKS, chunks)
    assert events == [["campaign", '{"a":\n1}'], ["message", "no event name"], ["campaigns", "xy"]]


async def test_the_csv_reader_accepts_semicolons_and_files_without_a_header(ui: Ui) -> None:
    await ui.page.goto(ui.base_url + "/")
    with_semicolons = await ui.page.evaluate(PARSE_CSV, "To;first name\nana@example.com;Ana\n")
    assert with_semicolons["recipients"] == [{"to": "ana@example.com", "vars": {"first name": "Ana"}}]
    headerless = await ui.page.evaluate(PARSE_CSV, 'ana@example.com,Ana\n\n"li@example.com",Li\n')
    assert headerless["recipients"] == ["ana@example.com", "li@example.com"]
    assert headerless["lines"] == [1, 3]
    assert headerless["hasHeader"] is False
    # A column named __proto__ is a variable like any other, and JSON.stringify (what request() sends) keeps it.
    sent = await ui.page.evaluate(
        "async (text) => JSON.stringify((await import('/assets/csv.js')).recipientsFromCsv(text).recipients)",
        "to,__proto__,name\nana@example.com,P,Ana\n",
    )
    assert json.loads(sent) == [{"to": "ana@example.com", "vars": {"__proto__": "P", "name": "Ana"}}]


async def test_a_2xx_answer_that_is_not_json_is_an_api_error(ui: Ui) -> None:
    await ui.page.route("**/not-json", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                   body="<html>proxy</html>"))  # fmt: skip
    await ui.page.goto(ui.base_url + "/")
    assert await ui.page.evaluate(NOT_JSON) == ["ApiError", "bad_response", 200]


async def test_a_dropped_stream_reconnects_and_leaving_the_page_closes_it(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    r = await api.post("/campaigns", json={"name": "Reconnects", "recipientCount": 300})
    campaign_id = r.json()["id"]
    stream_path = f"/events/campaigns/{campaign_id}"
    dropped: list[str] = []

    async def drop_the_first_stream(route: Route) -> None:
        if not dropped:
            dropped.append(route.request.url)
            await route.abort("connectionreset")
        else:
            await route.continue_()

    page = ui.page
    await page.route(f"**{stream_path}", drop_the_first_stream)
    await ui.login()
    await page.evaluate(f"location.hash = '#/campaigns/{campaign_id}'")
    live = page.locator("[data-role=live-indicator]")
    await expect(live).to_have_attribute("data-state", "live")
    streams = [r for r in ui.requests if urlsplit(r.url).path == stream_path]
    assert dropped and len(streams) >= 2  # the drop, then the reconnect
    # While it was down, the page refreshed from the JSON endpoint instead of freezing.
    assert len([r for r in ui.requests if urlsplit(r.url).path == f"/campaigns/{campaign_id}"]) >= 2

    async with running_worker(live_api.settings):
        await expect(page.locator("#main .page-header .badge")).to_have_attribute(
            "data-status", "completed", timeout=60_000
        )
    await expect(page.locator('#campaign-stats [data-count="sent"]')).to_have_attribute("data-value", "300")

    # Leaving the page aborts its stream (AbortController), so no connection outlives its view.
    def is_stream(request: Request) -> bool:
        return urlsplit(request.url).path == stream_path

    async with page.expect_event("requestfailed", predicate=is_stream) as failed:
        await ui.nav("Workers")
    assert "ABORTED" in ((await failed.value).failure or "").upper()
