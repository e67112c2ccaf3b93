"""The Webhooks pages in a real browser: add an endpoint (its secret shown once), send a test event to a real
receiver on 127.0.0.1 and see the delivery, disable and enable it, see a failure, delete it; no CSP violation,
nothing wider than a 390 px phone."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from notifq.vocabulary import SUBSCRIBABLE_WEBHOOK_EVENTS
from tests.browser.conftest import Ui, open_ui
from tests.browser.test_session import OVERFLOW
from tests.conftest import ADMIN_EMAIL
from tests.live import LiveApi, serving
from tests.webhooks.receiver import Receiver

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def live_api(base_settings: Settings) -> Iterator[LiveApi]:
    """The session's live API, but letting webhook URLs reach 127.0.0.1 (where the test's receiver listens)."""
    with serving(base_settings.with_(webhooks_allow_private=True, webhook_timeout=5.0), "live-api-webhooks") as api:
        yield api


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver(keep_bodies=True).start()
    yield started
    await started.stop()


async def test_add_test_disable_enable_and_delete_an_endpoint(
    ui: Ui, api: httpx.AsyncClient, engine: AsyncEngine, receiver: Receiver
) -> None:
    page = ui.page
    await ui.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui.base_url)
    await ui.login()
    await ui.nav("Webhooks")
    await expect(page.locator("#main h1")).to_have_text("Webhooks")
    await expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks")).to_have_attribute(
        "aria-current", "page"
    )
    await expect(page.locator("#webhooks-empty")).to_be_visible()
    offered = await page.locator("#wh-events input[type=checkbox]").evaluate_all("(boxes) => boxes.map((b) => b.value)")
    assert offered == [str(t) for t in SUBSCRIBABLE_WEBHOOK_EVENTS]  # the page offers exactly what the API takes

    # Refused before anything is sent: no URL, then no events.
    await page.click("#wh-submit")
    await expect(page.locator("#wh-url-error")).to_have_text("Enter the URL to POST the events to.")
    await page.fill("#wh-url", receiver.url)
    await page.click("#wh-submit")
    await expect(page.locator("#wh-events-error")).to_have_text("Choose at least one event.")
    await page.click("#wh-events-all")
    await page.click("#wh-events-none")
    await page.check("#wh-event-message-sent")
    await page.check("#wh-event-campaign-completed")
    await page.fill("#wh-description", "Order service <b>receiver</b>")
    await page.click("#wh-submit")

    # The secret, once.
    panel = page.locator("#webhook-secret")
    await expect(panel).to_be_visible()
    await expect(panel).to_contain_text("shown only this once")
    secret = await page.input_value("#webhook-secret-value")
    assert secret.startswith("whsec_")
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT id, secret, events, description, batch FROM webhook_endpoints"))).one()
    assert (row.secret, row.events, row.description, row.batch) == (
        secret, ["message.sent", "campaign.completed"], "Order service <b>receiver</b>", False)  # fmt: skip
    await page.click("#webhook-secret-copy")
    await expect(page.locator("#webhook-secret-copied")).not_to_be_empty()
    rows = page.locator("#webhooks-table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-status", "active")
    await expect(rows.first.locator(".badge")).to_have_text("Active")
    await expect(rows.first).to_contain_text("Order service <b>receiver</b>")  # text, not markup
    assert await page.locator("#webhooks-table b").count() == 0
    await ui.screenshot("webhooks-secret-once")
    await page.click("#webhook-secret-done")
    await expect(panel).to_have_count(0)
    assert secret not in await page.content()
    await page.reload()
    await expect(rows).to_have_count(1)
    assert secret not in await page.content()
    listed = await api.get("/webhooks")
    assert secret not in listed.text

    # Its page: a test event to the receiver, which checks the signature as a user's code would.
    receiver.secret = secret
    await rows.first.locator("a.webhook-link").click()
    await expect(page.locator("#main h1")).to_have_text("Order service <b>receiver</b>")
    assert page.url.endswith(f"#/webhooks/{row.id}")
    await expect(page.locator("#webhook-status .badge")).to_have_attribute("data-status", "active")
    await expect(page.locator("#webhook-url")).to_have_text(receiver.url)
    await expect(page.locator("#deliveries-empty")).to_be_visible()
    await page.click("#webhook-test")
    await expect(page.locator("#webhook-message")).to_contain_text("Test event delivered")
    await expect(page.locator("#webhook-message")).to_contain_text("HTTP 204")
    deliveries = page.locator("#deliveries-table tbody tr")
    await expect(deliveries).to_have_count(1)
    await expect(deliveries.first).to_have_attribute("data-outcome", "succeeded")
    await expect(deliveries.first).to_contain_text("204")
    assert receiver.posts == 1 and receiver.bad_signatures == 0
    (event,) = receiver.events.values()
    assert event["type"] == "webhook.test" and event["data"]["endpointId"] == str(row.id)

    # Disabled (by whom), still testable, enabled again.
    await page.click("#webhook-toggle")
    await expect(page.locator("#webhook-status .badge")).to_have_attribute("data-status", "disabled")
    await expect(page.locator("#webhook-reason")).to_have_text(f"disabled by {ADMIN_EMAIL}")
    await expect(page.locator("#webhook-toggle")).to_have_text("Enable")
    assert (await api.get(f"/webhooks/{row.id}")).json()["enabled"] is False
    await page.click("#webhook-test")
    await expect(deliveries).to_have_count(2)
    assert receiver.posts == 2
    await page.click("#webhook-toggle")
    await expect(page.locator("#webhook-status .badge")).to_have_attribute("data-status", "active")
    await expect(page.locator("#webhook-reason")).to_have_count(0)
    await expect(page.locator("#webhook-toggle")).to_have_text("Disable")

    # A receiver answering 500: shown as a failed delivery.
    receiver.status = 500
    await page.click("#webhook-test")
    await expect(page.locator("#webhook-message")).to_contain_text("Test event failed")
    await expect(page.locator("#webhook-message")).to_contain_text("HTTP 500")
    await expect(deliveries).to_have_count(3)
    await expect(deliveries.first).to_have_attribute("data-outcome", "failed")
    await ui.screenshot("webhook-detail")

    # Deleted after a confirmation (Escape backs out first).
    await page.click("#webhook-delete")
    await expect(page.locator("#confirm-webhook-delete")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#confirm-webhook-delete")).to_have_count(0)
    await expect(page.locator("#webhook-delete")).to_be_focused()
    await page.click("#webhook-delete")
    await page.click("#confirm-webhook-delete")
    await expect(page.locator("#main h1")).to_have_text("Webhooks")
    await expect(page.locator("#webhooks-empty")).to_be_visible()
    assert (await api.get("/webhooks")).json()["items"] == []
    deletes = [r for r in ui.requests if r.method == "DELETE"]
    assert [re.sub(r"^https?://[^/]+", "", r.url) for r in deletes] == [f"/webhooks/{row.id}"]
    await ui.assert_clean()


async def test_an_address_the_api_refuses_is_shown_under_the_url(ui: Ui, live_api: LiveApi) -> None:
    page = ui.page
    await ui.login()
    await page.evaluate("location.hash = '#/webhooks'")
    await page.fill("#wh-url", "ftp://example.com/hook")
    await page.check("#wh-event-message-failed")
    await page.click("#wh-submit")
    await expect(page.locator("#wh-url-error")).to_contain_text("must start with https:// or http://")
    await expect(page.locator("#wh-url")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#webhook-secret")).to_have_count(0)
    assert ui.page_errors == [] and await ui.csp_violations() == []
    assert [e for e in ui.console_errors if "status of 422" not in e] == []  # Chromium logs the API's 422


async def test_the_webhook_pages_fit_390_px(browser: Browser, live_api: LiveApi, api: httpx.AsyncClient,
                                            engine: AsyncEngine) -> None:  # fmt: skip
    long_url = "http://127.0.0.1:9/" + "a-rather-long-path-segment/" * 6 + "hook?with=a&query=string"
    r = await api.post("/webhooks", json={"url": long_url, "events": [str(t) for t in SUBSCRIBABLE_WEBHOOK_EVENTS]})
    assert r.status_code == 201, r.text
    endpoint_id = r.json()["id"]
    async with engine.begin() as conn:  # failing for a while, with a long error, and a few deliveries
        await conn.execute(text(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '2 hours', failures = 9, "
            "last_error = :e, last_failure_at = now() WHERE id = :i"),
            {"i": endpoint_id, "e": "HTTP 503 Service Unavailable " + "x" * 120})  # fmt: skip
        await conn.execute(text(
            "INSERT INTO webhook_deliveries (endpoint_id, event_ids, outcome, response_status, error, duration_ms) "
            "SELECT :i, ARRAY(SELECT generate_series(n * 100, n * 100 + 99)), 'failed', 503, "
            "'HTTP 503 Service Unavailable', 40 FROM generate_series(1, 5) n"), {"i": endpoint_id})  # fmt: skip
    ui = await open_ui(browser, live_api, viewport=PHONE)
    try:
        page = ui.page
        await page.goto(live_api.url + "/")
        await ui.login()
        await page.evaluate("location.hash = '#/webhooks'")
        row = page.locator("#webhooks-table tbody tr")
        await expect(row).to_have_count(1)
        await expect(row.first).to_have_attribute("data-status", "failing")
        await expect(row.first).to_contain_text("Failing for 2 h")
        assert await page.evaluate(OVERFLOW) <= 0, "the webhook list scrolls sideways at 390 px"
        await ui.screenshot("mobile-webhooks")
        await page.evaluate(f"location.hash = '#/webhooks/{endpoint_id}'")
        await expect(page.locator("#deliveries-table tbody tr")).to_have_count(5)
        await expect(page.locator("#webhook-reason")).to_contain_text("HTTP 503")
        await expect(page.locator("#webhook-test")).to_be_visible()
        assert await page.evaluate(OVERFLOW) <= 0, "the webhook page scrolls sideways at 390 px"
        await ui.screenshot("mobile-webhook-detail")
        await page.evaluate(f"location.hash = '#/webhooks/{uuid.uuid4()}'")
        await expect(page.locator("#webhook-message")).to_contain_text("does not exist")
        assert ui.page_errors == [] and await ui.csp_violations() == []
        assert [e for e in ui.console_errors if "status of 404" not in e] == []
    finally:
        await ui.context.close()
