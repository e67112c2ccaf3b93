"""Initial schema: admins, campaigns with per-status counters, messages, the job sequence.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE admins (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    subject text,
    body text,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN
        ('pending', 'processing', 'completed', 'completed_with_failures', 'cancelled')),
    total_messages integer NOT NULL,
    -- Per-status counters, moved by the same transaction that moves the messages,
    -- so GET /campaigns/{id} never has to count a million rows.
    pending_count integer NOT NULL DEFAULT 0,
    queued_count integer NOT NULL DEFAULT 0,
    sending_count integer NOT NULL DEFAULT 0,
    sent_count integer NOT NULL DEFAULT 0,
    failed_count integer NOT NULL DEFAULT 0,
    cancelled_count integer NOT NULL DEFAULT 0,
    created_by uuid REFERENCES admins(id) ON DELETE SET NULL,
    enqueued_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX campaigns_newest ON campaigns (created_at DESC, id DESC);

-- Each arq job names a batch of messages by its number from this sequence.
CREATE SEQUENCE notifq_job_seq;

CREATE TABLE messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    recipient text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'queued', 'sending', 'sent', 'failed', 'cancelled')),
    attempts smallint NOT NULL DEFAULT 0,
    last_error text,
    job_id bigint,
    lease_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_by_campaign ON messages (campaign_id, id);
CREATE INDEX messages_failed_by_campaign ON messages (campaign_id, id) WHERE status = 'failed';
CREATE INDEX messages_open_by_job ON messages (job_id) WHERE status IN ('queued', 'sending');
CREATE INDEX messages_sending_lease ON messages (lease_until) WHERE status = 'sending';
"""

DOWNGRADE = """
DROP TABLE messages;
DROP SEQUENCE notifq_job_seq;
DROP TABLE campaigns;
DROP TABLE admins;
"""


def _run(script: str) -> None:
    # asyncpg prepares each statement, so a script goes one statement at a time.
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
