"""What a worker process shares between its jobs, built in arq's on_startup."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.feedback import FeedbackService
from notifq.keys import RedisKeys
from notifq.providers.factory import ProviderFactory
from notifq.settings import Settings
from notifq.worker.breaker import CircuitBreaker
from notifq.worker.failover import Failover
from notifq.worker.fleet_limit import FleetLimits
from notifq.worker.metrics import WorkerMetrics
from notifq.worker.priority import PriorityGate
from notifq.worker.rate_limit import RateLimiter

CONTENT_CACHE_SIZE = 1024


@dataclass
class WorkerDeps:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    keys: RedisKeys
    providers: ProviderFactory
    limiter: RateLimiter
    in_flight: asyncio.Semaphore
    breaker: CircuitBreaker
    fleet: FleetLimits  # fleet-wide provider limits (NOTIFQ_PROVIDER_RATES)
    failover: Failover  # which of a channel's providers a message goes to
    gate: PriorityGate = field(default_factory=PriorityGate)
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the drain is over, before the background loops are cancelled: a loop that checks it ends
    # even if a library swallowed its cancellation (a heartbeat outliving its worker, seen in CI).
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the worker has deregistered (after `stopped`): the heartbeat beats until then.
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    # Provider refusals (hard bounces, dead push tokens) go on the suppression list through it; its own
    # small transactional engine (the hot path's engine is autocommit). None: not recorded (some tests).
    feedback: FeedbackService | None = None
    unsubscribe_key: bytes = b""  # signs the one-click unsubscribe links of bulk emails
    # This worker's number in the registry (db/workers_repo.py), written into the messages it claims; None: not
    # registered (some tests), so only the lease brings its claims back.
    worker_number: int | None = None
    _content: dict[uuid.UUID, tuple[str, str]] = field(default_factory=dict)

    @property
    def yields_to_express(self) -> bool:
        """Whether this worker's bulk work gives way while transactional traffic is active (worker/priority.py).

        A bulk-only worker never does: transactional sends have their own workers
        (`NOTIFQ_WORKER_LANES=transactional`), which the OS schedules ahead of a busy bulk
        worker because they are mostly idle; slowing the campaign would buy them nothing.
        """
        return self.settings.worker_lanes == "all"

    @property
    def chunk_size(self) -> int:
        """Messages claimed per round trip: the whole batch when unlimited, ~¼ s of budget otherwise.

        Claiming only what the rate limits let us send soon keeps leases short and lets
        other workers take the rest of a batch: the per-worker limit's burst, and while a
        fleet-limited provider is in use about a second of this worker's share of its rate,
        spread over the jobs (claims ahead of it would wait for tokens, then be deferred).
        """
        batch = self.settings.job_batch_size
        if not self.limiter.unlimited:
            batch = max(1, min(batch, int(self.limiter.capacity)))
        cap = self.fleet.claim_cap(self.settings.worker_jobs)
        return batch if cap is None else min(batch, cap)

    async def campaign_content(self, campaign_id: uuid.UUID) -> tuple[str, str]:
        """Subject and body, read once per campaign per worker (they never change after creation)."""
        cached = self._content.get(campaign_id)
        if cached is not None:
            return cached
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                text("SELECT name, subject, body FROM campaigns WHERE id = :id"), {"id": campaign_id}
            )).one()  # fmt: skip
        content = (row.subject or row.name, row.body or "")
        if len(self._content) >= CONTENT_CACHE_SIZE:
            self._content.pop(next(iter(self._content)))
        self._content[campaign_id] = content
        return content
