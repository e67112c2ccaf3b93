"""Deliverability in a real browser: a campaign's bounces, complaints and unsubscribes with their rates, the
notice when its guard paused it (then resumed from the page), and the suppression list (filter, add, remove)."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.conftest import Ui, open_ui
from tests.browser.test_session import OVERFLOW
from tests.conftest import wait_for
from tests.live import LiveApi

TOTAL = 600
SENT = 500
REASON = "hard-bounce rate 8.00% (40 of 500 sent) is over NOTIFQ_MAX_BOUNCE_RATE (5.00%)"
PHONE = {"width": 390, "height": 844}


async def _held_campaign(api: httpx.AsyncClient, name: str, recipients: int) -> str:
    """A campaign with every message held (no worker runs): paused through the API."""
    r = await api.post("/campaigns", json={"name": name, "recipientCount": recipients})
    assert r.status_code == 202, r.text
    campaign_id: str = r.json()["id"]
    r = await api.post(f"/campaigns/{campaign_id}/pause")
    assert r.status_code in (200, 202), r.text

    async def all_held() -> bool:
        campaign = (await api.get(f"/campaigns/{campaign_id}")).json()
        return bool(campaign["status"] == "paused" and campaign["progress"]["pending"] == recipients)

    await wait_for(all_held)
    return campaign_id


async def _simulate_guard_pause(engine: AsyncEngine, campaign_id: str) -> None:
    """What the feedback webhook and the guard would leave: 500 sent, 40 bounced, 3 complaints, 7 unsubscribes,
    and the campaign paused with the guard's reason. The counters match the messages, so a resume stays sound."""
    async with engine.begin() as conn:
        moved = await conn.execute(
            text(
                "UPDATE messages SET status = 'sent', attempts = 1, updated_at = now() WHERE id IN "
                "(SELECT id FROM messages WHERE campaign_id = :c ORDER BY id LIMIT :n)"
            ),
            {"c": campaign_id, "n": SENT},
        )
        assert moved.rowcount == SENT
        await conn.execute(
            text(
                "UPDATE campaigns SET sent_count = sent_count + :n, pending_count = pending_count - :n, "
                "bounce_count = 40, complaint_count = 3, unsubscribe_count = 7, paused_reason = :reason, "
                "updated_at = now() WHERE id = :c"
            ),
            {"c": campaign_id, "n": SENT, "reason": REASON},
        )


