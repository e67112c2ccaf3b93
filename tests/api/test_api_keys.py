"""API keys with scopes against real PostgreSQL and Redis: create, list, get, revoke; the secret shown once and
hashed at rest; every operation's scope enforced; expiry; keys made by keys; lastUsedAt without a write per
request; the key named in the logs; the scopes in /openapi.json."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from notifq.api.contract import Operation
from notifq.api.openapi import documented_path
from notifq.api.routes import OPERATIONS
from notifq.api_keys import ActiveKey, ApiKeys
from notifq.errors import Forbidden
from notifq.logs import RequestContext
from notifq.settings import Settings
from notifq.vocabulary import Scope
from tests.api.attack_support import concrete_path
from tests.api.support import app_and_client, assert_error, bearer, create_campaign

KEY_FIELDS = {"id", "name", "scopes", "prefix", "createdByKey", "createdAt", "expiresAt", "lastUsedAt", "revokedAt"}
CAMPAIGN: dict[str, Any] = {"name": "k", "subject": "s", "body": "b", "recipients": ["ada@example.com"]}
EMAIL: dict[str, Any] = {"channel": "email", "to": "ada@example.com", "subject": "s", "body": "b"}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def create_key(client: httpx.AsyncClient, auth: dict[str, str], *scopes: str, **body: Any) -> dict[str, Any]:
    r = await client.post("/api-keys", headers=auth, json={"name": body.pop("name", "svc"), "scopes": list(scopes),
                                                           **body})  # fmt: skip
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


@pytest.fixture
async def app_and_http(settings: Settings) -> Any:
    async with app_and_client(settings) as pair:
        yield pair


async def test_create_list_get_revoke_and_the_secret_is_shown_once(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    before = datetime.now(UTC)
    r = await client.post("/api-keys", headers=fast_auth, json={"name": "Order service",
                                                                "scopes": ["notifications:send", "read"]})  # fmt: skip
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == KEY_FIELDS | {"secret"}
    secret = created["secret"]
    assert secret.startswith("nq_") and len(secret) == 46  # 32 random bytes, URL-safe base64
    assert created["prefix"] == secret[:9]
    assert r.headers["location"] == f"/api-keys/{created['id']}"
    assert created["scopes"] == ["notifications:send", "read"]
    assert created["name"] == "Order service"
    assert created["expiresAt"] is None and created["lastUsedAt"] is None and created["revokedAt"] is None
    assert created["createdByKey"] is None
    assert before - timedelta(seconds=2) <= datetime.fromisoformat(created["createdAt"]) <= datetime.now(UTC)

    listed = await client.get("/api-keys", headers=fast_auth)
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert item == {k: v for k, v in created.items() if k != "secret"}
    one = await client.get(f"/api-keys/{created['id']}", headers=fast_auth)
    assert one.status_code == 200 and one.json() == item
    for answer in (listed, one):
        assert secret not in answer.text and secret[9:] not in answer.text

    assert (await client.get("/campaigns", headers=bearer(secret))).status_code == 200

    revoked = await client.delete(f"/api-keys/{created['id']}", headers=fast_auth)
    assert revoked.status_code == 204 and revoked.content == b""
    assert_error(await client.get("/campaigns", headers=bearer(secret)), 401, "unauthorized")  # at once here
    assert_error(await client.get(f"/api-keys/{created['id']}", headers=fast_auth), 404, "not_found")
    (item,) = (await client.get("/api-keys", headers=fast_auth)).json()["items"]
    assert item["revokedAt"] is not None
    again = await client.delete(f"/api-keys/{created['id']}", headers=fast_auth)
    assert again.status_code == 204  # idempotent; revokedAt kept
    (same,) = (await client.get("/api-keys", headers=fast_auth)).json()["items"]
    assert same["revokedAt"] == item["revokedAt"]
    assert_error(await client.delete(f"/api-keys/{uuid.uuid4()}", headers=fast_auth), 404, "not_found")


async def test_a_revoked_key_is_refused_on_every_route_at_once(
    client: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    created = await create_key(client, fast_auth, "admin")
    assert (await client.delete(f"/api-keys/{created['id']}", headers=fast_auth)).status_code == 204
    wrong = []
    for op in _authenticated_operations():
        body = {"json": {}} if op.method in {"POST", "PUT", "PATCH"} else {}
        r = await asyncio.wait_for(
            client.request(op.method, concrete_path(op.path), headers=bearer(created["secret"]), **body), 10
        )
        if r.status_code != 401 or not r.headers.get("www-authenticate", "").startswith("Bearer"):
            wrong.append(f"{op.method} {op.path}: {r.status_code} {r.text[:100]}")
    assert not wrong, "\n".join(wrong)


async def test_the_secret_is_stored_hashed_only(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    created = await create_key(client, fast_auth, "read", name="hashed")
    secret = created["secret"]
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT secret_hash, prefix, row_to_json(k)::text AS whole FROM api_keys k")
                                  )).one()  # fmt: skip
        everything = (await conn.execute(text(
            "SELECT string_agg(row_to_json(t)::text, '') FROM (SELECT * FROM api_keys) t"))).scalar_one()  # fmt: skip
    assert bytes(row.secret_hash) == hashlib.sha256(secret.encode()).digest()
    assert row.prefix == secret[:9]
    random_part = secret[len("nq_") :]
    for text_form in (row.whole, everything):
        assert random_part not in text_form and random_part[6:] not in text_form
    assert secret.encode() not in bytes(row.secret_hash)


def _authenticated_operations() -> list[Operation]:
    return [op for op in OPERATIONS if not (op.public or op.subscriber)]


def test_every_non_public_operation_declares_a_scope() -> None:
    undeclared = [op.operation_id for op in _authenticated_operations() if op.scope is None]
    assert not undeclared, f"operations without a scope (enforced as admin): {undeclared}"
    for op in OPERATIONS:
        if op.public or op.subscriber:
            assert op.scope is None, f"{op.operation_id} is not authenticated by a bearer token but declares a scope"


async def test_the_document_names_each_operations_scope(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for op in _authenticated_operations():
        served = spec["paths"][documented_path(op.path)][op.method.lower()]
        assert served["security"] == [{"bearerAuth": [str(op.scope)]}], op.operation_id
        assert f"**Scope:** `{op.scope}`" in served["description"], op.operation_id
        assert "403" in served["responses"], op.operation_id
    assert spec["components"]["responses"]["MissingScope"]["description"].startswith("The API key is valid")
    for scope in Scope:
        assert f"`{scope}`" in spec["components"]["securitySchemes"]["bearerAuth"]["description"]


STREAMING = "text/event-stream"


def _streams(op: Operation) -> bool:
    return any(reply.media_type == STREAMING for reply in op.replies.values())


async def test_every_operation_refuses_a_key_without_its_scope_and_takes_one_with_it(
    client: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    """One key per scope, against every operation of the table: 403 naming the scope, or not a 401/403."""
    keys = {scope: (await create_key(client, fast_auth, scope, name=f"only {scope}"))["secret"] for scope in Scope}
    wrong: list[str] = []
    for op in _authenticated_operations():
        if (op.method, op.path) == ("POST", "/auth/logout"):
            continue  # would revoke the key: test_logout_with_a_key_revokes_that_key
        assert op.scope is not None
        path = concrete_path(op.path)
        body = {"json": {}} if op.method in {"POST", "PUT", "PATCH"} else {}
        for held, secret in keys.items():
            allowed = held in (op.scope, Scope.ADMIN)
            if allowed and _streams(op):
                continue  # an admitted stream never ends; its refusals are checked below
            r = await asyncio.wait_for(client.request(op.method, path, headers=bearer(secret), **body), 10)
            if not allowed:
                error = r.json().get("error", {}) if r.status_code == 403 else {}
                if r.status_code != 403 or error.get("code") != "forbidden" or error.get("details") != {
                        "scope": str(op.scope)}:  # fmt: skip
                    wrong.append(f"{op.method} {op.path} with {held}: {r.status_code} {r.text[:150]}")
            elif r.status_code in (401, 403):
                wrong.append(f"{op.method} {op.path} with {held}: {r.status_code} {r.text[:150]}")
    assert not wrong, "\n".join(wrong)


async def test_a_send_only_key_sends_and_reads_nothing(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    """The issue's rule: a send-only key cannot read recipients (nor anything else)."""
    send = bearer((await create_key(client, fast_auth, "notifications:send"))["secret"])
    sent = await client.post("/notifications", headers=send, json=EMAIL)
    assert sent.status_code == 202, sent.text
    campaign = await create_campaign(client, fast_auth, **CAMPAIGN)
    r = await client.put("/subscribers/ada", headers=fast_auth, json={"email": "ada@example.com"})
    assert r.status_code == 201, r.text
    for path in ("/campaigns", f"/campaigns/{campaign['id']}", f"/campaigns/{campaign['id']}/messages",
                 "/notifications", f"/notifications/{sent.json()['id']}", "/dead-letters", "/stats", "/subscribers",
                 "/subscribers/ada", "/subscribers/ada/preferences", "/suppressions", "/webhooks", "/api-keys",
                 "/overview", "/workers", "/providers"):  # fmt: skip
        assert_error(await client.get(path, headers=send), 403, "forbidden")
    for method, path in (("POST", "/subscribers/ada/token"), ("POST", f"/notifications/{sent.json()['id']}/cancel"),
                         ("POST", f"/campaigns/{campaign['id']}/cancel")):  # fmt: skip
        assert_error(await client.request(method, path, headers=send), 403, "forbidden")


