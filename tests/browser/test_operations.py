"""The workers panel and the load-test panel against a real worker."""

from __future__ import annotations

import json

import httpx
from playwright.async_api import expect

from tests.browser.conftest import Ui
from tests.harness import running_worker
from tests.live import LiveApi

TOTAL, BATCH = 2000, 500


async def test_the_workers_panel_shows_the_live_worker_and_a_load_test_is_accepted_and_drained(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    page = ui.page
    async with running_worker(live_api.settings) as runtime:
        assert runtime.deps is not None
        worker_id = runtime.deps.metrics.id
        await ui.login()
        await ui.nav("Workers")
        row = page.locator(f'#workers-table tr[data-worker-id="{worker_id}"]')
        await expect(row).to_be_visible()
        await expect(page.locator('#workers-stats [data-count="workers"]')).to_have_attribute("data-value", "1")

        await ui.nav("Load test")
        await page.fill("#lt-total", str(TOTAL))
        await page.fill("#lt-batch", str(BATCH))
        await page.click("#lt-start")
        await expect(page.locator("#lt-status")).to_have_attribute("data-state", "drained", timeout=40_000)
        await expect(page.locator('#lt-stats [data-count="accepted"]')).to_have_attribute("data-value", str(TOTAL))
        await expect(page.locator('#lt-stats [data-count="drained"]')).to_have_attribute("data-value", str(TOTAL))
        await expect(page.locator("#lt-stats-table tbody tr")).to_contain_text(["email"])
        await ui.screenshot("load-test-drained")

        # Batches of 500 through the batch API, bulk priority, addresses that the mock provider takes.
        posts = [r for r in ui.requests if r.method == "POST" and r.url.endswith("/notifications")]
        bodies = [json.loads(r.post_data or "[]") for r in posts]
        assert [len(b) for b in bodies] == [BATCH] * (TOTAL // BATCH)
        items = [item for body in bodies for item in body]
        assert sorted(item["to"] for item in items) == sorted(f"load+{i}@example.com" for i in range(1, TOTAL + 1))
        assert {(item["channel"], item["priority"]) for item in items} == {("email", "bulk")}
        stats = (await api.get("/stats")).json()
        assert stats["byStatus"].get("sent", 0) + stats["byStatus"].get("failed", 0) == TOTAL

        # The worker's own counters show the work once its next heartbeat lands.
        await ui.nav("Workers")
        sent_cell = page.locator(f'#workers-table tr[data-worker-id="{worker_id}"] td').nth(5)
        await expect(sent_cell).not_to_have_text("0")
        await ui.screenshot("workers")
    assert ui.page_errors == []
