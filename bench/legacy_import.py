"""Speed of `ocupredict import-legacy`: rows per second for 5,000 history rows with images.

Generates the test suite's legacy world (tests/legacy_source.py: 200 users, 5,000 rows,
small JPEG/PNG images, the same bad rows), puts the images in a bucket of a moto S3
server running as its own process (so its CPU is not ours), and imports it twice into a
fresh migrated database: once into the local image store, once into another bucket of
the same moto server. Prints rows/s, the import's and moto's CPU per row, and how busy
the rest of the machine was meanwhile (the machine is shared).

    flock /tmp/ocupredict-bench.lock .venv/bin/python bench/legacy_import.py [--rows 5000]
        [--mariadb mysql+aiomysql://root@127.0.0.1:3306]   # source and target on MariaDB
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from _common import ROOT, CpuMeter, background_load, free_port  # puts ROOT on sys.path
from alembic.config import Config
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from app.config import Settings
from app.legacy.importer import ImportOptions, import_legacy
from tests.support import legacy as legacy_source

KEY = "bench"


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    s3 = s3_client(endpoint)
    for _ in range(200):
        try:
            s3.list_buckets()
            return process, endpoint
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
    )


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fresh_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database or "").unlink(missing_ok=True)
        return
    server = create_async_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
    async with server.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
        await conn.execute(text(f"CREATE DATABASE `{parsed.database}` CHARACTER SET utf8mb4"))
    await server.dispose()


def migrate(url: str) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--mariadb", help="server URL (no database): source and target there")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="legacy-bench-"))
    data = legacy_source.generate(n_users=200, n_rows=args.rows, taken_user=None)
    if args.mariadb:
        server = args.mariadb.rstrip("/")
        source_url, source_async = legacy_source.source_urls(f"{server}/legacy", tmp, "bench")
        target = f"{server}/ocupredict_bench_legacy?charset=utf8mb4"
    else:
        source_url, source_async = legacy_source.source_urls(None, tmp, "bench")
        target = f"sqlite+aiosqlite:///{tmp}/target.db"
    asyncio.run(legacy_source.create_source(source_async, data))

    moto, endpoint = start_moto()
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket="legacy-images")
        s3.create_bucket(Bucket="ocupredict-images")
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda item: s3.put_object(Bucket="legacy-images", Key=item[0], Body=item[1]),
                    data.objects.items(),
                )
            )
        print(f"seeded {len(data.objects)} legacy images in {time.perf_counter() - started:.1f} s")
        print(f"other processes kept {background_load():.2f} of {os.cpu_count()} cores busy")
        for label, store in (
            ("S3 -> local store", {"storage_backend": "local", "local_storage_dir": tmp / "store"}),
            ("S3 -> S3", {"storage_backend": "s3", "aws_s3_bucket": "ocupredict-images"}),
        ):
            asyncio.run(fresh_database(target))
            migrate(target)
            settings = Settings(
                _env_file=None,
                database_url=target,
                s3_endpoint_url=endpoint,
                aws_region="us-east-1",
                aws_access_key_id=SecretStr(KEY),
                aws_secret_access_key=SecretStr(KEY),
                **store,
            )
            ours0, moto0 = process_cpu_seconds(os.getpid()), process_cpu_seconds(moto.pid)
            meter = CpuMeter([moto.pid])
            report = asyncio.run(
                import_legacy(settings, ImportOptions(source_url, "legacy-images"))
            )
            busy, others = meter.read()
            ours = process_cpu_seconds(os.getpid()) - ours0
            moto_cpu = process_cpu_seconds(moto.pid) - moto0
            rows = report.history.read
            assert report.aborted is None, report.aborted
            print(
                f"{label:18} {rows} rows ({report.history.imported} imported, "
                f"{report.history.failed} failed) in {report.history_seconds:.1f} s: "
                f"{report.history_rows_per_second:.0f} rows/s; CPU per row: import "
                f"{1000 * ours / rows:.1f} ms, moto {1000 * moto_cpu / rows:.1f} ms; "
                f"others busy {others:.2f} cores"
            )
            print(f"{'':18} (machine busy {busy:.2f} cores in all)")
    finally:
        moto.terminate()
        moto.wait()
        if args.mariadb:
            asyncio.run(legacy_source.drop_source(source_async))


if __name__ == "__main__":
    main()
