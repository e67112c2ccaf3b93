"""The transition statements (db/transitions.py, db/lifecycle.py), asserted on rows.

Each transition is one statement that moves the messages, their campaign's per-status
counters (completing it when its last message lands), the per-channel counts behind
GET /stats, and the audit trail. After every step here the three agree with the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifq.db import campaigns_repo, lifecycle, messages_repo, notifications_repo
from notifq.db.messages_repo import Outcome
from notifq.db.notifications_repo import NewNotification
from notifq.vocabulary import CampaignStatus, Channel, Event, Lane, MessageStatus
from tests.harness import assert_counters_match, campaign_row, status_counts

S, E = MessageStatus, Event
LEASE_SECONDS = 60.0


@pytest.fixture
async def conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Autocommit, as the workers run these statements."""
    async with engine.connect() as c:
        await c.execution_options(isolation_level="AUTOCOMMIT")
        yield c


@contextmanager
def statements(conn: AsyncConnection) -> Iterator[list[str]]:
    """The SQL statements `conn` sends to the server inside the block."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    target = conn.sync_connection
    assert target is not None
    event.listen(target, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(target, "before_cursor_execute", record)


async def make_campaign(
    engine: AsyncEngine, recipients: int, *, batch: int = 100, channel: Channel = Channel.EMAIL,
    send_at: datetime | None = None,
) -> tuple[uuid.UUID, list[int]]:  # fmt: skip
    """A campaign inserted as the service does (one transaction); returns its id and batch numbers."""
    async with engine.begin() as c:
        campaign = await campaigns_repo.insert(
            c, name="t", subject="s", body="b", total=recipients, channel=channel, send_at=send_at, created_by=None
        )
        jobs = await messages_repo.reserve_job_ids(c, -(-recipients // batch))
        await messages_repo.copy_campaign_messages(
            c, campaign.id, ((f"user{i}@example.com", None) for i in range(recipients)), jobs, batch,
            channel=channel, status=S.PENDING if send_at else S.QUEUED, send_at=send_at,
        )  # fmt: skip
    return campaign.id, jobs


async def assert_consistent(engine: AsyncEngine) -> None:
    """Every campaign's counters and the per-channel counts equal the message rows."""
    async with engine.connect() as c:
        campaigns = [r[0] for r in await c.execute(text("SELECT id FROM campaigns"))]
        counted = {
            (r.channel, r.status): int(r.n)
            for r in await c.execute(
                text("SELECT channel, status, sum(n) AS n FROM message_counts GROUP BY 1, 2 HAVING sum(n) <> 0")
            )
        }
        actual = {
            (r.channel, r.status): int(r.n)
            for r in await c.execute(text("SELECT channel, status, count(*) AS n FROM messages GROUP BY 1, 2"))
        }
    assert counted == actual
    for campaign_id in campaigns:
        assert_counters_match(await campaign_row(engine, campaign_id), await status_counts(engine, campaign_id))


async def events(engine: AsyncEngine) -> list[tuple[int, str, int | None, str | None]]:
    async with engine.connect() as c:
        rows = await c.execute(text("SELECT message_id, event, attempt, detail FROM message_events ORDER BY id"))
        return [(r.message_id, r.event, r.attempt, r.detail) for r in rows]


async def statuses(engine: AsyncEngine) -> dict[int, tuple[str, int, int | None]]:
    """message id -> (status, attempts, job id)"""
    async with engine.connect() as c:
        rows = await c.execute(text("SELECT id, status, attempts, job_id FROM messages ORDER BY id"))
        return {r.id: (r.status, r.attempts, r.job_id) for r in rows}


async def test_claim_takes_queued_messages_in_one_statement(engine: AsyncEngine, conn: AsyncConnection) -> None:
    campaign_id, (job,) = await make_campaign(engine, 3)
    with statements(conn) as sent:
        claimed = await messages_repo.claim(conn, job, 2, LEASE_SECONDS)
    assert len(sent) == 1
    assert [m.id for m in claimed] == [1, 2]
    assert all(m.attempts == 1 and m.channel == Channel.EMAIL and m.priority == Lane.BULK for m in claimed)
    assert await statuses(engine) == {1: (S.SENDING, 1, job), 2: (S.SENDING, 1, job), 3: (S.QUEUED, 0, job)}
    row = await campaign_row(engine, campaign_id)
    assert (row["queued_count"], row["sending_count"]) == (1, 2)
    assert await events(engine) == [(1, E.ATTEMPT, 1, None), (2, E.ATTEMPT, 1, None)]
    await assert_consistent(engine)


