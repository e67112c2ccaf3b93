"""Hostile input to the API key endpoints: every bad body is a 4xx in the error envelope and writes no key;
parallel creations and revocations leave consistent rows; the cap on usable keys holds under concurrency."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifq import api_keys
from notifq.api.api_key_routes import MAX_API_KEY_BODY
from notifq.db import api_keys_repo
from tests.api.attack_support import BAD_TEXT, JSON_HEADERS, raw_json
from tests.api.support import assert_error, bearer

GOOD: dict[str, Any] = {"name": "svc", "scopes": ["read"]}


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM api_keys"))).scalar_one())


def _bad_bodies() -> dict[str, bytes]:
    bodies: dict[str, Any] = {
        "array": [GOOD], "string": "svc", "null": None, "number": 1, "empty-object": {},
        "missing-name": {"scopes": ["read"]}, "missing-scopes": {"name": "svc"},
        "name-empty": {**GOOD, "name": ""}, "name-blank": {**GOOD, "name": "  \t "},
        "name-newline": {**GOOD, "name": "a\nb"}, "name-number": {**GOOD, "name": 5},
        "name-too-long": {**GOOD, "name": "n" * (api_keys.MAX_NAME + 1)}, "name-object": {**GOOD, "name": {"a": 1}},
        "scopes-empty": {**GOOD, "scopes": []}, "scopes-string": {**GOOD, "scopes": "read"},
        "scopes-null": {**GOOD, "scopes": None}, "unknown-scope": {**GOOD, "scopes": ["write"]},
        "scope-case": {**GOOD, "scopes": ["READ"]}, "scope-padded": {**GOOD, "scopes": [" read"]},
        "scope-number": {**GOOD, "scopes": [1]}, "duplicate-scopes": {**GOOD, "scopes": ["read", "read"]},
        "too-many-scopes": {**GOOD, "scopes": ["read", "admin", "campaigns:write", "notifications:send", "read"]},
        "expires-no-zone": {**GOOD, "expiresAt": "2030-01-01T00:00:00"},
        "expires-past": {**GOOD, "expiresAt": "2001-01-01T00:00:00Z"},
        "expires-number": {**GOOD, "expiresAt": 1893456000}, "expires-garbage": {**GOOD, "expiresAt": "tomorrow"},
        "expires-year-0": {**GOOD, "expiresAt": "0000-01-01T00:00:00Z"},
    }  # fmt: skip
    raw = {name: json.dumps(body).encode() for name, body in bodies.items()}
    for kind, bad in BAD_TEXT.items():
        raw[f"name-{kind}"] = raw_json({**GOOD, "name": "svc" + bad})
        raw[f"scope-{kind}"] = raw_json({**GOOD, "scopes": ["read" + bad]})
    raw["not-json"] = b"{name: svc}"
    raw["empty"] = b""
    raw["truncated"] = b'{"name": "svc", "scopes": ["read"'
    raw["deep"] = b'{"name": "svc", "scopes": ["read"], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    raw["deep-scopes"] = b'{"name": "svc", "scopes": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    raw["invalid-utf8"] = b'{"name": "svc\xff", "scopes": ["read"]}'
    return raw


BAD_BODIES = _bad_bodies()


@pytest.mark.parametrize("name", list(BAD_BODIES))
async def test_bad_bodies_are_refused_and_create_nothing(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, name: str
) -> None:
    r = await client.post("/api-keys", content=BAD_BODIES[name], headers={**fast_auth, **JSON_HEADERS})
    assert r.status_code in (413, 422), r.text
    assert_error(r, r.status_code)
    assert await _count(engine) == 0
    for kind, bad in BAD_TEXT.items():
        assert bad not in r.text, f"the {kind} was echoed back"


async def test_a_huge_body_is_413_before_it_is_read(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    body = json.dumps({**GOOD, "name": "n" * (MAX_API_KEY_BODY + 1)}).encode()
    error = assert_error(await client.post("/api-keys", content=body, headers={**fast_auth, **JSON_HEADERS}), 413,
                         "payload_too_large")  # fmt: skip
    assert error["details"] == {"maxBytes": MAX_API_KEY_BODY}
    assert await _count(engine) == 0


async def test_unknown_fields_are_ignored_and_text_is_kept_as_sent(
    client: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    name = "<script>alert(1)</script> ' OR 1=1 -- é 🚀"
    extra = {"secret": "nq_mine", "id": str(uuid.uuid4()), "revokedAt": None}
    r = await client.post("/api-keys", headers=fast_auth, json={**GOOD, "name": name, **extra})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name and r.json()["secret"] != "nq_mine"


async def test_path_ids_that_are_not_uuids_are_no_route(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    for path in ("/api-keys/1", "/api-keys/nq_x", "/api-keys/%00", "/api-keys/..%2Fcampaigns"):
        assert_error(await client.get(path, headers=fast_auth), 404, "not_found")
        assert_error(await client.delete(path, headers=fast_auth), 404, "not_found")


async def test_parallel_creations_give_distinct_working_keys(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    answers = await asyncio.gather(*(client.post("/api-keys", headers=fast_auth, json={**GOOD, "name": f"k{i}"})
                                     for i in range(20)))  # fmt: skip
    assert [a.status_code for a in answers] == [201] * 20, [a.text for a in answers if a.status_code != 201]
    secrets = {a.json()["secret"] for a in answers}
    assert len(secrets) == 20 and len({a.json()["id"] for a in answers}) == 20
    assert await _count(engine) == 20
    checks = await asyncio.gather(*(client.get("/stats", headers=bearer(s)) for s in secrets))
    assert {c.status_code for c in checks} == {200}


async def test_parallel_revocations_revoke_once(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    created = (await client.post("/api-keys", headers=fast_auth, json=GOOD)).json()
    answers = await asyncio.gather(*(client.delete(f"/api-keys/{created['id']}", headers=fast_auth)
                                     for _ in range(10)))  # fmt: skip
    assert {a.status_code for a in answers} == {204}
    async with engine.connect() as conn:
        revoked_at = (await conn.execute(text("SELECT revoked_at FROM api_keys"))).scalar_one()
    assert revoked_at is not None
    assert_error(await client.get("/stats", headers=bearer(created["secret"])), 401, "unauthorized")


async def test_a_key_used_while_it_is_revoked_in_parallel_ends_refused(
    client: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    created = (await client.post("/api-keys", headers=fast_auth, json=GOOD)).json()
    key = bearer(created["secret"])
    uses = [client.get("/stats", headers=key) for _ in range(20)]
    answers = await asyncio.gather(*uses, client.delete(f"/api-keys/{created['id']}", headers=fast_auth))
    assert {a.status_code for a in answers[:-1]} <= {200, 401} and answers[-1].status_code == 204
    assert_error(await client.get("/stats", headers=key), 401, "unauthorized")


async def test_the_cap_on_usable_keys_holds_under_parallel_creation(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "MAX_ACTIVE_KEYS", 5)
    answers = await asyncio.gather(*(client.post("/api-keys", headers=fast_auth, json=GOOD) for _ in range(12)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 5 + [409] * 7, codes
    refused = next(a for a in answers if a.status_code == 409)
    assert assert_error(refused, 409, "conflict")["details"] == {"max": 5}
    assert await _count(engine) == 5
    first = next(a.json() for a in answers if a.status_code == 201)
    assert (await client.delete(f"/api-keys/{first['id']}", headers=fast_auth)).status_code == 204
    assert (await client.post("/api-keys", headers=fast_auth, json=GOOD)).status_code == 201  # a revoked one frees


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the loads of the per-process copy of usable keys from now on (one element, kept up to date)."""
    loads = [0]
    active = api_keys_repo.active

    async def counted(conn: AsyncConnection) -> list[api_keys_repo.ActiveRow]:
        loads[0] += 1
        return await active(conn)

    monkeypatch.setattr(api_keys_repo, "active", counted)
    return loads


