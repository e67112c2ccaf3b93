"""The suppression list's endpoints against real PostgreSQL: normalisation, paging, errors that change nothing."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.support import assert_error


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM suppressions"))).scalar_one())


async def test_add_normalises_lists_and_deletes(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post("/suppressions", headers=auth, json={"channel": "email", "address": "Ann.Lee@Example.ORG"})
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["address"] == "Ann.Lee@example.org" and entry["reason"] == "manual" and entry["category"] is None
    again = await client.post(
        "/suppressions", headers=auth, json={"channel": "email", "address": "Ann.Lee@EXAMPLE.org"}
    )
    assert again.status_code == 200 and again.json()["createdAt"] == entry["createdAt"]
    phone = await client.post(
        "/suppressions",
        headers=auth,
        json={"channel": "sms", "address": "0044 (20) 7946-0958", "detail": "asked by phone"},
    )
    assert phone.status_code == 201 and phone.json()["address"] == "+442079460958"
    page = (await client.get("/suppressions", headers=auth)).json()  # newest first
    assert [(e["channel"], e["address"]) for e in page["items"]] == [("sms", "+442079460958"),
                                                                      ("email", "Ann.Lee@example.org")]  # fmt: skip
    only_sms = (await client.get("/suppressions?channel=sms", headers=auth)).json()["items"]
    assert [e["detail"] for e in only_sms] == ["asked by phone"]
    assert (await client.get("/suppressions?reason=complaint", headers=auth)).json()["items"] == []
    gone = await client.delete(f"/suppressions/email/{quote('Ann.Lee@EXAMPLE.org')}",
                               headers=auth)  # fmt: skip
    assert gone.status_code == 204
    assert_error(await client.delete("/suppressions/email/Ann.Lee@example.org", headers=auth), 404, "not_found")
    r = await client.delete(f"/suppressions/sms/{quote('+44 20 7946 0958')}", headers=auth)
    assert r.status_code == 204
    # An address with a `/` (valid in a local part) is sent as %2F and still found.
    await client.post("/suppressions", headers=auth, json={"channel": "email", "address": "a/b@example.com"})
    assert (
        await client.delete(f"/suppressions/email/{quote('a/b@example.com', safe='')}", headers=auth)
    ).status_code == 204
    # A push token too long for an index entry is kept as its hash (the claim hashes it the same way).
    long_token = "t" * 3000
    r = await client.post("/suppressions", headers=auth, json={"channel": "push", "address": long_token})
    assert r.status_code == 201 and r.json()["address"].startswith("sha256:")
    assert (await client.delete(f"/suppressions/push/{long_token}", headers=auth)).status_code == 204


async def test_cursor_pages_through_every_entry_once(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    addresses = [f"user{i:02d}@example.net" for i in range(23)]
    await asyncio.gather(*(client.post("/suppressions", headers=auth, json={"channel": "email", "address": a})
                           for a in addresses))  # fmt: skip
    seen: list[str] = []
    cursor = None
    while True:
        url = "/suppressions?limit=5" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(url, headers=auth)).json()
        seen += [e["address"] for e in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and sorted(seen) == sorted(addresses)
    assert (await client.get("/suppressions?cursor=9999999999999999999", headers=auth)).json()["items"]


async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    bad_bodies = [
        {"channel": "email", "address": "not an address"},
        {"channel": "email", "address": "a\x00b@example.com"},
        {"channel": "sms", "address": "+12"},
        {"channel": "inapp", "address": "someone"},
        {"channel": "email", "address": "a@example.com", "reason": "hard_bounce"},
        {"channel": "email"},
        {"channel": "push", "address": "tok en"},
        {"channel": "email", "address": "a@example.com", "detail": "x" * 501},
    ]
    for body in bad_bodies:
        assert_error(await client.post("/suppressions", headers=auth, json=body), 422, "validation_error")
    for raw in (b'"\\ud800"', b"[" * 5000, b"{", b'{"channel": "email", "address": "\\udfff@example.com"}'):
        r = await client.post("/suppressions", headers={**auth, "content-type": "application/json"}, content=raw)
        assert 400 <= r.status_code < 500, r.text
    assert_error(await client.get("/suppressions?cursor=%25%25", headers=auth), 422)
    assert_error(await client.get("/suppressions?cursor=bm90IGpzb24", headers=auth), 422)
    assert_error(await client.get("/suppressions?channel=fax", headers=auth), 422)
    assert_error(await client.delete("/suppressions/fax/a@example.com", headers=auth), 422)
    assert_error(await client.delete("/suppressions/email/nobody", headers=auth), 404)  # not an address: not listed
    for method, url in (("GET", "/suppressions"), ("POST", "/suppressions"), ("DELETE", "/suppressions/email/a@b.co")):
        assert_error(await client.request(method, url, json={"channel": "email", "address": "a@example.com"}), 401)
        assert_error(await client.request(method, url, headers={"Authorization": "Bearer nope"},
                                          json={"channel": "email", "address": "a@example.com"}), 401)  # fmt: skip
    assert await _count(engine) == 0


async def test_parallel_adds_of_one_address_make_one_entry(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    spellings = ["Race@Example.com", "Race@example.COM", "Race@EXAMPLE.com"] * 4
    answers = await asyncio.gather(
        *(client.post("/suppressions", headers=auth, json={"channel": "email", "address": a}) for a in spellings)
    )
    assert sorted(r.status_code for r in answers) == [200] * 11 + [201]
    assert await _count(engine) == 1


async def test_the_claims_sql_key_is_the_python_key(engine: AsyncEngine) -> None:
    """The claim statement normalises a message's address in SQL; it must agree with what the list stores."""
    from notifq.addresses import suppression_key, suppression_key_sql

    samples = [("email", "Ann.Lee@Example.ORG"), ("email", "o'brien+tag@Sub.Example.co.uk"), ("email", "A@B.CO"),
               ("sms", "+442079460958"), ("push", "fcm:Token-1_x.y"), ("inapp", "u-1"),
               ("push", "long-" + "x" * 2000)]  # fmt: skip
    async with engine.connect() as conn:
        for channel, address in samples:
            sql = text(f"SELECT {suppression_key_sql('CAST(:c AS text)', 'CAST(:a AS text)')}")
            got = (await conn.execute(sql, {"c": channel, "a": address})).scalar_one()
            assert got == (suppression_key(channel, address) or address), (channel, address)
