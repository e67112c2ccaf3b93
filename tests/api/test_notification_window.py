"""GET /notifications?since=&until=: single notifications created in a time window, against real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.support import assert_error, create_campaign

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _notifications(client: httpx.AsyncClient, auth: dict[str, str], hours: list[float],
                         engine: AsyncEngine) -> list[str]:  # fmt: skip
    """One notification per entry, created T0 + that many hours (set in the row: the API stamps now())."""
    ids = []
    for i in range(len(hours)):
        channel = "sms" if i % 2 else "email"
        to = f"+1555000{i:04d}" if channel == "sms" else f"w{i}@example.com"
        r = await client.post("/notifications", json={"channel": channel, "to": to, "body": "hi"}, headers=auth)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    async with engine.begin() as conn:
        for message_id, hour in zip(ids, hours, strict=True):
            await conn.execute(text("UPDATE messages SET created_at = :at WHERE id = :id"),
                               {"at": T0 + timedelta(hours=hour), "id": int(message_id)})  # fmt: skip
    return ids


async def _page(client: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await client.get("/notifications", params=params, headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_window_bounds_created_at_and_orders_newest_first(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    # Ids and creation times disagree on purpose: the window orders by createdAt.
    hours = [0, 5, 1, 2, 3, 4, 6]
    ids = await _notifications(client, fast_auth, hours, engine)
    await create_campaign(client, fast_auth, name="never listed", recipients=["c@example.com"])
    by_hour = {h: i for h, i in zip(hours, ids, strict=True)}

    body = await _page(client, fast_auth, since=_iso(T0 + timedelta(hours=1)), until=_iso(T0 + timedelta(hours=5)))
    # since is inclusive, until exclusive
    assert [n["id"] for n in body["items"]] == [by_hour[4], by_hour[3], by_hour[2], by_hour[1]]
    assert body["nextCursor"] is None
    assert [datetime.fromisoformat(n["createdAt"]) for n in body["items"]] == [
        T0 + timedelta(hours=h) for h in (4, 3, 2, 1)
    ]

    only_since = await _page(client, fast_auth, since=_iso(T0 + timedelta(hours=5)))
    assert [n["id"] for n in only_since["items"]] == [by_hour[6], by_hour[5]]
    only_until = await _page(client, fast_auth, until=_iso(T0 + timedelta(hours=1)))
    assert [n["id"] for n in only_until["items"]] == [by_hour[0]]
    # Other zones name the same instant; the `+` is percent-encoded (httpx does it for params).
    shifted = await _page(client, fast_auth, since="2026-11-20T15:00:00+02:00", until="2026-11-20T12:00:00-05:00")
    assert [n["id"] for n in shifted["items"]] == [by_hour[4], by_hour[3], by_hour[2], by_hour[1]]
    # Filters combine: the sms ones are at odd positions (hours 5, 2, 4).
    sms = await _page(client, fast_auth, since=_iso(T0), until=_iso(T0 + timedelta(hours=5)), channel="sms")
    assert [n["id"] for n in sms["items"]] == [by_hour[4], by_hour[2]]
    assert (await _page(client, fast_auth, since=_iso(T0 + timedelta(hours=3)), until=_iso(T0)))["items"] == []


async def test_window_pages_with_the_cursor(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    hours = [0.5 * i for i in range(9)]
    ids = await _notifications(client, fast_auth, hours, engine)
    window = {"since": _iso(T0 + timedelta(minutes=30)), "until": _iso(T0 + timedelta(hours=4))}
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        body = await _page(client, fast_auth, limit=3, **window, **({"cursor": cursor} if cursor else {}))
        seen += [n["id"] for n in body["items"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids[1:8])) and pages == 3
    # A cursor that names no message ends the listing instead of restarting it.
    assert (await _page(client, fast_auth, cursor="999999", **window))["items"] == []


@pytest.mark.parametrize(
    "value",
    ["", "2026-11-20", "2026-11-20T12:00:00", "2026-11-20t12:00:00Z", "2026-11-20T12:00:00z",
     "2026-11-20T12:00:00 02:00", "2026-02-30T12:00:00Z", "2026-11-20T24:00:00Z", "1763640000",
     "2026-11-20T12:00:00.1234567Z", "0000-01-01T00:00:00Z"],
)  # fmt: skip
async def test_a_malformed_instant_is_422(client: httpx.AsyncClient, fast_auth: dict[str, str], value: str) -> None:
    """Including a `+` sent unencoded (it arrives as a space): the message says how to send it."""
    for name in ("since", "until"):
        error = assert_error(await client.get("/notifications", params={name: value}, headers=fast_auth), 422,
                             "validation_error")  # fmt: skip
        assert error["details"]["field"] == name


async def test_instants_at_the_ends_of_the_calendar_are_answered(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Beyond Python's datetime once in UTC: clamped, never a 500."""
    ids = await _notifications(client, fast_auth, [0], engine)
    everything = await _page(client, fast_auth, since="0001-01-01T00:00:00+05:00", until="9999-12-31T23:59:59-05:00")
    assert [n["id"] for n in everything["items"]] == ids
    assert (await _page(client, fast_auth, until="0001-01-01T00:00:00+05:00"))["items"] == []
