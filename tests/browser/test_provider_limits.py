"""The workers page shows the fleet-wide provider limits (from the state the workers' script keeps in Redis)
and, for channels with several providers, where messages go now (failover)."""

from __future__ import annotations

import json

import httpx
from playwright.async_api import Route, expect
from redis.asyncio import Redis

from notifq.keys import RedisKeys
from notifq.worker.fleet_limit import FleetScript, Limit
from tests.browser.conftest import Ui
from tests.live import LiveApi


async def test_the_workers_page_shows_provider_limits_and_failover(
    ui: Ui, api: httpx.AsyncClient, live_api: LiveApi, redis: Redis
) -> None:
    script = FleetScript(redis, RedisKeys.from_settings(live_api.settings), 3600.0)  # a slow climb back: 50 % stays
    await script.take(Limit("mock", 500.0, 100.0), 50)  # at its limit
    await script.throttle(Limit("ses", 14.0, 2.8), 0)  # backed off to half
    await script.throttle(Limit("fcm", 10_000.0, 20_000.0), 120)  # held by a Retry-After of 2 minutes
    body = (await api.get("/workers")).json()
    assert [(p["provider"], p["limitPerSecond"]) for p in body["providerLimits"]] == [
        ("mock", 500), ("ses", 14), ("fcm", 10_000)]  # fmt: skip

    async def with_failover(route: Route) -> None:
        """The live API lists one provider per channel; the page is shown an email channel failing over."""
        answer = await route.fetch()
        data = await answer.json()
        for item in data["providerRoutes"]:
            if item["channel"] == "email":
                item.update(providers=["ses", "smtp"], active="smtp", failingOver={"worker-1": "smtp"})
        await route.fulfill(response=answer, body=json.dumps(data))

    await ui.page.route("**/workers", with_failover)
    await ui.login()
    await ui.nav("Workers")
    limits = ui.page.locator("#provider-limits-table")
    await expect(ui.page.locator("#provider-limits")).to_be_visible()
    await expect(limits.locator('tr[data-provider="mock"]')).to_have_attribute("data-state", "ok")
    await expect(limits.locator('tr[data-provider="ses"]')).to_have_attribute("data-state", "backed_off")
    await expect(limits.locator('tr[data-provider="ses"] [data-role="state"]')).to_have_text("Backed off to 50 %")
    await expect(limits.locator('tr[data-provider="fcm"]')).to_have_attribute("data-state", "held")
    routes = ui.page.locator("#provider-routes-table tbody tr")
    await expect(routes).to_have_count(1)  # only the channel with a choice
    await expect(routes.first).to_have_attribute("data-failing-over", "yes")
    await expect(routes.first.locator('[data-role="active"]')).to_contain_text("smtp (failover: ses unavailable")
    await ui.screenshot("workers-provider-limits")
    assert ui.page_errors == [] and await ui.csp_violations() == []
