"""Real-browser fixtures: Debian's headless Chromium driven by Playwright, against the live API.

Playwright's own browser downloads are never used (the machine has no internet): the tests
launch /usr/bin/chromium. Without it they skip, unless NOTIFQ_REQUIRE_BROWSER=1 (CI), where
a missing browser is a failure rather than a silently green run.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Request, async_playwright, expect

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.live import LiveApi

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's services,
# which on a machine without a network only adds noise and delay.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Every wait is for a condition, so a generous limit costs nothing when things work, and spares a loaded
# 2-core CI machine (Chromium, the API, PostgreSQL, Redis and a worker share it) from timing out.
TIMEOUT_MS = 30_000

# Records every CSP violation the page reports (injected before any page script runs).
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, or a skip (a failure when NOTIFQ_REQUIRE_BROWSER=1, as in CI)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium); the dashboard's browser tests need it"
        if os.environ.get("NOTIFQ_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Ui:
    """A browser tab on the dashboard, with everything it did recorded for assertions."""

    page: Page
    context: BrowserContext
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    page_urls: list[str] = field(default_factory=list)

    async def login(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
        """Log in through the form and wait for the campaign list."""
        if "#/" not in self.page.url:
            await self.page.goto(self.base_url + "/")
        await self.page.fill("#login-email", email)
        await self.page.fill("#login-password", password)
        await self.page.press("#login-password", "Enter")
        await expect(self.page.locator("#main h1")).to_have_text("Campaigns")

    async def nav(self, name: str) -> None:
        """Follow a link of the top bar (the way a reader moves between pages)."""
        await self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()

    async def token(self) -> str | None:
        raw = await self.page.evaluate("sessionStorage.getItem('notifq.session')")
        return str(json.loads(raw)["token"]) if raw else None

    async def csp_violations(self) -> list[str]:
        found: list[str] = await self.page.evaluate("window.__cspViolations || []")
        return found

    async def assert_clean(self, expected_console_errors: tuple[str, ...] = ()) -> None:
        """No script error, no CSP violation, and no console error but those expected (Chromium logs a 4xx answer)."""
        assert self.page_errors == []
        assert [e for e in self.console_errors if not any(x in e for x in expected_console_errors)] == []
        assert await self.csp_violations() == []

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


async def open_ui(browser: Browser, live_api: LiveApi, **context_options: Any) -> Ui:
    options: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}, **context_options}
    context = await browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    await context.add_init_script(CSP_RECORDER)
    page = await context.new_page()
    ui = Ui(page=page, context=context, base_url=live_api.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            ui.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: ui.page_errors.append(str(error)))
    page.on("request", lambda request: ui.requests.append(request))
    page.on("framenavigated", lambda frame: ui.page_urls.append(frame.url))

    async def on_dialog(dialog: Any) -> None:
        ui.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return ui


@pytest.fixture
async def ui(browser: Browser, live_api: LiveApi, admin_id: uuid.UUID) -> AsyncIterator[Ui]:
    """A fresh browser context (empty storage) at 1280x800; the admin exists."""
    opened = await open_ui(browser, live_api)
    try:
        yield opened
    finally:
        await opened.context.close()


@pytest.fixture
async def api(live_api: LiveApi, admin_id: uuid.UUID) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the live API with its own admin token (to check what the page shows)."""
    async with httpx.AsyncClient(base_url=live_api.url, timeout=30) as client:
        r = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        yield client
