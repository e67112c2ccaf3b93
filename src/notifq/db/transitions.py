"""Every change of a message's status goes through one statement shape.

A transition is an `UPDATE … RETURNING` (the CTE `moved`) that reports, per message,
its campaign, channel, old and new status, and an audit event. The same statement then
moves the campaign's per-status counters (completing the campaign exactly once when its
last message lands), moves the per-channel counts behind `GET /stats`, and appends the
audit events. Run in autocommit on the hot path, so the campaign row and the count rows
are locked only inside the server for one statement, never across a client round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from notifq.addresses import suppression_key_sql
from notifq.vocabulary import CampaignStatus, Event, Lane, MessageStatus, SuppressionReason

COUNT_SHARDS = 16  # message_counts rows per (channel, status): see migration 0002

# The columns every `moved` CTE must return (more may follow).
MOVED_COLUMNS = "id, campaign_id, channel, old_status, status, attempts, event, detail, provider"


def sql_in(members: Iterable[StrEnum]) -> str:
    """The members as SQL literals for an `IN (…)` list: `'sent', 'failed'` (enum values, never user input)."""
    return ", ".join(f"'{m}'" for m in members)


S, C, E = MessageStatus, CampaignStatus, Event  # short names for the SQL below
_OPEN_CAMPAIGN = sql_in((C.PENDING, C.PROCESSING, C.PAUSED))
_COMPLETE = (
    f"c.status IN ({_OPEN_CAMPAIGN}) AND c.sent_count + d.sent + c.failed_count + d.failed "
    "+ c.cancelled_count + d.cancelled + c.skipped_count + d.skipped = c.total_messages"
)


def transition(moved_sql: str, *, events: bool = True, before: str = "") -> str:
    """Wrap `moved_sql` (an UPDATE/INSERT … RETURNING MOVED_COLUMNS, …) into the full statement.

    `before`: CTEs `moved_sql` reads from, evaluated first (e.g. job numbers drawn once).
    """
    deltas = ", ".join(
        f"count(*) FILTER (WHERE status = '{s}') - count(*) FILTER (WHERE old_status = '{s}') AS {s}"
        for s in MessageStatus
    )
    counters = ", ".join(f"{s}_count = c.{s}_count + d.{s}" for s in MessageStatus)
    event_cte = (
        """,
    ev AS (
        INSERT INTO message_events (message_id, event, attempt, detail, provider)
        SELECT id, event, attempts, detail, provider FROM moved WHERE event IS NOT NULL
    )"""
        if events
        else ""
    )
    return f"""
    WITH {before + "," if before else ""} moved AS ({moved_sql}),
    d AS (SELECT campaign_id, {deltas} FROM moved WHERE campaign_id IS NOT NULL GROUP BY campaign_id),
    camp AS (
        UPDATE campaigns c SET {counters},
            status = CASE WHEN {_COMPLETE} THEN
                CASE WHEN c.failed_count + d.failed > 0 THEN '{C.COMPLETED_WITH_FAILURES}' ELSE '{C.COMPLETED}' END
                ELSE c.status END,
            completed_at = CASE WHEN {_COMPLETE} THEN now() ELSE c.completed_at END,
            updated_at = now()
        FROM d WHERE c.id = d.campaign_id
        RETURNING c.id
    ),
    cd AS (
        SELECT channel, status, sum(delta) AS delta FROM (
            SELECT channel, status, 1 AS delta FROM moved
            UNION ALL
            SELECT channel, old_status, -1 FROM moved WHERE old_status IS NOT NULL
        ) s GROUP BY channel, status HAVING sum(delta) <> 0
    ),
    counts AS (
        INSERT INTO message_counts (channel, status, shard, n)
        SELECT channel, status, (SELECT floor(random() * {COUNT_SHARDS})::smallint), delta
        FROM cd ORDER BY channel, status  -- one lock order: no deadlocks
        ON CONFLICT (channel, status, shard) DO UPDATE SET n = message_counts.n + EXCLUDED.n
    ){event_cte}
    SELECT * FROM moved
    """


# Claim: take up to :limit queued messages of a batch. No SELECT … FOR UPDATE (that writes a
# WAL record per locked row): the UPDATE re-checks `status = 'queued'`, so a concurrent
# claimer skips what another took. The chunk's ids are picked once (a MATERIALIZED CTE `p`), then
# each row is updated through the primary key: with statistics taken while nothing was queued the
# planner believes one message is open, and as a plain subquery it re-read the chunk once per open
# message (906 ms per 500-message claim; 64 ms with the batch's condition repeated outside, which
# still cost the full `make bench` million 6,476 msg/s). `status || ''` keeps the status index out of
# the outer scan, so the only way in is the primary key: 10.9 ms in that reproduction
# (scripts/claim_trap.py), the same as with fresh statistics. A paused campaign's messages go back
# to `pending`, a cancelled one's to `cancelled`, instead of being sent.
_HELD = sql_in((C.CANCELLED, C.PAUSED))
# The subscriber's profile and preferences come back with each claimed message (NULL for a
# message to a plain address): the worker decides there whether to send or skip it
# (worker/audience.py), with the profile as it is now, not as it was when it was accepted.
# `claimed_by` names the claiming worker (migration 0011): when its heartbeat expires, the liveness
# check (worker/liveness.py) takes back what it holds without waiting for the lease.


def address_of(channel: str) -> str:
    """SQL for the address a subscriber's message goes to, from its profile `s` and the channel
    expression `channel`; the worker resolves it again when it claims the message (worker/audience.py)."""
    return (
        f"CASE {channel} WHEN 'email' THEN s.email WHEN 'sms' THEN s.phone "
        "WHEN 'push' THEN s.push_tokens[cardinality(s.push_tokens)] WHEN 'inapp' THEN s.id END"
    )


# Is the address the message would go to on the suppression list? One primary-key probe per claimed message,
# inside the claim (no round trip). An unsubscribe stops only bulk messages, of its category if it names one.
# A LATERAL join after the chunk is picked, not an EXISTS in the select list: for EXISTS the planner may build
# a hashed SubPlan, reading the whole list into a hash table on every claim (115-220 ms per 500-message claim
# against 100,000 suppressions, PostgreSQL 15); a LATERAL subquery with LIMIT can only probe the index, and
# only for the rows actually claimed (the key computed once per row).
_ADDRESS = f"CASE WHEN q.subscriber_id IS NULL THEN q.recipient ELSE {address_of('q.channel')} END"
_SUPPRESSION_PROBE = f"""LEFT JOIN LATERAL (SELECT 1 AS hit FROM suppressions x
            WHERE x.channel = sel.q_channel AND x.address = sel.q_key
              AND (x.reason <> '{SuppressionReason.UNSUBSCRIBED}'
                   OR (sel.q_priority = '{Lane.BULK}' AND x.category IN ('', sel.q_category)))
            LIMIT 1) sup ON true"""


def _claim(candidates: str) -> str:
    """The claim statement for the queued messages `candidates` (a FROM item `q` with `id`,
    `campaign_id`, `subscriber_id`), oldest first."""
    return transition(
        f"""
    UPDATE messages m SET
        status = CASE p.campaign_status WHEN '{C.CANCELLED}' THEN '{S.CANCELLED}' WHEN '{C.PAUSED}' THEN '{S.PENDING}'
                 ELSE '{S.SENDING}' END,
        attempts = CASE WHEN p.campaign_status IN ({_HELD}) THEN m.attempts ELSE m.attempts + 1 END,
        lease_until = CASE WHEN p.campaign_status IN ({_HELD}) THEN NULL
                      ELSE now() + make_interval(secs => :lease) END,
        claimed_by = CASE WHEN p.campaign_status IN ({_HELD}) THEN m.claimed_by ELSE CAST(:worker AS integer) END,
        updated_at = now()
    FROM p
    WHERE m.id = p.id AND m.status || '' = '{S.QUEUED}'
    RETURNING m.id, m.campaign_id, m.channel, '{S.QUEUED}'::text AS old_status, m.status, m.attempts,
        CASE m.status WHEN '{S.SENDING}' THEN '{E.ATTEMPT}' WHEN '{S.CANCELLED}' THEN '{E.CANCELLED}'
            ELSE '{E.PAUSED}' END AS event,
        NULL::text AS detail, NULL::text AS provider,
        m.recipient, m.subject, m.body, m.data, m.vars, m.priority, m.subscriber_id, m.category, m.dedup_key,
        m.created_at, p.s_id, p.s_email, p.s_phone, p.s_push_tokens, p.s_data, p.s_preferences, p.suppressed,
        COALESCE(m.category, p.campaign_category) AS unsubscribe_category
    """,
        before=f"""p AS MATERIALIZED (
            SELECT sel.*, sup.hit IS NOT NULL AS suppressed FROM (
                SELECT q.id, c.status AS campaign_status, s.id AS s_id, s.email AS s_email, s.phone AS s_phone,
                       s.push_tokens AS s_push_tokens, s.data AS s_data, s.preferences AS s_preferences,
                       c.category AS campaign_category, q.channel AS q_channel, q.priority AS q_priority,
                       COALESCE(q.category, c.category, '') AS q_category,
                       {suppression_key_sql("q.channel", _ADDRESS)} AS q_key
                FROM {candidates} LEFT JOIN campaigns c ON c.id = q.campaign_id
                LEFT JOIN subscribers s ON s.id = q.subscriber_id
                ORDER BY q.id LIMIT :limit) sel
            {_SUPPRESSION_PROBE})""",
    )


CLAIM = _claim(f"(SELECT * FROM messages WHERE job_id = :job_id AND status = '{S.QUEUED}') q")
# Many ready transactional batches at once (worker/express.py): one statement for all of them. Each
# batch is read through the job index on its own (LATERAL): with `job_id = ANY(…) ORDER BY id LIMIT`
# the planner, expecting ~500 rows per batch, walked the primary key from the oldest message instead,
# through a million-message campaign to the OTPs at its end (p50 600 ms per claim, `make bench --only
# priority`, 2026-12-01).
CLAIM_BATCHES = _claim(
    "unnest(CAST(:job_ids AS bigint[])) AS j(job_id) CROSS JOIN LATERAL (SELECT id, campaign_id, subscriber_id, "
    "channel, recipient, priority, category "
    f"FROM messages WHERE job_id = j.job_id AND status = '{S.QUEUED}' ORDER BY id LIMIT :limit) q",
)

_OUTCOMES = """unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:attempts AS int[]),
    CAST(:errors AS text[]), CAST(:jobs AS bigint[]), CAST(:providers AS text[]), CAST(:pmids AS text[]),
    CAST(:refunds AS boolean[]), CAST(:events AS text[]), CAST(:reasons AS text[]), CAST(:recipients AS text[]))
    AS r(id, status, attempts, error, job_id, provider, pmid, refund, event, reason, recipient)"""

# Record: the owner of the current attempt writes its outcome; `sent` is also accepted from
# an older attempt (the provider did take the message), so it is never sent again. A
# refunded attempt (throttled, or skipped while a provider's circuit was open) is given back.
# A skipped message keeps its reason (the event's detail too); a subscriber's message keeps
# the address it was sent to (resolved from the profile at claim time).
RECORD = transition(
    f"""
    UPDATE messages m SET
        status = r.status,
        attempts = m.attempts - CASE WHEN r.refund THEN 1 ELSE 0 END,
        last_error = CASE WHEN r.status IN ('{S.SENT}', '{S.SKIPPED}') THEN m.last_error ELSE r.error END,
        job_id = COALESCE(r.job_id, m.job_id), lease_until = NULL, updated_at = now(),
        provider = COALESCE(r.provider, m.provider),
        provider_message_id = COALESCE(r.pmid, m.provider_message_id),
        skip_reason = r.reason, recipient = CASE WHEN m.subscriber_id IS NULL THEN m.recipient
            ELSE COALESCE(r.recipient, m.recipient) END
    FROM {_OUTCOMES}
    WHERE m.id = r.id AND m.status = '{S.SENDING}' AND (r.status = '{S.SENT}' OR m.attempts = r.attempts)
    RETURNING m.id, m.campaign_id, m.channel, '{S.SENDING}'::text AS old_status, m.status, r.attempts AS attempts,
        r.event, COALESCE(r.error, r.reason) AS detail, r.provider, m.job_id, m.priority
    """
)


def _late_sent(old: MessageStatus, condition: str, detail: str) -> str:
    """A `sent` outcome that lost its claim (the worker was given up for dead) for a message now `old`: the
    provider took it, so it ends `sent`, once, with the address it went to."""
    return transition(
        f"""
    UPDATE messages m SET status = '{S.SENT}', lease_until = NULL, updated_at = now(),
        provider = COALESCE(r.provider, m.provider), provider_message_id = COALESCE(r.pmid, m.provider_message_id),
        recipient = CASE WHEN m.subscriber_id IS NULL THEN m.recipient
            ELSE COALESCE(r.recipient, m.recipient) END
    FROM {_OUTCOMES}
    WHERE m.id = r.id AND m.status = '{old}' {condition}
    RETURNING m.id, m.campaign_id, m.channel, '{old}'::text AS old_status, m.status, r.attempts AS attempts,
        '{E.SENT}'::text AS event, '{detail}'::text AS detail, r.provider, m.job_id, m.priority
    """
    )


# A late `sent` for a message the reconciler already put back in the queue.
RECORD_LATE_SENT = _late_sent(S.QUEUED, "", "after the message was re-queued")

# A late `sent` for a message failed as "outcome unknown" because its worker was given up for dead during its last
# attempt (the lease ran out, or the liveness check found no heartbeat, for a worker that was only slow or cut off):
# it was sent after all. Only that very attempt's loss qualifies (its `lost` event).
RECORD_SENT_AFTER_LOSS = _late_sent(
    S.FAILED,
    f"""AND m.attempts = r.attempts AND EXISTS (SELECT 1 FROM message_events e
        WHERE e.message_id = m.id AND e.event = '{E.LOST}' AND e.attempt = r.attempts)""",
    "after its worker was given up for dead",
)
