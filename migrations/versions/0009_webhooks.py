"""Outbound webhooks: the audit trail read as an outbox, endpoints, their queue and delivery log.

- `message_events.tx`: the transaction that wrote each event (`pg_current_xact_id()`, as a bigint:
  xid8 has no BRIN operator class, and its 64 bits, epoch included, fit). The
  outbox reads events by transaction, not by id: ids are drawn before commit, so a reader that
  advanced past id N could miss a smaller id committed later (two workers' statements in
  flight, or a campaign's million-row insert). Every transaction older than the snapshot's
  `xmin` has ended, so `tx` in [cursor, xmin) is complete and never changes again: the cursor
  moves to `xmin` after each read, losing nothing and reading nothing twice. Added without a
  default first (no table rewrite), then the default applies to new rows only; old rows stay
  NULL and are never read (the cursor starts now). A B-tree, partial: only the events a webhook
  can subscribe to (not `attempt`, the most common). BRIN would cost less on insert, but once
  retention prunes old events their pages are reused by new ones, every block range widens to
  [old, new], and the outbox would scan the whole table five times a second.
- `webhook_outbox.system_id`: the cluster the cursor's transaction ids belong to. Restored into
  another cluster (pg_dump, logical replication), the ids start over: the dispatcher notices
  the change and starts the cursor afresh instead of waiting for ids to catch up.
- `campaign_events`: a campaign's status changes (started, paused, resumed, cancelled,
  completed), written by a trigger so every code path (the hot path's counters included) is
  covered without touching it; ids share the audit trail's sequence, so an event id names one
  event of either table.
- `webhook_endpoints`, `webhook_outbox` (the one cursor), `webhook_queue` (events matched to an
  endpoint, waiting for a 2xx), `webhook_deliveries` (each POST: its answer, for
  `GET /webhooks/{id}/deliveries`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The audit events a webhook can subscribe to (vocabulary.MESSAGE_WEBHOOK_EVENTS): `attempt`, one per message
# and attempt and the most common event, is not one, so the index skips it.
WEBHOOK_EVENTS = ", ".join(
    f"'{e}'"
    for e in ("sent", "failed", "skipped", "retry", "cancelled", "delivered", "read", "bounced", "soft_bounced",
              "complained", "unsubscribed")
)  # fmt: skip

UPGRADE = f"""
ALTER TABLE message_events ADD COLUMN tx bigint;
ALTER TABLE message_events ALTER COLUMN tx SET DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX message_events_tx ON message_events (tx) WHERE event IN ({WEBHOOK_EVENTS});
CREATE TABLE campaign_events (
    id bigint PRIMARY KEY DEFAULT nextval(pg_get_serial_sequence('message_events', 'id')),
    campaign_id uuid NOT NULL,
    type text NOT NULL,
    old_status text,
    status text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tx bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint
);
CREATE INDEX campaign_events_tx ON campaign_events (tx);
CREATE INDEX campaign_events_by_campaign ON campaign_events (campaign_id, id);
CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    events text[] NOT NULL,
    secret text NOT NULL,
    batch boolean NOT NULL DEFAULT false,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at timestamptz,
    failing_since timestamptz,
    failures integer NOT NULL DEFAULT 0,
    retry_at timestamptz,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error text,
    lease_owner text,
    lease_until timestamptz,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE webhook_outbox (
    id smallint PRIMARY KEY CHECK (id = 1),
    tx bigint NOT NULL,
    system_id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO webhook_outbox (id, tx, system_id)
SELECT 1, pg_snapshot_xmin(pg_current_snapshot())::text::bigint, system_identifier FROM pg_control_system();
CREATE TABLE webhook_queue (
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id bigint NOT NULL,
    type text NOT NULL,
    at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint_id, event_id)
);
-- An endpoint's next page: least tried first, then oldest (read straight off the index, no sort of the queue).
CREATE INDEX webhook_queue_next ON webhook_queue (endpoint_id, attempts, event_id);
CREATE TABLE webhook_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_ids bigint[] NOT NULL,
    outcome text NOT NULL,
    response_status integer,
    error text,
    duration_ms integer,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries USING brin (at)
"""

TRIGGER = """
CREATE FUNCTION notifq_campaign_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_events (campaign_id, type, old_status, status)
    VALUES (NEW.id, CASE
        WHEN NEW.status IN ('completed', 'completed_with_failures') THEN 'campaign.completed'
        WHEN NEW.status = 'paused' THEN 'campaign.paused'
        WHEN NEW.status = 'cancelled' THEN 'campaign.cancelled'
        WHEN NEW.status = 'processing' AND OLD.status = 'paused' THEN 'campaign.resumed'
        WHEN NEW.status = 'processing' THEN 'campaign.started'
        ELSE 'campaign.' || NEW.status END, OLD.status, NEW.status);
    RETURN NULL;
END $$
"""

TRIGGER_ON = """
CREATE TRIGGER campaign_status_changed AFTER UPDATE OF status ON campaigns
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION notifq_campaign_event()
"""

DOWNGRADE = """
DROP TRIGGER campaign_status_changed ON campaigns;
DROP FUNCTION notifq_campaign_event();
DROP TABLE webhook_deliveries;
DROP TABLE webhook_queue;
DROP TABLE webhook_outbox;
DROP TABLE webhook_endpoints;
DROP TABLE campaign_events;
DROP INDEX message_events_tx;
ALTER TABLE message_events DROP COLUMN tx
"""


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)
    op.execute(TRIGGER)
    op.execute(TRIGGER_ON)


def downgrade() -> None:
    _run(DOWNGRADE)
