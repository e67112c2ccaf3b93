"""The operator's console (issue 10): Notifications with their audit trail, Dead letters, Overview with providers,
worker history, and the template preview, in Chromium at 1280 and 390 px.

Tests named `..._against_the_api` need endpoints that were added alongside these pages (GET /overview,
GET /providers, GET /workers/history); the others fake what they need with page.route, so they check the
page's behaviour whatever the server has.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page, Route, expect

from tests.browser.conftest import Ui, open_ui
from tests.browser.test_session import OVERFLOW
from tests.harness import running_worker
from tests.live import LiveApi

PHONE = {"width": 390, "height": 844}


async def _send(api: httpx.AsyncClient, items: list[dict[str, Any]]) -> list[str]:
    r = await api.post("/notifications", json=items)
    assert r.status_code == 202, r.text
    return list(r.json()["ids"])


async def _until(api: httpx.AsyncClient, ids: list[str], statuses: set[str]) -> None:
    for _ in range(600):
        got = [(await api.get(f"/notifications/{i}")).json()["status"] for i in ids]
        if all(s in statuses for s in got):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{ids} did not reach {statuses}: {got}")


async def _mixed_notifications(api: httpx.AsyncClient, live_api: LiveApi) -> dict[str, list[str]]:
    """Two sent (email, sms), three failed after two attempts each (two email, one sms), one held for tomorrow."""
    sent = await _send(api, [
        {"to": "ana@example.com", "subject": "Welcome", "body": "Hello Ana"},
        {"channel": "sms", "to": "+15550000001", "body": "Your code is 1234"},
    ])  # fmt: skip
    async with running_worker(live_api.settings.with_(mock_failure_rate=0.0)):
        await _until(api, sent, {"sent"})
    failed = await _send(api, [
        {"to": "li@example.com", "subject": "Invoice", "body": "Your invoice"},
        {"to": "quarterly.statement.reminder.customer.number.000123+promo@example.com", "body": "Statement"},
        {"channel": "sms", "to": "+15550000002", "body": "Alert"},
    ])  # fmt: skip
    async with running_worker(live_api.settings.with_(mock_failure_rate=1.0, max_attempts=2)):
        await _until(api, failed, {"failed"})
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    held = await _send(api, [{"to": "bo@example.com", "body": "Later", "sendAt": tomorrow}])
    return {"sent": sent, "failed": failed, "held": held}


async def test_notifications_filter_and_open_their_audit_trail(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    ids = await _mixed_notifications(api, live_api)
    page = ui.page
    await ui.login()
    await ui.nav("Notifications")
    rows = page.locator("#notifications-table tbody tr")
    await expect(rows).to_have_count(6)
    await ui.screenshot("console-notifications")

    await page.select_option("#nf-status", "failed")
    await page.click("#notifications-filters button[type=submit]")
    await expect(rows).to_have_count(3)
    await expect(page).to_have_url(re.compile(r"#/notifications\?status=failed$"))
    await page.select_option("#nf-channel", "sms")
    await page.click("#notifications-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("+15550000002")
    # The filters are in the address: a reload keeps them.
    await page.reload()
    await expect(page.locator("#nf-channel")).to_have_value("sms")
    await expect(rows).to_have_count(1)
    await page.click("#notifications-filters button:has-text('Clear')")
    await expect(rows).to_have_count(6)
    await page.fill("#nf-to", "ana@example.com")
    await page.press("#nf-to", "Enter")
    await expect(rows).to_have_count(1)
    await page.fill("#nf-to", "")

    # The time filter (the server lists since/until): the last 15 minutes hold them all, yesterday none.
    await expect(page.locator("#nf-time")).to_be_visible()
    await page.select_option("#nf-range", "15m")
    await page.press("#nf-to", "Enter")
    await expect(rows).to_have_count(6)
    await page.select_option("#nf-range", "custom")
    yesterday = datetime.now() - timedelta(days=1)
    await page.fill("#nf-since", (yesterday - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    await page.fill("#nf-until", yesterday.strftime("%Y-%m-%dT%H:%M"))
    await page.click("#notifications-filters button[type=submit]")
    await expect(page.locator("#notifications-empty")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"range=custom&since=.*&until="))
    since_requests = [r.url for r in ui.requests if "/notifications?" in r.url and "since=" in r.url]
    assert since_requests and all("until=" in u for u in since_requests[-1:])

    # A failed one: its whole history.
    failed_id = ids["failed"][0]
    await page.evaluate(f"location.hash = '#/notifications/{failed_id}'")
    await expect(page.locator("#main h1")).to_have_text(f"Notification {failed_id}")
    await expect(page.locator("#main .page-header [data-role=status-badge]")).to_have_text("Failed")
    await expect(page.locator("[data-field=attempts]")).to_have_text("2")
    await expect(page.locator("[data-field=retries]")).to_have_text("1")
    await expect(page.locator("[data-field=provider]")).to_have_text("mock")
    await expect(page.locator("#notification-error")).to_contain_text("mock provider: simulated failure")
    trail = page.locator("#trail-table tbody tr")
    assert await trail.evaluate_all("(trs) => trs.map((tr) => tr.dataset.event)") == [
        "accepted", "attempt", "retry", "attempt", "failed",
    ]  # fmt: skip
    await expect(trail.nth(2)).to_contain_text("mock provider: simulated failure")
    await ui.screenshot("console-notification-failed")

    # Sent again from here, after a confirmation (Escape backs out first).
    await page.click("#action-redrive")
    await page.keyboard.press("Escape")
    await expect(page.locator("#action-redrive")).to_be_focused()
    assert (await api.get(f"/notifications/{failed_id}")).json()["status"] == "failed"
    await page.click("#action-redrive")
    await page.click("#confirm-yes")
    await expect(page.locator("#notification-message")).to_contain_text("Queued again")
    await expect(page.locator("#main .page-header [data-role=status-badge]")).to_have_text("Queued")
    await expect(page.locator("#trail-table tbody tr").last).to_have_attribute("data-event", "redriven")

    # A sent one shows the provider's message id.
    sent = (await api.get(f"/notifications/{ids['sent'][0]}")).json()
    await page.evaluate(f"location.hash = '#/notifications/{ids['sent'][0]}'")
    await expect(page.locator("[data-field=provider-message-id]")).to_have_text(sent["providerMessageId"])
    await ui.screenshot("console-notification-sent")

    # The held one can be cancelled, after a confirmation.
    await page.evaluate(f"location.hash = '#/notifications/{ids['held'][0]}'")
    await page.click("#action-cancel")
    await page.click("#confirm-yes")
    await expect(page.locator("#main .page-header [data-role=status-badge]")).to_have_text("Cancelled")
    assert ui.page_errors == [] and ui.console_errors == []
    assert await ui.csp_violations() == []


async def test_a_campaigns_failed_message_opens_the_same_audit_trail(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    r = await api.post("/campaigns", json={"name": "Trails", "recipientCount": 3})
    campaign_id = r.json()["id"]
    page = ui.page
    await ui.login()
    await page.evaluate(f"location.hash = '#/campaigns/{campaign_id}'")
    async with running_worker(live_api.settings.with_(mock_failure_rate=1.0, max_attempts=1)):
        await expect(page.locator("#failed-table tbody tr")).to_have_count(3, timeout=60_000)
    await page.locator("#failed-table a.message-link").first.click()
    await expect(page.locator("#main h1")).to_have_text(re.compile(r"^Notification \d+$"))
    await expect(page.locator("#notification-meta")).to_contain_text(campaign_id)
    await expect(page.locator("#trail-table tbody tr").last).to_have_attribute("data-event", "failed")
    # Back to the campaign from the breadcrumb, and on to its dead letters.
    await page.get_by_role("link", name="← Its campaign").click()
    await expect(page.locator("#main h1")).to_have_text("Trails")
    await page.click("#failed-dead-letters")
    await expect(page.locator("#main h1")).to_have_text("Dead letters")
    await expect(page.locator("#dl-campaign")).to_have_value(campaign_id)
    await expect(page.locator("#dead-letters-table tbody tr")).to_have_count(3)


async def test_dead_letters_filter_and_redrive_one_or_all(ui: Ui, api: httpx.AsyncClient, live_api: LiveApi) -> None:
    r = await api.post("/campaigns", json={"name": "Dead campaign", "recipientCount": 2})
    campaign_id = r.json()["id"]
    singles = await _send(api, [
        {"to": "li@example.com", "body": "x"},
        {"channel": "sms", "to": "+15550000009", "body": "y"},
    ])  # fmt: skip
    async with running_worker(live_api.settings.with_(mock_failure_rate=1.0, max_attempts=1)):
        await _until(api, singles, {"failed"})
        for _ in range(300):
            if (await api.get(f"/campaigns/{campaign_id}")).json()["status"].startswith("completed"):
                break
            await asyncio.sleep(0.1)
    page = ui.page
    await ui.login()
    await ui.nav("Dead letters")
    rows = page.locator("#dead-letters-table tbody tr")
    await expect(rows).to_have_count(4)
    await ui.screenshot("console-dead-letters")

    await page.select_option("#dl-channel", "sms")
    await page.click("#dead-letter-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(page).to_have_url(re.compile(r"#/dead-letters\?channel=sms$"))
    # One, after a confirmation; "Not now" sends nothing.
    await rows.first.get_by_role("button", name="Redrive").click()
    await expect(page.locator("#confirm-redrive")).to_be_focused()
    await page.get_by_role("button", name="Not now").click()
    assert (await api.get(f"/notifications/{singles[1]}")).json()["status"] == "failed"
    await rows.first.get_by_role("button", name="Redrive").click()
    await page.click("#confirm-redrive")
    await expect(page.locator("#dead-letters-message")).to_contain_text("1 message was queued again")
    await expect(page.locator("#dead-letters-empty")).to_be_visible()
    assert (await api.get(f"/notifications/{singles[1]}")).json()["status"] in ("queued", "sending")

    # The campaign's, by its id; a malformed id is refused at the field.
    await page.select_option("#dl-channel", "")
    await page.fill("#dl-campaign", "not-an-id")
    await page.click("#dead-letter-filters button[type=submit]")
    await expect(page.locator("#dl-campaign-error")).to_be_visible()
    await page.fill("#dl-campaign", campaign_id)
    await page.click("#dead-letter-filters button[type=submit]")
    await expect(rows).to_have_count(2)
    await page.click("#redrive-all")
    await expect(page.locator("#dead-letters-confirm")).to_contain_text("of campaign")
    await page.click("#confirm-redrive")
    await expect(page.locator("#dead-letters-message")).to_contain_text("2 messages were queued again")
    campaign = (await api.get(f"/campaigns/{campaign_id}")).json()
    assert campaign["failedCount"] == 0, campaign

    # All that is left (the email single), with no filter: "every dead letter".
    await page.click("#dl-clear")
    await expect(rows).to_have_count(1)
    await page.click("#redrive-all")
    await expect(page.locator("#dead-letters-confirm")).to_contain_text("every dead letter, on every channel")
    await page.click("#confirm-redrive")
    await expect(page.locator("#dead-letters-empty")).to_be_visible()
    assert (await api.get("/dead-letters")).json()["items"] == []
    assert ui.page_errors == [] and ui.console_errors == []


PROVIDERS = {
    "items": [
        {"channel": "email", "provider": "mock", "sent": 9650, "failed": 12, "retried": 340, "throttled": 3,
         "deferred": 0, "errorRate": 0.0012,
         "latency": {"count": 10002, "p50Seconds": 0.0042, "p95Seconds": 0.019, "p99Seconds": 0.12}},
        {"channel": "sms", "provider": "sns", "sent": 40, "failed": 9, "retried": 5, "throttled": 0, "deferred": 21,
         "errorRate": 0.18, "latency": {"count": 54, "p50Seconds": 0.31, "p95Seconds": 1.4, "p99Seconds": 2.05}},
    ]
}  # fmt: skip


def _overview_points(minutes: int = 60) -> dict[str, Any]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    points = []
    for i in range(minutes):
        at = now - timedelta(minutes=minutes - 1 - i)
        busy = 20 <= i < 45
        points.append({"at": at.isoformat().replace("+00:00", "Z"), "sent": 900 if busy else 30,
                       "failed": 12 if busy else 0, "retried": 60 if busy else 1})  # fmt: skip
    return {
        "bucketSeconds": 60,
        "totals": {
            "byChannel": {"email": {"sent": 22000, "failed": 300}, "sms": {"sent": 1200, "failed": 5, "queued": 40}},
            "byStatus": {"sent": 23200, "failed": 305, "queued": 40},
        },
        "points": points,
    }


async def test_overview_shows_totals_history_and_providers(ui: Ui) -> None:
    page = ui.page
    overview = _overview_points()

    async def fake(route: Route, body: dict[str, Any]) -> None:
        await route.fulfill(json=body)

    await page.route(re.compile(r"/overview\?"), lambda route: fake(route, overview))
    await page.route(re.compile(r"/providers$"), lambda route: fake(route, PROVIDERS))
    await ui.login()
    await ui.nav("Overview")
    await expect(page.locator('#overview-stats [data-count="sent"]')).to_have_attribute("data-value", "23200")
    await expect(page.locator('#overview-stats [data-count="failed"]')).to_have_attribute("data-value", "305")
    channels = page.locator("#overview-channels tbody tr")
    await expect(channels).to_have_count(2)
    await expect(channels.nth(1)).to_contain_text("sms")
    await expect(page.locator(".legend--retried")).to_be_visible()
    await expect(page.locator(".legend--attempts")).to_be_hidden()
    summary = page.locator("[data-role=chart-summary]")
    await expect(summary).to_contain_text("Peak 15.2 msg/s (busiest 1 min) · last 1 min")
    rows = page.locator("#providers-table tbody tr")
    await expect(rows).to_have_count(2)
    sms = page.locator('#providers-table tr[data-provider="sms/sns"]')
    await expect(sms.locator("[data-field=error-rate]")).to_have_text("18 %")
    await expect(sms.locator("[data-field=error-rate]")).to_have_class(re.compile("cell-warn"))
    await expect(sms.locator("[data-field=p99]")).to_have_text("2.05 s")
    email = page.locator('#providers-table tr[data-provider="email/mock"]')
    await expect(email.locator("[data-field=p50]")).to_have_text("4 ms")
    await expect(email.locator("[data-field=error-rate]")).to_have_text("0.1 %")
    await ui.screenshot("console-overview")
    assert ui.page_errors == []


async def test_overview_and_workers_say_what_an_older_server_does_not_report(ui: Ui, api: httpx.AsyncClient) -> None:
    """Without GET /overview, /providers and /workers/history: totals from /stats, and a note for the rest."""
    page = ui.page
    for pattern in (r"/overview\?", r"/providers$", r"/workers/history\?"):
        await page.route(
            re.compile(pattern),
            lambda route: route.fulfill(status=404, json={"error": {"code": "not_found", "message": "no"}}),
        )
    await _send(api, [{"to": "ana@example.com", "body": "x"}])
    await ui.login()
    await ui.nav("Overview")
    await expect(page.locator('#overview-stats [data-count="queued"]')).to_have_attribute("data-value", "1")
    await expect(page.locator("#overview-chart-note")).to_contain_text("GET /overview is missing")
    await expect(page.locator("#providers-note")).to_contain_text("No data")
    await expect(page.locator("#providers-table")).to_be_hidden()
    await ui.nav("Workers")
    await expect(page.locator("#workers-history-note")).to_contain_text("GET /workers/history is missing")
    await expect(page.locator("#workers-message .alert")).to_have_count(0)
    assert ui.page_errors == []


async def test_workers_page_draws_each_workers_last_hour(ui: Ui) -> None:
    now = datetime.now(UTC).replace(microsecond=0)

    def series(rate: float, minutes: int) -> list[dict[str, Any]]:
        ats = [(now - timedelta(minutes=minutes - i)).isoformat().replace("+00:00", "Z") for i in range(minutes)]
        return [{"at": at, "ratePerSecond": rate + i % 3} for i, at in enumerate(ats)]

    history = {
        "bucketSeconds": 60,
        "workers": [
            {"id": "vm-1201-a1b2c3", "host": "vm", "live": True, "points": series(40, 60)},
            {"id": "vm-1202-d4e5f6", "host": "vm", "live": False, "points": series(25, 20)},
        ],
    }

    async def fake(route: Route) -> None:
        await route.fulfill(json=history)

    page = ui.page
    await page.route(re.compile(r"/workers/history\?minutes=60$"), fake)
    await ui.login()
    await ui.nav("Workers")
    legend = page.locator("#workers-history [data-role=series-legend] li")
    await expect(legend).to_have_count(2)
    await expect(legend.nth(1)).to_contain_text("vm-1202-d4e5f6 (stopped)")
    label = await page.locator("#workers-history canvas").get_attribute("aria-label")
    assert label and "vm-1201-a1b2c3: peak 42 msg/s" in label, label
    await ui.screenshot("console-workers-history")


async def test_overview_providers_and_worker_history_against_the_api(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    """Needs GET /overview, GET /providers and GET /workers/history on the server."""
    for path in ("/overview?minutes=60", "/providers", "/workers/history?minutes=60"):
        r = await api.get(path)
        assert r.status_code == 200, f"{path}: {r.status_code} (the endpoint is not there yet?)"
    r = await api.post("/campaigns", json={"name": "Traffic", "recipientCount": 300})
    page = ui.page
    async with running_worker(live_api.settings.with_(mock_failure_rate=0.2, max_attempts=2)) as runtime:
        assert runtime.deps is not None
        worker_id = runtime.deps.metrics.id
        for _ in range(600):
            if (await api.get(f"/campaigns/{r.json()['id']}")).json()["status"].startswith("completed"):
                break
            await asyncio.sleep(0.1)
        await ui.login()
        await ui.nav("Overview")
        await expect(page.locator('#overview-stats [data-count="sent"]')).not_to_have_attribute("data-value", "0")
        await expect(page.locator('#providers-table tr[data-provider="email/mock"]')).to_be_visible()
        await expect(page.locator("#overview-chart-note")).to_be_hidden()
        await ui.screenshot("console-overview-live")
        await ui.nav("Workers")
        await expect(page.locator("#workers-history [data-role=series-legend] li", has_text=worker_id)).to_be_visible(
            timeout=60_000
        )
        await ui.screenshot("console-workers-live")
    assert ui.page_errors == []


async def test_the_time_filter_is_hidden_on_a_server_without_since_and_until(ui: Ui, api: httpx.AsyncClient) -> None:
    await _send(api, [{"to": "ana@example.com", "body": "x"}])
    page = ui.page
    # A server whose document has no since/until: no time filter, and none is sent.
    spec = (await api.get("/openapi.json")).json()
    for item in spec["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == "listNotifications":
                op["parameters"] = [p for p in op.get("parameters", []) if p.get("name") not in ("since", "until")]

    async def old_spec(route: Route) -> None:
        await route.fulfill(json=spec)

    await page.route("**/openapi.json", old_spec)
    await ui.login()
    await page.evaluate("location.hash = '#/notifications?range=1h'")
    await expect(page.locator("#notifications-table tbody tr")).to_have_count(1)
    await expect(page.locator("#nf-time")).to_be_hidden()
    assert not [r.url for r in ui.requests if "/notifications?" in r.url and "since=" in r.url]


async def test_a_server_that_refuses_since_drops_the_time_filter(ui: Ui, api: httpx.AsyncClient) -> None:
    """Advertised but refused (422 naming `since`): the list is loaded without it and the filter goes away."""
    await _send(api, [{"to": "ana@example.com", "body": "x"}])

    async def refuse_since(route: Route) -> None:
        if "since=" in route.request.url:
            await route.fulfill(status=422, json={"error": {"code": "validation_failed", "message": "unknown",
                                                            "details": {"field": "since"}}})  # fmt: skip
        else:
            await route.continue_()

    page = ui.page
    await page.route(re.compile(r"/notifications\?"), refuse_since)
    await ui.login()
    await page.evaluate("location.hash = '#/notifications?range=1h'")
    await expect(page.locator("#notifications-table tbody tr")).to_have_count(1)
    await expect(page.locator("#nf-time")).to_be_hidden()
    await expect(page.locator("#notifications-message .alert")).to_have_count(0)


async def test_the_template_preview_follows_typing_and_marks_missing_variables(ui: Ui, tmp_path: Path) -> None:
    page = ui.page
    await ui.login()
    await ui.nav("New campaign")
    subject, body = page.locator("#preview-subject"), page.locator("#preview-body")
    await page.fill("#new-subject", "Hello {{ name }}")
    await page.fill("#new-body", "Sent to {{to}}.\nCode: {{ code }}")
    await expect(page.locator("#preview-for")).to_contain_text("once there is one")
    await page.fill("#new-recipients", "\n  ana@example.com\nli@example.com")
    await expect(page.locator("#preview-for")).to_have_text("For ana@example.com (line 2)")
    await expect(subject).to_have_text("Hello {{ name }}")
    await expect(subject.locator("mark.preview__missing")).to_have_text("{{ name }}")
    await expect(body).to_have_text("Sent to ana@example.com.\nCode: {{ code }}")
    await expect(page.locator("#preview-missing")).to_contain_text("No value for “code”, “name”")
    await ui.screenshot("console-preview-missing")
    # Typed, not submitted: the preview follows each keystroke.
    await page.locator("#new-subject").press("End")
    await page.keyboard.type("!")
    await expect(subject).to_have_text("Hello {{ name }}!")

    csv_file = tmp_path / "people.csv"
    csv_file.write_text("to,name,code\nana@example.com,Ana,4711\nli@example.com,Li,42\n")
    await page.check("#source-csv")
    await page.set_input_files("#new-csv", str(csv_file))
    await expect(page.locator("#preview-for")).to_contain_text("ana@example.com (line 2 of people.csv)")
    await expect(subject).to_have_text("Hello Ana!")
    await expect(body).to_have_text("Sent to ana@example.com.\nCode: 4711")
    await expect(page.locator("#preview-missing")).to_be_hidden()
    await ui.screenshot("console-preview-csv")
    # Generated recipients: the first one's address, by channel.
    await page.fill("#new-subject", "Hi {{ to }}")
    await page.check("#source-count")
    await page.select_option("#new-channel", "sms")
    await expect(subject).to_have_text("Hi +15550000001")


async def test_the_console_pages_fit_390_px(browser: Browser, live_api: LiveApi, api: httpx.AsyncClient) -> None:
    ids = await _mixed_notifications(api, live_api)
    ui = await open_ui(browser, live_api, viewport=PHONE)
    try:
        page = ui.page
        await page.route(re.compile(r"/providers$"), lambda route: route.fulfill(json=PROVIDERS))
        await page.goto(live_api.url + "/")
        await ui.login()

        async def fits(hash_: str, heading: str | re.Pattern[str], ready: str, shot: str) -> None:
            await page.evaluate(f"location.hash = '{hash_}'")
            await expect(page.locator("#main h1")).to_have_text(heading)
            await expect(page.locator(ready).first).to_be_visible()
            assert await page.evaluate(OVERFLOW) <= 0, f"{hash_} scrolls sideways at 390 px"
            await ui.screenshot(shot)

        await fits("#/notifications", "Notifications", "#notifications-table tbody tr", "mobile-notifications")
        assert await _cells_outside(page, "#notifications-table") == []
        await fits(f"#/notifications/{ids['failed'][1]}", re.compile("^Notification"), "#trail-table tbody tr",
                   "mobile-notification")  # fmt: skip
        assert await _cells_outside(page, "#trail-table") == []
        await fits("#/dead-letters", "Dead letters", "#dead-letters-table tbody tr", "mobile-dead-letters")
        assert await _cells_outside(page, "#dead-letters-table") == []
        await fits("#/overview", "Overview", "#providers-table tbody tr", "mobile-overview")
        assert await _cells_outside(page, "#providers-table") == []
        assert await _cells_outside(page, "#overview-channels") == []
        await fits("#/workers", "Workers", "#workers-history", "mobile-workers-history")
        await fits("#/new", "New campaign", "#template-preview", "mobile-new-preview")
        assert ui.page_errors == []
    finally:
        await ui.context.close()


async def _cells_outside(page: Page, selector: str) -> list[str]:
    found: list[str] = await page.evaluate(
        """(selector) => {
          const width = document.documentElement.clientWidth + 0.5;
          return [...document.querySelectorAll(`${selector} tbody td, ${selector} tbody th`)]
            .filter((c) => {
              const b = c.getBoundingClientRect();
              return b.width > 0 && (b.left < 0 || b.right > width);
            })
            .map((c) => c.textContent);
        }""",
        selector,
    )
    return found
