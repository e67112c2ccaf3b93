"""A BRIN index on message_events.at, for pruning the audit trail by age.

BRIN, not B-tree: events are appended in time order, so a block-range summary finds the
old ones at a fraction of the size, and keeping it current costs the hot path (two
events per delivered message) next to nothing, where a B-tree on `at` would add an
index insert per event.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX message_events_at ON message_events USING brin (at)")


def downgrade() -> None:
    op.execute("DROP INDEX message_events_at")
