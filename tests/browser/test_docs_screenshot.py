"""docs/dashboard.png, the README's picture: a campaign page mid-run at 1280x800.

Skipped unless asked for, since it writes into docs/:
    NOTIFQ_DASHBOARD_SCREENSHOT=1 .venv/bin/python -m pytest tests/browser/test_docs_screenshot.py
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests.browser.conftest import Ui
from tests.harness import running_worker
from tests.live import LiveApi

DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"

pytestmark = pytest.mark.skipif(
    os.environ.get("NOTIFQ_DASHBOARD_SCREENSHOT") != "1", reason="set NOTIFQ_DASHBOARD_SCREENSHOT=1 to regenerate"
)


async def test_docs_screenshot(ui: Ui, api: httpx.AsyncClient, live_api: LiveApi) -> None:
    # Two finished campaigns for the list, then a bigger one sending at ~150 messages/s.
    async with running_worker(live_api.settings.with_(mock_failure_rate=0.04, max_attempts=1)):
        for name, count in (("Welcome series", 1200), ("Card expiry reminder", 800)):
            r = await api.post("/campaigns", json={"name": name, "subject": "Hello", "recipientCount": count})
            assert r.status_code == 202
            await _wait_finished(api, r.json()["id"])
    r = await api.post(
        "/campaigns",
        json={"name": "November statement ready", "subject": "Your November statement", "recipientCount": 4000},
    )
    campaign_id = r.json()["id"]
    await ui.login()
    await ui.page.goto(f"{live_api.url}/#/campaigns/{campaign_id}")
    async with running_worker(live_api.settings.with_(rate_limit=150.0, mock_failure_rate=0.03, max_attempts=1)):
        done = "Number(document.querySelector('#main .card .progress')?.dataset.done ?? 0)"
        await ui.page.wait_for_function(f"() => {done} >= 2200", timeout=60_000)
        await expect(ui.page.locator("#campaign-eta")).to_contain_text("left at")
        await ui.page.mouse.move(0, 0)  # no hover effects in the picture
        await ui.page.screenshot(path=str(DOCS_IMAGE))  # the viewport: 1280x800
        await api.post(f"/campaigns/{campaign_id}/cancel")  # let the worker stop at once


async def _wait_finished(api: httpx.AsyncClient, campaign_id: str) -> None:
    for _ in range(300):
        status = (await api.get(f"/campaigns/{campaign_id}")).json()["status"]
        if status.startswith("completed"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign {campaign_id} did not finish")
