"""The naive baseline that `scripts/bench.py` measures notifq against.

This is the seed's design (one queue job per message, one status UPDATE per message)
written with the same libraries notifq uses, on notifq's own PostgreSQL schema, so the
benchmark compares designs rather than languages or servers:

- `naive.py api --port P`: a Starlette app with `POST /campaigns` (`recipientCount` or
  `recipients`, validated by notifq's own `CampaignCreate` model). One transaction inserts the
  campaign and its message rows (multi-row `INSERT … SELECT FROM unnest`, chunks of
  1,000, like the seed's batch insert), then, after the commit, one
  `ArqRedis.enqueue_job` per message, awaited one at a time. No JWT check (it costs
  microseconds per request and would not change the figures).
- `naive.py worker`: a real arq `Worker` whose job sends one message through notifq's
  `MockProvider` and then runs one `UPDATE messages … WHERE id = $1` and one campaign
  counter `UPDATE` (which also completes the campaign), each autocommitted. arq's
  defaults apply (`poll_delay` 0.5 s, `keep_result` 3600 s, `max_tries` 5, per-job
  logging at INFO) except `max_jobs`, 100 instead of 10 (`NAIVE_MAX_JOBS`): with the
  default 10 the 100-500 ms run would be ~10x slower still, and we want the fair version
  of the naive design, not a strawman. A failed send is retried by raising arq's
  `Retry` with 1 s / 2 s / 4 s backoff; the fourth failure is recorded as `failed`.

Configuration comes from the environment: DATABASE_URL, REDIS_URL, NAIVE_QUEUE,
NAIVE_MAX_JOBS, NAIVE_DB_POOL, NOTIFQ_MOCK_LATENCY_MS, NOTIFQ_MOCK_FAILURE_RATE.
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pydantic
from arq import Retry, Worker
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import func
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifq.api.contract import translate
from notifq.api.models.campaigns import CampaignCreate
from notifq.providers.base import OutgoingMessage
from notifq.providers.mock import MockProvider
from notifq.settings import parse_latency

SEND_FUNCTION = "send_message"
INSERT_CHUNK = 1000
MAX_ATTEMPTS = 4


def queue_name() -> str:
    return os.environ.get("NAIVE_QUEUE", "naive:queue")


def database_url() -> str:
    url = os.environ["DATABASE_URL"]
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def synthetic(count: int) -> Iterator[str]:
    return (f"user{i}@example.com" for i in range(1, count + 1))


# --- API ---------------------------------------------------------------------------------

_INSERT_CAMPAIGN = """
INSERT INTO campaigns (name, subject, body, total_messages, queued_count)
VALUES ($1, $2, $3, $4, $4) RETURNING id
"""
_INSERT_MESSAGES = """
INSERT INTO messages (campaign_id, recipient, status)
SELECT $1, r, 'queued' FROM unnest($2::text[]) AS r
RETURNING id, recipient
"""


async def create_campaign(request: Request) -> Response:
    try:
        body = CampaignCreate.model_validate_json(await request.body(), context={"max_campaign_size": 10_000_000})
    except pydantic.ValidationError as exc:
        return JSONResponse({"error": translate(exc).message}, 422)
    parsed = body.request()
    recipients = [r for r, _ in parsed.recipients] if parsed.recipients is not None else list(synthetic(parsed.total))
    pool: asyncpg.Pool = request.app.state.pool
    redis: ArqRedis = request.app.state.redis
    rows: list[tuple[int, str]] = []
    async with pool.acquire() as conn, conn.transaction():
        campaign_id: uuid.UUID = await conn.fetchval(
            _INSERT_CAMPAIGN, parsed.name, parsed.subject, parsed.body, len(recipients)
        )
        for start in range(0, len(recipients), INSERT_CHUNK):
            chunk = recipients[start : start + INSERT_CHUNK]
            rows.extend((r["id"], r["recipient"]) for r in await conn.fetch(_INSERT_MESSAGES, campaign_id, chunk))
    # The seed's design: one queue job per message, each enqueued on its own.
    for message_id, recipient in rows:
        await redis.enqueue_job(SEND_FUNCTION, message_id, str(campaign_id), recipient, _queue_name=queue_name())
    await pool.execute(
        "UPDATE campaigns SET status = 'processing', enqueued_at = now(), updated_at = now() WHERE id = $1",
        campaign_id,
    )
    return JSONResponse({"id": str(campaign_id), "status": "processing", "totalMessages": len(rows)}, 202)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(database_url(), min_size=2, max_size=10)
        app.state.redis = await create_pool(RedisSettings.from_dsn(os.environ["REDIS_URL"]))
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.pool.close()

    routes = [Route("/campaigns", create_campaign, methods=["POST"]), Route("/health", health, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


def run_api(port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=port, loop="uvloop", access_log=False, log_level="warning")


# --- worker ------------------------------------------------------------------------------

_UPDATE_MESSAGE = "UPDATE messages SET status = $2, attempts = $3, last_error = $4, updated_at = now() WHERE id = $1"
_UPDATE_CAMPAIGN = """
UPDATE campaigns SET
    sent_count = sent_count + $2,
    failed_count = failed_count + $3,
    queued_count = queued_count - 1,
    status = CASE WHEN sent_count + $2 + failed_count + $3 = total_messages
                  THEN CASE WHEN failed_count + $3 > 0 THEN 'completed_with_failures' ELSE 'completed' END
                  ELSE 'processing' END,
    completed_at = CASE WHEN sent_count + $2 + failed_count + $3 = total_messages THEN now() ELSE completed_at END,
    updated_at = now()
