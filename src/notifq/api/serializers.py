"""Rows to the API's camelCase JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notifq.db.campaigns_repo import CampaignRow
from notifq.db.messages_repo import MessageRow


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def campaign_json(c: CampaignRow) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "name": c.name,
        "subject": c.subject,
        "status": c.status,
        "totalMessages": c.total_messages,
        "sentCount": c.counts["sent"],
        "failedCount": c.counts["failed"],
        "progress": dict(c.counts),
        "createdAt": iso(c.created_at),
        "updatedAt": iso(c.updated_at),
        "completedAt": iso(c.completed_at),
    }


def message_json(m: MessageRow) -> dict[str, Any]:
    return {
        "id": str(m.id),
        "recipient": m.recipient,
        "status": m.status,
        "attempts": m.attempts,
        "lastError": m.last_error,
        "updatedAt": iso(m.updated_at),
    }
