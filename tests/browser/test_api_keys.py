"""The API keys page in a real browser: create a key (its secret shown once, copied), see it listed without its
secret, use it, revoke it after a confirmation; no CSP violation, nothing wider than a 390 px phone."""

from __future__ import annotations

import hashlib

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.vocabulary import Scope
from tests.browser.conftest import Ui, open_ui
from tests.browser.test_session import OVERFLOW
from tests.live import LiveApi

PHONE = {"width": 390, "height": 844}


async def test_create_copy_use_and_revoke_a_key(
    ui: Ui, api: httpx.AsyncClient, engine: AsyncEngine, live_api: LiveApi
) -> None:
    page = ui.page
    await ui.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui.base_url)
    await ui.login()
    await ui.nav("API keys")
    await expect(page.locator("#main h1")).to_have_text("API keys")
    await expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys")).to_have_attribute(
        "aria-current", "page"
    )
    await expect(page.locator("#api-keys-empty")).to_be_visible()
    offered = await page.locator("#key-scopes input[type=checkbox]").evaluate_all(
        "(boxes) => boxes.map((b) => b.value)"
    )
    assert offered == [str(s) for s in Scope]  # the page offers exactly what the API takes

    # Refused before anything is sent: no name, then no scope.
    await page.click("#key-submit")
    await expect(page.locator("#key-name-error")).to_have_text("Enter a name for the key.")
    await page.fill("#key-name", "Order service <b>prod</b>")
    await page.click("#key-submit")
    await expect(page.locator("#key-scopes-error")).to_have_text("Choose at least one scope.")
    await page.check("#key-scope-notifications-send")
    await page.check("#key-scope-read")
    await page.select_option("#key-expiry", "90")
    await page.click("#key-submit")

    # The secret, once, and copied.
    panel = page.locator("#api-key-secret")
    await expect(panel).to_be_visible()
    await expect(panel).to_contain_text("shown only this once")
    secret = await page.input_value("#api-key-secret-value")
    assert secret.startswith("nq_") and len(secret) == 46
    await page.click("#api-key-secret-copy")
    await expect(page.locator("#api-key-secret-copied")).to_have_text("Copied to the clipboard.")
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT id, name, scopes, secret_hash, expires_at FROM api_keys"))).one()
    assert (row.name, row.scopes) == ("Order service <b>prod</b>", ["notifications:send", "read"])
    assert bytes(row.secret_hash) == hashlib.sha256(secret.encode()).digest() and row.expires_at is not None
    rows = page.locator("#api-keys-table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-status", "active")
    await expect(rows.first).to_contain_text("Order service <b>prod</b>")  # text, not markup
    await expect(rows.first).to_contain_text(secret[:9] + "…")
    await expect(rows.first).to_contain_text("never")  # not used yet
    assert await page.locator("#api-keys-table b").count() == 0
    await ui.screenshot("api-key-secret-once")
    await page.click("#api-key-secret-done")
    await expect(panel).to_have_count(0)
    assert secret not in await page.content()
    await page.reload()
    await expect(rows).to_have_count(1)
    assert secret not in await page.content()
    assert secret not in (await api.get("/api-keys")).text

    # The key works within its scopes.
    async with httpx.AsyncClient(base_url=live_api.url, headers={"Authorization": f"Bearer {secret}"}) as service:
        assert (await service.get("/stats")).status_code == 200
        assert (await service.get("/api-keys")).status_code == 403

        # Revoked after a confirmation (Escape backs out first); the row stays, marked revoked.
        revoke = rows.first.locator("button[data-revoke]")
        await revoke.click()
        await expect(page.locator("#confirm-revoke-key")).to_be_focused()
        await page.keyboard.press("Escape")
        await expect(page.locator("#confirm-revoke-key")).to_have_count(0)
        await expect(revoke).to_be_focused()
        await revoke.click()
        await page.click("#confirm-revoke-key")
        await expect(page.locator("#api-keys-message")).to_contain_text("was revoked")
        await expect(rows.first).to_have_attribute("data-status", "revoked")
        await expect(rows.first.locator("button[data-revoke]")).to_have_count(0)
        assert (await service.get("/stats")).status_code == 401
    await ui.assert_clean()


async def test_the_api_keys_page_fits_390_px(browser: Browser, live_api: LiveApi, api: httpx.AsyncClient) -> None:
    for i, scopes in enumerate((["admin"], [str(s) for s in Scope], ["read"])):
        r = await api.post(
            "/api-keys", json={"name": f"A service with a rather long name, number {i}", "scopes": scopes}
        )
        assert r.status_code == 201, r.text
    ui = await open_ui(browser, live_api, viewport=PHONE)
    try:
        page = ui.page
        await page.goto(live_api.url + "/")
        await ui.login()
        await page.evaluate("location.hash = '#/api-keys'")
        await expect(page.locator("#api-keys-table tbody tr")).to_have_count(3)
        await page.fill("#key-name", "Phone")
        await page.check("#key-scope-admin")
        await page.click("#key-submit")
        await expect(page.locator("#api-key-secret")).to_be_visible()
        await expect(page.locator("#api-keys-table tbody tr")).to_have_count(4)
        assert await page.evaluate(OVERFLOW) <= 0, "#/api-keys scrolls sideways at 390 px"
        await ui.screenshot("api-keys-phone")
        await ui.assert_clean()
    finally:
        await ui.context.close()