WHERE id = $1
"""


async def send_message(ctx: dict[str, Any], message_id: int, campaign_id: str, recipient: str) -> str:
    provider: MockProvider = ctx["provider"]
    pool: asyncpg.Pool = ctx["pool"]
    attempt: int = ctx["job_try"]
    error: str | None = None
    try:
        await provider.send(OutgoingMessage(message_id, attempt, recipient, "naive", "naive body"))
        status = "sent"
    except Exception as exc:
        if attempt < MAX_ATTEMPTS:
            raise Retry(defer=2 ** (attempt - 1)) from exc
        status, error = "failed", str(exc)[:1000]
    await pool.execute(_UPDATE_MESSAGE, message_id, status, attempt, error)
    sent = 1 if status == "sent" else 0
    await pool.execute(_UPDATE_CAMPAIGN, uuid.UUID(campaign_id), sent, 1 - sent)
    return status


async def worker_startup(ctx: dict[str, Any]) -> None:
    low_high = parse_latency(os.environ.get("NOTIFQ_MOCK_LATENCY_MS", "100-500"))
    failure_rate = float(os.environ.get("NOTIFQ_MOCK_FAILURE_RATE", "0.2"))
    ctx["provider"] = MockProvider(low_high, failure_rate)
    pool_size = int(os.environ.get("NAIVE_DB_POOL", "20"))
    ctx["pool"] = await asyncpg.create_pool(database_url(), min_size=pool_size, max_size=pool_size)


async def worker_shutdown(ctx: dict[str, Any]) -> None:
    await ctx["pool"].close()


def run_worker() -> None:
    import uvloop

    uvloop.install()  # as `notifq worker` does
    worker = Worker(
        functions=[func(send_message, name=SEND_FUNCTION)],
        queue_name=queue_name(),
        redis_settings=RedisSettings.from_dsn(os.environ["REDIS_URL"]),
        on_startup=worker_startup,
        on_shutdown=worker_shutdown,
        max_jobs=int(os.environ.get("NAIVE_MAX_JOBS", "100")),
    )
    worker.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="serve the naive POST /campaigns")
    api.add_argument("--port", type=int, required=True)
    sub.add_parser("worker", help="run one naive arq worker")
    args = parser.parse_args(argv)
    if args.command == "api":
        run_api(args.port)
    else:
        run_worker()


if __name__ == "__main__":
    main()
