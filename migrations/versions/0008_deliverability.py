"""The deliverability loop: the suppression list, provider feedback, campaign guard rails.

- `suppressions`: one row per (channel, normalised address, category). `category` is `''`
  for an entry that applies to every category; only unsubscribes name one. The primary key
  is what a worker probes once per claimed message (inside the claim statement), so the
  check costs an index probe, not a round trip. `id` orders the list newest first for
  `GET /suppressions` (a cursor that is a number: every cursor the API documents decodes).
- `provider_events`: the SNS MessageIds already applied, so a replayed notification changes
  nothing (SNS delivers at least once, and retries what it thinks failed).
- `pending_feedback`: SES reports that arrived before the worker recorded the message's SES id
  (SES can report a bounce within a second or two of accepting the email, before the worker's
  chunk is written); the reconciler applies them once the id is there, for a day.
- `messages.bounced_at` / `complained_at`: a message counts once in its campaign's rates,
  however many reports arrive for it.
- `messages_by_provider_id`: SES events name the message by the id SES gave it. Partial
  (`provider = 'ses'`): messages to other providers (the mock in every benchmark) neither pay
  for it nor grow it. Built CONCURRENTLY, so a large table keeps taking writes meanwhile.
- `campaigns`: bounce, complaint and unsubscribe counts; why the guard paused it; and what the
  guard judges since the last resume (`guard_since`): the messages attempted then
  (`guard_attempted_base`) and the bounces and complaints of messages sent after it
  (`guard_bounces`, `guard_complaints`). A resumed campaign is judged on what it sends from
  then on, not paused again by late reports about what it sent before the pause.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

REASONS = "'hard_bounce', 'complaint', 'unsubscribed', 'invalid_token', 'opted_out_sms', 'manual'"

UPGRADE = f"""
CREATE TABLE suppressions (
    channel text NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
    address text NOT NULL,
    category text NOT NULL DEFAULT '',
    reason text NOT NULL CHECK (reason IN ({REASONS})),
    detail text,
    message_id bigint,
    campaign_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    PRIMARY KEY (channel, address, category)
);
CREATE TABLE provider_events (
    source text NOT NULL,
    event_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX provider_events_age ON provider_events (received_at);
CREATE TABLE pending_feedback (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider text NOT NULL,
    provider_message_id text NOT NULL,
    kind text NOT NULL,
    detail text,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_feedback_by_provider_id ON pending_feedback (provider_message_id);
ALTER TABLE messages ADD COLUMN bounced_at timestamptz, ADD COLUMN complained_at timestamptz;
ALTER TABLE campaigns ADD COLUMN bounce_count integer NOT NULL DEFAULT 0,
    ADD COLUMN complaint_count integer NOT NULL DEFAULT 0,
    ADD COLUMN unsubscribe_count integer NOT NULL DEFAULT 0,
    ADD COLUMN paused_reason text,
    ADD COLUMN guard_since timestamptz,
    ADD COLUMN guard_attempted_base integer NOT NULL DEFAULT 0,
    ADD COLUMN guard_bounces integer NOT NULL DEFAULT 0,
    ADD COLUMN guard_complaints integer NOT NULL DEFAULT 0
"""

DOWNGRADE = """
ALTER TABLE campaigns DROP COLUMN guard_complaints, DROP COLUMN guard_bounces, DROP COLUMN guard_attempted_base,
    DROP COLUMN guard_since,
    DROP COLUMN paused_reason, DROP COLUMN unsubscribe_count, DROP COLUMN complaint_count, DROP COLUMN bounce_count;
ALTER TABLE messages DROP COLUMN complained_at, DROP COLUMN bounced_at;
UPDATE messages SET skip_reason = 'opted_out' WHERE skip_reason = 'suppressed';
DROP TABLE pending_feedback;
DROP TABLE provider_events;
DROP TABLE suppressions
"""


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_by_provider_id "
            "ON messages (provider_message_id) WHERE provider = 'ses'"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS messages_by_provider_id")
    _run(DOWNGRADE)
