"""SQL for outbound webhooks' delivery: the audit trail read as an outbox, each endpoint's queue, its log.

Events are matched to endpoints by transaction, not by id (migration 0009 says why): one cursor,
`webhook_outbox.tx`, moves to the snapshot's `xmin` in the statement that queues what lies
below it, so an event is queued exactly once whoever runs it and whenever it crashes. Each
endpoint is then worked by one worker at a time (a lease on its row), which POSTs its queued
events and deletes them on a 2xx: a crash in between repeats the POSTs in flight, nothing else.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.vocabulary import MESSAGE_WEBHOOK_EVENTS, WebhookOutcome

log = logging.getLogger("notifq.webhooks")

# Every transaction below the statement's snapshot xmin has ended: its events are all visible and final.
_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"

_EVENTS = ", ".join(f"'{e}'" for e in MESSAGE_WEBHOOK_EVENTS.values())  # the partial index's predicate

_QUEUE = f"""
WITH h AS (SELECT {_HORIZON} AS hi),
endpoints AS MATERIALIZED (SELECT id, events FROM webhook_endpoints WHERE enabled),
m AS (
    INSERT INTO webhook_queue (endpoint_id, event_id, type, at)
    SELECT e.id, ev.id, 'message.' || ev.event, ev.at
    FROM h, message_events ev JOIN endpoints e ON ('message.' || ev.event) = ANY (e.events)
    WHERE ev.tx >= :lo AND ev.tx < h.hi AND ev.event IN ({_EVENTS})
    ON CONFLICT DO NOTHING
    RETURNING 1
),
c AS (
    INSERT INTO webhook_queue (endpoint_id, event_id, type, at)
    SELECT e.id, ce.id, ce.type, ce.at
    FROM h, campaign_events ce JOIN endpoints e ON ce.type = ANY (e.events)
    WHERE ce.tx >= :lo AND ce.tx < h.hi
    ON CONFLICT DO NOTHING
    RETURNING 1
),
cur AS (UPDATE webhook_outbox o SET tx = h.hi, updated_at = now() FROM h WHERE o.id = 1 AND h.hi > o.tx RETURNING 1)
SELECT (SELECT count(*) FROM m) + (SELECT count(*) FROM c) AS queued, (SELECT hi FROM h) AS hi
"""

# With no endpoint, only the cursor moves; one statement (one snapshot), so an endpoint created meanwhile
# either is seen here (nothing moves) or was created after this horizon (its events lie above it).
_SKIP = f"""
UPDATE webhook_outbox SET tx = GREATEST(tx, {_HORIZON}), updated_at = now()
WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)
RETURNING tx
"""

# The cursor's ids belong to another cluster (a restore, a logical-replication move): ids started over.
# Forget the events stamped with the old ids above the new horizon (they would be sent again once the new
# ids caught up) and start the cursor at the new horizon.
_MOVED = f"""
WITH h AS (SELECT {_HORIZON} AS hi),
m AS (UPDATE message_events SET tx = NULL FROM h WHERE tx >= h.hi),
c AS (UPDATE campaign_events SET tx = 0 FROM h WHERE tx >= h.hi)
UPDATE webhook_outbox o SET tx = h.hi, system_id = (SELECT system_identifier FROM pg_control_system()),
    updated_at = now()
