"""The `ocupredict` console script: serve, migrate, create-admin, openapi."""

from __future__ import annotations

import argparse
import json
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

    command.upgrade(_alembic_config(settings), args.revision)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    settings.check_production()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,  # client IPs come from TRUSTED_PROXIES handling in the app
        log_level=settings.log_level.lower(),
    )
    return 0


def cmd_openapi(settings: Settings, args: argparse.Namespace) -> int:
    from app.main import create_app

    schema = create_app(settings).openapi()
    text = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocupredict", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations (alembic upgrade)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=cmd_migrate)

    openapi = sub.add_parser("openapi", help="write the OpenAPI schema as JSON")
    openapi.add_argument("--output", "-o", default="-")
    openapi.set_defaults(func=cmd_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        settings.check_production()
        return int(args.func(settings, args))
    except ConfigError as exc:
        print(f"ocupredict: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
