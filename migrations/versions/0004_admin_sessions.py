"""Revocable admin sessions: a token generation per admin and the revoked token ids.

A token carries its admin's `token_generation` (claim `gen`); changing the password
bumps it, which revokes every token issued before. A generation number rather than a
`tokens_valid_after` timestamp: comparing a token's `iat` (the API host's clock, whole
seconds) with a PostgreSQL `now()` would depend on two clocks agreeing and would refuse
a login made in the same second as the change. Logout revokes one token: its `jti` is
kept until the token would have expired anyway, then pruned. Deleting an admin deletes
its revocations (`ON DELETE CASCADE`): a deleted admin's tokens are refused for want of
an admin row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE admins ADD COLUMN token_generation integer NOT NULL DEFAULT 0")
    op.execute(
        """
        CREATE TABLE revoked_tokens (
            jti text PRIMARY KEY,
            admin_id uuid NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE revoked_tokens")
    op.execute("ALTER TABLE admins DROP COLUMN token_generation")
