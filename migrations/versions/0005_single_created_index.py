"""An index on single notifications' creation time, for GET /notifications?since=&until=.

Partial (`campaign_id IS NULL`), so campaign messages, which are nearly all rows, neither
pay for it nor make it large. `(created_at, id)` serves a time window newest first in the
cost of one page whatever the window: over 1,000,000 singles, a window 15 or 25 days back
took 0.1-0.2 ms, where the id order with the same filter walked every newer row first
(150-310 ms; EXPLAIN ANALYZE, PostgreSQL 18). Keeping it up costs no measurable time:
200,000 single inserts and two status updates each took 6.9 s with it and 6.6-7.2 s
without (noise of a shared machine). Built CONCURRENTLY: a large table keeps taking
writes while it builds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_single_created "
            "ON messages (created_at, id) WHERE campaign_id IS NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS messages_single_created")
