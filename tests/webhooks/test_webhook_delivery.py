"""Outbound webhook delivery against a real receiver, real PostgreSQL and real workers: every event once
(the outbox), signatures a user's code accepts, batching, an outage, give-up and disable, a worker killed
mid-delivery, and the address policy at delivery time."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db.engine import create_engine
from notifq.settings import Settings
from notifq.webhook_http import new_secret
from notifq.worker.webhooks import WebhookDispatcher
from tests.conftest import wait_for
from tests.harness import finished_campaign, post_json, running_worker, spawn_worker, stop_process
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings.with_(webhooks_allow_private=True, webhook_timeout=2.0, webhook_backoff_max_seconds=1.0)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def add_endpoint(
    engine: AsyncEngine, url: str, events: list[str], *, batch: bool = False
) -> tuple[uuid.UUID, str]:
    """An endpoint as POST /webhooks writes it (the API's own tests cover the route)."""
    endpoint_id, secret = uuid.uuid4(), new_secret()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO webhook_endpoints (id, url, events, secret, batch) VALUES (:i, :u, :e, :s, :b)"),
            {"i": endpoint_id, "u": url, "e": events, "s": secret, "b": batch},
        )
    return endpoint_id, secret


@contextlib.asynccontextmanager
async def dispatching(settings: Settings, owner: str = "test") -> AsyncIterator[WebhookDispatcher]:
    engine = create_engine(settings.database_url or "", pool_size=4)
    stop = asyncio.Event()
    dispatcher = WebhookDispatcher(engine, settings, owner, stop)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await engine.dispose()


async def endpoint_row(engine: AsyncEngine, endpoint_id: uuid.UUID) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM webhook_endpoints WHERE id = :i"), {"i": endpoint_id})).one()
        return dict(row._mapping)


async def deliveries(engine: AsyncEngine, endpoint_id: uuid.UUID) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT * FROM webhook_deliveries WHERE endpoint_id = :i ORDER BY id"), {"i": endpoint_id}
        )
        return [dict(r._mapping) for r in rows]


async def sent_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM message_events WHERE event = 'sent'"))
        return {f"evt_{r.id}" for r in rows}


