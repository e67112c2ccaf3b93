"""Session handling, the content security policy, small screens and keyboard use."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, Locator, Page, expect

from notifq.api.security_headers import CONTENT_SECURITY_POLICY
from tests.browser.conftest import Ui, open_ui
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.harness import running_worker
from tests.live import LiveApi

SESSION = "sessionStorage.getItem('notifq.session')"
# Wider than the viewport means the page itself scrolls sideways (tables may scroll inside their box).
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def test_the_token_stays_out_of_urls_and_logout_forgets_it(ui: Ui, api: httpx.AsyncClient) -> None:
    page = ui.page
    await api.post("/campaigns", json={"name": "Weekly", "recipientCount": 5})
    await ui.login()
    token = await ui.token()
    assert token
    for nav in ("New campaign", "Load test", "Workers", "Campaigns"):
        await ui.nav(nav)
        await expect(page.locator("#main h1")).to_have_text(nav)
    await page.locator("#campaigns-table a.campaign-link").click()
    await expect(page.locator("#main h1")).to_have_text("Weekly")
    await expect(page.locator("[data-role=live-indicator]")).to_have_attribute("data-state", "live")

    # The token travels in the Authorization header only: never in a request URL or the address bar.
    api_calls = [r for r in ui.requests if "/assets/" not in r.url and r.url.rstrip("/") != ui.base_url]
    assert {r.url.split("?")[0].replace(ui.base_url, "") for r in api_calls} >= {"/auth/login", "/campaigns", "/stats"}
    for request in api_calls:
        if not request.url.endswith("/auth/login"):
            assert (await request.all_headers()).get("authorization") == f"Bearer {token}", request.url
    urls = [r.url for r in ui.requests] + ui.page_urls + [page.url]
    assert not [u for u in urls if token in u]
    assert await page.evaluate("localStorage.length") == 0

    await page.click("#logout")
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#login-message")).to_contain_text("logged out")
    # Logging out revoked the token on the server: a copy of it no longer works.
    revoked = await api.get("/campaigns", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401, revoked.text
    await ui.screenshot("logged-out")
    assert await page.evaluate(SESSION) is None
    assert await page.evaluate("sessionStorage.length") == 0
    await expect(page.locator("#logout")).to_be_hidden()
    await page.reload()
    await expect(page.locator("#login-form")).to_be_visible()
    assert await page.evaluate(SESSION) is None


async def test_a_401_from_the_api_returns_to_the_login_form(ui: Ui) -> None:
    page = ui.page
    await ui.login()
    # A token the server does not accept (expired, revoked, or from another deployment), then a
    # navigation. Either the new page's request or the list's live stream may meet the 401 first:
    # both must end at the login form with the notice, and logging in must continue to Workers.
    await page.evaluate(
        "sessionStorage.setItem('notifq.session', JSON.stringify({token: 'not-a-token'})); location.hash = '#/workers'"
    )
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#login-message")).to_contain_text("session has ended")
    assert await page.evaluate(SESSION) is None
    # Logging in again continues where the reader was going.
    await page.fill("#login-email", ADMIN_EMAIL)
    await page.fill("#login-password", ADMIN_PASSWORD)
    await page.press("#login-password", "Enter")
    await expect(page.locator("#main h1")).to_have_text("Workers")


async def test_every_page_is_served_with_the_csp_and_a_session_raises_no_errors(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi
) -> None:
    for path in ("/", "/assets/app.js", "/assets/app.css"):
        r = await api.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"].startswith("text/css")

    page = ui.page
    async with running_worker(live_api.settings):
        await ui.login()
        await ui.nav("New campaign")
        await page.fill("#new-name", "Clean session")
        await page.check("#source-count")
        await page.fill("#new-count", "40")
        await page.click("#new-submit")
        await expect(page.locator("#main .page-header .badge")).to_have_attribute(
            "data-status", "completed", timeout=60_000
        )
        for nav in ("Load test", "Workers", "Campaigns"):
            await ui.nav(nav)
            await expect(page.locator("#main h1")).to_have_text(nav)
        await expect(page.locator("#campaigns-table [data-role=percent]")).to_have_text("100%")
        await page.go_back()
        await expect(page.locator("#main h1")).to_have_text("Workers")
        await expect(page.locator("#workers-table tbody tr")).to_have_count(1)
    assert ui.console_errors == []
    assert ui.page_errors == []
    assert await ui.csp_violations() == []


async def _no_overflow(page: Page, hash_: str, heading: str, ready: Locator) -> None:
    """Measured once the page's late content (filled in from the API) is there, not after a guessed delay."""
    await page.evaluate(f"location.hash = '{hash_}'")
    await expect(page.locator("#main h1")).to_have_text(heading)
    await expect(ready).to_be_visible()
    assert await page.evaluate(OVERFLOW) <= 0, f"{hash_} scrolls sideways at 390 px"


