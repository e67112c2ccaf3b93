#!/usr/bin/env python3
"""The claim planner trap, reproduced: statistics taken while every message was `sent`, then a campaign queued.

    NOTIFQ_TRAP_DATABASE_URL=postgresql://… .venv/bin/python scripts/claim_trap.py setup|claim|batches [plan]

`setup` TRUNCATES messages, message_events and campaigns of that (migrated) database: use a
scratch one. `claim` / `batches` run EXPLAIN ANALYZE of transitions.CLAIM / CLAIM_BATCHES in a
rolled-back transaction and print the time (and the plan with `plan`). Figures: db/transitions.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid

import asyncpg

from notifq.db import transitions

DB = os.environ.get("NOTIFQ_TRAP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/notifq_prof")
PARAMS: dict[str, object] = {"job_id": 1001, "limit": 500, "lease": 60.0, "job_ids": [1001]}
INSERT = (
    "INSERT INTO messages (campaign_id, recipient, status, job_id, channel) "
    "SELECT $1, 'u' || g || '@example.com', $2, $3 + g / 500, 'email' FROM generate_series(1, $4) g"
)


def positional(sql: str) -> tuple[str, list[str]]:
    """SQLAlchemy's `:name` parameters as asyncpg's `$n`."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<!:):([a-z_]+)", number, sql), names


async def setup(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE messages, message_events, campaigns CASCADE")
    sent, queued = uuid.uuid4(), uuid.uuid4()
    for campaign, total in ((sent, 200_000), (queued, 100_000)):
        await conn.execute(
            "INSERT INTO campaigns (id, name, subject, body, status, total_messages, channel) "
            "VALUES ($1, 'trap', 's', 'b', 'processing', $2, 'email')",
            campaign, total,
        )  # fmt: skip
    await conn.execute(INSERT, sent, "sent", 1, 200_000)
    await conn.execute("ANALYZE messages")  # statistics from a table where nothing is queued
    await conn.execute(INSERT, queued, "queued", 1000, 100_000)


async def explain(conn: asyncpg.Connection, statement: str, show_plan: bool) -> None:
    sql, names = positional(statement)
    transaction = conn.transaction()
    await transaction.start()
    started = time.perf_counter()
    plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS OFF) " + sql, *[PARAMS[n] for n in names])
    print(f"{(time.perf_counter() - started) * 1000:.1f} ms")
    await transaction.rollback()
    if show_plan:
        print("\n".join(r[0] for r in plan[:30]))


async def main(what: str, show_plan: bool) -> None:
    conn = await asyncpg.connect(DB)
    try:
        if what == "setup":
            await setup(conn)
        else:
            await explain(conn, {"claim": transitions.CLAIM, "batches": transitions.CLAIM_BATCHES}[what], show_plan)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], len(sys.argv) > 2))