FROM h WHERE o.id = 1
RETURNING o.tx
"""


async def queue_new_events(conn: AsyncConnection) -> tuple[int, int] | None:
    """Queue every event that became final since the cursor for the endpoints that want it, and move the
    cursor. Must run inside a transaction. None: another process holds the cursor right now (it is
    doing this). Returns (events queued, the new cursor)."""
    row = (await conn.execute(text(
        "SELECT o.tx, o.system_id = s.system_identifier AS same_cluster, "
        "pg_current_xact_id()::text::bigint AS now_tx "
        "FROM webhook_outbox o, pg_control_system() s WHERE o.id = 1 FOR UPDATE OF o SKIP LOCKED"
    ))).first()  # fmt: skip
    if row is None:
        return None
    lo = int(row.tx)
    if not row.same_cluster or lo > int(row.now_tx):
        moved = (await conn.execute(text(_MOVED))).scalar_one()
        log.warning("webhooks: the database's transaction ids started over (restored into another cluster?): the "
                    "event cursor moved from %d to %d; events written in between were not sent", lo, moved)  # fmt: skip
        return 0, int(moved)
    skipped = (await conn.execute(text(_SKIP))).first()
    if skipped is not None:
        return 0, int(skipped.tx)
    result = (await conn.execute(text(_QUEUE), {"lo": lo})).one()
    return int(result.queued), max(lo, int(result.hi))


@dataclass(frozen=True)
class LeasedEndpoint:
    id: uuid.UUID
    url: str
    secret: str
    batch: bool
    failures: int


_LEASE = """
UPDATE webhook_endpoints e SET lease_owner = :owner, lease_until = now() + make_interval(secs => :lease)
WHERE e.id = (
    SELECT w.id FROM webhook_endpoints w
    WHERE w.enabled AND (w.retry_at IS NULL OR w.retry_at <= now())
      AND (w.lease_until IS NULL OR w.lease_until < now()) AND NOT (w.id = ANY (CAST(:held AS uuid[])))
      AND EXISTS (SELECT 1 FROM webhook_queue q WHERE q.endpoint_id = w.id)
    ORDER BY w.lease_until NULLS FIRST
    LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING e.id, e.url, e.secret, e.batch, e.failures
"""


async def lease_endpoint(conn: AsyncConnection, owner: str, lease_seconds: float, held: Sequence[uuid.UUID]
                         ) -> LeasedEndpoint | None:  # fmt: skip
    """An enabled endpoint with queued events, not backing off and not leased by anyone, leased to `owner`."""
    row = (await conn.execute(text(_LEASE), {"owner": owner, "lease": lease_seconds, "held": list(held)})).first()
    return None if row is None else LeasedEndpoint(row.id, row.url, row.secret, row.batch, row.failures)


async def renew_lease(conn: AsyncConnection, endpoint_id: uuid.UUID, owner: str, lease_seconds: float
                      ) -> LeasedEndpoint | None:  # fmt: skip
    """Extend our lease (and re-read the endpoint: its URL, secret or batching may have changed); None when
    it is no longer ours (expired and taken, disabled, deleted)."""
    row = (await conn.execute(text(
        "UPDATE webhook_endpoints SET lease_until = now() + make_interval(secs => :lease) "
        "WHERE id = :id AND lease_owner = :owner AND enabled RETURNING id, url, secret, batch, failures"),
        {"id": endpoint_id, "owner": owner, "lease": lease_seconds})).first()  # fmt: skip
    return None if row is None else LeasedEndpoint(row.id, row.url, row.secret, row.batch, row.failures)


async def release_lease(conn: AsyncConnection, endpoint_id: uuid.UUID, owner: str) -> None:
    await conn.execute(
        text("UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL WHERE id = :id AND lease_owner = :o"),
        {"id": endpoint_id, "o": owner},
    )


@dataclass(frozen=True)
class QueuedEvent:
    event_id: int
    type: str
    at: dt.datetime
    data: dict[str, Any]


_PAGE = """
SELECT q.event_id, q.type, q.at,
       ev.message_id, ev.attempt, ev.detail, ev.provider AS event_provider,
       m.campaign_id AS m_campaign_id, m.channel, m.recipient, m.status AS m_status, m.provider_message_id,
       m.subscriber_id, m.category, m.priority,
       ce.campaign_id AS c_campaign_id, ce.status AS c_status, ce.old_status,
       c.name, c.total_messages, c.sent_count, c.failed_count, c.skipped_count, c.cancelled_count, c.paused_reason
FROM webhook_queue q
LEFT JOIN message_events ev ON q.type LIKE 'message.%' AND ev.id = q.event_id
LEFT JOIN messages m ON m.id = ev.message_id
LEFT JOIN campaign_events ce ON q.type LIKE 'campaign.%' AND ce.id = q.event_id
LEFT JOIN campaigns c ON c.id = ce.campaign_id
WHERE q.endpoint_id = :endpoint
ORDER BY q.attempts, q.event_id
LIMIT :limit
"""


def _data(row: Any) -> dict[str, Any]:
    if row.type.startswith("campaign."):
        return {"campaignId": None if row.c_campaign_id is None else str(row.c_campaign_id), "name": row.name,
                "status": row.c_status, "previousStatus": row.old_status, "total": row.total_messages,
                "sent": row.sent_count, "failed": row.failed_count, "skipped": row.skipped_count,
                "cancelled": row.cancelled_count, "pausedReason": row.paused_reason}  # fmt: skip
    return {"notificationId": None if row.message_id is None else str(row.message_id),
            "campaignId": None if row.m_campaign_id is None else str(row.m_campaign_id),
            "channel": row.channel, "to": row.recipient, "priority": row.priority, "status": row.m_status,
            "attempt": row.attempt, "provider": row.event_provider, "providerMessageId": row.provider_message_id,
            "detail": row.detail, "subscriberId": row.subscriber_id, "category": row.category}  # fmt: skip


async def next_events(conn: AsyncConnection, endpoint_id: uuid.UUID, limit: int) -> list[QueuedEvent]:
    """The endpoint's queued events with what receivers get to know about them (one statement): the least tried
    first, then the oldest, so an event the receiver keeps refusing goes to the back instead of blocking the rest."""
    rows = await conn.execute(text(_PAGE), {"endpoint": endpoint_id, "limit": limit})
    return [QueuedEvent(r.event_id, r.type, r.at, _data(r)) for r in rows]


@dataclass(frozen=True)
class Attempt:
    """One POST's events and answer, to be written to the log."""

    event_ids: list[int]
    outcome: WebhookOutcome
    status: int | None
    error: str | None
    duration_ms: int


_RECORD = """
WITH a AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:outcomes AS text[]), CAST(:statuses AS int[]),
                         CAST(:errors AS text[]), CAST(:durations AS int[])) AS a(ids, outcome, status, error, ms)
),
log AS (
    INSERT INTO webhook_deliveries (endpoint_id, event_ids, outcome, response_status, error, duration_ms)
    SELECT :endpoint, CAST(a.ids AS bigint[]), a.outcome, a.status, a.error, a.ms FROM a
),
done AS (
    DELETE FROM webhook_queue q WHERE q.endpoint_id = :endpoint AND q.event_id = ANY (CAST(:succeeded AS bigint[]))
),
tried AS (
    UPDATE webhook_queue q SET attempts = q.attempts + 1
    WHERE q.endpoint_id = :endpoint AND q.event_id = ANY (CAST(:failed AS bigint[]))
)
UPDATE webhook_endpoints e SET
    failures = CASE WHEN :down THEN e.failures + 1 ELSE 0 END,
    failing_since = CASE WHEN :down THEN COALESCE(e.failing_since, now()) ELSE NULL END,
    retry_at = CASE WHEN :down THEN now() + make_interval(secs => :backoff) ELSE NULL END,
    last_success_at = CASE WHEN :any_succeeded THEN now() ELSE e.last_success_at END,
    last_failure_at = CASE WHEN :any_failed THEN now() ELSE e.last_failure_at END,
    last_error = CASE WHEN :any_failed THEN :last_error ELSE e.last_error END,
    updated_at = now()
WHERE e.id = :endpoint AND e.lease_owner = :owner
RETURNING e.failing_since
"""


async def record_attempts(conn: AsyncConnection, endpoint_id: uuid.UUID, owner: str, attempts: Sequence[Attempt],
                          backoff: float) -> bool:  # fmt: skip
    """Log the POSTs, drop the delivered events and count the others' tries. The endpoint is down (backed off
    `backoff` seconds, `failing_since` set) when no POST of the page succeeded; a page where some succeeded
    keeps it going (the refused events wait at the back of its queue). Returns whether it is down. The
    endpoint's state is only written by its lease holder (a worker whose lease ran out only logs)."""
    failed = [a for a in attempts if a.outcome != WebhookOutcome.SUCCEEDED]
    succeeded = [i for a in attempts if a.outcome == WebhookOutcome.SUCCEEDED for i in a.event_ids]
    down = bool(failed) and not succeeded
    params = {
        "endpoint": endpoint_id,
        "owner": owner,
        "ids": ["{" + ",".join(map(str, a.event_ids)) + "}" for a in attempts],
        "outcomes": [str(a.outcome) for a in attempts],
        "statuses": [a.status for a in attempts],
        "errors": [a.error for a in attempts],
        "durations": [a.duration_ms for a in attempts],
        "succeeded": succeeded,
        "failed": [i for a in failed for i in a.event_ids],
        "down": down,
        "any_failed": bool(failed),
        "any_succeeded": bool(succeeded),
        "backoff": backoff,
        "last_error": failed[-1].error if failed else None,
    }
    await conn.execute(text(_RECORD), params)
    return down


async def back_off(conn: AsyncConnection, endpoint_id: uuid.UUID, owner: str, backoff: float, error: str) -> None:
    """Count a failure that could not be recorded with its page (the log write itself failed): the endpoint
    still waits `backoff` seconds instead of being tried again at once."""
    await conn.execute(text(
        "UPDATE webhook_endpoints SET failures = failures + 1, failing_since = COALESCE(failing_since, now()), "
        "retry_at = now() + make_interval(secs => :backoff), last_failure_at = now(), last_error = :error, "
        "updated_at = now() WHERE id = :id AND lease_owner = :owner"),
        {"id": endpoint_id, "owner": owner, "backoff": backoff, "error": error})  # fmt: skip


async def give_up(conn: AsyncConnection, older_than: float, disable_after: float) -> tuple[int, int]:
    """Drop queued events that were tried and are older than `older_than` seconds (logged as `abandoned`,
    one log row per endpoint), and disable endpoints that have failed for `disable_after` seconds with no
    success and still have events to deliver (one with nothing queued is not being tried, so its last
    failure says nothing about now). Returns (events given up, endpoints disabled)."""
    disabled = (await conn.execute(text("""
        UPDATE webhook_endpoints e SET enabled = false, disabled_at = now(), lease_owner = NULL, lease_until = NULL,
            disabled_reason = 'failing since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
                || ' UTC with no successful delivery; last error: ' || COALESCE(last_error, 'none'),
            updated_at = now()
        WHERE enabled AND failing_since < now() - make_interval(secs => :after)
          AND EXISTS (SELECT 1 FROM webhook_queue q WHERE q.endpoint_id = e.id)
        RETURNING id"""), {"after": disable_after})).all()  # fmt: skip
    abandoned = (await conn.execute(text(f"""
        WITH gone AS (
            DELETE FROM webhook_queue q
            WHERE q.attempts > 0 AND q.at < now() - make_interval(secs => :older)
            RETURNING q.endpoint_id, q.event_id
        ),
        log AS (
            INSERT INTO webhook_deliveries (endpoint_id, event_ids, outcome, error)
            SELECT endpoint_id, array_agg(event_id ORDER BY event_id), '{WebhookOutcome.ABANDONED}', :why
            FROM gone GROUP BY endpoint_id
        )
        SELECT count(*) FROM gone"""), {"older": older_than, "why": f"not delivered within {older_than:g} s"}
    )).scalar_one()  # fmt: skip
    return int(abandoned), len(disabled)


async def prune_log(conn: AsyncConnection, keep_days: float) -> int:
    """Delete delivery log rows older than `keep_days`."""
    result = await conn.execute(
        text("DELETE FROM webhook_deliveries WHERE at < now() - make_interval(secs => :s)"), {"s": keep_days * 86400}
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Backlog:
    """One endpoint's waiting events, for /metrics."""

    endpoint_id: uuid.UUID
    enabled: bool
    failing: bool
    pending: int
    oldest_seconds: float


async def backlogs(conn: AsyncConnection) -> tuple[list[Backlog], float]:
    """Every endpoint's queue (count, age of its oldest event), and how long the oldest transaction that holds
    the outbox's horizon back has been running (0: none). That transaction may be a session left idle in a
    transaction or a prepared transaction; without pg_read_all_stats other roles' sessions are not seen."""
    rows = await conn.execute(text(
        "SELECT e.id, e.enabled, e.failing_since IS NOT NULL AS failing, count(q.event_id) AS pending, "
        "COALESCE(EXTRACT(EPOCH FROM now() - min(q.at)), 0) AS oldest "
        "FROM webhook_endpoints e LEFT JOIN webhook_queue q ON q.endpoint_id = e.id GROUP BY e.id ORDER BY e.id"
    ))  # fmt: skip
    held = (await conn.execute(text(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - LEAST("
        "(SELECT min(xact_start) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()), "
        "(SELECT min(prepared) FROM pg_prepared_xacts))), 0)"))).scalar_one()  # fmt: skip
    return [Backlog(r.id, r.enabled, r.failing, int(r.pending), max(0.0, float(r.oldest))) for r in rows], max(
        0.0, float(held)
    )
