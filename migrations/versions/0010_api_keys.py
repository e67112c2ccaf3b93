"""API keys with scopes: long-lived credentials for the services that call notifq.

- `api_keys`: one row per key. The secret itself (`nq_` + 43 URL-safe characters, 32 random
  bytes) is shown once, in the answer to `POST /api-keys`, and never stored: `secret_hash` is
  its SHA-256. A plain, unsalted, fast hash is right here, unlike passwords: the secret has 256
  random bits, so there is no dictionary to try and a preimage search is out of reach whatever
  the hash costs; bcrypt (the admins' 12 rounds) would add ~250 ms to every request for no
  gain, and a salted hash could not be looked up by value. Unique: the lookup is by hash.
  `prefix` (`nq_` and the secret's first 6 characters) is stored for the listings, so a key
  can be recognised without ever showing it again.
- `scopes`: a non-empty subset of the scopes (vocabulary.Scope), checked here too.
- `created_by`: the admin the key acts for (the audit columns of what it creates name that
  admin). Deleting the admin deletes its keys (`ON DELETE CASCADE`), as it ends its tokens.
  `created_by_key`: the key that created this one, if a key did (an `admin`-scoped key may);
  revoking a key revokes the keys it created, so a leaked key cannot leave copies behind.
- `revoked_at`: a revoked key stays listed (for the record; audit logs name key ids);
  `last_used_at` is written at most once a minute per key and API process, in batches.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The scopes of vocabulary.Scope when this revision was written (a migration never imports the code's vocabulary).
SCOPES = ", ".join(f"'{s}'" for s in ("notifications:send", "campaigns:write", "read", "admin"))

UPGRADE = f"""
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    scopes text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY[{SCOPES}]::text[]),
    prefix text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    created_by uuid NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    created_by_key uuid REFERENCES api_keys(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_created_by_key ON api_keys (created_by_key) WHERE created_by_key IS NOT NULL;
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";"):  # one statement per execute (asyncpg prepares each)
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
