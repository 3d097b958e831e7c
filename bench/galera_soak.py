"""Galera soak: uploads through nginx to 2 processes, each writing through a different node
of a 3-node MariaDB Galera cluster, while process 1's node is SIGKILLed, restarted and
rejoins; against the same load on a single MariaDB.

    flock /tmp/ocupredict-bench.lock .venv/bin/python bench/galera_soak.py \\
        [--requests 3000] [--clients 16]

Everything runs on loopback and is private to the run (needs root, mariadbd, galera-4):
the cluster of app/deploy/galera.py (own data directories and ports; the machine's
MariaDB is never touched), `ocupredict serve-nginx --processes 2` (app/deploy/harness.py)
with DATABASE_URL_0 on node 0 and DATABASE_URL_1 on node 1, a local image store. Every
upload is a distinct JPEG (unique sha256), so each answer can be matched to its row.

The clients behave like the web app: an upload answered 503 (or a dropped connection) is
sent again after a short pause, up to --tries times. At --kill-at of the run, node 1 is
SIGKILLed and at once restarted (`mariadbd --wsrep-recover`, then a start that rejoins by
IST); process 1 answers 503 DATABASE_UNAVAILABLE meanwhile.

Printed: requests (HTTP answers, retries included), uploads and their 201s, lost (an
upload never answered 201, or a 201 whose row is missing on a node), duplicates (an upload
with more than one row), whether every 201's row is on all 3 nodes after the rejoin,
recovery time (SIGKILL -> node Synced again, and -> process 1 ready again) and images/s
(201s per second of the run) against the same run, without the kill, on one MariaDB with
the same InnoDB settings (the ratio; the target is at least 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _common import ROOT, cpu_count, fundus_jpeg, multipart
from soak import EMAIL, PASSWORD, login, post, unique_upload

from app.deploy.galera import GaleraCluster
from app.deploy.galera_node import missing_requirements
from app.deploy.harness import NginxStack, unix_get

BIN = Path(sys.executable).parent
API = "/api/v1"
DB = "ocupredict_galera_soak"
VICTIM = 1  # node 1: the node process 1 writes through


@dataclass
class Upload:
    sha256: str
    answers: list[tuple[int, str | None]] = field(default_factory=list)  # (status, code)
    ok_at: float | None = None  # seconds since the run began, when it was answered 201


@dataclass
class Run:
    total: int
    clients: int
    tries: int
    uploads: list[Upload] = field(default_factory=list)
    started: int = 0
    begin: float = field(default_factory=time.perf_counter)

    def now(self) -> float:
        return time.perf_counter() - self.begin


async def run_load(port: int, token: str, base: bytes, run: Run, offset: int) -> None:
    async def client() -> None:
        streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None]
        while run.started < run.total:
            n = offset + run.started
            run.started += 1
            data, sha = unique_upload(base, n)
            upload = Upload(sha)
            run.uploads.append(upload)
            body, headers = multipart(data, f"galera-{n}.jpg")
            headers["Authorization"] = f"Bearer {token}"
            for attempt in range(run.tries):
                code: str | None = None
                try:
                    async with asyncio.timeout(120):
                        status, answer = await post(streams, port, body, headers)
                    if status != 201:
                        with contextlib.suppress(ValueError, AttributeError):
                            code = json.loads(answer).get("code")
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    status, code = 0, type(exc).__name__
                    if streams[0] is not None:
                        streams[0][1].close()
                    streams[0] = None
                upload.answers.append((status, code))
                if status == 201:
                    upload.ok_at = run.now()
                    break
                if status not in (0, 503):
                    break  # not a transient refusal: sending it again would not help
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        if streams[0] is not None:
            streams[0][1].close()

    await asyncio.gather(*(client() for _ in range(run.clients)))


def service_env(tmp: Path, urls: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "OCUPREDICT_"))}
    for name in ("MODEL_SOURCE", "MODEL_S3_KEY", "TRUSTED_PROXIES", "METRICS_ALLOWED"):
        env.pop(name, None)
    for name in [k for k in env if k.startswith("DATABASE_URL")]:
        env.pop(name)
    env.update(
        {
            "ENVIRONMENT": "development",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": urls[0],
            "JWT_SECRET_KEY": "galera-soak-" + "x" * 40,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(tmp / "images"),
            "MAIL_BACKEND": "console",
            "MODEL_CACHE_DIR": str(ROOT / "var" / "model-cache"),
            "SHUTDOWN_TIMEOUT_SECONDS": "30",
        }
    )
    for index, url in enumerate(urls):
        env[f"DATABASE_URL_{index}"] = url
    return env


def prepare(db: GaleraCluster, env: dict[str, str], tmp: Path) -> None:
    import subprocess

    db.query(0, f"CREATE DATABASE {DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    subprocess.run([str(BIN / "ocupredict"), "migrate"], env=env, cwd=tmp, check=True)
    subprocess.run(
        [str(BIN / "ocupredict"), "create-admin", EMAIL, "--name", "Soak", "--password-stdin"],
        env=env,
        cwd=tmp,
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        check=True,
    )


def shas_by_node(db: GaleraCluster) -> list[Counter[str]]:
    nodes = range(len(db.nodes))
    return [
        Counter(r[0] for r in db.query(i, f"SELECT sha256 FROM {DB}.predictions")) for i in nodes
    ]


def soak(
    db: GaleraCluster, label: str, args: argparse.Namespace, base: bytes, *, kill: bool
) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix=f"ocupredict-galera-soak-{label}-"))
    urls = [db.url(i, DB) for i in range(min(2, len(db.nodes)))]
    env = service_env(tmp, urls)
    prepare(db, env, tmp)
    stack = NginxStack(env, processes=2, socket_dir=tmp / "run", cwd=tmp)
    events: dict[str, float] = {}
    with stack:
        stack.wait_ready()
        token = login(stack.base_url)
        warm = Run(total=32, clients=args.clients, tries=args.tries)
        asyncio.run(run_load(stack.port, token, base, warm, offset=90_000_000))
        before = shas_by_node(db)[0]
        run = Run(total=args.requests, clients=args.clients, tries=args.tries)

        async def fault() -> None:
            while run.started < args.kill_at * run.total:
                await asyncio.sleep(0.05)
            events["kill"] = run.now()
            await asyncio.to_thread(db.kill, VICTIM)
            print(f"  t={events['kill']:.1f} s: node {VICTIM} SIGKILLed; restarting it", flush=True)
            await asyncio.to_thread(db.restart, VICTIM, 600)
            events["synced"] = run.now()
            while True:  # process 1 answers ready again (its node is back)
                with contextlib.suppress(OSError):
                    status, _ = unix_get(stack.socket(VICTIM), f"{API}/health/ready", 5)
                    if status == 200:
                        break
                await asyncio.sleep(0.05)
            events["ready"] = run.now()

        async def main() -> None:
            jobs = [run_load(stack.port, token, base, run, offset=0)]
            if kill:
                jobs.append(fault())
            await asyncio.gather(*jobs)

        run.begin = time.perf_counter()
        asyncio.run(main())
        took = run.now()
    # The stack has stopped here (the harness checks it); its logs and images go.
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    if kill:
        db.wait_synced(timeout=300)
    by_node = shas_by_node(db)
    rows = [Counter({s: n for s, n in node.items() if s not in before}) for node in by_node]
    ok = [u for u in run.uploads if u.ok_at is not None]
    answers = Counter(
        "201" if status == 201 else f"{status} {code}"
        for u in run.uploads
        for status, code in u.answers
    )
    lost = [u for u in run.uploads if u.ok_at is None] + [
        u for u in ok if any(u.sha256 not in node for node in rows)
    ]
    duplicates = sum(n - 1 for n in rows[0].values() if n > 1)
    everywhere = all(all(u.sha256 in node for node in rows) for u in ok)
    same_rows = all(node == rows[0] for node in rows)
    result: dict[str, object] = {
        "requests": sum(len(u.answers) for u in run.uploads),
        "uploads": len(run.uploads),
        "201s": len(ok),
        "lost": len(lost),
        "duplicates": duplicates,
        "rows_on_every_node": everywhere and same_rows,
        "rows_per_node": [sum(node.values()) for node in rows],
        "resent_uploads": sum(len(u.answers) > 1 for u in run.uploads),
        "answers": dict(sorted(answers.items())),
        "seconds": took,
        "images_per_s": len(ok) / took,
    }
    if kill:
        result["node_synced_after_s"] = events["synced"] - events["kill"]
        result["process_ready_after_s"] = events["ready"] - events["kill"]
        first = [u.ok_at for u in ok if u.ok_at >= events["kill"]]
        result["first_201_after_kill_s"] = min(first) - events["kill"] if first else None
    return result


def show(label: str, result: dict[str, object]) -> None:
    print(f"\n{label}")
    for key, value in result.items():
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<24}{text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="uploads per run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--side", type=int, default=512, help="JPEG side in pixels")
    parser.add_argument("--tries", type=int, default=20, help="sends of one upload at most")
    parser.add_argument("--kill-at", type=float, default=0.4, help="fraction of the run")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep each run's logs and images")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason:
        print(f"galera_soak: cannot run here: {reason}")
        return 2
    print(f"galera_soak: {cpu_count()} cores; load {os.getloadavg()}; {args.requests} uploads")
    base = fundus_jpeg(args.side)
    single: dict[str, object] | None = None
    if not args.skip_baseline:
        print("single MariaDB (same InnoDB settings, no wsrep), 2 processes, no fault:")
        with GaleraCluster(nodes=1, wsrep=False) as one:
            single = soak(one, "single", args, base, kill=False)
        show("single MariaDB", single)
    print("\n3-node Galera, process 0 -> node 0, process 1 -> node 1, node 1 SIGKILLed:")
    with GaleraCluster(nodes=3) as cluster:
        print(f"  cluster Synced in {cluster.start_seconds:.1f} s")
        galera = soak(cluster, "galera", args, base, kill=True)
    print(f"  cluster stopped in {cluster.stop_seconds:.1f} s")
    show("Galera, writers on 2 nodes, node 1 killed mid-run", galera)
    failed = bool(galera["lost"] or galera["duplicates"] or not galera["rows_on_every_node"])
    if single is not None:
        ratio = float(galera["images_per_s"]) / float(single["images_per_s"])  # type: ignore[arg-type]
        print(f"\nimages/s Galera (with the kill) / single MariaDB: {ratio:.2f} (target >= 0.8)")
        failed = failed or ratio < 0.8
    print(f"\ngalera_soak: {'FAILED' if failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
