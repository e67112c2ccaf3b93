"""SQL for provider feedback: matching reports to messages, marking them, counting them per campaign.

Each function takes a whole batch (an SNS notification names up to 50 recipients; a worker's
chunk may hold many refusals) and runs one statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from notifq.vocabulary import CampaignStatus, Event, FeedbackKind


@dataclass(frozen=True)
class SentMessage:
    """The message a provider's report is about."""

    id: int
    campaign_id: uuid.UUID | None
    channel: str
    recipient: str
    subscriber_id: str | None


@dataclass(frozen=True)
class MessageReport:
    """One report about one message (several kinds at once are merged by the caller)."""

    message_id: int
    kinds: frozenset[FeedbackKind]
    events: tuple[tuple[str, str | None], ...]  # (audit event, detail), in order
    provider: str | None


@dataclass(frozen=True)
class GuardSample:
    """A campaign's counts after new bounces or complaints: what its guard decides on."""

    id: uuid.UUID
    status: CampaignStatus
    attempted: int  # messages sent or failed since the last resume (or ever)
    bounces: int  # of messages attempted since then
    complaints: int


async def seen(conn: AsyncConnection, source: str, event_id: str) -> bool:
    """Record a provider event id; True if it was applied before (a replay: apply nothing)."""
    result = await conn.execute(
        text("INSERT INTO provider_events (source, event_id) VALUES (:s, :e) ON CONFLICT DO NOTHING RETURNING 1"),
        {"s": source, "e": event_id},
    )
    return result.first() is None


# The provider whose reports name messages by its own id. A literal in the SQL, not a parameter: the index
# `messages_by_provider_id` is partial (`WHERE provider = 'ses'`), and a generic plan with `provider = $1`
# could not prove it applies (a sequential scan of every message per report).
REPORTING_PROVIDER = "ses"


async def by_provider_id(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, SentMessage]:
    """The messages SES knows by these ids."""
    if not ids:
        return {}
    result = await conn.execute(
        text(
            "SELECT id, campaign_id, channel, recipient, subscriber_id, provider_message_id FROM messages "
            f"WHERE provider = '{REPORTING_PROVIDER}' AND provider_message_id = ANY(CAST(:ids AS text[]))"
        ),
        {"ids": list(ids)},
    )
    return {r.provider_message_id: SentMessage(r.id, r.campaign_id, r.channel, r.recipient, r.subscriber_id)
            for r in result}  # fmt: skip


async def by_id(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, SentMessage]:
    if not ids:
        return {}
    result = await conn.execute(
        text("SELECT id, campaign_id, channel, recipient, subscriber_id FROM messages WHERE id = ANY(:ids)"),
        {"ids": list(ids)},
    )
    return {r.id: SentMessage(r.id, r.campaign_id, r.channel, r.recipient, r.subscriber_id) for r in result}


K = FeedbackKind
# Mark the messages (each timestamp set once), write their audit events, and count first-time bounces and
# complaints in their campaigns. The rows are locked in id order (FOR UPDATE in `o`), so two reports about
# one message count it once, and concurrent writers never deadlock on each other.
_APPLY = text(
    """
    WITH f AS (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:bounce AS boolean[]), CAST(:complaint AS boolean[]),
                                    CAST(:delivery AS boolean[])) AS f(id, bounce, complaint, delivery)),
    o AS MATERIALIZED (
        SELECT m.id, m.campaign_id, f.bounce AND m.bounced_at IS NULL AS new_bounce,
               f.complaint AND m.complained_at IS NULL AS new_complaint, f.delivery, m.updated_at AS attempted_at
        FROM f JOIN messages m ON m.id = f.id ORDER BY m.id FOR UPDATE OF m
    ),
    marked AS (
        UPDATE messages m SET
            bounced_at = CASE WHEN o.new_bounce THEN now() ELSE m.bounced_at END,
            complained_at = CASE WHEN o.new_complaint THEN now() ELSE m.complained_at END,
            delivered_at = CASE WHEN o.delivery THEN COALESCE(m.delivered_at, now()) ELSE m.delivered_at END
        FROM o WHERE m.id = o.id AND (o.new_bounce OR o.new_complaint OR o.delivery)
        RETURNING m.id
    ),
    ev AS (
        INSERT INTO message_events (message_id, event, detail, provider)
        SELECT e.id, e.event, e.detail, e.provider
        FROM unnest(CAST(:ev_ids AS bigint[]), CAST(:ev_events AS text[]), CAST(:ev_details AS text[]),
                    CAST(:ev_providers AS text[])) AS e(id, event, detail, provider)
        WHERE e.id IN (SELECT id FROM o)
    ),
    d AS (
        -- The guard counts only messages attempted since the last resume (a late report about a message sent
        -- before the pause must not pause the resumed campaign again).
        SELECT o.campaign_id, count(*) FILTER (WHERE new_bounce) AS b, count(*) FILTER (WHERE new_complaint) AS c,
            count(*) FILTER (WHERE new_bounce AND (k.guard_since IS NULL OR o.attempted_at >= k.guard_since)) AS gb,
            count(*) FILTER (WHERE new_complaint AND (k.guard_since IS NULL OR o.attempted_at >= k.guard_since))
                AS gc
        FROM o JOIN campaigns k ON k.id = o.campaign_id GROUP BY o.campaign_id
    )
    UPDATE campaigns c SET bounce_count = c.bounce_count + d.b, complaint_count = c.complaint_count + d.c,
        guard_bounces = c.guard_bounces + d.gb, guard_complaints = c.guard_complaints + d.gc, updated_at = now()
    FROM d WHERE c.id = d.campaign_id AND (d.b > 0 OR d.c > 0)
    RETURNING c.id, c.status, c.sent_count + c.failed_count - c.guard_attempted_base AS attempted,
        c.guard_bounces, c.guard_complaints
    """
)


