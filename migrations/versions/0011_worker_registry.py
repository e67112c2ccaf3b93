"""Worker registry: which worker holds each claimed message, so a dead worker's claims come back in seconds.

- `workers`: one row per worker process started (`notifq worker`), numbered by a serial. The
  name is the id its heartbeats carry in Redis (`<host>-<pid>-<random>`). The reconciler's
  liveness check reads this table each second and asks Redis whether each registered worker's
  heartbeat still lives; one that has expired is marked `lost_at` and its claims are taken back
  at once instead of when their lease (60 s) runs out. A graceful stop sets `stopped_at`.
  PostgreSQL, not Redis, keeps the list: a flushed Redis forgets every heartbeat and every
  worker, and the claims of a worker that died during the flush must still be found.
- `messages.claimed_by`: the number of the worker whose claim made the message `sending`,
  written by the claim statement itself (no extra round trip; 4 bytes). Kept after the
  outcome as a record of who sent it. No foreign key: the hot path must not take a lock on
  the worker's row with every claim. Without a default, so adding it rewrites nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE workers (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz,
    lost_at timestamptz
);
ALTER TABLE messages ADD COLUMN claimed_by integer
"""

DOWNGRADE = """
ALTER TABLE messages DROP COLUMN claimed_by;
DROP TABLE workers
"""


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
