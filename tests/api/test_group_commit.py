"""Group commit of single sends: concurrent requests share one INSERT and one Redis pipeline, each still
answered with exactly its own rows, and a failing statement fails its own group only (real PostgreSQL, Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from notifq.notifications import NotificationService
from notifq.settings import Settings
from tests.api.support import app_and_client, assert_error


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    async with app_and_client(settings) as pair:
        yield pair


def _service(app: Starlette) -> NotificationService:
    service: NotificationService = app.state.notifications
    return service


async def _bodies(engine: AsyncEngine) -> dict[int, tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, recipient, body FROM messages"))
        return {r.id: (r.recipient, r.body) for r in rows}


async def _consistent_counts(engine: AsyncEngine) -> None:
    """GET /stats' counts (message_counts) equal the rows: a failed group moved no counter."""
    async with engine.connect() as conn:
        counted = dict((await conn.execute(text(
            "SELECT status, sum(n) FROM message_counts GROUP BY 1 HAVING sum(n) <> 0"))).all())  # fmt: skip
        rows = dict((await conn.execute(text("SELECT status, count(*) FROM messages GROUP BY 1"))).all())
    assert {k: int(v) for k, v in counted.items()} == {k: int(v) for k, v in rows.items()}


def _otp(i: int) -> dict[str, Any]:
    return {"channel": "sms", "to": f"+1555{i:07d}", "body": f"code {i:06d}"}


