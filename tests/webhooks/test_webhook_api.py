"""The outbound webhook endpoints' API against real PostgreSQL and a real receiver on 127.0.0.1: CRUD, the
secret shown once, hostile input that writes nothing, the address policy at creation, bad tokens on every
method, concurrent changes, test events whose signatures verify as a user's code (and the docs' Node snippet)
checks them, and the delivery log's pages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from notifq.vocabulary import SUBSCRIBABLE_WEBHOOK_EVENTS, WEBHOOK_EVENT_DESCRIPTIONS, WebhookEventType
from notifq.webhooks import MAX_ENDPOINTS
from tests.api.support import app_client, assert_error
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.webhooks.receiver import Receiver

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
NODE = Path("/usr/bin/node")
PUBLIC_URL = "https://93.184.215.14/notifq"  # a global address: accepted without DNS or a private network
EVENTS = ["message.sent", "message.failed", "campaign.completed"]
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
async def private_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app that lets webhook URLs reach 127.0.0.1 (NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1), as the receiver needs."""
    async with app_client(settings.with_(webhooks_allow_private=True, webhook_timeout=5.0)) as c:
        yield c


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver(keep_bodies=True).start()
    yield started
    await started.stop()


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/webhooks", headers=auth, json={"url": PUBLIC_URL, "events": EVENTS, **body})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def _rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT * FROM webhook_endpoints ORDER BY created_at"))
        return [dict(r._mapping) for r in result]


def _user_verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The docs' recipe, written out here as a receiver would (not notifq.webhook_http.verify)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    timestamp = parts.get("t", [""])[0]
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > tolerance:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(mac, v1) for v1 in parts.get("v1", []))


