"""Issue 10, defect 6: every table is usable at 390 px (each row a card), addresses wrap at sensible points.

Before the fix, at 390 px the Workers table showed four of its ten columns, "All messages" was cut at
"SEN", and addresses broke in the middle of a word. Each table is checked the same way: its rows are cards
(every cell inside the viewport, labelled), the page does not scroll sideways, and each part of an address
(between "@", "." and "+") stays on one line. At 1280 px the same tables are ordinary tables.
"""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import Ui, open_ui
from tests.browser.test_session import OVERFLOW
from tests.harness import running_worker
from tests.live import LiveApi

PHONE = {"width": 390, "height": 844}
LONG_ADDRESS = "quarterly.statement.reminder.customer.number.000123+promo@example.com"

# For every cell of the table's first rows: whether it lies inside the viewport, and its label (data-label).
CELLS = """(selector) => {
  const rows = [...document.querySelectorAll(`${selector} tbody tr`)].slice(0, 5);
  return rows.flatMap((tr) => [...tr.children].map((cell) => {
    const box = cell.getBoundingClientRect();
    return {
      inside: box.left >= 0 && box.right <= document.documentElement.clientWidth + 0.5 && box.width > 0,
      label: cell.dataset.label || null,
      text: cell.textContent.trim(),
      display: getComputedStyle(tr).display,
    };
  }));
}"""
# Parts of addresses (the Text nodes between <wbr>s) that the browser broke across lines: none may be.
BROKEN_PARTS = """(selector) => {
  const broken = [];
  for (const addr of document.querySelectorAll(`${selector} .addr`)) {
    for (const node of addr.childNodes) {
      if (node.nodeType !== Node.TEXT_NODE || !node.textContent) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push(node.textContent);
    }
  }
  return broken;
}"""


async def _cards_fit(page: Page, selector: str, min_cells: int) -> list[dict[str, object]]:
    cells: list[dict[str, object]] = await page.evaluate(CELLS, selector)
    assert len(cells) >= min_cells, (selector, cells)
    assert {c["display"] for c in cells} == {"grid"}, selector
    outside = [c for c in cells if not c["inside"]]
    assert outside == [], (selector, outside)
    assert await page.evaluate(OVERFLOW) <= 0, f"{selector}: the page scrolls sideways at 390 px"
    return cells


async def test_every_table_is_usable_at_390_px(browser: Browser, live_api: LiveApi, api: httpx.AsyncClient) -> None:
    r = await api.post("/campaigns", json={"name": "Long addresses", "recipients": [LONG_ADDRESS, "li@example.com"]})
    campaign_id = r.json()["id"]
    ui = await open_ui(browser, live_api, viewport=PHONE)
    try:
        page = ui.page
        # Every attempt fails for good: the campaign's failed list holds both addresses.
        failing = live_api.settings.with_(mock_failure_rate=1.0, max_attempts=1)
        async with running_worker(failing):
            await page.goto(live_api.url + "/")
            await ui.login()

            await ui.nav("Workers")
            await expect(page.locator("#workers-table tbody tr")).to_have_count(1)
            cells = await _cards_fit(page, "#workers-table", 10)
            labels = {c["label"] for c in cells}
            assert labels >= {"Host", "PID", "Rate /s", "In flight", "Sent", "Failed", "Retried", "Up for", "Last seen"}
            await ui.screenshot("mobile-workers")

            await page.evaluate(f"location.hash = '#/campaigns/{campaign_id}'")
            await expect(page.locator("#main .page-header .badge")).to_have_attribute(
                "data-status", "completed_with_failures", timeout=60_000
            )
        await expect(page.locator("#failed-table tbody tr")).to_have_count(2)
        await _cards_fit(page, "#failed-table", 8)
        assert await page.evaluate(BROKEN_PARTS, "#failed-table") == []
        # The whole address is there (as text and as the title), each part on one line.
        addr = page.locator("#failed-table .addr", has_text="quarterly")
        await expect(addr).to_have_text(LONG_ADDRESS)
        await expect(addr).to_have_attribute("title", LONG_ADDRESS)
        await ui.screenshot("mobile-campaign-failed")

        await ui.nav("Load test")
        await expect(page.locator("#lt-stats-table tbody tr th")).to_have_text(["email"])
        cells = await _cards_fit(page, "#lt-stats-table", 7)
        # Every status with its label and count, none cut off: the old table ended at "SEN".
        shown = {c["label"]: c["text"] for c in cells if c["label"]}
        assert shown == {"Pending": "0", "Queued": "0", "Sending": "0", "Sent": "0", "Failed": "2", "Cancelled": "0"}
        await ui.screenshot("mobile-load-test")

        await ui.nav("Campaigns")
        await expect(page.locator("#campaigns-table tbody tr")).to_have_count(1)
        await _cards_fit(page, "#campaigns-table", 7)
        assert ui.page_errors == []
    finally:
        await ui.context.close()


async def test_the_same_tables_are_tables_at_1280_px(ui: Ui, api: httpx.AsyncClient, live_api: LiveApi) -> None:
    r = await api.post("/campaigns", json={"name": "Wide", "recipients": [LONG_ADDRESS]})
    campaign_id = r.json()["id"]
    page = ui.page
    async with running_worker(live_api.settings.with_(mock_failure_rate=1.0, max_attempts=1)):
        await ui.login()
        await ui.nav("Workers")
        await expect(page.locator("#workers-table tbody tr")).to_have_count(1)
        display = await page.locator("#workers-table tbody tr").first.evaluate("(tr) => getComputedStyle(tr).display")
        assert display == "table-row"
        await expect(page.locator("#workers-table thead th")).to_have_count(10)
        await page.evaluate(f"location.hash = '#/campaigns/{campaign_id}'")
        await expect(page.locator("#failed-table tbody tr")).to_have_count(1)
    await ui.screenshot("wide-campaign-failed")
    # Where the column is too narrow for the whole address, it breaks at "@", not inside a part.
    assert await page.evaluate(BROKEN_PARTS, "#failed-table") == []
    assert await page.evaluate(OVERFLOW) <= 0
