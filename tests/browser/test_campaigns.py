"""The campaign pages in a real browser: create, watch live, retry; escaping; validation; CSV upload."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.async_api import expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.conftest import Ui
from tests.harness import running_worker
from tests.live import LiveApi

RECIPIENTS = 500
CAMPAIGN_URL = re.compile(r"#/campaigns/[0-9a-f-]{36}$")
# The progress element of the campaign page: data-done / data-total are its raw numbers.
PROGRESS_DONE = "() => Number(document.querySelector('#main .card .progress')?.dataset.done ?? -1)"


async def _create_in_form(ui: Ui, name: str, recipients: str, subject: str = "", body: str = "") -> str:
    """Fill the new-campaign form (paste mode), submit, and return the new campaign's id."""
    page = ui.page
    await ui.nav("New campaign")
    await expect(page.locator("#main h1")).to_have_text("New campaign")
    await page.fill("#new-name", name)
    await page.fill("#new-subject", subject)
    await page.fill("#new-body", body)
    await page.fill("#new-recipients", recipients)
    await page.click("#new-submit")
    await expect(page).to_have_url(CAMPAIGN_URL)
    await expect(page.locator("#main h1")).to_have_text(name)
    return page.url.rsplit("/", 1)[1]


async def _assert_counts_match_api(ui: Ui, api: httpx.AsyncClient, campaign_id: str) -> dict[str, object]:
    campaign: dict[str, object] = (await api.get(f"/campaigns/{campaign_id}")).json()
    progress = campaign["progress"]
    assert isinstance(progress, dict)
    shown = await ui.page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#campaign-stats [data-count]')]"
        ".map((el) => [el.dataset.count, Number(el.dataset.value)]))"
    )
    assert shown == {"total": campaign["totalMessages"], **progress}
    return campaign