# The role attributes of the campaign table's parts, and how many of its parts have none.
EXPLICIT_ROLES = """() => {
  const table = document.querySelector('#campaigns-table');
  const parts = [table, ...table.querySelectorAll('thead, tbody, tr, th, td')];
  const counts = { unlabelled: 0 };
  for (const el of parts) {
    const role = el.getAttribute('role');
    if (role) counts[role] = (counts[role] || 0) + 1;
    else counts.unlabelled += 1;
  }
  return counts;
}"""


# Roles as Chromium's accessibility tree has them (what a screen reader gets), not as the DOM spells them.
async def _ax_roles(page: Page) -> list[str]:
    cdp = await page.context.new_cdp_session(page)
    try:
        tree = await cdp.send("Accessibility.getFullAXTree")
    finally:
        await cdp.detach()
    return [str(node.get("role", {}).get("value")) for node in tree["nodes"] if not node.get("ignored")]


async def test_small_screens_do_not_scroll_sideways_and_login_works_with_the_keyboard(
    browser: Browser, live_api: LiveApi, api: httpx.AsyncClient
) -> None:
    long_name = "Quarterly-statement-reminder-" * 6  # no spaces: must wrap, not widen the page
    r = await api.post("/campaigns", json={"name": long_name, "subject": "S" * 300, "recipientCount": 3})
    campaign_id = r.json()["id"]
    await api.post("/campaigns", json={"name": "Short", "recipientCount": 2})
    ui = await open_ui(browser, live_api, viewport={"width": 390, "height": 844})
    try:
        page = ui.page
        await page.goto(live_api.url + "/")
        # Keyboard only: the email field has focus, Tab moves on, Enter on the button submits.
        await expect(page.locator("#login-email")).to_be_focused()
        await page.keyboard.type(ADMIN_EMAIL)
        await page.keyboard.press("Tab")
        await expect(page.locator("#login-password")).to_be_focused()
        await page.keyboard.type(ADMIN_PASSWORD)
        await page.keyboard.press("Tab")
        submit = page.locator("#login-form button[type=submit]")
        await expect(submit).to_be_focused()
        outline = await submit.evaluate(
            "(el) => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth"
        )
        assert outline.startswith("solid") and not outline.endswith(" 0px"), outline  # a visible focus ring
        await page.keyboard.press("Enter")
        await expect(page.locator("#main h1")).to_have_text("Campaigns")
        await expect(page.locator("#campaigns-table tbody tr")).to_have_count(2)
        assert await page.evaluate(OVERFLOW) <= 0, "the campaign list scrolls sideways at 390 px"
        # Shown as cards (display: grid on the rows), the list is still a table to a screen reader. Chromium keeps
        # the implicit roles on its own (checked in its accessibility tree); WebKit drops them for such rows, so
        # the explicit ARIA roles it would read instead are checked too.
        display = await page.locator("#campaigns-table tbody tr").first.evaluate("(tr) => getComputedStyle(tr).display")
        assert display == "grid"
        roles = await _ax_roles(page)
        assert roles.count("row") == 3 and roles.count("columnheader") == 7 and roles.count("cell") == 14, roles
        explicit = await page.evaluate(EXPLICIT_ROLES)
        assert explicit == {"table": 1, "rowgroup": 2, "row": 3, "columnheader": 7, "cell": 14, "unlabelled": 0}
        await ui.screenshot("mobile-campaigns")
        await _no_overflow(page, "#/new", "New campaign", page.locator("#new-submit"))
        await ui.screenshot("mobile-new")
        stats = page.locator('#campaign-stats [data-count="total"][data-value="3"]')
        await _no_overflow(page, f"#/campaigns/{campaign_id}", long_name, stats)
        await ui.screenshot("mobile-campaign")
        await _no_overflow(page, "#/load-test", "Load test", page.locator("#lt-stats-table tbody tr").first)
        await _no_overflow(page, "#/workers", "Workers", page.locator("#workers-empty"))
        assert ui.page_errors == []
    finally:
        await ui.context.close()


async def test_unknown_addresses_show_a_not_found_page(ui: Ui) -> None:
    page = ui.page
    await ui.login()
    await page.evaluate("location.hash = '#/campaigns/00000000-0000-4000-8000-000000000000'")
    await expect(page.locator("#main h1")).to_have_text("Campaign not found")
    await page.evaluate("location.hash = '#/no-such-page'")
    await expect(page.locator("#main h1")).to_have_text("Page not found")
    await page.go_back()
    await expect(page.locator("#main h1")).to_have_text("Campaign not found")
    await page.get_by_role("link", name="All campaigns").click()
    await expect(page.locator("#main h1")).to_have_text("Campaigns")
