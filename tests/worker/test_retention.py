"""NOTIFQ_EVENT_RETENTION_DAYS: the reconciler prunes the audit trail by age, and only when asked."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.settings import Settings
from notifq.worker.deps import WorkerDeps
from notifq.worker.reconciler import PRUNE_BATCH, ReconcileReport, reconcile_once
from tests.conftest import wait_for
from tests.harness import running_worker

OLD = PRUNE_BATCH * 2 + 17  # more than one statement's worth


async def _seed(engine: AsyncEngine) -> None:
    """OLD events 40 days old, and three that must stay: 29 days, 1 hour and now."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO message_events (message_id, event, at) "
                "SELECT g, 'queued', now() - interval '40 days' FROM generate_series(1, :n) g"
            ),
            {"n": OLD},
        )
        await conn.execute(
            text(
                "INSERT INTO message_events (message_id, event, at) VALUES "
                "(1, 'attempt', now() - interval '29 days'), (2, 'sent', now() - interval '1 hour'), (3, 'sent', now())"
            )
        )


async def _ages(engine: AsyncEngine) -> tuple[int, int]:
    """(events older than 30 days, younger ones)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE at < now() - interval '30 days') AS old, "
                    "count(*) FILTER (WHERE at >= now() - interval '30 days') AS young FROM message_events"
                )
            )
        ).one()
    return int(row.old), int(row.young)


async def test_events_past_the_retention_are_pruned_and_younger_ones_kept(
    settings: Settings, engine: AsyncEngine
) -> None:
    await _seed(engine)
    async with running_worker(settings.with_(event_retention_days=30)):
        await wait_for(lambda: _none_old(engine), within=30, interval=0.2)
    assert await _ages(engine) == (0, 3)


async def _none_old(engine: AsyncEngine) -> bool:
    return (await _ages(engine))[0] == 0


async def test_without_a_retention_nothing_is_pruned(settings: Settings, engine: AsyncEngine) -> None:
    assert settings.event_retention_days == 0  # the default keeps the audit trail forever
    await _seed(engine)
    async with running_worker(settings) as runtime:
        deps = runtime.deps
        assert deps is not None
        report = await wait_for(lambda: _a_round(deps), within=10, interval=0.2)
    assert report.pruned_events == 0
    assert await _ages(engine) == (OLD, 3)


async def _a_round(deps: WorkerDeps) -> ReconcileReport | None:
    """A round that ran (the worker's own reconciler may hold the lock for a moment)."""
    report = await reconcile_once(deps)
    return report if report.ran else None
