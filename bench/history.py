"""History and dashboard latency at scale, measured through the real app on MariaDB.

1. Creates a dedicated database (default ocupredict_bench on the local MariaDB), migrates it
   to 0003 (the predictions table without the history indexes), bulk-loads 1,000,000
   predictions (100,000 for one doctor, 10,000 for each of 90 others, spread over the last
   two years, ~40% without feedback) with multi-row INSERTs, then migrates to head, which
   builds the 0004 indexes over the loaded table. A database already seeded with the same
   sizes is reused (--reseed starts over; --reindex rebuilds only the indexes).
2. Runs the app in this process (create_app + lifespan, httpx over ASGITransport, local image
   store, real bearer token for the doctor) and times sequential requests: the first page,
   page 500, a filtered and sorted page, detail of random records, stats for every range,
   plus other list variants for information, and range=all once more with the process's
   one-minute cache of everyone's all-time totals cleared before every request (the cost
   of a recount), and the model registry's per-version metrics (as an administrator) for
   the version all 1,000,000 rows carry: all time, since a date-time, and one local month.
   Prints p50/p95 against the targets: list p95 < 15 ms, detail p95 < 25 ms, stats p95 <
   150 ms, model metrics p95 < 300 ms, then the ANALYZE of every list case's queries (rows
   really read). Waits (up to --wait-idle s) for a quiet machine first: it may be shared.
   Nothing here asserts on time. The list's `total` is exact up to HISTORY_COUNT_LIMIT
   (10,000), so at 100,000 rows it shows 10,001 (total_is_estimate: a lower bound).

    .venv/bin/python bench/history.py                 # seed if needed, then measure
    .venv/bin/python bench/history.py --requests 50   # a quicker measurement
    .venv/bin/python bench/history.py --only "model metrics"
    .venv/bin/python bench/history.py --url mysql+aiomysql://root@127.0.0.1:3306/other_db
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
import httpx
from _common import ROOT, CpuMeter, background_load, percentile  # puts ROOT on sys.path
from alembic.config import Config
from asgi_lifespan import LifespanManager
from sqlalchemy import event, func, select
from sqlalchemy.engine import URL, make_url

from alembic import command
from app.config import Settings
from app.db.models import ModelVersion, Prediction, User
from app.inference.manifest import DEFAULT_MANIFEST
from app.main import create_app
from app.services.login_sessions import LoginSessions

DEFAULT_URL = "mysql+aiomysql://root@127.0.0.1:3306/ocupredict_bench"
DOCTOR_ROWS = 100_000
OTHER_DOCTORS = 90
OTHER_ROWS_EACH = 10_000
TOTAL_ROWS = DOCTOR_ROWS + OTHER_DOCTORS * OTHER_ROWS_EACH
SPAN_DAYS = 730
BATCH = 5_000
BENCH_EMAIL = "bench-doctor@example.com"

LIST_TARGET_MS = 15.0
DETAIL_TARGET_MS = 25.0
STATS_TARGET_MS = 150.0
METRICS_TARGET_MS = 300.0
BENCH_VERSION = "0123456789ab"  # the model version of every seeded prediction
BENCH_ADMIN = "bench-admin@example.com"

CODES = ["glaucoma", "diabetic_retinopathy", "normal", "cataract"]
CLASS_WEIGHTS = [0.2, 0.25, 0.4, 0.15]
WORDS = ["fundus", "retina", "eye", "scan", "OD", "OS", "control", "img", "foto", "paciente"]

COLUMNS = (
    "user_id, created_at, image_key, original_filename, content_type, size_bytes, width, "
    "height, sha256, patient_ref, eye, predicted_class, probability, probabilities, "
    "class_codes, model_version, model_demo, backend, inference_ms, feedback_verdict, "
    "feedback_correct_class, feedback_comment, feedback_updated_at"
)
INSERT = f"INSERT INTO predictions ({COLUMNS}) VALUES ({', '.join(['%s'] * 23)})"


# --------------------------------------------------------------------------- database


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


async def migrate(url: str, revision: str, *, down: bool = False) -> None:
    """Alembic's env.py runs its own event loop: in a thread, while ours keeps running."""
    cfg = alembic_config(url)
    action = command.downgrade if down else command.upgrade
    await asyncio.to_thread(action, cfg, revision)