async def test_a_campaign_paused_by_its_guard_shows_its_rates_and_why_and_resumes(
    ui: Ui, api: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    campaign_id = await _held_campaign(api, "Autumn sale", TOTAL)
    await _simulate_guard_pause(engine, campaign_id)
    campaign = (await api.get(f"/campaigns/{campaign_id}")).json()
    assert campaign["deliverability"] == {
        "bounces": 40,
        "complaints": 3,
        "unsubscribes": 7,
        "bounceRate": 0.08,
        "complaintRate": 0.006,
        "pausedReason": REASON,
    }

    page = ui.page
    await ui.login()
    await page.locator(f'#campaigns-table tr[data-campaign-id="{campaign_id}"] a.campaign-link').click()
    await expect(page.locator("#main h1")).to_have_text("Autumn sale")
    badge = page.locator("#main .page-header .badge")
    await expect(badge).to_have_attribute("data-status", "paused")

    # The figures: counts (raw in data-value) and the rates of what was sent, worded as the guard words them.
    figures = page.locator("#campaign-deliverability")
    await expect(page.get_by_role("heading", name="Deliverability")).to_be_visible()
    for role, count, shown in (("bounces", 40, "40"), ("complaints", 3, "3"), ("unsubscribes", 7, "7")):
        value = figures.locator(f'[data-count="{role}"]')
        await expect(value).to_have_attribute("data-value", str(count))
        await expect(value).to_have_text(shown)
    await expect(figures.locator('[data-rate="bounces"]')).to_have_text("8.00% of 500 sent")
    await expect(figures.locator('[data-rate="complaints"]')).to_have_text("0.60% of 500 sent")
    await expect(figures.locator('[data-rate="unsubscribes"]')).to_have_text("1.40% of 500 sent")
    await expect(figures.locator(".stat__label")).to_have_text(["Bounces", "Complaints", "Unsubscribes"])

    # The guard's reason, in the toolbar with the Resume button, and above it.
    notice = page.locator("#campaign-guard")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text(f"Paused by its guard: {REASON}")
    await expect(page.locator("#campaign-paused-reason")).to_have_text(REASON)
    resume = page.locator("#campaign-actions #action-resume")
    await expect(resume).to_be_visible()
    toolbar = page.locator("#main .toolbar")
    await expect(toolbar.locator("#campaign-guard")).to_have_count(1)
    await expect(toolbar.locator("#action-resume")).to_have_count(1)
    notice_box, resume_box = await notice.bounding_box(), await resume.bounding_box()
    assert notice_box and resume_box and notice_box["y"] + notice_box["height"] <= resume_box["y"]
    await expect(page.locator('#campaign-stats [data-count="sent"]')).to_have_attribute("data-value", str(SENT))
    await ui.screenshot("campaign-paused-by-guard")

    await resume.click()
    await expect(badge).to_have_attribute("data-status", "processing")
    await expect(page.locator("#campaign-message")).to_contain_text("Campaign resumed.")
    await expect(notice).to_be_hidden()
    # The reports stay counted: only the guard's sample starts again.
    await expect(figures.locator('[data-count="bounces"]')).to_have_attribute("data-value", "40")
    await expect(figures.locator('[data-rate="bounces"]')).to_have_text("8.00% of 500 sent")
    after = (await api.get(f"/campaigns/{campaign_id}")).json()
    assert after["status"] == "processing"
    assert after["deliverability"]["pausedReason"] is None
    assert after["deliverability"]["bounces"] == 40
    await ui.assert_clean()


async def test_a_campaign_paused_by_hand_has_no_guard_notice_and_zero_rates(ui: Ui, api: httpx.AsyncClient) -> None:
    r = await api.post("/campaigns", json={"name": "Quiet", "recipientCount": 20})
    assert r.status_code == 202, r.text
    page = ui.page
    await ui.login()
    await page.locator("#campaigns-table a.campaign-link").click()
    figures = page.locator("#campaign-deliverability")
    for role in ("bounces", "complaints", "unsubscribes"):
        await expect(figures.locator(f'[data-count="{role}"]')).to_have_attribute("data-value", "0")
    await expect(figures.locator("[data-rate]")).to_have_text(["nothing sent yet"] * 3)

    await page.click("#action-pause")
    await expect(page.locator("#main .page-header .badge")).to_have_attribute("data-status", "paused")
    await expect(page.locator("#action-resume")).to_be_visible()
    await expect(page.locator("#campaign-guard")).to_be_hidden()
    await expect(page.locator("#campaign-paused-reason")).to_have_text("")
    await ui.assert_clean()


async def test_the_suppression_list_filters_adds_and_removes_entries(
    ui: Ui, api: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    campaign_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO suppressions (channel, address, category, reason, detail, message_id, campaign_id) VALUES "
                "('email', 'bounced@example.com', '', 'hard_bounce', 'Permanent/General: 550 5.1.1 user unknown', "
                "42, :c), "
                "('email', 'reader@example.com', 'newsletter', 'unsubscribed', NULL, 43, :c), "
                "('sms', '+14155550100', '', 'opted_out_sms', '<b>STOP</b>', NULL, NULL)"
            ),
            {"c": campaign_id},
        )
    page = ui.page
    rows = page.locator("#suppressions-table tbody tr")
    await ui.login()
    await ui.nav("Suppressions")
    await expect(page.locator("#main h1")).to_have_text("Suppressions")
    await expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Suppressions")
    ).to_have_attribute("aria-current", "page")
    await expect(rows).to_have_count(3)
    await expect(page.locator("#suppressions-summary")).to_have_text("3 suppressed addresses.")
    bounced = page.locator('#suppressions-table tr[data-address="bounced@example.com"]')
    await expect(bounced).to_contain_text("Hard bounce")
    await expect(bounced).to_contain_text("550 5.1.1 user unknown")
    await expect(bounced.locator("a.message-link")).to_have_attribute("href", "#/notifications/42")
    await expect(page.locator('#suppressions-table tr[data-address="reader@example.com"]')).to_contain_text(
        "Category newsletter."
    )
    sms = page.locator('#suppressions-table tr[data-address="+14155550100"]')
    await expect(sms).to_contain_text("SMS opt-out")
    await expect(sms).to_contain_text("<b>STOP</b>")  # text, not markup
    assert await page.locator("#suppressions-table b").count() == 0

    # Filters: by reason, then by channel; they live in the address.
    await page.select_option("#sup-reason", "hard_bounce")
    await page.get_by_role("button", name="Apply").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-address", "bounced@example.com")
    assert page.url.endswith("#/suppressions?reason=hard_bounce")
    await page.select_option("#sup-reason", "")
    await page.select_option("#sup-channel", "sms")
    await page.get_by_role("button", name="Apply").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-address", "+14155550100")
    await page.click("#sup-clear")
    await expect(rows).to_have_count(3)

    # A blank address is refused before anything is sent; an invalid one by the API, under the field.
    await page.click("#sup-add-submit")
    await expect(page.locator("#sup-add-address-error")).to_have_text("Enter the address to suppress.")
    await page.fill("#sup-add-address", "not-an-email")
    await page.click("#sup-add-submit")
    await expect(page.locator("#sup-add-address-error")).to_contain_text("address")
    await expect(page.locator("#sup-add-address")).to_have_attribute("aria-invalid", "true")
    await expect(rows).to_have_count(3)

    # Added by hand: normalised by the API (the domain in lower case), then listed.
    await page.select_option("#sup-add-channel", "email")
    await page.fill("#sup-add-address", "Former.Customer@Example.ORG")
    await page.fill("#sup-add-detail", "asked by phone")
    await page.click("#sup-add-submit")
    await expect(page.locator("#suppressions-message")).to_contain_text(
        "Former.Customer@example.org is suppressed on email"
    )
    await expect(page.locator("#sup-add-address-error")).to_be_hidden()
    await expect(rows).to_have_count(4)
    added = page.locator('#suppressions-table tr[data-address="Former.Customer@example.org"]')
    await expect(added).to_have_attribute("data-reason", "manual")
    await expect(added).to_contain_text("Added by hand")
    await expect(added).to_contain_text("asked by phone")
    listed = (await api.get("/suppressions", params={"reason": "manual"})).json()["items"]
    assert [(s["channel"], s["address"], s["detail"]) for s in listed] == [
        ("email", "Former.Customer@example.org", "asked by phone")
    ]
    await ui.screenshot("suppressions")

    # Removed after a confirmation (Escape backs out first).
    await added.get_by_role("button", name="Remove").click()
    await expect(page.locator("#confirm-unsuppress")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#confirm-unsuppress")).to_have_count(0)
    await expect(rows).to_have_count(4)
    await added.get_by_role("button", name="Remove").click()
    await page.click("#confirm-unsuppress")
    await expect(added).to_have_count(0)
    await expect(rows).to_have_count(3)
    await expect(page.locator("#suppressions-message")).to_contain_text("was removed from the suppression list")
    await expect(page.locator("#suppressions-summary")).to_have_text("3 suppressed addresses.")
    listed = (await api.get("/suppressions")).json()["items"]
    assert sorted(s["address"] for s in listed) == ["+14155550100", "bounced@example.com", "reader@example.com"]
    deletes = [r for r in ui.requests if r.method == "DELETE"]
    assert [re.sub(r"^https?://[^/]+", "", r.url) for r in deletes] == [
        "/suppressions/email/Former.Customer%40example.org"
    ]
    # The API's 422 for the invalid address is the one console line (Chromium logs every 4xx).
    assert len(ui.console_errors) == 1
    await ui.assert_clean(expected_console_errors=("status of 422",))


async def test_the_guard_notice_and_the_suppression_list_fit_390_px(
    browser: Browser, live_api: LiveApi, api: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    campaign_id = await _held_campaign(api, "Phone check", 600)
    await _simulate_guard_pause(engine, campaign_id)
    r = await api.post("/suppressions", json={"channel": "email", "address": "a.rather.long.address@example.com"})
    assert r.status_code == 201, r.text
    ui = await open_ui(browser, live_api, viewport=PHONE)
    try:
        page = ui.page
        await page.goto(live_api.url + "/")
        await ui.login()
        await page.evaluate(f"location.hash = '#/campaigns/{campaign_id}'")
        await expect(page.locator("#campaign-guard")).to_contain_text(REASON)
        await expect(page.locator('#campaign-deliverability [data-rate="bounces"]')).to_have_text("8.00% of 500 sent")
        assert await page.evaluate(OVERFLOW) <= 0, "the campaign page scrolls sideways at 390 px"
        await ui.screenshot("mobile-campaign-paused-by-guard")
        await page.evaluate("location.hash = '#/suppressions'")
        await expect(page.locator("#suppressions-table tbody tr")).to_have_count(1)
        await expect(page.locator("#suppressions-table tbody tr").get_by_role("button", name="Remove")).to_be_visible()
        assert await page.evaluate(OVERFLOW) <= 0, "the suppression list scrolls sideways at 390 px"
        await ui.screenshot("mobile-suppressions")
        await ui.assert_clean()
    finally:
        await ui.context.close()
