"""The workers panel and the load-test panel against a real worker."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
from playwright.async_api import Route, expect

from tests.browser.conftest import Ui
from tests.conftest import wait_for
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
        # Refreshes update the row in place (keyed by worker id): the same element survives the next poll.
        await row.evaluate("(tr) => { tr.dataset.kept = 'yes'; }")
        updated = await page.locator("#workers-updated").text_content()
        await expect(page.locator("#workers-updated")).not_to_have_text(updated or "")
        await expect(row).to_have_attribute("data-kept", "yes")

        await ui.nav("Load test")
        await page.fill("#lt-total", str(TOTAL))
        await page.fill("#lt-batch", str(BATCH))
        await page.click("#lt-start")
        await expect(page.locator("#lt-status")).to_have_attribute("data-state", "drained", timeout=60_000)
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
        await expect(sent_cell).not_to_have_text("0", timeout=30_000)  # the next heartbeat
        await ui.screenshot("workers")
    assert ui.page_errors == []


async def test_stopping_a_load_test_counts_the_requests_already_sent(ui: Ui, live_api: LiveApi) -> None:
    """Stop sends no new batch but waits for the ones in flight: the API may accept them, so they count."""
    page = ui.page
    held: list[Route] = []
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        held.append(route)
        await release.wait()
        await route.continue_()

    async def both_held() -> bool:
        return len(held) == 2

    await page.route("**/notifications", hold)
    await ui.login()
    await ui.nav("Load test")
    await page.fill("#lt-total", str(TOTAL))
    await page.fill("#lt-batch", str(BATCH))
    await page.fill("#lt-concurrency", "2")
    status = page.locator("#lt-status")
    await page.click("#lt-start")
    await wait_for(both_held)
    await page.click("#lt-stop")
    await expect(status).to_have_attribute("data-state", "stopping")
    release.set()  # the two batches reach the API after Stop, and are accepted
    await expect(status).to_have_attribute("data-state", "stopped")
    await expect(page.locator('#lt-stats [data-count="accepted"]')).to_have_attribute("data-value", str(2 * BATCH))
    await expect(status).to_contain_text(re.compile(r"Stopped after 1.000 of 2.000 accepted"))
    assert len([r for r in ui.requests if r.method == "POST" and r.url.endswith("/notifications")]) == 2

    async with running_worker(live_api.settings):
        await expect(page.locator('#lt-stats [data-count="drained"]')).to_have_attribute(
            "data-value", str(2 * BATCH), timeout=30_000
        )
        # Drained, but still labelled as what it was: a stopped run, not "Done".
        await expect(status).to_contain_text(re.compile(r"all 1.000 finished"))
    await expect(status).to_have_attribute("data-state", "stopped")
    await expect(status).not_to_contain_text("Done")
    assert ui.page_errors == []