async def test_campaign_events_delivered_once_with_signatures(
    settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    endpoint_id, receiver.secret = await add_endpoint(
        engine, receiver.url, ["message.sent", "campaign.started", "campaign.completed"]
    )
    async with running_worker(settings), dispatching(settings):
        campaign = await post_json(client, auth, "/campaigns", {"name": "hooks", "recipientCount": 300})
        assert await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=60)
        expected = await sent_ids(engine)
        assert len(expected) == 300
        await wait_for(lambda: _async(len(receiver.seen) == 302), within=30)
    assert set(receiver.seen) >= expected
    assert receiver.duplicates == 0 and receiver.bad_signatures == 0
    completed = receiver.of_type("campaign.completed")
    assert [e["data"]["campaignId"] for e in completed] == [campaign["id"]]
    assert completed[0]["data"]["status"] == "completed" and completed[0]["data"]["sent"] == 300
    assert len(receiver.of_type("campaign.started")) == 1
    sample = receiver.of_type("message.sent")[0]
    assert set(sample) == {"id", "type", "createdAt", "data"} and sample["createdAt"].endswith("Z")
    assert sample["data"]["campaignId"] == campaign["id"] and sample["data"]["provider"] == "mock"
    assert sample["data"]["status"] == "sent" and sample["data"]["channel"] == "email"
    # A message event also names its notification, which the API serves.
    r = await client.get(f"/notifications/{sample['data']['notificationId']}", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "sent"
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM webhook_queue"))).scalar_one() == 0
    log = await deliveries(engine, endpoint_id)
    assert len(log) == 302 and {d["outcome"] for d in log} == {"succeeded"}
    assert (await endpoint_row(engine, endpoint_id))["last_success_at"] is not None


async def _async(value: Any) -> Any:
    return value


async def test_batches_and_filters(
    settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    receiver.keep_bodies = True
    _, receiver.secret = await add_endpoint(engine, receiver.url, ["message.sent"], batch=True)
    other = await Receiver().start()
    try:
        _, other.secret = await add_endpoint(engine, other.url, ["message.failed"])  # wants none of these
        async with running_worker(settings), dispatching(settings):
            campaign = await post_json(client, auth, "/campaigns", {"name": "batch", "recipientCount": 1000})
            assert await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=60)
            await wait_for(lambda: _async(len(receiver.seen) == 1000), within=30)
        assert receiver.duplicates == 0 and receiver.bad_signatures == 0
        assert receiver.posts <= 20  # 100 events a POST (pages may split a little earlier)
        for headers, body in receiver.bodies:
            assert body.startswith(b'{"events":[')
            assert len(headers["Notifq-Event-Id"].split(",")) <= 100
        assert other.posts == 0
    finally:
        await other.stop()


async def test_receiver_down_for_30_s_gets_every_event(
    settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    endpoint_id, receiver.secret = await add_endpoint(engine, receiver.url, ["message.sent"])
    receiver.status = 500
    async with running_worker(settings), dispatching(settings):
        campaign = await post_json(client, auth, "/campaigns", {"name": "outage", "recipientCount": 200})
        assert await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=60)
        await asyncio.sleep(30)
        failing = await endpoint_row(engine, endpoint_id)
        assert failing["failing_since"] is not None and failing["failures"] >= 5 and failing["enabled"]
        probes = receiver.posts
        # Backed off as a whole and probed with one event at a time (after the first page, which failed
        # whole): not 200 POSTs per try; the backoff is capped at 1 s here, so about one probe a second.
        assert probes < 2 * settings.webhook_concurrency + 40, probes
        receiver.status = 200
        await wait_for(lambda: _async(len(receiver.seen) == 200), within=30)
    assert set(receiver.seen) == await sent_ids(engine)
    assert receiver.duplicates == 0
    row = await endpoint_row(engine, endpoint_id)
    assert row["failing_since"] is None and row["failures"] == 0 and row["last_error"].startswith("HTTP 500")
    outcomes = [d["outcome"] for d in await deliveries(engine, endpoint_id)]
    assert outcomes.count("failed") == probes and outcomes[-1] == "succeeded"


async def test_gives_up_and_disables_a_dead_endpoint(
    settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    settings = settings.with_(webhook_give_up_seconds=2.0, webhook_disable_after_seconds=3.0)
    endpoint_id, receiver.secret = await add_endpoint(engine, receiver.url, ["message.sent"])
    receiver.status = 503
    async with running_worker(settings), dispatching(settings) as dispatcher:
        await post_json(client, auth, "/campaigns", {"name": "dead", "recipientCount": 20})
        await wait_for(lambda: _async(receiver.posts > 0), within=30)
        await asyncio.sleep(3.5)
        dispatcher._maintained_at = 0  # run the give-up round now rather than in a minute
        await wait_for(lambda: _async(dispatcher._maintained_at > 0), within=5)
        await asyncio.sleep(0.5)
    row = await endpoint_row(engine, endpoint_id)
    assert not row["enabled"] and "no successful delivery" in row["disabled_reason"]
    assert "HTTP 503" in row["disabled_reason"]
    log = await deliveries(engine, endpoint_id)
    abandoned = [d for d in log if d["outcome"] == "abandoned"]
    assert abandoned and sum(len(d["event_ids"]) for d in abandoned) == 20
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM webhook_queue"))).scalar_one() == 0


async def test_an_event_committed_late_is_not_skipped(settings: Settings, engine: AsyncEngine,
                                                      receiver: Receiver) -> None:  # fmt: skip
    """A transaction that wrote an event with a small id and committed after later events were delivered:
    an id cursor would skip it; the transaction cursor waits for it."""
    _, receiver.secret = await add_endpoint(engine, receiver.url, ["message.delivered"])
    async with dispatching(settings):
        slow = await engine.connect()
        trans = await slow.begin()
        insert = "INSERT INTO message_events (message_id, event) VALUES (1, 'delivered') RETURNING id"
        early = (await slow.execute(text(insert))).scalar_one()
        async with engine.begin() as conn:
            later = (await conn.execute(text(
                "INSERT INTO message_events (message_id, event) SELECT g, 'delivered' FROM generate_series(2, 50) g "
                "RETURNING id"))).scalars().all()  # fmt: skip
        await asyncio.sleep(1.5)
        # The later events wait too (the open transaction holds the horizon): none is lost, order aside.
        assert f"evt_{early}" not in receiver.seen
        await trans.commit()
        await slow.close()
        await wait_for(lambda: _async(len(receiver.seen) == 50), within=15)
    assert {f"evt_{i}" for i in [early, *later]} == set(receiver.seen)
    assert receiver.duplicates == 0


async def test_several_dispatchers_queue_each_event_once(
    settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    _, receiver.secret = await add_endpoint(engine, receiver.url, ["message.sent", "campaign.completed"], batch=True)
    async with running_worker(settings), dispatching(settings, "a"), dispatching(settings, "b"), \
            dispatching(settings, "c"):  # fmt: skip
        bodies = [{"name": f"c{i}", "recipientCount": 300} for i in range(4)]
        campaigns = await asyncio.gather(*(post_json(client, auth, "/campaigns", b) for b in bodies))
        for c in campaigns:
            assert await wait_for(lambda c=c: finished_campaign(client, auth, c["id"]), within=60)
        await wait_for(lambda: _async(len(receiver.seen) == 1204), within=30)
    assert receiver.duplicates == 0 and len(receiver.of_type("campaign.completed")) == 4


async def test_delivery_refuses_a_private_address_at_send_time(settings: Settings, engine: AsyncEngine,
                                                               receiver: Receiver) -> None:  # fmt: skip
    """An endpoint accepted while private addresses were allowed (or whose name now resolves to one: DNS
    rebinding) is refused by the sender itself: nothing reaches the receiver."""
    endpoint_id, receiver.secret = await add_endpoint(engine, receiver.url, ["message.delivered"])
    localhost = f"http://localhost:{receiver.port}/hook"
    named_id, _ = await add_endpoint(engine, localhost, ["message.delivered"])
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO message_events (message_id, event) VALUES (7, 'delivered')"))
    async with dispatching(settings.with_(webhooks_allow_private=False)):
        await wait_for(lambda: _async(len(asyncio.all_tasks()) > 0), within=1)
        for eid in (endpoint_id, named_id):
            await wait_for(lambda eid=eid: _has_outcome(engine, eid, "refused"), within=15)
    assert receiver.posts == 0
    for eid in (endpoint_id, named_id):
        row = await endpoint_row(engine, eid)
        assert row["failing_since"] is not None and "loopback" in row["last_error"]


async def _has_outcome(engine: AsyncEngine, endpoint_id: uuid.UUID, outcome: str) -> bool:
    return any(d["outcome"] == outcome for d in await deliveries(engine, endpoint_id))


async def test_worker_killed_mid_delivery_loses_no_event(
    settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, auth: dict[str, str], receiver: Receiver
) -> None:
    """Webhooks go out from `notifq worker` processes; SIGKILL one while its POSTs are in flight, and a
    second worker delivers the rest once the lease runs out. Repeats are bounded by one page."""
    settings = settings.with_(webhook_concurrency=4)
    _, receiver.secret = await add_endpoint(engine, receiver.url, ["message.sent"])
    receiver.delay = 0.2  # ~20 events/s: the campaign's events are still being POSTed when the kill comes
    first = spawn_worker(settings)
    try:
        campaign = await post_json(client, auth, "/campaigns", {"name": "kill", "recipientCount": 200})
        assert await wait_for(lambda: finished_campaign(client, auth, campaign["id"]), within=60)
        await wait_for(lambda: _async(len(receiver.seen) >= 20), within=30)
    finally:
        stop_process(first, signal.SIGKILL)
    delivered_before = len(receiver.seen)
    assert delivered_before < 200
    second = spawn_worker(settings)
    try:
        await wait_for(lambda: _async(len(receiver.seen) == 200), within=90)
    finally:
        stop_process(second)
    assert set(receiver.seen) == await sent_ids(engine)
    assert receiver.duplicates <= 2 * settings.webhook_concurrency, receiver.duplicates


async def test_a_refused_event_goes_to_the_back_and_the_rest_flows(settings: Settings, engine: AsyncEngine,
                                                                   receiver: Receiver) -> None:  # fmt: skip
    """A receiver that keeps refusing one event (a 400 for it, 2xx for the others) does not block the endpoint:
    every other event is delivered, the refused one is tried again, and the endpoint is not failing."""
    endpoint_id, receiver.secret = await add_endpoint(engine, receiver.url, ["message.delivered"])
    async with engine.begin() as conn:
        ids = (await conn.execute(text(
            "INSERT INTO message_events (message_id, event) SELECT g, 'delivered' FROM generate_series(1, 40) g "
            "RETURNING id"))).scalars().all()  # fmt: skip
    poison = f"evt_{ids[0]}"
    handle = receiver.handle

    async def refuse_one(request: Any) -> Any:
        if request.headers.get("Notifq-Event-Id") == poison:
            from aiohttp import web

            receiver.posts += 1
            return web.Response(status=400, text="cannot take this one")
        return await handle(request)

    receiver.handle = refuse_one  # type: ignore[method-assign]
    async with dispatching(settings):
        await wait_for(lambda: _async(len(receiver.seen) == 39), within=15)
        await wait_for(lambda: _queued_attempts(engine, ids[0], at_least=2), within=15)
    assert poison not in receiver.seen and receiver.duplicates == 0
    row = await endpoint_row(engine, endpoint_id)
    assert row["enabled"] and row["last_error"].startswith("HTTP 400")


async def _queued_attempts(engine: AsyncEngine, event_id: int, at_least: int) -> bool:
    async with engine.connect() as conn:
        query = text("SELECT attempts FROM webhook_queue WHERE event_id = :e")
        n = (await conn.execute(query, {"e": event_id})).scalar()
    return n is not None and n >= at_least


async def test_an_unstorable_answer_still_backs_off(settings: Settings, engine: AsyncEngine) -> None:
    """A receiver whose status line carries NUL and invalid UTF-8: recorded (cleaned), and backed off."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 500 Bad\x00Thing\xff\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        endpoint_id, _ = await add_endpoint(engine, f"http://127.0.0.1:{port}/", ["message.delivered"])
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO message_events (message_id, event) VALUES (3, 'delivered')"))
        async with dispatching(settings):
            await wait_for(lambda: _has_outcome(engine, endpoint_id, "failed"), within=15)
            await asyncio.sleep(1.0)
        row = await endpoint_row(engine, endpoint_id)
        assert row["failing_since"] is not None and row["retry_at"] is not None
        assert row["last_error"].startswith("HTTP 500 Bad") and "\x00" not in row["last_error"]
        # Backed off (1 s capped here), not re-POSTed every 0.2 s round.
        assert len(await deliveries(engine, endpoint_id)) <= 4
    finally:
        server.close()
        await server.wait_closed()


async def test_a_cursor_from_another_cluster_starts_afresh(settings: Settings, engine: AsyncEngine,
                                                           receiver: Receiver) -> None:  # fmt: skip
    """Restored into another cluster, the cursor's transaction ids are meaningless (here: far ahead of the
    server's). The dispatcher notices, starts the cursor at the new horizon and delivers what comes next."""
    _, receiver.secret = await add_endpoint(engine, receiver.url, ["message.delivered"])
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE webhook_outbox SET tx = tx + 1000000000, system_id = 42"))
    async with dispatching(settings):
        await asyncio.sleep(0.6)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO message_events (message_id, event) VALUES (5, 'delivered')"))
        await wait_for(lambda: _async(len(receiver.seen) == 1), within=15)
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT o.system_id = s.system_identifier AS same, o.tx < pg_current_xact_id()::text::bigint AS sane "
            "FROM webhook_outbox o, pg_control_system() s"))).one()  # fmt: skip
    assert row.same and row.sane


