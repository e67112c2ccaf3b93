"""What the chaos suite checks once a campaign is over: the invariant (in SQL), duplicates and in-flight figures.

The invariant, for the scenario's one campaign (each scenario has a database of its own):
- nothing lost: the API accepted as many messages as were asked for, and the campaign has that
  many rows and that total;
- every message is in a terminal state (sent, failed, skipped, cancelled);
- one terminal transition each: a `sent` message has exactly one `sent` event in the audit
  trail, and no other message has any (a message was never recorded as sent twice);
- the campaign's per-status counters equal the per-status row counts;
- the campaign completed exactly once: a completed status, `completed_at`, and one
  `campaign.completed` row in `campaign_events`;
- the per-channel counts behind GET /stats (`message_counts`) equal the rows.

Duplicates are provider calls beyond one per message, counted by the mock itself
(scripts/chaos_worker.py writes each accepted call to a file). The audit trail's figures
(attempt, lost, retry events) are reported beside them, but an `attempt` event is a claim, not
a provider call: a worker killed between its claim and its send leaves one without a call.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from notifq.vocabulary import TERMINAL_MESSAGE_STATUSES, CampaignStatus, Event, MessageStatus

CALL = struct.Struct("<qh")  # as scripts/chaos_worker.py writes them
COMPLETED = (CampaignStatus.COMPLETED, CampaignStatus.COMPLETED_WITH_FAILURES)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def _counts(rows: Iterable[asyncpg.Record]) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in rows if r[1]}


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


async def invariant(conn: asyncpg.Connection, campaign_id: str, requested: int, accepted: int) -> list[Check]:
    rows = _counts(await conn.fetch("SELECT status, count(*) FROM messages WHERE campaign_id = $1 GROUP BY status",
                                    campaign_id))  # fmt: skip
    camp = await conn.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
    assert camp is not None
    total = sum(rows.values())
    checks = [Check("nothing lost", requested == accepted == camp["total_messages"] == total,
                    f"asked {requested:,}, accepted {accepted:,}, campaign total {camp['total_messages']:,}, "
                    f"rows {total:,}")]  # fmt: skip
    open_rows = {s: n for s, n in rows.items() if s not in TERMINAL_MESSAGE_STATUSES}
    checks.append(Check("every message terminal", not open_rows, f"rows: {_fmt(rows)}"))
    sent = await conn.fetchrow(
        f"""WITH s AS (SELECT e.message_id, count(*) AS n FROM message_events e JOIN messages m ON m.id = e.message_id
                       WHERE m.campaign_id = $1 AND e.event = '{Event.SENT}' GROUP BY e.message_id)
            SELECT count(*) FILTER (WHERE m.status = '{MessageStatus.SENT}' AND coalesce(s.n, 0) <> 1) AS sent_not_once,
                   count(*) FILTER (WHERE m.status <> '{MessageStatus.SENT}' AND s.n IS NOT NULL) AS unsent_with_event,
                   coalesce(max(s.n), 0) AS most
            FROM messages m LEFT JOIN s ON s.message_id = m.id WHERE m.campaign_id = $1""",
        campaign_id,
    )  # fmt: skip
    assert sent is not None
    once = sent["sent_not_once"] == 0 and sent["unsent_with_event"] == 0
    detail = (f"sent rows without exactly one `sent` event: {sent['sent_not_once']:,}; other rows with one: "
              f"{sent['unsent_with_event']:,}; most `sent` events on one message: {sent['most']}")  # fmt: skip
    checks.append(Check("one terminal transition each", once, detail))
    counters = {s.value: (int(camp[f"{s}_count"]), rows.get(s, 0)) for s in MessageStatus}
    wrong = {s: (c, r) for s, (c, r) in counters.items() if c != r}
    checks.append(Check("counters = rows", not wrong,
                        "every status" if not wrong else ", ".join(f"{s}: counter {c:,}, rows {r:,}"
                                                                   for s, (c, r) in wrong.items())))  # fmt: skip
    completions = await conn.fetchval(
        "SELECT count(*) FROM campaign_events WHERE campaign_id = $1 AND type = 'campaign.completed'", campaign_id
    )
    checks.append(Check("completed exactly once",
                        camp["status"] in COMPLETED and camp["completed_at"] is not None and completions == 1,
                        f"status {camp['status']}, completed_at {'set' if camp['completed_at'] else 'NULL'}, "
                        f"{completions} campaign.completed event(s)"))  # fmt: skip
    all_rows = _counts(await conn.fetch("SELECT status, count(*) FROM messages GROUP BY status"))
    channel = _counts(await conn.fetch("SELECT status, sum(n)::bigint FROM message_counts GROUP BY status"))
    checks.append(Check("per-channel counts = rows", channel == all_rows,
                        f"message_counts {_fmt(channel)}; rows {_fmt(all_rows)}"))  # fmt: skip
    return checks


async def audit_figures(conn: asyncpg.Connection, campaign_id: str) -> dict[str, int]:
    """Audit-trail events of the campaign's messages, by event."""
    return _counts(await conn.fetch(
        "SELECT e.event, count(*) FROM message_events e JOIN messages m ON m.id = e.message_id "
        "WHERE m.campaign_id = $1 GROUP BY e.event", campaign_id,
    ))  # fmt: skip


