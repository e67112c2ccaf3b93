"""What a campaign looks like when a command is done with it: the summary, and what to do about failures.

`campaign show`, `campaign create --watch` and `campaign retry --watch` all end with the same
summary: counts by status, how long the campaign took and its average rate. When failed messages
remain, the commands that list and retry them follow, ready to paste.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from notifq.client.progress import Snapshot, bar, duration
from notifq.client.tables import clean, parse_time, timestamp
from notifq.vocabulary import CampaignStatus


def summary(campaign: Mapping[str, Any], now: datetime | None = None) -> str:
    """Label and value per line, within 80 columns for everything but long names and subjects."""
    snapshot = Snapshot.of(campaign)
    rows: list[tuple[str, Any]] = [
        ("campaign", campaign.get("id")),
        ("name", campaign.get("name")),
        ("status", campaign.get("status")),
        ("channel", campaign.get("channel")),
        ("subject", campaign.get("subject")),
        ("created", timestamp(campaign.get("createdAt"))),
    ]
    if campaign.get("sendAt"):
        rows.append(("send at", timestamp(campaign["sendAt"])))
    if campaign.get("completedAt"):
        rows.append(("completed", timestamp(campaign["completedAt"])))
    took = run_seconds(campaign, now)
    if took is not None:
        so_far = "" if snapshot.terminal else " so far"
        rate = f", {snapshot.finished / took:.1f} msg/s on average" if took > 0 and snapshot.finished else ""
        rows.append(("duration", f"{duration(took)}{so_far}{rate}"))
    rows.append(("progress", f"{bar(snapshot.percent)} {snapshot.percent}%  {snapshot.finished} of "
                             f"{snapshot.total} finished"))  # fmt: skip
    rows.append(("messages", counts(campaign)))
    return "\n".join(f"{label:<10} {clean(value)}" for label, value in rows)


def counts(campaign: Mapping[str, Any]) -> str:
    """The statuses that hold messages, in the API's order (`-` when none do)."""
    progress = campaign.get("progress") or {}
    held = [f"{clean(status)} {clean(n)}" for status, n in progress.items() if n]
    return "  ".join(held) or "-"


def run_seconds(campaign: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """From its start (creation, or the time it was scheduled for) to completion, or to now while it runs."""
    starts = [t for t in (parse_time(campaign.get("createdAt")), parse_time(campaign.get("sendAt"))) if t]
    if not starts:
        return None
    end = parse_time(campaign.get("completedAt")) or now or datetime.now(UTC)
    return max(0.0, (end - max(starts)).total_seconds())


def failure_hints(campaign: Mapping[str, Any]) -> str | None:
    """The commands that list and retry the failed messages, if some remain and a retry is allowed."""
    failed = Snapshot.of(campaign).failed
    if not failed or campaign.get("status") == CampaignStatus.CANCELLED:
        return None
    campaign_id = clean(campaign.get("id"))
    return "\n".join([
        f"{failed} message{'s' if failed > 1 else ''} failed. List them with their last error:",
        f"  notifq campaign messages {campaign_id} --status failed",
        "Queue them again with fresh attempts, and follow them:",
        f"  notifq campaign retry {campaign_id} --watch",
    ])  # fmt: skip
