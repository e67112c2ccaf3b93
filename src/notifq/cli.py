"""The `notifq` command: dev stack, API, worker, migrations, admins, scaling, and the operator client."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from notifq.errors import ConfigError, NotifqError
from notifq.logs import setup_logging
from notifq.runtime import dev_jwt_secret, with_server_urls
from notifq.settings import Settings, child_env, load_settings, require_jwt_secret

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        sys.exit(f"notifq: configuration error: {exc.message}")


def _resolved(settings: Settings) -> Settings:
    try:
        settings = with_server_urls(settings)
        if not settings.jwt_secret and not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
            settings = dev_jwt_secret(settings)  # beside a `notifq dev` stack, share its secret
        return settings
    except ConfigError as exc:
        sys.exit(f"notifq: {exc.message}")


WS_MAX_FRAME_BYTES = 64 * 1024
# The inbox's WebSockets: the sans-I/O implementation (lighter per connection), frames capped
# small (clients send AUTH, ACK and READ only), and no permessage-deflate, which browsers and
# the `websockets` client offer and uvicorn accepts by default: for frames of a few hundred
# bytes it saves little, and its zlib state cost ~40 KB per connection (measured with 2,000
# connections: 66 KB each with it, 26 KB without) and most of the CPU of a fan-out.
WS_OPTIONS: dict[str, Any] = {
    "ws": "websockets-sansio",
    "ws_max_size": WS_MAX_FRAME_BYTES,
    "ws_per_message_deflate": False,
}


GRACEFUL_SHUTDOWN_SECONDS = 10  # open requests (and SSE streams) get this long after SIGTERM
API_FACTORY = "notifq.api.app:app_from_environment"


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    settings = _resolved(_settings())
    try:
        require_jwt_secret(settings)
    except ConfigError as exc:
        sys.exit(f"notifq: {exc.message}")
    setup_logging(settings.log_format)
    # log_config=None: uvicorn's loggers propagate to our (JSON, redacting) root handler.
    # Proxy headers only from NOTIFQ_TRUSTED_PROXIES: uvicorn otherwise believes X-Forwarded-For from
    # 127.0.0.1, so a local client could name any address and never meet the per-address login lockout.
    proxies = list(settings.trusted_proxies)
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "loop": "uvloop", "log_config": None,
        "access_log": args.access_log, "log_level": "info", "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None, **WS_OPTIONS,
    }  # fmt: skip
    from notifq.api.processes import ApiSupervisor, api_process_count

    processes = api_process_count(settings)
    if processes == 1:
        from notifq.api.app import create_app

        # workers=1: NOTIFQ_API_PROCESSES decides, not a WEB_CONCURRENCY uvicorn would read otherwise.
        uvicorn.run(create_app(settings), workers=1, **options)
        return
    config = uvicorn.Config(API_FACTORY, factory=True, workers=processes, **options)
    # Spawned processes inherit the environment and nothing else: every setting, resolved, goes there
    # (the embedded servers' URLs and the dev JWT secret included); app_from_environment reads it back.
    os.environ.update(child_env(settings))
    sys.exit(ApiSupervisor(config, processes).run())


def cmd_worker(args: argparse.Namespace) -> None:
    import uvloop

    from notifq.worker.main import run_worker

    settings = _resolved(_settings())
    setup_logging(settings.log_format)
    uvloop.install()
    run_worker(settings)


def cmd_migrate(args: argparse.Namespace) -> None:
    from notifq.migrate import upgrade_head

    settings = _settings()
    url = settings.database_url or _resolved(settings).database_url
    assert url
    upgrade_head(url)
    print("database is at the latest migration")


def _read_password() -> str:
    """From a prompt (typed twice) on a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            sys.exit("notifq: passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        sys.exit("notifq: empty password")
    return password


def _run_admin_change(change: Callable[[AsyncEngine], Awaitable[None]]) -> None:
    """Run one change to the admins table with a one-connection engine; its errors end the command."""
    from notifq.db.engine import create_engine

    settings = _resolved(_settings())

    async def run() -> None:
        assert settings.database_url
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            await change(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except (ValueError, NotifqError) as exc:
        sys.exit(f"notifq: {exc}")


def cmd_create_admin(args: argparse.Namespace) -> None:
    from notifq.admins import set_admin

    password = _read_password()
    _run_admin_change(lambda engine: set_admin(engine, args.email, password))
    print(f"admin {args.email} saved")


def cmd_set_password(args: argparse.Namespace) -> None:
    from notifq.admins import set_password

    password = _read_password()
    _run_admin_change(lambda engine: set_password(engine, args.email, password))
    print(f"password of {args.email} changed; its tokens are revoked")


def cmd_delete_admin(args: argparse.Namespace) -> None:
    from notifq.admins import delete_admin

    _run_admin_change(lambda engine: delete_admin(engine, args.email))
    print(f"admin {args.email} deleted; its tokens are revoked")


def cmd_dev(args: argparse.Namespace) -> None:
    from notifq.dev import run_dev

    settings = _settings()
    from notifq.api.processes import api_process_count

    sys.exit(run_dev(settings, workers=args.workers, api_processes=api_process_count(settings)))


def cmd_scale(args: argparse.Namespace) -> None:
    from notifq.dev import request_scale

    sys.exit(request_scale(_settings(), args.workers))


def main(argv: list[str] | None = None) -> None:
    from notifq.client.parser import register as register_client_commands

    parser = argparse.ArgumentParser(prog="notifq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dev", help="run everything: embedded servers (unless URLs are set), API, workers")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1") or 1))
    p.set_defaults(func=cmd_dev)
    p = sub.add_parser("api", help="serve the HTTP API")
    p.add_argument("--access-log", action="store_true")
    p.set_defaults(func=cmd_api)
    sub.add_parser("worker", help="run one arq delivery worker").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="alembic upgrade head").set_defaults(func=cmd_migrate)
    p = sub.add_parser("create-admin", help="create an admin or reset its password (password from prompt or stdin)")
    p.add_argument("email")
    p.set_defaults(func=cmd_create_admin)
    p = sub.add_parser("set-password", help="change an admin's password and revoke its tokens (prompt or stdin)")
    p.add_argument("email")
    p.set_defaults(func=cmd_set_password)
    p = sub.add_parser("delete-admin", help="delete an admin and revoke its tokens")
    p.add_argument("email")
    p.set_defaults(func=cmd_delete_admin)
    p = sub.add_parser("scale", help="set the number of workers of the running `notifq dev` stack")
    p.add_argument("workers", type=int)
    p.set_defaults(func=cmd_scale)
    register_client_commands(sub)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
