"""The `ocupredict` console script: serve, serve-nginx, migrate, create-admin, sweep-images,
prune-audit, openapi, import-legacy, import-labelled, train-worker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from app.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent


def _alembic_config(settings: Settings):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["database_url"] = settings.database_url
    return cfg


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from alembic import command
    from app.observability import configure_logging

    # Alembic's lines in the service's format (JSON in production: the compose stack runs
    # `migrate` in the same log stream as the service), not alembic.ini's text.
    configure_logging(settings.log_level, settings.json_logs)
    cfg = _alembic_config(settings)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, args.revision)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.observability import configure_logging, uvicorn_log_config

    configure_logging(settings.log_level, settings.json_logs)
    workers = args.workers or settings.web_workers
    # The worker processes read their settings from the environment: tell them how many
    # share this host, so their inference threads add up to the cores, not a multiple.
    os.environ["WEB_WORKERS"] = str(workers)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        proxy_headers=False,  # client IPs come from TRUSTED_PROXIES handling in the app
        # One log format: uvicorn's loggers through ours, in this process and in each
        # worker process it spawns; its access log off (the app writes one line a request,
        # with the route template: never a query string, which may carry a signature).
        log_config=uvicorn_log_config(settings.log_level, settings.json_logs),
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
    )
    return 0


def cmd_serve_nginx(settings: Settings, args: argparse.Namespace) -> int:
    import tempfile

    from app.deploy.supervisor import Supervisor
    from app.observability import configure_logging

    configure_logging(settings.log_level, settings.json_logs)
    socket_dir = Path(args.socket_dir or tempfile.mkdtemp(prefix="ocupredict-run-")).resolve()
    if (args.tls_cert is None) != (args.tls_key is None):
        print("serve-nginx: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    tls = (args.tls_cert.resolve(), args.tls_key.resolve()) if args.tls_cert else None
    supervisor = Supervisor(settings, args.processes, args.host, args.port, socket_dir, tls=tls)
    return supervisor.run()


def cmd_openapi(settings: Settings, args: argparse.Namespace) -> int:
    from app.main import create_app

    schema = create_app(settings).openapi()
    text = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise ValueError("the passwords do not match")
    return password


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from app.schemas.auth import RegisterRequest

    try:
        data = RegisterRequest(email=args.email, name=args.name, password=_read_password(args))
    except (ValidationError, ValueError) as exc:
        problems = (
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        print(f"ocupredict: {problems}", file=sys.stderr)
        return 2
    return asyncio.run(_create_admin(settings, data.email, data.name, data.password))


async def _create_admin(settings: Settings, email: str, name: str, password: str) -> int:
    from app.db.session import make_engine, make_sessionmaker
    from app.errors import EmailTaken
    from app.security import Passwords
    from app.services.auth import create_admin

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            user = await create_admin(
                session, Passwords.from_settings(settings), email, name, password
            )
    except EmailTaken:
        print(f"ocupredict: a verified account for {email} already exists", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"admin {user.email} (id {user.id}) created")
    return 0


def cmd_sweep_images(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_sweep_images(settings, args.older_than_hours, args.dry_run))


async def _sweep_images(settings: Settings, older_than_hours: float, dry_run: bool) -> int:
    from datetime import UTC, datetime, timedelta

    from app.db.session import make_engine, make_sessionmaker
    from app.observability import configure_logging
    from app.services.sweep import sweep_orphan_images
    from app.storage import StorageUnavailable, build_image_store

    configure_logging(settings.log_level, settings.json_logs)  # one line per orphan found
    engine = make_engine(settings)
    try:
        storage = await build_image_store(settings)
        try:
            report = await sweep_orphan_images(
                make_sessionmaker(engine),
                storage,
                cutoff=datetime.now(UTC) - timedelta(hours=older_than_hours),
                dry_run=dry_run,
            )
        finally:
            await storage.aclose()
    except StorageUnavailable as exc:
        print(f"ocupredict: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    action = "would delete" if dry_run else "deleted"
    count = report.orphaned if dry_run else report.deleted
    print(
        f"{report.scanned} images older than {older_than_hours:g} h, {report.orphaned} "
        f"referenced by no prediction: {action} {count}, failed {report.failed}; "
        f"unfinished writes of killed processes: {report.abandoned_writes}"
    )
    return 0 if report.failed == 0 else 1


def cmd_prune_audit(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_prune_audit(settings, args.older_than_days))


async def _prune_audit(settings: Settings, older_than_days: int) -> int:
    from app.db.session import make_engine, make_sessionmaker
    from app.services.audit_trail import AuditTrail

    engine = make_engine(settings)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            trail = AuditTrail(session, sessions, settings.default_timezone)
            deleted = await trail.prune(older_than_days)
    finally:
        await engine.dispose()
    print(f"deleted {deleted} audit events older than {older_than_days} days (recorded)")
    return 0


def _positive_days(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of days, at least 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


def _positive_hours(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of hours")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocupredict", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: WEB_WORKERS or 1)"
    )
    serve.set_defaults(func=cmd_serve)

    nginx = sub.add_parser(
        "serve-nginx", help="run nginx in front of N single-process uvicorns (foreground)"
    )
    nginx.add_argument("--processes", type=_positive_int, default=2)
    nginx.add_argument("--host", default="127.0.0.1")
    nginx.add_argument("--port", type=int, default=8080)
    nginx.add_argument(
        "--socket-dir",
        default=None,
        help="Unix sockets, nginx's config, pid and temp files, metrics (default: a new "
        "temporary directory)",
    )
    nginx.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        help="PEM certificate (chain): HTTPS with HTTP/2 on --port, TLS 1.2 and 1.3 only; "
        "plain HTTP there is redirected to https",
    )
    nginx.add_argument("--tls-key", type=Path, default=None, help="the certificate's PEM key")
    nginx.set_defaults(func=cmd_serve_nginx)

    migrate = sub.add_parser("migrate", help="apply database migrations (alembic upgrade)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=cmd_migrate)

    sweep = sub.add_parser(
        "sweep-images", help="delete stored images that no prediction references"
    )
    sweep.add_argument(
        "--older-than-hours",
        type=_positive_hours,
        default=24.0,
        help="only objects written longer ago than this (default 24)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="count and log, delete nothing")
    sweep.set_defaults(func=cmd_sweep_images)

    prune = sub.add_parser(
        "prune-audit",
        help="delete audit events older than N days (retention; the prune itself is recorded)",
    )
    prune.add_argument(
        "--older-than-days",
        type=_positive_days,
        required=True,
        help="events recorded more than this many days ago are deleted (without this "
        "command, events are kept forever)",
    )
    prune.set_defaults(func=cmd_prune_audit)

    admin = sub.add_parser("create-admin", help="create a verified administrator account")
    admin.add_argument("email")
    admin.add_argument("--name", required=True, help="display name, 1-100 characters")
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )
    admin.set_defaults(func=cmd_create_admin)

    from app.legacy.command import add_parser as add_import_legacy

    add_import_legacy(sub)

    from app.training.importer import add_parser as add_import_labelled

    add_import_labelled(sub)

    from app.training.worker_command import add_parser as add_train_worker

    add_train_worker(sub)

    openapi = sub.add_parser("openapi", help="write the OpenAPI schema as JSON")
    openapi.add_argument("--output", "-o", default="-")
    openapi.set_defaults(func=cmd_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = Settings()
        settings.check_production()
        return int(args.func(settings, args))
    except ConfigError as exc:
        if settings is not None and settings.json_logs:
            # The refusal to start is read where the service's JSON lines are read.
            from app.observability import configure_logging

            configure_logging(settings.log_level, json_logs=True)
            logging.getLogger("ocupredict").critical("ocupredict: %s", exc)
        else:
            print(f"ocupredict: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
