"""What the audit trail costs: GET /history/{id} with and without its prediction.view event,
at 1,000,000 predictions on MariaDB; and the memory of the CSV export at 10k and 100k events.

1. Seeds (or reuses) a dedicated database exactly as bench/history.py does (default
   ocupredict_bench_audit: 1,000,000 predictions, 100,000 for the measured doctor).
2. Runs the app in this process (httpx over ASGITransport, real bearer token) and times
   GET /history/{id} over 200 different records, alternating request by request between
   the shipped read (which records prediction.view and commits) and the same read without
   the event (the code as it was before the audit trail), so both see the same machine
   load. Prints p50/p95 of each and the difference. (The view event is queued in the
   process's ViewLog and written in batches, so the read itself does no extra round trip.)
3. Export: inserts 100,000 events into audit_events (one per ms from 2020-01-01, if not
   there yet) and streams the export of the first 10,000 and of all 100,000 under
   tracemalloc: the peak of Python
   allocations should not grow with the number of rows.

    flock /tmp/ocupredict-bench.lock .venv/bin/python bench/audit.py
    .venv/bin/python bench/audit.py --requests 400 --url mysql+aiomysql://root@127.0.0.1:3306/x
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import history  # bench/history.py: the same seeding, the same load probes
import httpx
from _common import background_load, percentile  # puts ROOT on sys.path
from asgi_lifespan import LifespanManager
from sqlalchemy import func, insert, select

from app.config import Settings
from app.db.models import AuditEvent, Prediction, User
from app.main import create_app
from app.repositories.audit import AuditFilters
from app.services.audit_trail import AuditTrail
from app.services.history import HistoryService

DEFAULT_URL = "mysql+aiomysql://root@127.0.0.1:3306/ocupredict_bench_audit"
EXPORT_EVENTS = 100_000
EXPORT_BASE = datetime(2020, 1, 1, tzinfo=UTC)  # the export's events, one per ms from here


def export_end(count: int) -> datetime:
    return EXPORT_BASE + timedelta(milliseconds=count)


async def read_without_event(
    self: HistoryService, row: Prediction, user: User, base_url: str, now: datetime
) -> Any:
    """HistoryService.read as it was before the audit trail."""
    return await self.detail(row, user, base_url, now)  # no self.views.add


def settings_for(url: str, tmp: str) -> Settings:
    return Settings(
        _env_file=None,
        environment="development",
        database_url=url,
        jwt_secret_key=secrets.token_urlsafe(48),
        storage_backend="local",
        local_storage_dir=Path(tmp) / "images",
        mail_backend="console",
        log_level="WARNING",
    )


async def measure_view(url: str, n: int, warmup: int) -> dict[str, list[float]]:
    shipped = HistoryService.read
    mode = {"event": True}

    async def switched(self: HistoryService, *args: Any) -> Any:
        return await (shipped if mode["event"] else read_without_event)(self, *args)

    samples: dict[str, list[float]] = {"with event": [], "without event": []}
    with tempfile.TemporaryDirectory(prefix="ocupredict-bench-") as tmp:
        settings = settings_for(url, tmp)
        app = create_app(settings)
        HistoryService.read = switched  # type: ignore[method-assign,assignment]
        try:
            async with LifespanManager(app, startup_timeout=300) as manager:
                token, ids = await history.doctor_token_and_records(app, settings)
                async with app.state.sessionmaker() as session:
                    before = await session.scalar(
                        select(func.count())
                        .select_from(AuditEvent)
                        .where(AuditEvent.action == "prediction.view")
                    )
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(
                    transport=transport,
                    base_url="http://bench",
                    headers={"Authorization": f"Bearer {token}"},
                ) as client:
                    for i in range(2 * (warmup + n)):
                        mode["event"] = i % 2 == 0
                        path = f"/api/v1/history/{ids[(i // 2) % len(ids)]}"
                        started = time.perf_counter()
                        response = await client.get(path)
                        elapsed = (time.perf_counter() - started) * 1000
                        if response.status_code != 200:
                            raise SystemExit(f"{path}: {response.status_code} {response.text}")
                        if i >= 2 * warmup:
                            key = "with event" if mode["event"] else "without event"
                            samples[key].append(elapsed)
                await app.state.view_log.flush()
                async with app.state.sessionmaker() as session:
                    after = await session.scalar(
                        select(func.count())
                        .select_from(AuditEvent)
                        .where(AuditEvent.action == "prediction.view")
                    )
                recorded = int(after or 0) - int(before or 0)
                print(f"  prediction.view events recorded: {recorded} (expected {warmup + n})")
        finally:
            HistoryService.read = shipped  # type: ignore[method-assign]
    return samples


async def measure_export(url: str) -> list[tuple[int, int, int]]:
    """(events, peak bytes allocated while streaming, bytes of CSV) for 10k and 100k."""
    with tempfile.TemporaryDirectory(prefix="ocupredict-bench-") as tmp:
        app = create_app(settings_for(url, tmp))
        async with LifespanManager(app, startup_timeout=300):
            sessions = app.state.sessionmaker
            window = AuditEvent.at >= EXPORT_BASE, AuditEvent.at < export_end(EXPORT_EVENTS)
            async with sessions() as session:
                have = int(
                    await session.scalar(select(func.count(AuditEvent.id)).where(*window)) or 0
                )
                for first in range(have, EXPORT_EVENTS, 10_000):
                    rows = [
                        {
                            "at": EXPORT_BASE + timedelta(milliseconds=i),
                            "actor_id": 1 + i % 90,
                            "actor_email": f"doctor{i % 90}@example.com",
                            "action": "prediction.view",
                            "target_type": "prediction",
                            "target_id": str(i),
                            "ip": "10.1.2.3",
                            "request_id": f"{i:032x}",
                        }
                        for i in range(first, min(EXPORT_EVENTS, first + 10_000))
                    ]
                    await session.execute(insert(AuditEvent), rows)
                await session.commit()
            results = []
            for count in (10_000, 100_000):
                # A time range that holds `count` events, as an auditor's export would.
                filters = AuditFilters(at_from=EXPORT_BASE, at_before=export_end(count))
                size = 0
                tracemalloc.start()
                tracemalloc.reset_peak()
                trail = AuditTrail(session, sessions, "UTC")
                async for chunk in trail.export_csv(filters):
                    size += len(chunk)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                results.append((count, peak, size))
            return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"database URL ({DEFAULT_URL})")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per variant")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per variant")
    parser.add_argument("--wait-idle", type=float, default=120, metavar="SECONDS")
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()

    asyncio.run(history.prepare(args.url, reseed=False, reindex=False))
    busy = history.wait_for_idle(args.wait_idle) if args.wait_idle > 0 else background_load()
    print(
        f"== GET /history/{{id}} at {history.TOTAL_ROWS:,} predictions, {args.requests} "
        f"requests per variant, alternating; {os.cpu_count()} cores, {busy:.1f} busy with "
        "other work before the run",
        flush=True,
    )
    samples = asyncio.run(measure_view(args.url, args.requests, args.warmup))
    stats = {k: (percentile(v, 50), percentile(v, 95)) for k, v in samples.items()}
    for name, (p50, p95) in stats.items():
        print(f"  {name:<14} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  (n={len(samples[name])})")
    d50 = stats["with event"][0] - stats["without event"][0]
    d95 = stats["with event"][1] - stats["without event"][1]
    verdict = "ok" if d95 < 2.0 else "MISSED"
    print(f"  difference     p50 {d50:+6.2f} ms  p95 {d95:+6.2f} ms  (p95 < 2 ms: {verdict})")
    print(f"== {background_load():.1f} cores busy with other work after the run")
    if args.skip_export:
        return
    print("== CSV export, streamed (tracemalloc peak of Python allocations)", flush=True)
    results = asyncio.run(measure_export(args.url))
    for count, peak, size in results:
        print(f"  {count:>7,} events: {size / 1e6:6.1f} MB of CSV, peak {peak / 1e6:5.2f} MB")
    (small, small_peak, _), (large, large_peak, _) = results
    print(
        f"  {large // small}x the events: {large_peak / small_peak:.2f}x the peak memory "
        "(flat: about 1x)"
    )


if __name__ == "__main__":
    main()