async def test_a_read_key_reads_and_changes_nothing(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    read = bearer((await create_key(client, fast_auth, "read"))["secret"])
    campaign = await create_campaign(client, fast_auth, **CAMPAIGN)
    got = await client.get(f"/campaigns/{campaign['id']}", headers=read)
    assert got.status_code == 200 and got.json()["id"] == campaign["id"]
    assert (await client.get("/stats", headers=read)).status_code == 200
    assert_error(await client.post("/campaigns", headers=read, json=CAMPAIGN), 403, "forbidden")
    assert_error(await client.post("/notifications", headers=read, json=EMAIL), 403, "forbidden")
    assert_error(await client.get("/subscribers", headers=read), 403, "forbidden")  # profiles need admin


async def test_what_a_key_creates_is_recorded_as_its_admins_and_the_log_names_the_key(
    client: httpx.AsyncClient, fast_auth: dict[str, str], fast_admin: uuid.UUID, engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    created = await create_key(client, fast_auth, "campaigns:write", "notifications:send")
    key = bearer(created["secret"])
    caplog.handler.addFilter(RequestContext())
    with caplog.at_level(logging.INFO, logger="notifq.api"):
        campaign = await create_campaign(client, key, **CAMPAIGN)
        sent = await client.post("/notifications", headers=key, json=EMAIL)
        assert sent.status_code == 202, sent.text
        await create_campaign(client, fast_auth, **{**CAMPAIGN, "name": "by the admin"})
    async with engine.connect() as conn:
        by = (await conn.execute(text("SELECT created_by FROM campaigns WHERE id = :id"),
                                 {"id": campaign["id"]})).scalar_one()  # fmt: skip
        sent_by = (await conn.execute(text("SELECT created_by FROM messages WHERE id = :id"),
                                      {"id": int(sent.json()["id"])})).scalar_one()  # fmt: skip
    assert by == fast_admin and sent_by == fast_admin
    lines = [(r.getMessage().split(":")[0], getattr(r, "api_key_id", None)) for r in caplog.records]
    assert sorted(k or "" for m, k in lines if m == "campaign created") == ["", created["id"]], lines
    assert ("notifications accepted", created["id"]) in lines, lines


async def test_an_expired_key_is_refused(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    created = await create_key(client, fast_auth, "read", expiresAt=_iso(soon))
    assert datetime.fromisoformat(created["expiresAt"]) == soon
    assert (await client.get("/campaigns", headers=bearer(created["secret"]))).status_code == 200
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    error = assert_error(await client.get("/campaigns", headers=bearer(created["secret"])), 401, "unauthorized")
    assert "expired" in error["message"]
    past = await client.post("/api-keys", headers=fast_auth,
                             json={"name": "x", "scopes": ["read"], "expiresAt": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert assert_error(past, 422, "validation_error")["details"]["field"] == "expiresAt"


@pytest.mark.parametrize(
    "token",
    ["nq_", "nq_short", "nq_" + "A" * 43, "nq_" + "A" * 44, "nq_" + "é" * 43, "nq_" + "A" * 42 + "!", "NQ_" + "A" * 43],
    ids=["empty", "short", "unknown", "too-long", "non-ascii", "bad-char", "upper-prefix"],
)
async def test_made_up_keys_are_401(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, token: str
) -> None:
    r = await client.post("/campaigns", headers={"Authorization": ("Bearer " + token).encode()}, json=CAMPAIGN)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM campaigns"))).scalar_one() == 0


async def test_a_key_with_one_character_changed_is_401(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    secret = (await create_key(client, fast_auth, "admin"))["secret"]
    for i in (3, 20, len(secret) - 1):
        changed = secret[:i] + ("A" if secret[i] != "A" else "B") + secret[i + 1 :]
        assert_error(await client.get("/api-keys", headers=bearer(changed)), 401, "unauthorized")
    assert (await client.get("/api-keys", headers=bearer(secret))).status_code == 200


async def test_only_admins_and_admin_keys_manage_keys(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    for scope in ("read", "notifications:send", "campaigns:write"):
        key = bearer((await create_key(client, fast_auth, scope))["secret"])
        r = await client.post("/api-keys", headers=key, json={"name": "escalate", "scopes": [scope]})
        assert assert_error(r, 403, "forbidden")["details"] == {"scope": "admin"}
    admin_key = bearer((await create_key(client, fast_auth, "admin"))["secret"])
    assert (await client.get("/api-keys", headers=admin_key)).status_code == 200


async def test_a_key_never_gives_more_than_it_has(
    client: httpx.AsyncClient, fast_auth: dict[str, str], settings: Settings, engine: AsyncEngine,
    fast_admin: uuid.UUID,
) -> None:  # fmt: skip
    """A key's keys: no scope it lacks, no later expiry, and they go when it is revoked."""
    parent_expiry = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    parent = await create_key(client, fast_auth, "admin", expiresAt=_iso(parent_expiry))
    as_parent = bearer(parent["secret"])
    child = await create_key(client, as_parent, "read", name="child")
    assert child["createdByKey"] == parent["id"]
    assert datetime.fromisoformat(child["expiresAt"]) == parent_expiry  # inherited
    later = _iso(parent_expiry + timedelta(seconds=1))
    r = await client.post(
        "/api-keys", headers=as_parent, json={"name": "later", "scopes": ["read"], "expiresAt": later}
    )
    assert assert_error(r, 422, "validation_error")["details"]["field"] == "expiresAt"
    grandchild = await create_key(client, as_parent, "admin", name="grandchild")
    as_grandchild = bearer(grandchild["secret"])
    great = await create_key(client, as_grandchild, "notifications:send", name="great-grandchild")

    # Through the service: a key lacking a scope cannot give it (over HTTP only admin keys get this far).
    reader = ActiveKey(uuid.UUID(child["id"]), frozenset({Scope.READ}), fast_admin, None)
    with pytest.raises(Forbidden) as refused:
        await ApiKeys(engine, engine, engine).create("x", [Scope.READ, Scope.ADMIN], None, admin_id=fast_admin,
                                                     by_key=reader)  # fmt: skip
    assert refused.value.details == {"scope": "admin"}

    assert (await client.delete(f"/api-keys/{parent['id']}", headers=fast_auth)).status_code == 204
    for key in (parent, child, grandchild, great):
        assert_error(await client.get("/stats", headers=bearer(key["secret"])), 401, "unauthorized")
    items = {k["id"]: k for k in (await client.get("/api-keys", headers=fast_auth)).json()["items"]}
    assert all(items[k["id"]]["revokedAt"] is not None for k in (parent, child, grandchild, great))
    # A key made by a key revoked since cannot be created.
    r = await client.post("/api-keys", headers=as_grandchild, json={"name": "late", "scopes": ["read"]})
    assert_error(r, 401, "unauthorized")


async def test_deleting_the_admin_deletes_its_keys(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine, fast_admin: uuid.UUID
) -> None:
    secret = (await create_key(client, fast_auth, "admin"))["secret"]
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM admins WHERE id = :id"), {"id": fast_admin})
        assert (await conn.execute(text("SELECT count(*) FROM api_keys"))).scalar_one() == 0
    # This process still has it in its copy for up to REVOCATION_REFRESH_SECONDS; nothing is created meanwhile.
    r = await client.post("/campaigns", headers=bearer(secret), json=CAMPAIGN)
    assert r.status_code == 401, r.text
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM campaigns"))).scalar_one() == 0


async def test_logout_with_a_key_revokes_that_key(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    admin_key, other = (await create_key(client, fast_auth, "admin")), (await create_key(client, fast_auth, "admin"))
    send_key = await create_key(client, fast_auth, "notifications:send")
    assert_error(await client.post("/auth/logout", headers=bearer(send_key["secret"])), 403, "forbidden")
    assert (await client.post("/auth/logout", headers=bearer(admin_key["secret"]))).status_code == 204
    assert_error(await client.get("/stats", headers=bearer(admin_key["secret"])), 401, "unauthorized")
    assert (await client.get("/stats", headers=bearer(other["secret"]))).status_code == 200
    assert (await client.get("/stats", headers=fast_auth)).status_code == 200


async def test_last_used_at_is_written_in_batches_not_per_request(
    app_and_http: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    app, client = app_and_http
    keys: ApiKeys = app.state.api_keys
    created = await create_key(client, fast_auth, "read")
    secret, key_id = created["secret"], created["id"]
    before = datetime.now(UTC)
    for _ in range(20):
        assert (await client.get("/stats", headers=bearer(secret))).status_code == 200
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT last_used_at FROM api_keys"))).scalar_one() is None  # no write yet
    await keys.flush()
    first = (await client.get(f"/api-keys/{key_id}", headers=fast_auth)).json()["lastUsedAt"]
    assert first is not None and before - timedelta(seconds=1) <= datetime.fromisoformat(first) <= datetime.now(UTC)
    for _ in range(20):  # within the minute: noted once already, nothing more to write
        assert (await client.get("/stats", headers=bearer(secret))).status_code == 200
    await keys.flush()
    assert (await client.get(f"/api-keys/{key_id}", headers=fast_auth)).json()["lastUsedAt"] == first


async def test_the_background_task_writes_last_use_within_seconds(
    client: httpx.AsyncClient, fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    created = await create_key(client, fast_auth, "read")
    assert (await client.get("/stats", headers=bearer(created["secret"]))).status_code == 200
    deadline = time.monotonic() + 10  # LAST_USED_FLUSH_SECONDS is 5
    while (await client.get(f"/api-keys/{created['id']}", headers=fast_auth)).json()["lastUsedAt"] is None:
        assert time.monotonic() < deadline, "lastUsedAt not written within 10 s"
        await asyncio.sleep(0.25)


async def test_subscriber_tokens_are_unchanged_and_keys_do_not_open_inboxes(
    client: httpx.AsyncClient, fast_auth: dict[str, str]
) -> None:
    assert (await client.put("/subscribers/ada", headers=fast_auth, json={})).status_code == 201
    read = bearer((await create_key(client, fast_auth, "read"))["secret"])
    # An inbox token reads and marks a subscriber's inbox and outlives the key: admin only.
    assert_error(await client.post("/subscribers/ada/token", headers=read), 403, "forbidden")
    admin_key = bearer((await create_key(client, fast_auth, "admin"))["secret"])
    minted = await client.post("/subscribers/ada/token", headers=admin_key)
    assert minted.status_code == 201, minted.text
    inbox = await client.get("/inbox", headers=bearer(minted.json()["token"]))
    assert inbox.status_code == 200, inbox.text
    assert_error(await client.get("/inbox", headers=admin_key), 401, "unauthorized")
    assert_error(await client.get("/campaigns", headers=bearer(minted.json()["token"])), 401, "unauthorized")