async def apply(conn: AsyncConnection, reports: Sequence[MessageReport]) -> list[GuardSample]:
    """Apply reports about messages; returns the campaigns whose bounce or complaint counts moved."""
    if not reports:
        return []
    reports = sorted(reports, key=lambda r: r.message_id)
    events = [(r.message_id, event, detail, r.provider) for r in reports for event, detail in r.events]
    result = await conn.execute(_APPLY, {
        "ids": [r.message_id for r in reports],
        "bounce": [K.HARD_BOUNCE in r.kinds for r in reports],
        "complaint": [K.COMPLAINT in r.kinds for r in reports],
        "delivery": [K.DELIVERY in r.kinds for r in reports],
        "ev_ids": [e[0] for e in events], "ev_events": [e[1] for e in events],
        "ev_details": [e[2] for e in events], "ev_providers": [e[3] for e in events],
    })  # fmt: skip
    return [_sample(r) for r in result]


def _sample(r: Any) -> GuardSample:
    return GuardSample(r.id, CampaignStatus(r.status), r.attempted, r.guard_bounces, r.guard_complaints)


async def guarded(conn: AsyncConnection) -> list[GuardSample]:
    """Sending campaigns with bounces or complaints since their last resume: the reconciler's guard round
    catches a campaign whose reports came before it had sent NOTIFQ_GUARD_MIN_SENT messages."""
    result = await conn.execute(
        text(
            "SELECT id, status, sent_count + failed_count - guard_attempted_base AS attempted, guard_bounces, "
            f"guard_complaints FROM campaigns WHERE status IN ('{CampaignStatus.PENDING}', "
            f"'{CampaignStatus.PROCESSING}') AND (guard_bounces > 0 OR guard_complaints > 0)"
        )
    )
    return [_sample(r) for r in result]


async def forget_push_token(conn: AsyncConnection, pairs: Sequence[tuple[str, str]]) -> int:
    """Remove dead device tokens from the subscribers that gave them: (subscriber id, token)."""
    if not pairs:
        return 0
    pairs = sorted(set(pairs))
    result = await conn.execute(
        text(
            "UPDATE subscribers s SET push_tokens = array_remove(s.push_tokens, p.token), updated_at = now() "
            "FROM unnest(CAST(:sids AS text[]), CAST(:tokens AS text[])) AS p(sid, token) "
            "WHERE s.id = p.sid AND p.token = ANY(s.push_tokens)"
        ),
        {"sids": [p[0] for p in pairs], "tokens": [p[1] for p in pairs]},
    )
    return int(result.rowcount)


async def count_unsubscribe(conn: AsyncConnection, campaign_id: uuid.UUID) -> None:
    await conn.execute(
        text("UPDATE campaigns SET unsubscribe_count = unsubscribe_count + 1, updated_at = now() WHERE id = :id"),
        {"id": campaign_id},
    )


async def event(conn: AsyncConnection, message_id: int, event_name: str, detail: str | None) -> None:
    await conn.execute(
        text("INSERT INTO message_events (message_id, event, detail) VALUES (:id, :e, :d)"),
        {"id": message_id, "e": event_name, "d": detail},
    )


async def prune_events(conn: AsyncConnection, older_than_days: float) -> int:
    """Forget provider event ids older than SNS would ever retry (its retries end within hours)."""
    result = await conn.execute(
        text("DELETE FROM provider_events WHERE received_at < now() - make_interval(days => :d)"),
        {"d": older_than_days},
    )
    return int(result.rowcount)


@dataclass(frozen=True)
class UnsubscribeTarget:
    """Who a message's unsubscribe link speaks for, and from what."""

    message_id: int
    channel: str
    recipient: str
    subscriber_id: str | None
    campaign_id: uuid.UUID | None
    category: str | None  # the message's, or its campaign's
    done: bool  # this link was used before