async def test_a_campaign_from_the_form_progresses_live_and_its_failures_are_retried(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    page = ui.page
    await ui.login()
    await page.evaluate("window.__noReload = 1")  # a reload would wipe it: proof the page never reloads
    recipients = "\n".join(f"user{i}@example.com" for i in range(1, RECIPIENTS + 1))
    campaign_id = await _create_in_form(ui, "Spring launch", recipients, "Hello {{ to }}", "Our spring offers.")
    badge = page.locator("#main .page-header .badge")
    await expect(badge).to_have_attribute("data-status", "processing")

    # ~80 messages/s: 500 take ~6 s, long enough to see the bar mid-way; 10% fail for good (1 attempt).
    slow = live_api.settings.with_(rate_limit=80.0, mock_failure_rate=0.1, max_attempts=1)
    async with running_worker(slow):
        await page.wait_for_function(f"() => ({PROGRESS_DONE})() >= 100 && ({PROGRESS_DONE})() <= 400")
        await ui.screenshot("campaign-mid-run")
        await expect(page.locator("#campaign-eta")).to_contain_text("left at")
        await expect(badge).to_have_attribute("data-status", "completed_with_failures", timeout=30_000)

    assert await page.evaluate("window.__noReload") == 1
    await expect(page.locator("#main .card .progress")).to_have_attribute("data-done", str(RECIPIENTS))
    await expect(page.locator("#main [data-role=percent]").first).to_have_text("100%")
    await expect(page.locator("[data-role=live-indicator]")).to_have_attribute("data-state", "live")
    await expect(page.locator("[data-role=chart-summary]")).to_contain_text(re.compile(r"Peak [1-9]"))
    campaign = await _assert_counts_match_api(ui, api, campaign_id)
    failed = campaign["failedCount"]
    assert isinstance(failed, int) and 0 < failed < RECIPIENTS
    # The updates came from the event stream: the campaign JSON was fetched once, never polled.
    gets = [r for r in ui.requests if r.method == "GET" and urlsplit(r.url).path == f"/campaigns/{campaign_id}"]
    assert len(gets) == 1, [r.url for r in gets]
    assert any(r.url.endswith(f"/events/campaigns/{campaign_id}") for r in ui.requests)

    rows = page.locator("#failed-table tbody tr")
    await expect(rows).to_have_count(min(failed, 100))
    await expect(rows.first).to_contain_text("mock provider: simulated failure")
    await expect(page.locator("#action-pause")).to_have_count(0)  # not for a finished campaign
    await expect(page.locator("#action-cancel")).to_have_count(0)
    await ui.screenshot("campaign-finished-with-failures")

    async with running_worker(live_api.settings.with_(mock_failure_rate=0.0)):
        await page.click("#action-retry")
        await expect(page.locator("#campaign-message")).to_contain_text(f"{failed} failed messages were queued again")
        await expect(badge).to_have_attribute("data-status", "completed", timeout=30_000)
    await expect(page.locator('#campaign-stats [data-count="sent"]')).to_have_attribute("data-value", str(RECIPIENTS))
    await expect(page.locator("#failed-empty")).to_be_visible()
    await expect(page.locator("#action-retry")).to_have_count(0)
    await _assert_counts_match_api(ui, api, campaign_id)
    await ui.screenshot("campaign-retried")
    assert await page.evaluate("window.__noReload") == 1

    # The list shows it finished, with the same numbers.
    await ui.nav("Campaigns")
    row = page.locator(f'#campaigns-table tr[data-campaign-id="{campaign_id}"]')
    await expect(row.locator(".badge")).to_have_attribute("data-status", "completed")
    await expect(row.locator("[data-role=percent]")).to_have_text("100%")
    await ui.screenshot("campaign-list")


async def test_markup_in_a_campaign_name_is_shown_as_text(ui: Ui, api: httpx.AsyncClient) -> None:
    name = "<img src=x onerror=alert(1)>"
    subject = "<b>bold</b> & <script>alert(2)</script>"
    r = await api.post("/campaigns", json={"name": name, "subject": subject, "recipientCount": 2})
    assert r.status_code == 202, r.text
    page = ui.page
    await ui.login()
    link = page.locator("#campaigns-table a.campaign-link")
    await expect(link).to_have_text(name)
    await expect(link.locator("img")).to_have_count(0)
    await link.click()
    await expect(page.locator("#main h1")).to_have_text(name)
    await expect(page.locator(".meta")).to_contain_text(subject)
    assert await page.locator("img[src='x'], main img, main script, main b").count() == 0
    assert name in await page.title()
    await page.go_back()  # hash navigation: back to the list
    await expect(page.locator("#main h1")).to_have_text("Campaigns")
    await expect(link).to_have_text(name)
    assert ui.dialogs == []
    assert ui.page_errors == []


async def test_an_invalid_recipient_is_shown_next_to_the_field_and_nothing_is_created(
    ui: Ui, api: httpx.AsyncClient
) -> None:
    page = ui.page
    await ui.login()
    await ui.nav("New campaign")
    await page.fill("#new-name", "Bad list")
    await page.fill("#new-recipients", "user1@example.com\nnot-an-email\n\nuser3@example.com")
    await page.click("#new-submit")
    error = page.locator("#new-recipients-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("invalid email addresses")
    await expect(error).to_contain_text("Line 2: not-an-email")
    await expect(page.locator("#new-recipients")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#new-recipients")).to_be_focused()
    await expect(page.locator("#new-name-error")).to_be_hidden()
    assert page.url.endswith("#/new")
    await ui.screenshot("new-campaign-invalid-recipient")

    # A blank name is the name field's error; the recipients error is cleared.
    await page.fill("#new-name", "   ")
    await page.fill("#new-recipients", "user1@example.com")
    await page.press("#new-name", "Enter")  # forms submit with Enter
    await expect(page.locator("#new-name-error")).to_contain_text("`name` must not be empty")
    await expect(page.locator("#new-recipients-error")).to_be_hidden()

    # Load-test mode needs a count: checked before anything is sent.
    await page.fill("#new-name", "Load")
    await page.check("#source-count")
    await page.click("#new-submit")
    await expect(page.locator("#new-count-error")).to_contain_text("whole number")
    assert (await api.get("/campaigns")).json()["items"] == []


async def test_a_csv_upload_creates_recipients_with_their_variables(
    ui: Ui, api: httpx.AsyncClient, engine: AsyncEngine, tmp_path: Path
) -> None:
    csv_file = tmp_path / "customers.csv"
    # A BOM and CRLF (what spreadsheets write), a quoted comma, a doubled quote, a blank line.
    csv_file.write_bytes(
        '\ufeffto,name,code\r\nana@example.com,Ana,4711\r\n"li@example.com","Li, ""Jr.""",42\r\n\r\n'
        "bo@example.com,Bo,7\r\n".encode()
    )
    page = ui.page
    await ui.login()
    await ui.nav("New campaign")
    await page.fill("#new-name", "CSV codes")
    await page.fill("#new-subject", "Hello {{ name }}")
    await page.fill("#new-body", "Your code is {{ code }}")
    await page.check("#source-csv")
    await expect(page.locator("#new-recipients")).to_be_hidden()
    await page.set_input_files("#new-csv", str(csv_file))
    await expect(page.locator("#new-csv-summary")).to_have_text(
        "3 recipients in customers.csv, with variables: name, code."
    )
    await page.click("#new-submit")
    await expect(page).to_have_url(CAMPAIGN_URL)
    campaign_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator('#campaign-stats [data-count="total"]')).to_have_attribute("data-value", "3")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT recipient, vars FROM messages WHERE campaign_id = :c ORDER BY id"), {"c": campaign_id}
            )
        ).all()
    got = [(r[0], r[1] if isinstance(r[1], dict) else json.loads(r[1])) for r in rows]
    assert got == [
        ("ana@example.com", {"name": "Ana", "code": "4711"}),
        ("li@example.com", {"name": 'Li, "Jr."', "code": "42"}),
        ("bo@example.com", {"name": "Bo", "code": "7"}),
    ]
    campaign = (await api.get(f"/campaigns/{campaign_id}")).json()
    assert (campaign["name"], campaign["subject"], campaign["totalMessages"]) == ("CSV codes", "Hello {{ name }}", 3)