async def test_metrics_show_the_backlog_and_what_holds_the_outbox(
    settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    """While a transaction that wrote an event stays open, /metrics says how long it has held the outbox back;
    an endpoint whose receiver is down shows its waiting events and their age."""
    endpoint_id, receiver.secret = await add_endpoint(engine, receiver.url, ["message.delivered"])
    receiver.status = 500
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO message_events (message_id, event) SELECT g, 'delivered' "
                                "FROM generate_series(1, 5) g"))  # fmt: skip
    async with dispatching(settings):
        await wait_for(lambda: _has_outcome(engine, endpoint_id, "failed"), within=15)
        slow = await engine.connect()
        trans = await slow.begin()
        await slow.execute(text("INSERT INTO message_events (message_id, event) VALUES (9, 'delivered')"))
        await asyncio.sleep(1.2)
        metrics = (await client.get("/metrics")).text
        await trans.rollback()
        await slow.close()
    pending = f'notifq_webhook_pending{{endpoint_id="{endpoint_id}",status="failing"}} 5.0'
    assert pending in metrics, [line for line in metrics.splitlines() if "webhook" in line]
    held = next(line for line in metrics.splitlines() if line.startswith("notifq_webhook_horizon_held_seconds "))
    assert float(held.split()[1]) >= 1.0
    oldest = next(line for line in metrics.splitlines() if line.startswith("notifq_webhook_oldest_pending_seconds{"))
    assert float(oldest.split()[1]) > 0