async def timing(conn: asyncpg.Connection, campaign_id: str) -> tuple[float | None, str]:
    """Seconds from the campaign's creation to its completion (server clock), and its status."""
    row = await conn.fetchrow(
        "SELECT status, extract(epoch FROM completed_at - created_at)::float8 AS s FROM campaigns WHERE id = $1",
        campaign_id,
    )
    assert row is not None
    return (None if row["s"] is None else float(row["s"])), str(row["status"])


async def sent_ids(conn: asyncpg.Connection, campaign_id: str) -> set[int]:
    rows = await conn.fetch(f"SELECT id FROM messages WHERE campaign_id = $1 AND status = '{MessageStatus.SENT}'",
                            campaign_id)  # fmt: skip
    return {int(r[0]) for r in rows}


def read_calls(path: Path) -> list[tuple[int, int]]:
    """(message id, attempt) of every call the mock accepted in one worker process."""
    data = path.read_bytes() if path.is_file() else b""
    whole = len(data) - len(data) % CALL.size  # a torn last record cannot happen with one write(2), but be safe
    return [(int(i), int(a)) for i, a in CALL.iter_unpack(data[:whole])]


@dataclass
class Calls:
    """Provider calls per message, over every worker process of a scenario."""

    per_message: Counter[int]
    per_file: dict[Path, set[tuple[int, int]]]

    @classmethod
    def read(cls, paths: Iterable[Path]) -> Calls:
        per_message: Counter[int] = Counter()
        per_file: dict[Path, set[tuple[int, int]]] = {}
        for path in paths:
            calls = read_calls(path)
            per_file[path] = set(calls)
            per_message.update(i for i, _ in calls)
        return cls(per_message, per_file)

    @property
    def total(self) -> int:
        return sum(self.per_message.values())

    @property
    def duplicates(self) -> int:
        return self.total - len(self.per_message)

    def duplicated(self) -> set[int]:
        return {i for i, n in self.per_message.items() if n > 1}


def snapshot_in_flight(first: Iterable[asyncpg.Record], second: Iterable[asyncpg.Record]) -> set[tuple[int, int]]:
    """Claimed and not recorded: `sending` (same id, same attempt) in both snapshots, taken 0.25 s and 1.5 s after
    the fault. A live worker records a chunk within milliseconds; a dead or cut-off one cannot, and its claims come
    back only after its heartbeat expires (seconds) or its lease ends."""
    a = {(int(r[0]), int(r[1])) for r in first}
    return a & {(int(r[0]), int(r[1])) for r in second}


def fault_figures(in_flight: set[tuple[int, int]], worker_calls: set[tuple[int, int]], calls: Calls) -> dict[str, int]:
    """Per fault: what the faulted worker had in flight, how much of it had reached the provider, and how many of
    those messages the provider got more than once in the end."""
    ids = {i for i, _ in in_flight}
    return {
        "in_flight": len(in_flight),
        "reached_provider": len(in_flight & worker_calls),
        "duplicated": sum(1 for i in ids if calls.per_message[i] > 1),
        "duplicate_calls": sum(calls.per_message[i] - 1 for i in ids if calls.per_message[i] > 1),
    }