@pytest.mark.parametrize(
    ("campaign_status", "status", "logged"),
    [(CampaignStatus.PAUSED, S.PENDING, E.PAUSED), (CampaignStatus.CANCELLED, S.CANCELLED, E.CANCELLED)],
)
async def test_claim_holds_or_cancels_the_messages_of_a_paused_or_cancelled_campaign(
    engine: AsyncEngine, conn: AsyncConnection, campaign_status: CampaignStatus, status: MessageStatus, logged: Event
) -> None:
    campaign_id, (job,) = await make_campaign(engine, 2)
    await campaigns_repo.set_status(conn, campaign_id, campaign_status)
    assert await messages_repo.claim(conn, job, 10, LEASE_SECONDS) == []
    assert await statuses(engine) == {1: (status, 0, job), 2: (status, 0, job)}  # no attempt used
    assert await events(engine) == [(1, logged, 0, None), (2, logged, 0, None)]
    row = await campaign_row(engine, campaign_id)
    assert row["status"] == campaign_status  # an operator's status is never overwritten by "completed"
    await assert_consistent(engine)


async def test_record_writes_outcomes_and_completes_the_campaign_exactly_once(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    campaign_id, (job,) = await make_campaign(engine, 3)
    await messages_repo.claim(conn, job, 3, LEASE_SECONDS)
    outcomes = [
        Outcome(1, 1, S.SENT, provider="mock", provider_message_id="m-1"),
        Outcome(2, 1, S.SENT, provider="mock", provider_message_id="m-2"),
        Outcome(3, 1, S.FAILED, "mailbox unavailable", provider="mock"),
    ]
    with statements(conn) as sent:
        result = await messages_repo.record_outcomes(conn, outcomes)
    assert len(sent) == 1
    assert (result.requeued_jobs, result.stale) == ({}, 0)
    row = await campaign_row(engine, campaign_id)
    assert row["status"] == CampaignStatus.COMPLETED_WITH_FAILURES
    assert row["completed_at"] is not None
    assert (row["sent_count"], row["failed_count"], row["sending_count"]) == (2, 1, 0)
    assert (await events(engine))[3:] == [(1, E.SENT, 1, None), (2, E.SENT, 1, None),
                                          (3, E.FAILED, 1, "mailbox unavailable")]  # fmt: skip
    async with engine.connect() as c:
        pmids = dict((await c.execute(text("SELECT id, provider_message_id FROM messages"))).all())
    assert pmids == {1: "m-1", 2: "m-2", 3: None}

    # The same outcomes again (a duplicate delivery of a chunk): nothing moves, nothing is logged.
    again = await messages_repo.record_outcomes(conn, outcomes)
    assert again.stale == 3
    assert await campaign_row(engine, campaign_id) == row
    assert len(await events(engine)) == 6
    await assert_consistent(engine)


async def test_record_moves_a_retry_to_its_new_batch_and_a_refund_gives_the_attempt_back(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    campaign_id, (job,) = await make_campaign(engine, 2)
    await messages_repo.claim(conn, job, 2, LEASE_SECONDS)
    retry_job, throttled_job = await messages_repo.reserve_job_ids(conn, 2)
    result = await messages_repo.record_outcomes(conn, [
        Outcome(1, 1, S.QUEUED, "timeout", retry_job_id=retry_job, provider="mock"),
        Outcome(2, 1, S.QUEUED, "slow down", retry_job_id=throttled_job, provider="mock", refund=True,
                event=E.THROTTLED),
    ])  # fmt: skip
    assert result.requeued_jobs == {retry_job: Lane.BULK, throttled_job: Lane.BULK}
    assert await statuses(engine) == {1: (S.QUEUED, 1, retry_job), 2: (S.QUEUED, 0, throttled_job)}
    assert (await events(engine))[2:] == [(1, E.RETRY, 1, "timeout"), (2, E.THROTTLED, 1, "slow down")]
    row = await campaign_row(engine, campaign_id)
    assert (row["status"], row["queued_count"]) == (CampaignStatus.PENDING, 2)
    await assert_consistent(engine)


async def test_a_late_sent_for_a_requeued_message_still_lands_as_sent(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    """The reconciler put a message back in the queue (its worker looked dead), then the send succeeded."""
    campaign_id, (job,) = await make_campaign(engine, 1)
    await messages_repo.claim(conn, job, 1, LEASE_SECONDS)
    (new_job,) = await messages_repo.reserve_job_ids(conn, 1)
    await messages_repo.record_outcomes(conn, [Outcome(1, 1, S.QUEUED, "worker lost", new_job, event=E.LOST)])
    with statements(conn) as sent:
        result = await messages_repo.record_outcomes(conn, [Outcome(1, 1, S.SENT, provider="mock")])
    assert len(sent) == 2  # the guarded record found it queued; the late-sent statement took it
    assert result.stale == 0
    assert await statuses(engine) == {1: (S.SENT, 1, new_job)}
    assert (await events(engine))[-1] == (1, E.SENT, 1, "after the message was re-queued")
    assert (await campaign_row(engine, campaign_id))["status"] == CampaignStatus.COMPLETED
    await assert_consistent(engine)


async def test_cancel_takes_what_has_not_started_and_leaves_sends_in_flight(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    campaign_id, (job,) = await make_campaign(engine, 3)
    await messages_repo.claim(conn, job, 1, LEASE_SECONDS)
    with statements(conn) as sent:
        assert await lifecycle.cancel_campaign_messages(conn, campaign_id) == 2
    assert len(sent) == 1
    assert await statuses(engine) == {1: (S.SENDING, 1, job), 2: (S.CANCELLED, 0, job), 3: (S.CANCELLED, 0, job)}
    assert (await events(engine))[1:] == [(2, E.CANCELLED, 0, None), (3, E.CANCELLED, 0, None)]
    await assert_consistent(engine)


async def test_cancel_one_notification_moves_only_the_channel_counts(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    inserted = await notifications_repo.insert(conn, [
        NewNotification(Channel.SMS, "+15550000001", None, "code 1234", None, Lane.TRANSACTIONAL, None),
        NewNotification(Channel.SMS, "+15550000002", None, "later", None, Lane.BULK, later),
    ], [0, 1])  # fmt: skip
    assert [(i.row.status, i.row.priority) for i in inserted] == [(S.QUEUED, Lane.TRANSACTIONAL),
                                                                   (S.PENDING, Lane.BULK)]  # fmt: skip
    await assert_consistent(engine)
    with statements(conn) as sent:
        assert await lifecycle.cancel_message(conn, inserted[1].row.id)
    assert len(sent) == 1
    assert not await lifecycle.cancel_message(conn, inserted[1].row.id)  # already cancelled
    assert (await events(engine))[-1] == (inserted[1].row.id, E.CANCELLED, 0, None)
    await assert_consistent(engine)


async def test_pause_holds_queued_messages_and_resume_releases_them_in_their_batches(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    campaign_id, jobs = await make_campaign(engine, 5, batch=2)
    await messages_repo.claim(conn, jobs[0], 1, LEASE_SECONDS)
    with statements(conn) as sent:
        assert await lifecycle.pause_campaign_messages(conn, campaign_id) == 4
    assert len(sent) == 1
    assert [s for s, _, _ in (await statuses(engine)).values()] == [S.SENDING] + [S.PENDING] * 4
    await assert_consistent(engine)
    with statements(conn) as sent:
        released = await lifecycle.resume_campaign_messages(conn, campaign_id)
    assert len(sent) == 1
    assert released == [lifecycle.Released(job, Lane.BULK) for job in jobs]
    logged = [(m, e) for m, e, _, _ in await events(engine)]
    assert logged[1:5] == [(m, E.PAUSED) for m in (2, 3, 4, 5)]
    assert logged[5:] == [(m, E.RESUMED) for m in (2, 3, 4, 5)]
    await assert_consistent(engine)


async def test_release_due_queues_scheduled_messages_and_starts_their_campaign(
    engine: AsyncEngine, conn: AsyncConnection
) -> None:
    campaign_id, (job,) = await make_campaign(engine, 2, send_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await campaign_row(engine, campaign_id))["status"] == CampaignStatus.SCHEDULED
    released = await lifecycle.release_due(conn, 100)
    assert released == [lifecycle.Released(job, Lane.BULK)]
    assert await statuses(engine) == {1: (S.QUEUED, 0, job), 2: (S.QUEUED, 0, job)}
    assert await events(engine) == [(1, E.RELEASED, 0, None), (2, E.RELEASED, 0, None)]
    assert (await campaign_row(engine, campaign_id))["status"] == CampaignStatus.PROCESSING
    await assert_consistent(engine)


async def test_requeue_failed_gives_fresh_attempts_in_new_batches(engine: AsyncEngine, conn: AsyncConnection) -> None:
    campaign_id, (job,) = await make_campaign(engine, 3)
    await messages_repo.claim(conn, job, 3, LEASE_SECONDS)
    await messages_repo.record_outcomes(conn, [Outcome(m, 1, S.FAILED, "bounced") for m in (1, 2, 3)])
    assert (await campaign_row(engine, campaign_id))["status"] == CampaignStatus.COMPLETED_WITH_FAILURES
    count, released = await lifecycle.requeue_failed(conn, "campaign_id = :c", {"c": campaign_id}, 2, E.REQUEUED, 100)
    assert count == 3
    assert len(released) == 2 and all(r.priority == Lane.BULK and r.job_id != job for r in released)
    after = await statuses(engine)
    assert {s for s, _, _ in after.values()} == {S.QUEUED}
    assert {a for _, a, _ in after.values()} == {0}
    assert sorted(j for _, _, j in after.values()) == sorted([released[0].job_id] * 2 + [released[1].job_id])
    assert [e for _, e, _, _ in await events(engine)][-3:] == [E.REQUEUED] * 3
    row = await campaign_row(engine, campaign_id)
    assert (row["failed_count"], row["queued_count"]) == (0, 3)
    await assert_consistent(engine)