def _snippet(language: str, marker: str) -> str:
    """The fenced code block of docs/webhooks.md in `language` that holds `marker`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"docs/webhooks.md has {len(found)} {language} blocks with {marker!r}"
    return found[0]


def _node_verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Run the docs' Node.js snippet on a captured body and header."""
    program = _snippet("js", "function verifyNotifq") + (
        "\nconst input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "const ok = verifyNotifq(input.secret, input.header, Buffer.from(input.body, 'base64'), input.tolerance);\n"
        "process.stdout.write(ok ? 'valid' : 'invalid');\n"
    )
    stdin = json.dumps({"secret": secret, "header": header, "body": base64.b64encode(body).decode(),
                        "tolerance": tolerance})  # fmt: skip
    done = subprocess.run([str(NODE), "-e", program], input=stdin, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout in ("valid", "invalid"), done.stdout
    return done.stdout == "valid"


def _docs_python_verify(secret: str, header: str, body: bytes) -> bool:
    """Run the docs' Python snippet as written."""
    namespace: dict[str, Any] = {}
    exec(_snippet("python", "def verify_notifq"), namespace)  # the documentation's own code, nothing else
    return bool(namespace["verify_notifq"](secret, header, body))


def _resigned(header: str, secret: str, body: bytes, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


# --- CRUD and the secret ---------------------------------------------------------------------------------------


async def test_crud_round_trip_and_the_secret_is_shown_once(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    r = await client.post("/webhooks", headers=auth, json={"url": PUBLIC_URL, "events": EVENTS,
                                                           "description": "Order service"})  # fmt: skip
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert r.headers["location"] == f"/webhooks/{created['id']}"
    assert {k: created[k] for k in ("url", "events", "description", "batch", "enabled", "status", "pending")} == {
        "url": PUBLIC_URL, "events": EVENTS, "description": "Order service", "batch": False, "enabled": True,
        "status": "active", "pending": 0}  # fmt: skip
    assert created["disabledReason"] is None and created["failingSince"] is None and created["lastError"] is None
    rows = await _rows(engine)
    assert len(rows) == 1 and rows[0]["secret"] == secret  # stored as is: the worker signs with it
    assert rows[0]["created_by"] is not None

    one = await client.get(f"/webhooks/{created['id']}", headers=auth)
    assert one.status_code == 200
    listed = await client.get("/webhooks", headers=auth)
    assert listed.status_code == 200 and [e["id"] for e in listed.json()["items"]] == [created["id"]]
    for answer in (one, listed):
        assert secret not in answer.text and "secret" not in answer.text
    assert one.json() == {k: v for k, v in created.items() if k != "secret"}

    r = await client.patch(f"/webhooks/{created['id']}", headers=auth,
                           json={"events": ["message.bounced"], "batch": True, "description": ""})  # fmt: skip
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["events"], changed["batch"], changed["description"], changed["url"]) == (
        ["message.bounced"], True, "", PUBLIC_URL)  # fmt: skip
    assert "secret" not in r.text and changed["updatedAt"] >= created["updatedAt"]

    r = await client.patch(f"/webhooks/{created['id']}", headers=auth, json={"enabled": False})
    off = r.json()
    assert (off["enabled"], off["status"], off["disabledReason"]) == (False, "disabled", f"disabled by {ADMIN_EMAIL}")
    assert off["disabledAt"] is not None
    r = await client.patch(f"/webhooks/{created['id']}", headers=auth, json={"enabled": False})
    assert r.json()["disabledAt"] == off["disabledAt"]  # turned off twice: the first reason and time stay
    r = await client.patch(f"/webhooks/{created['id']}", headers=auth, json={"url": "https://93.184.215.15/x"})
    assert r.json()["url"] == "https://93.184.215.15/x"
    assert (await _rows(engine))[0]["secret"] == secret  # a new URL keeps the secret

    r = await client.delete(f"/webhooks/{created['id']}", headers=auth)
    assert r.status_code == 204 and r.content == b""
    assert await _rows(engine) == []
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", "/test")):
        body = {"json": {"enabled": True}} if method == "PATCH" else {}
        assert_error(await client.request(method, f"/webhooks/{created['id']}{path}", headers=auth, **body), 404,
                     "not_found")  # fmt: skip


async def test_re_enabling_forgets_the_failures_and_disabling_keeps_the_queue(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    created = await _create(client, auth)
    async with engine.begin() as conn:  # what the worker leaves after failing for days, then disabling it
        await conn.execute(
            text(
                "UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'failing since …', "
                "disabled_at = now(), failing_since = now() - interval '3 days', failures = 40, "
                "retry_at = now() + interval '1 hour', last_error = 'HTTP 503 Service Unavailable', "
                "last_failure_at = now() WHERE id = :i"
            ),
            {"i": created["id"]},
        )
        await conn.execute(text("INSERT INTO webhook_queue (endpoint_id, event_id, type, at) "
                                "SELECT :i, n, 'message.sent', now() FROM generate_series(1, 3) n"),
                           {"i": created["id"]})  # fmt: skip
    shown = (await client.get(f"/webhooks/{created['id']}", headers=auth)).json()
    assert (shown["status"], shown["disabledReason"], shown["pending"]) == ("disabled", "failing since …", 3)
    assert (await client.get("/webhooks", headers=auth)).json()["items"][0]["pending"] == 3

    on = (await client.patch(f"/webhooks/{created['id']}", headers=auth, json={"enabled": True})).json()
    assert (on["status"], on["disabledReason"], on["disabledAt"], on["failingSince"]) == ("active", None, None, None)
    assert on["lastError"] == "HTTP 503 Service Unavailable"  # history stays
    row = (await _rows(engine))[0]
    assert (row["failures"], row["retry_at"], row["enabled"]) == (0, None, True)

    # Enabled and failing: `enabled: true` again keeps its backoff (only a disabled endpoint is reset).
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE webhook_endpoints SET failing_since = now(), failures = 3, retry_at = now() + interval '8 s' "
                 "WHERE id = :i"), {"i": created["id"]})  # fmt: skip
    again = (await client.patch(f"/webhooks/{created['id']}", headers=auth, json={"enabled": True})).json()
    assert again["status"] == "failing"
    assert (await _rows(engine))[0]["failures"] == 3


# --- hostile input ---------------------------------------------------------------------------------------------

BAD_URLS = [
    "ftp://93.184.215.14/x",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "gopher://93.184.215.14/",
    "93.184.215.14/no-scheme",
    "https://",
    "https:///path-only",
    "https://user:pw@93.184.215.14/",
    "https://user@93.184.215.14/",
    "https://93.184.215.14/#fragment",
    "https://93.184.215.14/a b",
    "https://93.184.215.14/\x01",
    "https://93.184.215.14/\t",
    "https://93.184.215.14/\x7f",
    "https://93.184.215.14/\r\nX-Injected: 1",
    "https://93.184.215.14:0/",
    "https://93.184.215.14:99999/",
    "https://93.184.215.14:port/",
    "https://[not-ipv6]/",
    "https://93.184.215.14/" + "a" * 2048,
    "",
]


def _bad_bodies() -> list[tuple[str, Any]]:
    base = {"url": PUBLIC_URL, "events": EVENTS}
    return [
        *((f"url {u[:30]!r}", {**base, "url": u}) for u in BAD_URLS),
        ("url not a string", {**base, "url": 5}),
        ("url null", {**base, "url": None}),
        ("url missing", {"events": EVENTS}),
        ("events missing", {"url": PUBLIC_URL}),
        ("events empty", {**base, "events": []}),
        ("events unknown", {**base, "events": ["message.exploded"]}),
        ("events test", {**base, "events": ["webhook.test"]}),
        ("events wildcard", {**base, "events": ["*"]}),
        ("events duplicate", {**base, "events": ["message.sent", "message.sent"]}),
        ("events not strings", {**base, "events": [1]}),
        ("events a string", {**base, "events": "message.sent"}),
        ("description too long", {**base, "description": "x" * 501}),
        ("description NUL", {**base, "description": "a\x00b"}),
        ("description number", {**base, "description": 7}),
        ("batch a string", {**base, "batch": "yes"}),
        ("not an object", [base]),
    ]


async def test_bad_bodies_are_refused_and_write_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    for name, body in _bad_bodies():
        r = await client.post("/webhooks", headers=auth, json=body)
        error = assert_error(r, 422, "validation_error")
        assert "\x00" not in error["message"], name
    raws = {
        "url surrogate": b'{"url": "https://93.184.215.14/\\ud800", "events": ["message.sent"]}',
        "url NUL": b'{"url": "https://93.184.215.14/\\u0000", "events": ["message.sent"]}',
        "description surrogate": b'{"url": "https://93.184.215.14/", "events": ["message.sent"], '
        b'"description": "\\udfff"}',
        "events surrogate": b'{"url": "https://93.184.215.14/", "events": ["message.sent\\ud800"]}',
        "events NUL": b'{"url": "https://93.184.215.14/", "events": ["message.sent\\u0000"]}',
        "key surrogate": b'{"url": "https://93.184.215.14/", "events": ["message.sent"], "\\ud800": 1}',
        "5,000 deep": b'{"url": "https://93.184.215.14/", "events": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "5,000 deep extra": b'{"url": "https://93.184.215.14/", "events": ["message.sent"], "x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        "malformed": b'{"url": ',
        "empty": b"",
        "not utf-8": b'{"url": "https://93.184.215.14/\xff", "events": ["message.sent"]}',
    }
    for name, raw in raws.items():
        r = await client.post("/webhooks", headers={**auth, **JSON_HEADERS}, content=raw)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert_error(r, r.status_code)
    huge = json.dumps({"url": PUBLIC_URL, "events": EVENTS, "description": "x" * 20_000}).encode()
    assert_error(await client.post("/webhooks", headers={**auth, **JSON_HEADERS}, content=huge), 413,
                 "payload_too_large")  # fmt: skip
    assert await _rows(engine) == []

    # The same on PATCH: the row is left exactly as it was.
    created = await _create(client, auth, description="kept")
    before = await _rows(engine)
    for name, body in _bad_bodies():
        if name in ("url missing", "events missing", "url null"):
            continue  # a PATCH may leave fields out (null: unchanged)
        r = await client.patch(f"/webhooks/{created['id']}", headers=auth, json=body)
        assert_error(r, 422, "validation_error")
    for raw in (*raws.values(), huge):
        if raw == b"":
            continue
        r = await client.patch(f"/webhooks/{created['id']}", headers={**auth, **JSON_HEADERS}, content=raw)
        assert 400 <= r.status_code < 500, (raw[:60], r.text)
    for body in ({"enabled": "no"}, {"batch": 1}, {"events": None, "url": 3}):
        assert_error(await client.patch(f"/webhooks/{created['id']}", headers=auth, json=body), 422)
    assert await _rows(engine) == before


async def test_ids_that_are_not_uuids_are_no_route_and_ses_keeps_its_own(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for path in ("/webhooks/not-a-uuid", "/webhooks/1", "/webhooks/1/test", "/webhooks/x/deliveries",
                 f"/webhooks/{uuid.uuid4()}%00", f"/webhooks/{uuid.uuid4()}x"):  # fmt: skip
        assert_error(await client.get(path, headers=auth), 404, "not_found")
    for method in ("GET", "PATCH", "DELETE"):  # /webhooks/ses takes POST only, as before
        r = await client.request(method, "/webhooks/ses", headers=auth)
        assert_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "POST"
    r = await client.post("/webhooks/ses", content=b"not an SNS message")  # still the public SNS receiver
    assert r.status_code in (403, 422), r.text
    r = await client.post(f"/webhooks/{uuid.uuid4()}", headers=auth)
    assert_error(r, 405)
    assert set(r.headers["allow"].split(", ")) - {"HEAD"} == {"GET", "PATCH", "DELETE"}
    assert_error(await client.get(f"/webhooks/{str(uuid.uuid4()).upper()}", headers=auth), 404, "not_found")


# --- the address policy --------------------------------------------------------------------------------------

PRIVATE_URLS = {
    "http://127.0.0.1/": "loopback",
    "http://127.1.2.3:9000/hook": "loopback",
    "http://10.0.0.1/": "private",
    "http://192.168.1.20/": "private",
    "http://172.16.0.1/": "private",
    "http://169.254.169.254/latest/meta-data": "metadata",
    "http://169.254.1.1/": "link-local",
    "http://localhost:8080/": "loopback",
    "http://[::1]/": "loopback",
    "http://[::ffff:127.0.0.1]/": "loopback",
    "http://[::ffff:169.254.169.254]/": "metadata",
    "http://[fd00::1]/": "private",
    "http://0.0.0.0/": "",
    "http://224.0.0.1/": "",
    "http://100.64.0.1/": "",  # carrier-grade NAT: not global
}


async def test_private_addresses_are_refused_at_creation(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    assert settings.webhooks_allow_private is False
    for url, kind in PRIVATE_URLS.items():
        r = await client.post("/webhooks", headers=auth, json={"url": url, "events": EVENTS})
        error = assert_error(r, 422, "validation_error")
        assert error["details"] == {"field": "url"}, url
        assert "refused" in error["message"] and kind in error["message"], (url, error["message"])
    r = await client.post("/webhooks", headers=auth, json={"url": "https://no-such-host.invalid/", "events": EVENTS})
    assert "does not resolve" in assert_error(r, 422)["message"]
    assert await _rows(engine) == []
    created = await _create(client, auth)
    for url in ("http://127.0.0.1/", "http://169.254.169.254/latest/meta-data", "http://localhost:8080/"):
        assert_error(await client.patch(f"/webhooks/{created['id']}", headers=auth, json={"url": url}), 422)
    assert (await _rows(engine))[0]["url"] == PUBLIC_URL


async def test_allow_private_lets_loopback_through(private_client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/", "http://[::1]:9/"):
        r = await private_client.post("/webhooks", headers=auth, json={"url": url, "events": EVENTS})
        assert r.status_code == 201, r.text


# --- tokens ------------------------------------------------------------------------------------------------------


async def test_every_method_refuses_bad_tokens_and_changes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    import jwt

    created = await _create(client, auth)
    login = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    revoked = login.json()["token"]
    assert (await client.post("/auth/logout", headers={"Authorization": f"Bearer {revoked}"})).status_code == 204
    now = int(time.time())
    claims = jwt.decode(auth["Authorization"].removeprefix("Bearer "), options={"verify_signature": False})
    forged = {
        "missing": {},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "basic": {"Authorization": "Basic YWRtaW46cHc="},
        "expired": {"Authorization": "Bearer " + jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600},
                                                            settings.jwt_secret, algorithm="HS256")},
        "other secret": {"Authorization": "Bearer " + jwt.encode(claims, "o" * 48, algorithm="HS256")},
        "revoked": {"Authorization": f"Bearer {revoked}"},
    }  # fmt: skip
    wid = created["id"]
    calls = [("POST", "/webhooks", {"url": PUBLIC_URL, "events": EVENTS}), ("GET", "/webhooks", None),
             ("GET", f"/webhooks/{wid}", None), ("PATCH", f"/webhooks/{wid}", {"enabled": False}),
             ("DELETE", f"/webhooks/{wid}", None), ("GET", f"/webhooks/{wid}/deliveries", None),
             ("POST", f"/webhooks/{wid}/test", None)]  # fmt: skip
    before = await _rows(engine)
    for kind, headers in forged.items():
        for method, path, body in calls:
            r = await client.request(method, path, headers=headers, json=body)
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"].lower().startswith("bearer"), (kind, method, path)
    assert await _rows(engine) == before
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar_one() == 0


# --- concurrency ---------------------------------------------------------------------------------------------


async def test_parallel_patches_leave_one_consistent_row(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    created = await _create(client, auth)
    names = [str(t) for t in SUBSCRIBABLE_WEBHOOK_EVENTS]
    bodies = [{"description": f"writer {i}", "events": names[i : i + 3], "batch": i % 2 == 0, "enabled": i % 3 != 0,
               "url": f"https://93.184.215.14/w{i}"} for i in range(12)]  # fmt: skip
    answers = await asyncio.gather(*(client.patch(f"/webhooks/{created['id']}", headers=auth, json=b) for b in bodies))
    assert [r.status_code for r in answers] == [200] * 12
    (row,) = await _rows(engine)
    state = {"description": row["description"], "events": row["events"], "batch": row["batch"],
             "enabled": row["enabled"], "url": row["url"]}  # fmt: skip
    assert state in bodies, state  # one writer's change, whole: never a mix of two
    assert (row["enabled"], row["disabled_reason"] is None, row["disabled_at"] is None) in (
        (True, True, True), (False, False, False))  # fmt: skip
    assert row["secret"] == created["secret"]
    shown = (await client.get(f"/webhooks/{created['id']}", headers=auth)).json()
    assert shown["status"] == ("active" if row["enabled"] else "disabled")


async def test_the_number_of_endpoints_is_capped_under_concurrent_creation(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    body = {"url": PUBLIC_URL, "events": EVENTS}
    answers = await asyncio.gather(*(client.post("/webhooks", headers=auth, json=body)
                                     for _ in range(MAX_ENDPOINTS + 6)))  # fmt: skip
    assert sorted(r.status_code for r in answers) == [201] * MAX_ENDPOINTS + [409] * 6
    error = assert_error(next(r for r in answers if r.status_code == 409), 409, "conflict")
    assert error["details"] == {"max": MAX_ENDPOINTS}
    assert len(await _rows(engine)) == MAX_ENDPOINTS
    assert len((await client.get("/webhooks", headers=auth)).json()["items"]) == MAX_ENDPOINTS


# --- test events and signatures ------------------------------------------------------------------------------


async def test_a_test_event_is_signed_as_the_docs_say(
    private_client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    created = await _create(private_client, auth, url=receiver.url)
    receiver.secret = secret = created["secret"]
    r = await private_client.post(f"/webhooks/{created['id']}/test", headers=auth)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["outcome"], result["responseStatus"], result["error"]) == ("succeeded", 204, None)
    assert result["eventId"].startswith("evt_test_") and result["durationMs"] >= 0
    assert result["delivery"]["eventIds"] == [] and result["delivery"]["outcome"] == "succeeded"
    assert receiver.posts == 1 and receiver.bad_signatures == 0
    ((headers, body),) = receiver.bodies
    header = headers["Notifq-Signature"]
    assert re.fullmatch(r"t=[0-9]+,v1=[0-9a-f]{64}", header), header
    assert headers["Notifq-Event-Id"] == result["eventId"]
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert set(event) == {"id", "type", "createdAt", "data"}
    assert (event["id"], event["type"]) == (result["eventId"], "webhook.test")
    assert event["data"]["endpointId"] == created["id"] and event["data"]["message"]
    assert event["createdAt"].endswith("Z")

    # Checked the way a user's code checks it: our own HMAC, the docs' Python, the docs' Node.
    assert _user_verify(secret, header, body)
    assert _docs_python_verify(secret, header, body)
    assert _node_verify(secret, header, body)
    tampered = body.replace(b"webhook.test", b"webhook.TEST")
    stale = _resigned(header, secret, body, int(time.time()) - 301)
    for check in (_user_verify, _node_verify, _docs_python_verify):
        assert not check(secret, header, tampered), check
        assert not check(secret, stale, body), check
        assert not check("whsec_other", header, body), check
        assert not check(secret, "t=1,v1=", body), check
        assert not check(secret, "", body), check
        assert check(secret, _resigned(header, secret, body, int(time.time()) - 200), body), check

    # A batching endpoint gets a batch of one; a disabled endpoint can still be tested (its status stays).
    await private_client.patch(f"/webhooks/{created['id']}", headers=auth, json={"batch": True, "enabled": False})
    r = await private_client.post(f"/webhooks/{created['id']}/test", headers=auth)
    assert r.json()["outcome"] == "succeeded", r.text
    headers, body = receiver.bodies[-1]
    batch = json.loads(body)
    assert list(batch) == ["events"] and len(batch["events"]) == 1
    assert batch["events"][0]["type"] == "webhook.test" and headers["Notifq-Event-Id"] == batch["events"][0]["id"]
    assert _node_verify(secret, headers["Notifq-Signature"], body)
    shown = (await private_client.get(f"/webhooks/{created['id']}", headers=auth)).json()
    assert (shown["status"], shown["lastSuccessAt"]) == ("disabled", None)  # a test changes nothing
    log = (await private_client.get(f"/webhooks/{created['id']}/deliveries", headers=auth)).json()
    assert [(d["outcome"], d["responseStatus"], d["eventIds"]) for d in log["items"]] == [
        ("succeeded", 204, []), ("succeeded", 204, [])]  # fmt: skip


async def test_a_failing_or_refused_receiver_is_logged(
    private_client: httpx.AsyncClient, client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    created = await _create(private_client, auth, url=receiver.url)
    receiver.status = 500
    r = await private_client.post(f"/webhooks/{created['id']}/test", headers=auth)
    result = r.json()
    assert (r.status_code, result["outcome"], result["responseStatus"]) == (200, "failed", 500)
    assert result["error"].startswith("HTTP 500")
    # The same endpoint through an API that does not allow private addresses: not even connected to.
    posts = receiver.posts
    r = await client.post(f"/webhooks/{created['id']}/test", headers=auth)
    refused = r.json()
    assert (refused["outcome"], refused["responseStatus"]) == ("refused", None)
    assert "loopback" in refused["error"] and receiver.posts == posts
    # Nobody listening: failed, with the connection error.
    await private_client.patch(f"/webhooks/{created['id']}", headers=auth, json={"url": "http://127.0.0.1:1/hook"})
    gone = (await private_client.post(f"/webhooks/{created['id']}/test", headers=auth)).json()
    assert (gone["outcome"], gone["responseStatus"]) == ("failed", None) and gone["error"]
    log = (await private_client.get(f"/webhooks/{created['id']}/deliveries", headers=auth)).json()["items"]
    assert [(d["outcome"], d["responseStatus"]) for d in log] == [("failed", None), ("refused", None),
                                                                   ("failed", 500)]  # fmt: skip
    assert log[2]["error"].startswith("HTTP 500")
    only = (await private_client.get(f"/webhooks/{created['id']}/deliveries?outcome=refused", headers=auth)).json()
    assert [d["outcome"] for d in only["items"]] == ["refused"]
    shown = (await private_client.get(f"/webhooks/{created['id']}", headers=auth)).json()
    assert (shown["status"], shown["lastError"]) == ("active", None)  # tests leave the endpoint's state alone


# --- the delivery log --------------------------------------------------------------------------------------------


async def test_deliveries_page_newest_first(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    created, other = await _create(client, auth), await _create(client, auth)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO webhook_deliveries (endpoint_id, event_ids, outcome, response_status, error, duration_ms) "
            "SELECT :i, ARRAY[n * 10, n * 10 + 1], CASE WHEN n % 4 = 0 THEN 'failed' ELSE 'succeeded' END, "
            "CASE WHEN n % 4 = 0 THEN 503 ELSE 200 END, CASE WHEN n % 4 = 0 THEN 'HTTP 503' END, n "
            "FROM generate_series(1, 23) n"), {"i": created["id"]})  # fmt: skip
        await conn.execute(text("INSERT INTO webhook_deliveries (endpoint_id, event_ids, outcome) "
                                "VALUES (:i, '{1}', 'abandoned')"), {"i": other["id"]})  # fmt: skip
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = f"/webhooks/{created['id']}/deliveries?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=auth)).json()
        assert len(page["items"]) <= 5
        seen += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [d["durationMs"] for d in seen] == list(range(23, 0, -1))  # newest first, each once, none of the other's
    assert seen[0]["eventIds"] == ["evt_230", "evt_231"]
    assert all(d["at"].endswith("Z") and isinstance(d["id"], str) for d in seen)
    failed = (await client.get(f"/webhooks/{created['id']}/deliveries?outcome=failed", headers=auth)).json()
    assert [d["durationMs"] for d in failed["items"]] == [20, 16, 12, 8, 4]
    assert {d["error"] for d in failed["items"]} == {"HTTP 503"}
    assert (await client.get(f"/webhooks/{created['id']}/deliveries?cursor=9999999999999999999",
                             headers=auth)).json()["items"]  # fmt: skip
    for query in ("limit=0", "limit=1001", "limit=x", "cursor=abc", "cursor=-1", "outcome=lost", "cursor=%00"):
        assert_error(await client.get(f"/webhooks/{created['id']}/deliveries?{query}", headers=auth), 422)
    abandoned = (await client.get(f"/webhooks/{other['id']}/deliveries", headers=auth)).json()["items"]
    assert [(d["outcome"], d["eventIds"], d["responseStatus"]) for d in abandoned] == [("abandoned", ["evt_1"], None)]
    await client.delete(f"/webhooks/{created['id']}", headers=auth)
    async with engine.connect() as conn:  # deleted with its endpoint
        assert (await conn.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar_one() == 1


# --- the docs ------------------------------------------------------------------------------------------------


def test_the_docs_list_every_event_type() -> None:
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| (.+) \|$", DOCS.read_text(), re.M))
    expected = {str(t): WEBHOOK_EVENT_DESCRIPTIONS[t] for t in (*SUBSCRIBABLE_WEBHOOK_EVENTS,
                                                               WebhookEventType.WEBHOOK_TEST)}  # fmt: skip
    assert {k: v for k, v in rows.items() if k in expected or "." in k} == expected