async def unsubscribe_target(conn: AsyncConnection, message_id: int, *, lock: bool) -> UnsubscribeTarget | None:
    """The message behind a link; `lock` serialises two uses of one link (each counts once). The lock is
    taken by its own statement first: read in the same one, `done` would come from the snapshot taken
    before waiting for the lock, and every waiter would count the link again."""
    if lock:
        await conn.execute(text("SELECT 1 FROM messages WHERE id = :id FOR UPDATE"), {"id": message_id})
    result = await conn.execute(
        text(
            "SELECT m.id, m.channel, m.recipient, m.subscriber_id, m.campaign_id, COALESCE(m.category, c.category) "
            "AS category, EXISTS (SELECT 1 FROM message_events e WHERE e.message_id = m.id AND e.event = :ev) AS done "
            "FROM messages m LEFT JOIN campaigns c ON c.id = m.campaign_id WHERE m.id = :id"
        ),
        {"id": message_id, "ev": Event.UNSUBSCRIBED},
    )
    r = result.first()
    if r is None:
        return None
    return UnsubscribeTarget(r.id, r.channel, r.recipient, r.subscriber_id, r.campaign_id, r.category, r.done)


async def lock_preferences(conn: AsyncConnection, subscriber_id: str) -> dict[str, Any] | None:
    result = await conn.execute(
        # NO KEY UPDATE: a campaign being inserted holds FOR KEY SHARE on its subscribers until it commits.
        text("SELECT preferences FROM subscribers WHERE id = :id FOR NO KEY UPDATE"),
        {"id": subscriber_id},
    )
    row = result.first()
    return dict(row.preferences or {}) if row else None


@dataclass(frozen=True)
class CampaignFeedbackCounts:
    id: uuid.UUID
    status: str
    sent: int
    bounces: int
    complaints: int
    unsubscribes: int


async def open_campaign_counts(conn: AsyncConnection, limit: int = 200) -> list[CampaignFeedbackCounts]:
    """Campaigns still sending (or paused) that have feedback, for /metrics: a bounded set of series."""
    result = await conn.execute(
        text(
            f"SELECT id, status, sent_count + failed_count AS sent_count, bounce_count, complaint_count, "
            "unsubscribe_count FROM campaigns "
            f"WHERE status IN ('{CampaignStatus.PENDING}', '{CampaignStatus.PROCESSING}', '{CampaignStatus.PAUSED}') "
            "AND (bounce_count > 0 OR complaint_count > 0 OR unsubscribe_count > 0) "
            "ORDER BY created_at DESC LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [CampaignFeedbackCounts(r.id, r.status, r.sent_count, r.bounce_count, r.complaint_count,
                                   r.unsubscribe_count) for r in result]  # fmt: skip


@dataclass(frozen=True)
class PendingReport:
    provider_message_id: str
    kind: FeedbackKind
    detail: str | None


async def defer(conn: AsyncConnection, reports: Sequence[PendingReport]) -> None:
    """Keep reports about SES ids no message holds yet (the worker has not recorded its chunk)."""
    if not reports:
        return
    await conn.execute(
        text(
            f"INSERT INTO pending_feedback (provider, provider_message_id, kind, detail) "
            f"SELECT '{REPORTING_PROVIDER}', * FROM unnest(CAST(:ids AS text[]), CAST(:kinds AS text[]), "
            "CAST(:details AS text[]))"
        ),
        {"ids": [r.provider_message_id for r in reports], "kinds": [r.kind for r in reports],
         "details": [r.detail for r in reports]},
    )  # fmt: skip


async def take_matched(conn: AsyncConnection, limit: int = 1000) -> list[tuple[int, PendingReport]]:
    """Remove and return pending reports whose message now holds their SES id: (message id, report)."""
    result = await conn.execute(
        text(
            f"""
            DELETE FROM pending_feedback p USING (
                SELECT p2.id AS pid, m.id AS message_id FROM pending_feedback p2
                JOIN messages m ON m.provider = '{REPORTING_PROVIDER}'
                    AND m.provider_message_id = p2.provider_message_id
                ORDER BY p2.id LIMIT :limit FOR UPDATE OF p2 SKIP LOCKED
            ) hit
            WHERE p.id = hit.pid
            RETURNING hit.message_id, p.provider_message_id, p.kind, p.detail
            """
        ),
        {"limit": limit},
    )
    return [(r.message_id, PendingReport(r.provider_message_id, FeedbackKind(r.kind), r.detail)) for r in result]


async def drop_stale_pending(conn: AsyncConnection, older_than_hours: float) -> int:
    """Reports about emails notifq never recorded (sent by something else, or lost): given up on."""
    result = await conn.execute(
        text("DELETE FROM pending_feedback WHERE received_at < now() - make_interval(hours => :h)"),
        {"h": older_than_hours},
    )
    return int(result.rowcount)