async def test_concurrent_sends_share_statements_and_each_gets_its_own_row(
    app_client: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    app, client = app_client
    group = _service(app).group
    flushes_before = group.flushes
    n = 300
    answers = await asyncio.gather(*(client.post("/notifications", json=_otp(i), headers=fast_auth) for i in range(n)))
    assert [a.status_code for a in answers] == [202] * n
    rows = await _bodies(engine)
    assert len(rows) == n
    for i, answer in enumerate(answers):
        data = answer.json()
        assert data["to"] == _otp(i)["to"] and data["status"] == "queued"
        assert answer.headers["location"] == f"/notifications/{data['id']}"
        assert rows[int(data["id"])] == (_otp(i)["to"], _otp(i)["body"]), "a request was answered with another's row"
    flushes = group.flushes - flushes_before
    assert 1 <= flushes < n / 3, f"{n} concurrent sends took {flushes} statements: they were not grouped"
    await _consistent_counts(engine)


async def test_batches_in_a_group_keep_their_order_and_size(
    app_client: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """A full batch (1,000) and singles posted together: every batch answers its own items, in request order."""
    _, client = app_client
    big = [_otp(i) for i in range(1000)]
    small = [_otp(5000 + i) for i in range(3)]
    answers = await asyncio.gather(
        client.post("/notifications", json=big, headers=fast_auth),
        client.post("/notifications", json=small, headers=fast_auth),
        *(client.post("/notifications", json=_otp(9000 + i), headers=fast_auth) for i in range(20)),
    )
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers if a.status_code != 202]
    rows = await _bodies(engine)
    for sent, answer in ((big, answers[0]), (small, answers[1])):
        items = answer.json()["items"]
        assert [it["to"] for it in items] == [s["to"] for s in sent]
        assert [rows[int(it["id"])][1] for it in items] == [s["body"] for s in sent]
        assert answer.json()["ids"] == [it["id"] for it in items]
    assert len(rows) == 1000 + 3 + 20


POISON = "poison: this body makes the INSERT fail"


@pytest.fixture
async def poison_trigger(engine: AsyncEngine) -> AsyncIterator[None]:
    """A trigger that fails any statement inserting a message with the POISON body (as a full disk would)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.body = '{POISON}' THEN RAISE EXCEPTION 'poisoned insert'; END IF; RETURN NEW; END $$"
            )
        )
        await conn.execute(text("CREATE TRIGGER test_poison BEFORE INSERT ON messages FOR EACH ROW "
                                "EXECUTE FUNCTION test_poison()"))  # fmt: skip
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER IF EXISTS test_poison ON messages"))
            await conn.execute(text("DROP FUNCTION IF EXISTS test_poison()"))


async def test_a_failing_group_answers_503_writes_nothing_and_spares_the_other_group(
    app_client: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], engine: AsyncEngine,
    poison_trigger: None,
) -> None:  # fmt: skip
    """Two batches of 600 posted together cannot share a group (1,000 at most), so two statements write
    them: the one with a poisoned row fails whole (503, no row, no counter, no key kept), the other lands."""
    _, client = app_client
    poisoned = [_otp(i) for i in range(599)] + [{**_otp(599), "body": POISON}]
    healthy = [_otp(1000 + i) for i in range(600)]
    key = f"poisoned-{uuid.uuid4()}"
    bad, good = await asyncio.gather(
        client.post("/notifications", json=poisoned, headers={**fast_auth, "Idempotency-Key": key}),
        client.post("/notifications", json=healthy, headers=fast_auth),
    )
    error = assert_error(bad, 503, "service_unavailable")
    assert "nothing was written" in error["message"]
    assert good.status_code == 202, good.text
    rows = await _bodies(engine)
    assert sorted(rows) == sorted(int(i) for i in good.json()["ids"])  # only the healthy group's rows
    assert {body for _, body in rows.values()} == {s["body"] for s in healthy}
    async with engine.connect() as conn:
        keys = (await conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key})).scalar()
    assert keys == 0, "the failed request's Idempotency-Key must be free for its retry"
    await _consistent_counts(engine)
    # The retry of the failed request, poison removed, is a first attempt under its key (not a 409 or replay).
    retry = await client.post("/notifications", json=[*poisoned[:-1], _otp(599)],
                              headers={**fast_auth, "Idempotency-Key": key})  # fmt: skip
    assert retry.status_code == 202, retry.text
    assert "idempotent-replayed" not in retry.headers


async def test_singles_grouped_with_a_poisoned_one_fail_together_and_nothing_else_does(
    app_client: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], engine: AsyncEngine,
    poison_trigger: None,
) -> None:  # fmt: skip
    """Every answer is 202 with its row written, or 503 with nothing written; the poisoned send is a 503."""
    _, client = app_client
    bodies = [_otp(i) for i in range(120)]
    bodies[60] = {**bodies[60], "body": POISON}
    answers = await asyncio.gather(*(client.post("/notifications", json=b, headers=fast_auth) for b in bodies))
    assert {a.status_code for a in answers} <= {202, 503}
    assert_error(answers[60], 503, "service_unavailable")
    rows = await _bodies(engine)
    accepted = {int(a.json()["id"]): b for a, b in zip(answers, bodies, strict=True) if a.status_code == 202}
    assert set(rows) == set(accepted)
    assert all(rows[i] == (b["to"], b["body"]) for i, b in accepted.items())
    assert POISON not in {body for _, body in rows.values()}
    await _consistent_counts(engine)


async def test_keyed_sends_in_groups_keep_replay_conflict_and_mismatch(
    app_client: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """50 keys, each posted 4 times at once: one row per key; every answer is the original 202, a replay of it,
    or 409 (still in progress); afterwards a replay names the same id, and another body under the key is 422."""
    _, client = app_client
    keys = [f"otp-{i}-{uuid.uuid4()}" for i in range(50)]

    def post(i: int, body: dict[str, Any] | None = None) -> Any:
        return client.post("/notifications", json=body or _otp(i), headers={**fast_auth, "Idempotency-Key": keys[i]})

    answers = await asyncio.gather(*(post(i) for i in range(50) for _ in range(4)))
    ids: dict[int, set[str]] = {}
    for n, answer in enumerate(answers):
        i = n // 4
        assert answer.status_code in (202, 409), answer.text
        if answer.status_code == 409:
            assert_error(answer, 409, "conflict")
            continue
        ids.setdefault(i, set()).add(answer.json()["id"])
    rows = await _bodies(engine)
    assert len(rows) == 50, "one message per key"
    assert all(len(found) == 1 for found in ids.values()), ids
    for i in range(50):
        replay = await post(i)
        assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
        assert rows[int(replay.json()["id"])] == (_otp(i)["to"], _otp(i)["body"])
        if i in ids:
            assert ids[i] == {replay.json()["id"]}
    mismatch = await post(0, _otp(777))
    assert_error(mismatch, 422, "validation_error")
    assert len(await _bodies(engine)) == 50


async def test_bad_requests_racing_good_ones_never_reach_or_break_a_group(
    app_client: tuple[Starlette, httpx.AsyncClient], fast_auth: dict[str, str], engine: AsyncEngine
) -> None:
    """Refused input (NUL, a lone surrogate, a bad address, deep nesting, a revoked-looking token) is
    answered 4xx before any group forms; the good sends racing it are all written, each exactly once."""
    _, client = app_client
    bad_bodies: list[bytes] = [
        b'{"channel":"sms","to":"+15550000001","body":"a\\u0000b"}',
        b'{"channel":"sms","to":"+15550000001","body":"\\ud800"}',
        b'{"channel":"sms","to":"not a phone","body":"x"}',
        b'{"channel":"sms","to":"+15550000001","body":"x","data":' + b'{"a":' * 300 + b"1" + b"}" * 301,
        b'[{"channel":"sms","to":"+15550000001","body":"x"},{"channel":"sms","to":"+1","body":""}]',
    ]
    headers = {**fast_auth, "content-type": "application/json"}
    good = [client.post("/notifications", json=_otp(i), headers=fast_auth) for i in range(60)]
    bad = [client.post("/notifications", content=b, headers=headers) for b in bad_bodies * 8]
    forged = [client.post("/notifications", json=_otp(9), headers={"Authorization": "Bearer x.y.z"})
              for _ in range(5)]  # fmt: skip
    answers = await asyncio.gather(*good, *bad, *forged)
    good_answers, rest = answers[:60], answers[60:]
    assert [a.status_code for a in good_answers] == [202] * 60
    assert all(400 <= a.status_code < 500 for a in rest), [(a.status_code, a.text[:80]) for a in rest]
    rows = await _bodies(engine)
    assert sorted(rows) == sorted(int(a.json()["id"]) for a in good_answers)
    await _consistent_counts(engine)
