"""The campaign pages in a real browser: create, watch live, retry; escaping; validation; CSV upload."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Response, Route, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.conftest import Ui
from tests.conftest import wait_for
from tests.harness import running_worker
from tests.live import LiveApi

RECIPIENTS = 500
CAMPAIGN_URL = re.compile(r"#/campaigns/[0-9a-f-]{36}$")
# The progress element of the campaign page: data-done / data-total are its raw numbers.
PROGRESS_DONE = "() => Number(document.querySelector('#main .card .progress')?.dataset.done ?? -1)"
# Mid-run, with a time left shown: one condition, so the ETA is checked while the run is still going.
MID_RUN = f"""() => {{
  const done = ({PROGRESS_DONE})();
  return done >= 100 && done <= 400 && (document.querySelector('#campaign-eta')?.textContent || '').includes('left at');
}}"""
# From now on, remember the fewest rows the failed-messages table ever holds.
WATCH_FAILED_ROWS = """() => {
  const body = document.querySelector('#failed-table tbody');
  window.__fewestFailedRows = body.children.length;
  new MutationObserver(() => {
    window.__fewestFailedRows = Math.min(window.__fewestFailedRows, body.children.length);
  }).observe(body, { childList: true });
}"""


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

    # ~50 messages/s: 500 take ~10 s, so even a slow CI machine sees the bar mid-way with a time left (checked
    # before the screenshot: after it the run may be over); 10% fail for good (1 attempt).
    slow = live_api.settings.with_(rate_limit=50.0, mock_failure_rate=0.1, max_attempts=1)
    async with running_worker(slow):
        await page.wait_for_function(MID_RUN, timeout=30_000)
        await ui.screenshot("campaign-mid-run")
        await expect(badge).to_have_attribute("data-status", "completed_with_failures", timeout=60_000)

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
        await expect(badge).to_have_attribute("data-status", "completed", timeout=60_000)
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


async def test_new_failures_keep_the_failed_pages_already_shown(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    """A reader who clicked "Show more" keeps those rows while failures keep coming (no reset to page 1)."""
    r = await api.post("/campaigns", json={"name": "Paged failures", "recipientCount": 400})
    campaign_id = r.json()["id"]

    async def failed_count() -> int:
        return int((await api.get(f"/campaigns/{campaign_id}")).json()["failedCount"])

    page = ui.page
    rows = page.locator("#failed-table tbody tr")
    badge = page.locator("#main .page-header .badge")
    async with running_worker(live_api.settings.with_(rate_limit=80.0, mock_failure_rate=1.0, max_attempts=1)):
        # Paused with more than one page (100) failed: "Show more" has rows to load, and more failures are to come.
        await wait_for(lambda: _at_least(failed_count, 150))
        assert (await api.post(f"/campaigns/{campaign_id}/pause")).status_code in (200, 202)
        await ui.login()
        await page.evaluate(f"location.hash = '#/campaigns/{campaign_id}'")
        await expect(rows).to_have_count(100)
        await page.get_by_role("button", name="Show more").click()
        await page.wait_for_function("() => document.querySelectorAll('#failed-table tbody tr').length > 100")
        shown = await rows.count()
        await page.evaluate(WATCH_FAILED_ROWS)

        def reloads_page_one(response: Response) -> bool:
            url = response.url
            return "/messages?" in url and "status=failed" in url and "cursor=" not in url

        async with page.expect_response(reloads_page_one, timeout=30_000):
            assert (await api.post(f"/campaigns/{campaign_id}/resume")).status_code in (200, 202)
        await expect(badge).to_have_attribute("data-status", "completed_with_failures", timeout=60_000)
    await expect(page.locator("#failed-section .card__subtitle")).to_contain_text("400 failed")
    assert await page.evaluate("window.__fewestFailedRows") >= shown
    # The rest comes with "Show more", each message once.
    while await page.get_by_role("button", name="Show more").is_visible():
        before = await rows.count()
        await page.get_by_role("button", name="Show more").click()
        await page.wait_for_function(f"() => document.querySelectorAll('#failed-table tbody tr').length > {before}")
    ids = await page.eval_on_selector_all("#failed-table tbody tr", "(trs) => trs.map((tr) => tr.dataset.messageId)")
    assert len(ids) == len(set(ids)) == 400


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def test_the_list_orders_campaigns_by_time_not_by_timestamp_text(ui: Ui) -> None:
    """Fractional seconds of varying length (and offsets) sort by the instant they name, then by id."""

    def campaign(cid: str, created: str) -> dict[str, object]:
        return {"id": cid, "name": cid, "channel": "email", "status": "pending", "totalMessages": 1, "sentCount": 0,
                "failedCount": 0, "progress": {"pending": 1}, "createdAt": created}  # fmt: skip

    items = [
        campaign("00000000-0000-4000-8000-00000000000a", "2024-05-01T10:00:00Z"),
        campaign("00000000-0000-4000-8000-00000000000b", "2024-05-01T10:00:00.5Z"),
        campaign("00000000-0000-4000-8000-00000000000c", "2024-05-01T09:59:59.999+00:00"),
        # The same instant as a: the larger id comes first, as the API orders them.
        campaign("00000000-0000-4000-8000-00000000000d", "2024-05-01T12:00:00.000+02:00"),
    ]

    async def fake_list(route: Route) -> None:
        await route.fulfill(json={"items": items, "nextCursor": None})

    await ui.page.route(re.compile(r"/campaigns\?"), fake_list)
    await ui.login()
    order = ui.page.locator("#campaigns-table tbody tr a.campaign-link")
    await expect(order).to_have_text([items[1]["name"], items[3]["name"], items[0]["name"], items[2]["name"]])


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