async def test_a_flood_of_made_up_keys_costs_few_loads(
    client: httpx.AsyncClient, fast_auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each unknown key is a 401; together they share reloads of the copy instead of a query each."""
    loads = _count_loads(monkeypatch)
    made_up = [bearer("nq_" + uuid.uuid4().hex + "A" * 11) for _ in range(200)]
    started = asyncio.get_running_loop().time()
    answers = await asyncio.gather(*(client.get("/stats", headers=h) for h in made_up))
    took = asyncio.get_running_loop().time() - started
    assert {a.status_code for a in answers} == {401}
    assert loads[0] <= 2 + took / api_keys.MISS_RELOAD_SECONDS, f"{loads[0]} loads in {took:.2f} s for 200 made-up keys"


async def test_a_refused_key_presented_again_costs_no_load(
    client: httpx.AsyncClient, fast_auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service retrying with a revoked or made-up key is refused from memory, without reloading the copy."""
    created = (await client.post("/api-keys", headers=fast_auth, json=GOOD)).json()
    assert (await client.get("/stats", headers=bearer(created["secret"]))).status_code == 200
    assert (await client.delete(f"/api-keys/{created['id']}", headers=fast_auth)).status_code == 204
    loads = _count_loads(monkeypatch)
    for _ in range(50):
        assert_error(await client.get("/stats", headers=bearer(created["secret"])), 401, "unauthorized")
    made_up = bearer("nq_" + "Z" * 43)
    for _ in range(50):
        assert_error(await client.get("/stats", headers=made_up), 401, "unauthorized")
    assert loads[0] <= 2, f"{loads[0]} loads (one for the made-up key's first miss, one if the copy came due)"
