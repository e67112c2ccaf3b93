"""The `notifq` command: dev stack, API, worker, migrations, admins, scaling, and the operator client."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from notifq.errors import ConfigError, ValidationError
from notifq.logs import setup_logging
from notifq.runtime import dev_jwt_secret, with_server_urls
from notifq.settings import Settings, load_settings, require_jwt_secret


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


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    from notifq.api.app import create_app

    settings = _resolved(_settings())
    try:
        require_jwt_secret(settings)
    except ConfigError as exc:
        sys.exit(f"notifq: {exc.message}")
    setup_logging(settings.log_format)
    # log_config=None: uvicorn's loggers propagate to our (JSON, redacting) root handler.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop="uvloop", log_config=None,
                access_log=args.access_log, log_level="info", timeout_graceful_shutdown=10)  # fmt: skip


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


def cmd_create_admin(args: argparse.Namespace) -> None:
    from notifq.admins import set_admin
    from notifq.db.engine import create_engine

    settings = _resolved(_settings())
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            sys.exit("notifq: passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        sys.exit("notifq: empty password")

    async def run() -> None:
        assert settings.database_url
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            await set_admin(engine, args.email, password)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except (ValueError, ValidationError) as exc:
        sys.exit(f"notifq: {exc}")
    print(f"admin {args.email} saved")


def cmd_dev(args: argparse.Namespace) -> None:
    from notifq.dev import run_dev

    sys.exit(run_dev(_settings(), workers=args.workers))


def cmd_scale(args: argparse.Namespace) -> None:
    from notifq.dev import request_scale

    sys.exit(request_scale(_settings(), args.workers))


def main(argv: list[str] | None = None) -> None:
    from notifq.client.commands import register as register_client_commands

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
    p = sub.add_parser("scale", help="set the number of workers of the running `notifq dev` stack")
    p.add_argument("workers", type=int)
    p.set_defaults(func=cmd_scale)
    register_client_commands(sub)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
