"""Rows to the API's camelCase JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from notifq.db.campaigns_repo import CampaignRow
from notifq.db.messages_repo import EventRow, MessageRow
from notifq.telemetry import WorkerBeat


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def iso_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def worker_json(beat: WorkerBeat) -> dict[str, Any]:
    return {
        "id": beat.id,
        "host": beat.host,
        "pid": beat.pid,
        "startedAt": iso_epoch(beat.started_at),
        "lastSeen": iso_epoch(beat.last_seen),
        "ratePerSecond": round(beat.rate, 1),
        "inFlight": beat.in_flight,
        "sent": beat.sent,
        "failed": beat.failed,
        "retried": beat.retried,
    }


def campaign_json(c: CampaignRow) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "name": c.name,
        "subject": c.subject,
        "status": c.status,
        "channel": c.channel,
        "sendAt": iso(c.send_at),
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


def notification_json(m: MessageRow, events: list[EventRow] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(m.id),
        "campaignId": str(m.campaign_id) if m.campaign_id else None,
        "channel": m.channel,
        "to": m.recipient,
        "subject": m.subject,
        "priority": m.priority,
        "status": m.status,
        "attempts": m.attempts,
        "provider": m.provider,
        "providerMessageId": m.provider_message_id,
        "lastError": m.last_error,
        "sendAt": iso(m.send_at),
        "createdAt": iso(m.created_at),
        "updatedAt": iso(m.updated_at),
    }
    if events is not None:
        # Acceptance is the row's creation; every later transition and attempt is an event row.
        accepted = {"at": iso(m.created_at), "event": "accepted", "attempt": None, "detail": None, "provider": None}
        body["events"] = [accepted] + [
            {"at": iso(e.at), "event": e.event, "attempt": e.attempt, "detail": e.detail, "provider": e.provider}
            for e in events
        ]
    return body
