"""Single notifications, channels, scheduling, pause, the audit trail, counters, idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE campaigns ADD COLUMN channel text NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'sms', 'push'));
ALTER TABLE campaigns ADD COLUMN send_at timestamptz;
ALTER TABLE campaigns DROP CONSTRAINT campaigns_status_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_status_check CHECK (status IN
    ('scheduled', 'pending', 'processing', 'paused', 'completed', 'completed_with_failures', 'cancelled'));

ALTER TABLE messages ALTER COLUMN campaign_id DROP NOT NULL;
ALTER TABLE messages ADD COLUMN channel text NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'sms', 'push'));
ALTER TABLE messages ADD COLUMN priority text NOT NULL DEFAULT 'bulk' CHECK (priority IN ('transactional', 'bulk'));
ALTER TABLE messages ADD COLUMN subject text;
ALTER TABLE messages ADD COLUMN body text;
ALTER TABLE messages ADD COLUMN data jsonb;
ALTER TABLE messages ADD COLUMN vars jsonb;
ALTER TABLE messages ADD COLUMN send_at timestamptz;
ALTER TABLE messages ADD COLUMN provider text;
ALTER TABLE messages ADD COLUMN provider_message_id text;
ALTER TABLE messages ADD COLUMN created_by uuid;
-- Scheduled (and paused) messages wait as `pending` until the scheduler releases what is due.
CREATE INDEX messages_due ON messages (send_at) WHERE status = 'pending';
-- Single notifications (no campaign): listing and the `to` filter.
CREATE INDEX messages_single ON messages (id) WHERE campaign_id IS NULL;
CREATE INDEX messages_single_to ON messages (recipient, id) WHERE campaign_id IS NULL;
-- Dead letters across campaigns.
CREATE INDEX messages_dead ON messages (id) WHERE status = 'failed';

-- The audit trail: one row per transition and attempt. No foreign key on purpose: the hot
-- path inserts two rows per delivered message, and an RI trigger per row would double that.
CREATE TABLE message_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    event text NOT NULL,
    attempt smallint,
    detail text,
    provider text
);
CREATE INDEX message_events_by_message ON message_events (message_id, id);

-- Counts by channel and status for GET /stats, moved by the statements that move messages.
-- Spread over 16 shards (summed when read): one row per (channel, status) would be a lock
-- every statement of every worker and API process queues on.
CREATE TABLE message_counts (
    channel text NOT NULL,
    status text NOT NULL,
    shard smallint NOT NULL DEFAULT 0,
    n bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, status, shard)
);
INSERT INTO message_counts (channel, status, n) SELECT channel, status, count(*) FROM messages GROUP BY 1, 2;

CREATE TABLE idempotency_keys (
    admin_id uuid NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    state text NOT NULL CHECK (state IN ('in_progress', 'done')),
    resource_kind text,
    resource_ids text[],
    response_status integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (admin_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
"""

DOWNGRADE = """
DROP TABLE idempotency_keys;
DROP TABLE message_counts;
DROP TABLE message_events;
DROP INDEX messages_dead;
DROP INDEX messages_single_to;
DROP INDEX messages_single;
DROP INDEX messages_due;
DELETE FROM messages WHERE campaign_id IS NULL;
ALTER TABLE messages DROP COLUMN created_by, DROP COLUMN provider_message_id, DROP COLUMN provider,
    DROP COLUMN send_at, DROP COLUMN vars, DROP COLUMN data, DROP COLUMN body, DROP COLUMN subject,
    DROP COLUMN priority, DROP COLUMN channel;
ALTER TABLE messages ALTER COLUMN campaign_id SET NOT NULL;
UPDATE campaigns SET status = 'processing' WHERE status IN ('scheduled', 'paused');
ALTER TABLE campaigns DROP CONSTRAINT campaigns_status_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_status_check CHECK (status IN
    ('pending', 'processing', 'completed', 'completed_with_failures', 'cancelled'));
ALTER TABLE campaigns DROP COLUMN send_at, DROP COLUMN channel;
"""


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