async def test_pause_resume_and_cancel_are_offered_only_where_the_status_allows(ui: Ui, api: httpx.AsyncClient) -> None:
    # No worker runs: the campaign stays `processing` until the buttons move it.
    r = await api.post("/campaigns", json={"name": "Held", "recipientCount": 50})
    campaign_id = r.json()["id"]
    page = ui.page
    await ui.login()
    await page.locator("#campaigns-table a.campaign-link").click()
    badge = page.locator("#main .page-header .badge")
    actions = page.locator("#campaign-actions button")
    await expect(badge).to_have_attribute("data-status", "processing")
    await expect(actions).to_have_text(["Pause", "Cancel campaign"])

    await page.click("#action-pause")
    await expect(badge).to_have_attribute("data-status", "paused")
    await expect(actions).to_have_text(["Resume", "Cancel campaign"])
    await expect(page.locator("#campaign-eta")).to_contain_text("Paused with 50 messages to go")
    assert (await api.get(f"/campaigns/{campaign_id}")).json()["status"] == "paused"

    await page.click("#action-resume")
    await expect(badge).to_have_attribute("data-status", "processing")

    # Cancelling asks first; Escape backs out and returns focus to the button.
    await page.click("#action-cancel")
    await expect(page.locator("#confirm-cancel")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#confirm-cancel")).to_have_count(0)
    await expect(page.locator("#action-cancel")).to_be_focused()
    assert (await api.get(f"/campaigns/{campaign_id}")).json()["status"] == "processing"
    await page.keyboard.press("Enter")  # the focused Cancel button, from the keyboard
    await page.click("#confirm-cancel")
    await expect(badge).to_have_attribute("data-status", "cancelled")
    await expect(actions).to_have_count(0)
    await expect(page.locator('#campaign-stats [data-count="cancelled"]')).to_have_attribute("data-value", "50")
    assert (await api.get(f"/campaigns/{campaign_id}")).json()["status"] == "cancelled"
