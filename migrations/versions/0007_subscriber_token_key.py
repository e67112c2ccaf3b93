"""A per-subscriber token key: erasing a subscriber revokes its inbox tokens, even if its id comes back.

Subscriber tokens carry the key of the profile they were issued for (claim `key`). An erasure
deletes the row; a profile created later under the same id gets a new key, so the tokens of
the erased one stay refused. A random key rather than comparing the token's `iat` with the
row's `created_at`: that would depend on the API host's clock agreeing with PostgreSQL's
(see migration 0004). The table is new and small: the volatile default's rewrite costs nothing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE subscribers ADD COLUMN token_key uuid NOT NULL DEFAULT gen_random_uuid()")


def downgrade() -> None:
    op.execute("ALTER TABLE subscribers DROP COLUMN token_key")
