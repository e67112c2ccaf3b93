"""Subscribers with preferences, the in-app channel, and the `skipped` terminal status.

- `subscribers`: people, keyed by the caller's own user id. `preferences` is one JSON
  document (`{"channels": {...}, "categories": {...}}`) read with the profile in the same
  index probe when a worker claims a message; a table per preference would cost a join
  per claim for what is almost always a handful of booleans.
- `messages` gains who it is for (`subscriber_id`), its `category`, `dedup_key`, why it
  was skipped, and the in-app receipts `delivered_at` (ACK) and `read_at`. No foreign key
  to subscribers: erasure deletes the profile and redacts the messages, which stay counted.
- `messages_by_subscriber (subscriber_id, id)` serves the inbox (newest or oldest first),
  the replay of un-ACKed notifications on connect, and erasure; partial, so the campaign
  messages sent to plain addresses (nearly all rows today) neither pay for it nor grow it.
- `campaigns.skipped_count`: the counters keep summing to the total (sent + failed +
  cancelled + skipped). All added columns are nullable or have a constant default: instant
  on a large table (no rewrite).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATUSES = "'pending', 'queued', 'sending', 'sent', 'failed', 'cancelled'"
CHANNELS = "'email', 'sms', 'push'"

UPGRADE = f"""
CREATE TABLE subscribers (
    id text PRIMARY KEY,
    email text,
    phone text,
    push_tokens text[] NOT NULL DEFAULT '{{}}',
    locale text,
    timezone text,
    data jsonb,
    preferences jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN ({STATUSES}, 'skipped'));
ALTER TABLE messages DROP CONSTRAINT messages_channel_check;
ALTER TABLE messages ADD CONSTRAINT messages_channel_check CHECK (channel IN ({CHANNELS}, 'inapp'));
ALTER TABLE campaigns DROP CONSTRAINT campaigns_channel_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_channel_check CHECK (channel IN ({CHANNELS}, 'inapp'));
ALTER TABLE messages ADD COLUMN subscriber_id text, ADD COLUMN category text, ADD COLUMN dedup_key text,
    ADD COLUMN skip_reason text, ADD COLUMN delivered_at timestamptz, ADD COLUMN read_at timestamptz;
ALTER TABLE campaigns ADD COLUMN skipped_count integer NOT NULL DEFAULT 0, ADD COLUMN category text,
    ADD COLUMN audience text NOT NULL DEFAULT 'addresses' CHECK (audience IN ('addresses', 'subscribers'));
CREATE INDEX messages_by_subscriber ON messages (subscriber_id, id) WHERE subscriber_id IS NOT NULL
"""

DOWNGRADE = f"""
DROP INDEX messages_by_subscriber;
ALTER TABLE campaigns DROP COLUMN audience, DROP COLUMN category, DROP COLUMN skipped_count;
ALTER TABLE messages DROP COLUMN read_at, DROP COLUMN delivered_at, DROP COLUMN skip_reason, DROP COLUMN dedup_key,
    DROP COLUMN category, DROP COLUMN subscriber_id;
DELETE FROM messages WHERE channel = 'inapp';
DELETE FROM campaigns WHERE channel = 'inapp';
UPDATE messages SET status = 'cancelled' WHERE status = 'skipped';
ALTER TABLE campaigns DROP CONSTRAINT campaigns_channel_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_channel_check CHECK (channel IN ({CHANNELS}));
ALTER TABLE messages DROP CONSTRAINT messages_channel_check;
ALTER TABLE messages ADD CONSTRAINT messages_channel_check CHECK (channel IN ({CHANNELS}));
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN ({STATUSES}));
DROP TABLE subscribers
"""


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
