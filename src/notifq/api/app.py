"""`create_app(settings)`: nothing connects at import; engines and pools live in the lifespan.

`app_from_environment()` is the same app for each process of a multi-process `notifq api`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from uvicorn.config import STARTUP_FAILURE

from notifq.api.errors import EXCEPTION_HANDLERS
from notifq.api.openapi import build as build_openapi
from notifq.api.routes import OPERATIONS, ROUTES
from notifq.api.security_headers import SecurityHeaders
from notifq.api_keys import ApiKeys
from notifq.auth import AdminSessions, LoginThrottle, dummy_hash
from notifq.campaigns import CampaignService
from notifq.db.engine import READ_POOL_SIZE, SEND_POOL_SIZE, create_engine
from notifq.errors import ConfigError
from notifq.fanout import Hub
from notifq.feedback import FeedbackService
from notifq.inbox import InboxService
from notifq.keys import RedisKeys
from notifq.logs import setup_logging
from notifq.notifications import NotificationService
from notifq.queue import redis_client
from notifq.settings import Settings, load_settings, require_jwt_secret
from notifq.sns_verify import MAX_MESSAGE_AGE, SnsVerifier
from notifq.subscribers import SubscriberService
from notifq.suppressions import SuppressionService
from notifq.unsubscribe_links import link_key
from notifq.webhook_http import WebhookClient
from notifq.webhooks import WebhookService


def create_app(settings: Settings) -> Starlette:
    require_jwt_secret(settings)
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs settings.database_url and settings.redis_url")
    database_url, redis_url = settings.database_url, settings.redis_url

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(database_url, role="api")
        # Single statements need no BEGIN/COMMIT round trips. Sends get a pool of their own, so
        # an OTP never waits for a connection behind dashboards' reads (a timeline scan, say).
        sends = create_engine(database_url, pool_size=SEND_POOL_SIZE, role="api-send", autocommit=True)
        reads = create_engine(database_url, pool_size=READ_POOL_SIZE, role="api-read", autocommit=True)
        # DATABASE_READ_URL: listings and reports go to a replica; what must see its own writes (auth, keys, profiles,
        # the inbox, webhooks' settings) stays on `reads`, the primary.
        replica = (create_engine(settings.database_read_url, pool_size=READ_POOL_SIZE, role="api-replica",
                                 autocommit=True) if settings.database_read_url else reads)  # fmt: skip
        # /ready gets its own connection: a busy API (every pooled connection in use) is not a dead database.
        probe_engine = create_engine(database_url, pool_size=1, pool_timeout=2, role="probe")
        redis = redis_client(redis_url)
        app.state.engine = engine
        app.state.read_engine = reads
        app.state.replica_engine = replica
        app.state.probe_engine = probe_engine
        app.state.redis = redis
        app.state.campaigns = campaigns = CampaignService(engine, redis, settings, reads=reads, replica=replica)
        app.state.suppressions = SuppressionService(engine, reads)
        # Test POSTs to webhook endpoints (the worker delivers the events, with a client of its own).
        webhook_client = WebhookClient(allow_private=settings.webhooks_allow_private, timeout=settings.webhook_timeout,
                                       connections=10)  # fmt: skip
        app.state.webhooks = WebhookService(engine, reads, settings, webhook_client)
        app.state.feedback = FeedbackService(engine, campaigns, settings)
        verifier = SnsVerifier(cert_url_regex=settings.sns_cert_url_regex, topics=settings.sns_topics,
                               max_age=MAX_MESSAGE_AGE)  # fmt: skip
        app.state.sns_verifier = verifier
        app.state.notifications = NotificationService(
            engine, redis, settings, sends=sends, reads=reads, replica=replica
        )
        app.state.login_throttle = LoginThrottle(redis, settings.login_max_failures, settings.login_lockout_seconds,
                                                 RedisKeys.from_settings(settings))  # fmt: skip
        # Revocation is checked on the send's own pool: a dashboard's slow read never delays it.
        app.state.sessions = AdminSessions(sends)
        app.state.api_keys = api_keys = ApiKeys(engine, reads, sends)
        app.state.subscribers = SubscriberService(engine, reads, redis, settings)
        # Receipts (ACK/READ) are written on the send pool too: autocommit, one statement per batch.
        app.state.inbox = inbox = InboxService(sends, reads, redis, settings)
        app.state.hub = hub = Hub(redis_url, RedisKeys.from_settings(settings))
        await hub.start()
        inbox.receipts.start()
        api_keys.start()
        await asyncio.to_thread(dummy_hash)  # once per process: the first unknown email costs no more
        try:
            yield
        finally:
            await hub.stop()
            await inbox.receipts.stop()
            await api_keys.stop()
            await verifier.aclose()
            await webhook_client.aclose()
            await redis.aclose()
            await engine.dispose()
            await sends.dispose()
            await reads.dispose()
            if replica is not reads:
                await replica.dispose()
            await probe_engine.dispose()

    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders)])  # fmt: skip
    app.state.settings = settings
    app.state.unsubscribe_key = link_key(settings)
    app.state.openapi = build_openapi(OPERATIONS, settings)
    return app


def app_from_environment() -> Starlette:
    """uvicorn's factory in each process of `notifq api` with NOTIFQ_API_PROCESSES > 1 (api/processes.py).

    Those processes are started with multiprocessing's spawn: fresh interpreters that share
    nothing with the supervisor but the environment, where `notifq api` wrote every setting
    (`child_env`: the embedded servers' URLs and the dev JWT secret included). Logging is set
    up here for the same reason. A setting the process refuses exits with uvicorn's
    STARTUP_FAILURE, which stops the supervisor; any other exception here would make it
    replace the process forever, each one failing the same way.
    """
    try:
        settings = load_settings()
        setup_logging(settings.log_format)
        app = create_app(settings)
    except (ConfigError, ValueError) as exc:
        logging.getLogger("notifq.api").error("notifq api: %s", exc)
        sys.exit(STARTUP_FAILURE)
    _stop_with_supervisor()
    return app


def _stop_with_supervisor() -> None:
    """SIGTERM this process (a graceful stop) once the supervisor that started it is gone.

    The supervisor stops its processes itself on SIGINT/SIGTERM; but killed (SIGKILL, the OOM
    killer) it cannot, and they would serve on, orphaned, holding the port and their pools.
    multiprocessing's parent sentinel becomes readable when the parent exits, however it exits.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not one of uvicorn's processes (a test, `uvicorn --factory`)
        return

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="notifq-supervisor-watch", daemon=True).start()