def connect_kwargs(url: URL, database: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "charset": "utf8mb4",
        "autocommit": False,
    }
    if database:
        kwargs["db"] = database
    return kwargs


async def scalar(conn: aiomysql.Connection, sql: str, *args: Any) -> Any:
    async with conn.cursor() as cur:
        await cur.execute(sql, args or None)
        row = await cur.fetchone()
        return row[0] if row else None


async def database_state(url: URL) -> tuple[bool, int, str | None]:
    """(database exists, predictions rows, alembic revision)."""
    conn = await aiomysql.connect(**connect_kwargs(url, None))
    try:
        exists = await scalar(
            conn,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name=%s",
            url.database,
        )
        if not exists:
            return False, 0, None
        tables = await scalar(
            conn,
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema=%s AND table_name IN ('predictions', 'alembic_version')",
            url.database,
        )
        if tables < 2:
            return True, 0, None
        await conn.select_db(url.database)
        rows = await scalar(conn, "SELECT COUNT(*) FROM predictions")
        revision = await scalar(conn, "SELECT version_num FROM alembic_version")
        return True, int(rows), revision
    finally:
        await conn.ensure_closed()  # COM_QUIT now: an idle transaction would block DDL


async def recreate_database(url: URL) -> None:
    conn = await aiomysql.connect(**{**connect_kwargs(url, None), "autocommit": True})
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{url.database}`")
            await cur.execute(
                f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        await conn.ensure_closed()  # COM_QUIT now: an idle transaction would block DDL


def synthetic_rows(
    user_ids: list[int], counts: list[int], now: datetime, seed: int = 20251126
) -> Iterator[tuple[Any, ...]]:
    """Rows in created_at order (ids grow with time, as in production)."""
    rng = random.Random(seed)
    span = SPAN_DAYS * 86400
    stamps: list[tuple[float, int]] = []
    for user_id, count in zip(user_ids, counts, strict=True):
        stamps.extend((rng.random() * span, user_id) for _ in range(count))
    stamps.sort()
    start = now - timedelta(seconds=span)
    probabilities_cache: dict[tuple[str, float], str] = {}
    codes_json = json.dumps(CODES)
    for n, (offset, user_id) in enumerate(stamps):
        created = (start + timedelta(seconds=offset)).replace(microsecond=0, tzinfo=None)
        cls = rng.choices(CODES, CLASS_WEIGHTS)[0]
        top = rng.randint(30, 99) / 100  # a spread of confidences, for the calibration bins
        if (cls, top) not in probabilities_cache:
            rest = (1 - top) / (len(CODES) - 1)
            probabilities_cache[cls, top] = json.dumps([top if c == cls else rest for c in CODES])
        roll = rng.random()
        verdict = correct_class = comment = updated = None
        if roll < 0.45:
            verdict = "correct"
        elif roll < 0.6:
            verdict = "incorrect"
            if rng.random() < 0.7:
                correct_class = rng.choice([c for c in CODES if c != cls])
            if rng.random() < 0.3:
                comment = "revisado en control"
        if verdict is not None:
            updated = created + timedelta(minutes=rng.randint(1, 600))
        ext = "png" if rng.random() < 0.2 else "jpg"
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{n % 100_000:05d}.{ext}"
        yield (
            user_id,
            created,
            f"images/{created:%Y}/{created:%m}/{uuid.UUID(int=rng.getrandbits(128)).hex}.{ext}",
            name,
            "image/png" if ext == "png" else "image/jpeg",
            rng.randint(80_000, 4_000_000),
            2048,
            2048,
            hashlib.sha256(n.to_bytes(8, "big")).hexdigest(),
            f"HC-{rng.randint(1, 20_000):05d}" if rng.random() < 0.8 else None,
            rng.choice(["left", "right", "unknown"]),
            cls,
            top,
            probabilities_cache[cls, top],
            codes_json,
            "0123456789ab",
            0,
            "onnx",
            round(rng.uniform(8, 40), 2),
            verdict,
            correct_class,
            comment,
            updated,
        )


async def seed(url: URL) -> int:
    """Users + 1,000,000 predictions; returns the bench doctor's id."""
    conn = await aiomysql.connect(**connect_kwargs(url, url.database))
    now = datetime.now(UTC)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET SESSION unique_checks=0, foreign_key_checks=0")
            users = [(BENCH_EMAIL, "Bench Doctor")] + [
                (f"bench-other-{i}@example.com", f"Other {i}") for i in range(OTHER_DOCTORS)
            ]
            naive_now = now.replace(tzinfo=None, microsecond=0)
            await cur.executemany(
                "INSERT INTO users (email, name, password_hash, locale, role, is_verified, "
                "created_at, updated_at) VALUES (%s, %s, %s, 'es', 'doctor', 1, %s, %s)",
                [(email, name, "!unusable", naive_now, naive_now) for email, name in users],
            )
            await cur.execute("SELECT id, email FROM users ORDER BY id")
            ids = {email: uid for uid, email in await cur.fetchall()}
            user_ids = [ids[email] for email, _ in users]
            counts = [DOCTOR_ROWS] + [OTHER_ROWS_EACH] * OTHER_DOCTORS
            await conn.commit()

            batch: list[tuple[Any, ...]] = []
            done = 0
            started = time.perf_counter()
            for row in synthetic_rows(user_ids, counts, now):
                batch.append(row)
                if len(batch) == BATCH:
                    await cur.executemany(INSERT, batch)  # one multi-row INSERT per batch
                    await conn.commit()
                    done += len(batch)
                    batch.clear()
                    if done % 100_000 == 0:
                        rate = done / (time.perf_counter() - started)
                        print(f"  {done:>9,} rows ({rate:,.0f} rows/s)", flush=True)
            if batch:
                await cur.executemany(INSERT, batch)
                await conn.commit()
            return int(user_ids[0])
    finally:
        await conn.ensure_closed()  # COM_QUIT now: an idle transaction would block DDL


async def prepare(url_text: str, reseed: bool, reindex: bool) -> None:
    url = make_url(url_text)
    if not url.drivername.startswith("mysql"):
        raise SystemExit("bench/history.py needs a MariaDB/MySQL URL (mysql+aiomysql://...)")
    exists, rows, revision = await database_state(url)
    if reseed or not exists or rows != TOTAL_ROWS:
        print(f"== creating {url.database} and loading {TOTAL_ROWS:,} predictions", flush=True)
        await recreate_database(url)
        await migrate(url_text, "0003_predictions")
        started = time.perf_counter()
        await seed(url)
        print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
        reindex = True
    elif reindex:
        print("== rebuilding the history indexes (downgrade to 0003)", flush=True)
        await migrate(url_text, "0003_predictions", down=True)
    if reindex or revision is None:
        started = time.perf_counter()
        await migrate(url_text, "head")
        print(f"== migrated to head (indexes built) in {time.perf_counter() - started:.0f} s")
    else:
        await migrate(url_text, "head")
    conn = await aiomysql.connect(**{**connect_kwargs(url, url.database), "autocommit": True})
    try:
        async with conn.cursor() as cur:
            await cur.execute("ANALYZE TABLE predictions")
            await cur.fetchall()
    finally:
        await conn.ensure_closed()  # COM_QUIT now: an idle transaction would block DDL


# --------------------------------------------------------------------------- measuring


@dataclass
class Scenario:
    name: str
    target_ms: float | None
    requests: list[tuple[str, dict[str, Any]]]  # cycled through
    uncached: bool = False  # clear the process's cache of everyone's totals first
    count: int | None = None  # timed requests, when not --requests
    admin: bool = False  # as the administrator (the model registry routes)


@dataclass
class Result:
    name: str
    target_ms: float | None
    p50: float
    p95: float
    count: int
    total: int | None
    others: float = 0.0  # cores busy with other people's work meanwhile


def database_server_pids() -> list[int]:
    """The local MariaDB/MySQL server: it serves us, so its CPU is not "others"."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() in ("mariadbd", "mysqld"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


async def time_scenario(
    client: httpx.AsyncClient,
    app: Any,
    scenario: Scenario,
    n: int,
    warmup: int,
    server_pids: list[int],
    admin_headers: dict[str, str],
) -> Result:
    samples: list[float] = []
    total: int | None = None
    n = scenario.count or n
    meter = CpuMeter(server_pids)
    for i in range(warmup + n):
        path, params = scenario.requests[i % len(scenario.requests)]
        if scenario.uncached:
            app.state.totals_cache.clear()
        headers = admin_headers if scenario.admin else None
        started = time.perf_counter()
        response = await client.get(path, params=params, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{scenario.name}: {response.status_code} {response.text[:300]}")
        if i >= warmup:
            samples.append(elapsed)
        if total is None and isinstance(body := response.json(), dict):
            total = body.get("total")
    others = meter.read()[1]
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    return Result(scenario.name, scenario.target_ms, p50, p95, len(samples), total, others)


async def doctor_token_and_records(app: Any, settings: Settings) -> tuple[str, list[int]]:
    """An access token of the measured doctor and 200 random ids of their records."""
    async with app.state.sessionmaker() as session:
        user = (await session.scalars(select(User).where(User.email == BENCH_EMAIL))).one()
        tokens = await LoginSessions(session, settings).start(user, datetime.now(UTC))
        await session.commit()
        bounds = (
            await session.execute(
                select(func.min(Prediction.id), func.max(Prediction.id)).where(
                    Prediction.user_id == user.id
                )
            )
        ).one()
        rng = random.Random(7)
        sample_ids: list[int] = []
        while len(sample_ids) < 200:
            candidate = rng.randint(bounds[0], bounds[1])
            owner = await session.scalar(
                select(Prediction.user_id).where(Prediction.id == candidate)
            )
            if owner == user.id:
                sample_ids.append(candidate)
        return tokens.access_token, sample_ids


async def measure(url_text: str, n: int, warmup: int, only: str | None) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="ocupredict-bench-") as tmp:
        settings = Settings(
            _env_file=None,
            environment="development",
            database_url=url_text,
            jwt_secret_key=secrets.token_urlsafe(48),
            storage_backend="local",
            local_storage_dir=Path(tmp) / "images",
            mail_backend="console",
            log_level="WARNING",
        )
        app = create_app(settings)
        async with LifespanManager(app) as manager:
            token, sample_ids = await doctor_token_and_records(app, settings)
            async with app.state.sessionmaker() as session:
                admin_token = await bench_admin_token(session, settings)
                await session.commit()
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://bench",
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                results = []
                server_pids = database_server_pids()
                for scenario in scenarios(sample_ids):
                    if only and only not in scenario.name:
                        continue
                    result = await time_scenario(
                        client, app, scenario, n, warmup, server_pids, admin_token
                    )
                    results.append(result)
                    print(format_result(results[-1]), flush=True)
                await print_plans(client, app, scenarios(sample_ids))
                return results


async def print_plans(client: httpx.AsyncClient, app: Any, cases: list[Scenario]) -> None:
    """ANALYZE (MariaDB: the plan plus the rows each step really read, r_rows) of every
    query one request of each list case sends, so a page that reads all of the doctor's
    rows shows. Captured from the engine, so it is the SQL the repository really sends."""
    engine = app.state.sessionmaker.kw["bind"]
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM predictions" in statement and statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    print("== query plans of the list cases (ANALYZE: rows really read per step)")
    for scenario in cases:
        path, params = scenario.requests[0]
        if path != "/api/v1/history":
            continue
        captured.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        try:
            await client.get(path, params=params)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", capture)
        print(f"  {scenario.name}:")
        async with engine.connect() as conn:
            for statement, parameters in captured:
                kind = "count" if "count(" in statement.lower() else "page"
                raw = await conn.exec_driver_sql(f"ANALYZE {statement}", parameters)
                for row in raw.mappings():
                    print(
                        f"    {kind:5} {row['table']!s:10} {row['type']!s:6} "
                        f"key={row['key']} r_rows={row['r_rows']} extra={row['Extra']}"
                    )


async def bench_admin_token(session: Any, settings: Settings) -> dict[str, str]:
    """An administrator, and the seeded rows' model version in the registry (the app
    registered only its own demo weights at start-up)."""
    now = datetime.now(UTC)
    admin = await session.scalar(select(User).where(User.email == BENCH_ADMIN))
    if admin is None:
        admin = User(
            email=BENCH_ADMIN,
            name="Bench Admin",
            password_hash="!unusable",
            locale="en",
            role="admin",
            is_verified=True,
            created_at=now,
            updated_at=now,
        )
        session.add(admin)
        await session.flush()
    if await session.get(ModelVersion, BENCH_VERSION) is None:
        session.add(
            ModelVersion(
                version=BENCH_VERSION,
                sha256=BENCH_VERSION + "0" * 52,
                source="bench",
                storage_key=None,
                manifest=DEFAULT_MANIFEST.model_dump(mode="json"),
                demo=False,
                status="retired",
                shadow_rate=0.0,
                created_at=now,
                created_by=None,
                activated_at=None,
            )
        )
    tokens = await LoginSessions(session, settings).start(admin, now)
    return {"Authorization": f"Bearer {tokens.access_token}"}


def scenarios(sample_ids: list[int]) -> list[Scenario]:
    h = "/api/v1/history"
    since = (datetime.now(UTC) - timedelta(days=90)).date().isoformat()
    since_instant = (datetime.now(UTC) - timedelta(days=365)).replace(microsecond=0).isoformat()
    month_from = (datetime.now(UTC) - timedelta(days=60)).date().isoformat()
    month_to = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    l_ms, s_ms = LIST_TARGET_MS, STATS_TARGET_MS
    return [
        Scenario("list: first page", l_ms, [(h, {})]),
        Scenario("list: page 500", l_ms, [(h, {"page": 500})]),
        Scenario(
            "list: filtered+sorted (glaucoma, no feedback, oldest first)",
            l_ms,
            [(h, {"predicted_class": "glaucoma", "feedback": "none", "order": "asc"})],
        ),
        Scenario(
            "detail (200 different records)",
            DETAIL_TARGET_MS,
            [(f"{h}/{i}", {}) for i in sample_ids],
        ),
        *[
            Scenario(f"stats: {name}", s_ms, [("/api/v1/home/stats", {"range": name})])
            for name in ("today", "week", "month", "all")
        ],
        Scenario(
            "stats: all, everyone's totals recounted (no cache)",
            None,
            [("/api/v1/home/stats", {"range": "all"})],
            uncached=True,
            count=50,
        ),
        Scenario(
            f"model metrics: all time ({TOTAL_ROWS:,} rows of one version)",
            METRICS_TARGET_MS,
            [(f"/api/v1/admin/models/{BENCH_VERSION}/metrics", {})],
            admin=True,
        ),
        Scenario(
            "model metrics: since a date-time (partial first day + whole days)",
            METRICS_TARGET_MS,
            [(f"/api/v1/admin/models/{BENCH_VERSION}/metrics", {"date_from": since_instant})],
            admin=True,
        ),
        Scenario(
            "model metrics: one local month (Lima days: partial UTC days at both edges)",
            METRICS_TARGET_MS,
            [
                (
                    f"/api/v1/admin/models/{BENCH_VERSION}/metrics",
                    {"date_from": month_from, "date_to": month_to},
                )
            ],
            admin=True,
        ),
        # For information: other shapes of the list.
        Scenario("list: sort=predicted_class", l_ms, [(h, {"sort": "predicted_class"})]),
        Scenario("list: sort=feedback desc", l_ms, [(h, {"sort": "feedback", "order": "desc"})]),
        Scenario("list: sort=filename", l_ms, [(h, {"sort": "filename"})]),
        Scenario("list: sort=id asc", l_ms, [(h, {"sort": "id", "order": "asc"})]),
        Scenario("list: feedback=incorrect", l_ms, [(h, {"feedback": "incorrect"})]),
        Scenario(
            "list: class + last 90 days, by filename",
            l_ms,
            [(h, {"predicted_class": "cataract", "date_from": since, "sort": "filename"})],
        ),
        Scenario("list: patient_ref", l_ms, [(h, {"patient_ref": "HC-01234"})]),
        Scenario("list: q=paciente (substring scan)", None, [(h, {"q": "paciente_foto"})]),
    ]


def cpu_probe() -> float:
    """Milliseconds for a fixed pure-Python loop: the speed this (possibly shared, possibly
    virtual) CPU gives us right now, to compare runs."""
    started = time.perf_counter()
    acc = 0
    for i in range(1_000_000):
        acc += i
    return (time.perf_counter() - started) * 1000


def wait_for_idle(limit_seconds: float, threshold: float = 0.5) -> float:
    """Wait (up to limit_seconds) until other work keeps fewer than `threshold` cores busy
    for three seconds running; returns the last reading. The machine may be shared."""
    deadline = time.monotonic() + limit_seconds
    quiet = 0
    busy = background_load()
    while time.monotonic() < deadline:
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= 3:
            break
        busy = background_load()
    return busy


def format_result(r: Result) -> str:
    if r.target_ms is None:
        verdict = "(no target)"
    else:
        verdict = "ok" if r.p95 < r.target_ms else "MISSED"
        verdict = f"target p95 < {r.target_ms:.0f} ms: {verdict}"
    total = f" total={r.total:,}" if r.total is not None else ""
    return (
        f"{r.name:<58} p50 {r.p50:7.1f} ms  p95 {r.p95:7.1f} ms  (n={r.count}) {verdict};"
        f" others {r.others:.1f} cores{total}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"database URL ({DEFAULT_URL})")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per case")
    parser.add_argument("--reseed", action="store_true", help="drop and load the data again")
    parser.add_argument("--reindex", action="store_true", help="rebuild the 0004 indexes")
    parser.add_argument("--seed-only", action="store_true", help="prepare the data and stop")
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose name contains TEXT")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=300,
        metavar="SECONDS",
        help="wait up to this long for other work on the machine to calm down (default 300)",
    )
    args = parser.parse_args()

    asyncio.run(prepare(args.url, args.reseed, args.reindex))
    if args.seed_only:
        return
    busy = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else background_load()
    print(
        f"== {TOTAL_ROWS:,} predictions ({DOCTOR_ROWS:,} for the measured doctor); "
        f"{args.requests} sequential requests per case after {args.warmup} warm-up; "
        f"{os.cpu_count()} cores, {busy:.1f} busy with other work before the run; "
        f"CPU probe {cpu_probe():.0f} ms",
        flush=True,
    )
    results = asyncio.run(measure(args.url, args.requests, args.warmup, args.only))
    print(
        f"== {background_load():.1f} cores busy with other work after the run; "
        f"CPU probe {cpu_probe():.0f} ms"
    )
    missed = [r.name for r in results if r.target_ms is not None and r.p95 >= r.target_ms]
    print("== all targets met" if not missed else f"== targets missed: {', '.join(missed)}")
    noisy = [r.name for r in results if r.others > 0.3]
    if noisy:
        print(
            "== other work kept > 0.3 cores busy during: "
            + ", ".join(noisy)
            + " (those figures include its interference; run again on a quieter machine)"
        )


if __name__ == "__main__":
    main()
