"""The `ocupredict import-legacy` command: options, progress bar, report, exit status."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from contextlib import AbstractContextManager
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from app.config import Settings

# Exit statuses: everything imported (or already there) / stopped early / some rows failed.
EXIT_OK, EXIT_STOPPED, EXIT_ROWS_FAILED = 0, 1, 3
SOURCE_ENV = "LEGACY_DATABASE_URL"  # keeps the password off the command line (ps)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "import-legacy",
        help="import the earlier Flask back-end's accounts, history and images",
        description="Copies the legacy users and prediction_history rows and their S3 "
        "images into this service. Safe to run again: what is already here is skipped.",
    )
    parser.add_argument(
        "--source",
        default=os.environ.get(SOURCE_ENV),
        help=f"SQLAlchemy URL of the legacy database (default: ${SOURCE_ENV}), e.g. "
        "mysql+pymysql://user:pass@host/db or sqlite:///path/app.db",
    )
    parser.add_argument(
        "--source-bucket",
        default=None,
        help="the legacy images' S3 bucket (default: AWS_S3_BUCKET); read with this "
        "service's AWS_* / S3_ENDPOINT_URL settings",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read, map, fetch and decode everything; write nothing; report what would happen",
    )
    parser.add_argument(
        "--batch", type=_batch_size, default=500, help="history rows per transaction (500)"
    )
    parser.set_defaults(func=run)


def _batch_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


class BarProgress(AbstractContextManager["BarProgress"]):
    """A rich progress bar per legacy table on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        console = Console(stderr=True)
        self._bar = RichProgress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def start(self, table: str, total: int) -> None:
        self._tasks[table] = self._bar.add_task(table, total=total)

    def advance(self, table: str, rows: int) -> None:
        self._bar.advance(self._tasks[table], rows)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.legacy.importer import ImportOptions, import_legacy
    from app.observability import configure_logging

    if not args.source:
        print(f"ocupredict: give --source or set {SOURCE_ENV}", file=sys.stderr)
        return 2
    bucket = args.source_bucket or settings.aws_s3_bucket
    if not bucket:
        print("ocupredict: give --source-bucket or set AWS_S3_BUCKET", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.json_logs)
    options = ImportOptions(args.source, bucket, dry_run=args.dry_run, batch=args.batch)
    try:
        with BarProgress() as progress:
            report = asyncio.run(import_legacy(settings, options, progress))
    except ValueError as exc:  # an unsupported source URL
        print(f"ocupredict: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    if report.aborted:
        return EXIT_STOPPED
    return EXIT_ROWS_FAILED if report.failures else EXIT_OK
