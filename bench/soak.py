"""Soak with faults: POST /predict through nginx to 2 processes on MariaDB and S3 (moto),
while the S3 endpoint stops for 10 s, MariaDB restarts and one process is SIGKILLed.

    flock /tmp/ocupredict-bench.lock .venv/bin/python bench/soak.py [--requests 5000]

Everything runs on loopback and is private to the run: its own mariadbd (mariadb-install-db
into a temporary datadir, own port and socket; the machine's shared MariaDB is never
touched), a moto S3 server process, a TCP relay in front of it (the "S3 endpoint" the app
uses: stopping it refuses connections for 10 s while moto keeps its objects; moto itself
keeps them only in memory), and `ocupredict serve-nginx --processes 2` (app/deploy/harness).
Every upload is a distinct JPEG (unique sha256), so each answer can be matched to its row.

Afterwards, checked from outside (SQL on the database, S3 listing, sha256 of each object):
every 201 has its row and its object with the same sha256; every other answer is a
documented 503 code and left no row; `ocupredict sweep-images` then leaves no object
without a row. Printed: requests, 201s, rows, objects, lost, orphans before/after the
sweep, recovery time per fault, RSS per process at start and end, the split of the load
between the processes (from /metrics), and images/s through nginx for 1 and 2 processes
(a short run each, without faults, before the soak).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import ROOT, cpu_count, fundus_jpeg, multipart

from app.deploy.harness import NginxStack, free_port

BIN = Path(sys.executable).parent
RELAY = Path(__file__).with_name("_relay.py")
API = "/api/v1"
DOCUMENTED_503 = {
    "STORAGE_UNAVAILABLE",
    "DATABASE_UNAVAILABLE",
    "MODEL_UNAVAILABLE",
    "SHUTTING_DOWN",
    "SERVICE_UNAVAILABLE",
}
BUCKET = "ocupredict-soak"
DB_NAME = "ocupredict_soak_ops"
EMAIL = "soak@example.com"
PASSWORD = "soak-password-123"


# --------------------------------------------------------------------------- private servers


class PrivateMariaDB:
    """A mariadbd of our own: datadir, port and socket in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.datadir = root / "data"
        self.socket = root / "mysqld.sock"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+aiomysql://root@127.0.0.1:{self.port}/{DB_NAME}?charset=utf8mb4"

    def install(self) -> None:
        self.datadir.mkdir(parents=True)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=" + os.environ.get("USER", "root"),
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        args = [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.root / 'mysqld.pid'}",
            f"--log-error={self.root / 'mysqld.err'}",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=400",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.sql("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("the private mariadbd did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def sql(self, statement: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mariadb", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statement],
            check=check,
            capture_output=True,
            text=True,
        )


class Relay:
    """The S3 endpoint the app talks to: a TCP relay process in front of moto on a port
    fixed for the run; stop() closes it (connections refused), start() opens it again."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("_relay.py")),
                str(self.port),
                str(self.target),
            ]
        )
        wait_port(self.port, 10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# --------------------------------------------------------------------------- load


@dataclass
class Outcome:
    sha256: str
    status: int
    code: str | None
    at: float  # seconds since the soak began (answer time)


@dataclass
class Load:
    total: int
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    started: int = 0
    begin: float = field(default_factory=time.perf_counter)


def unique_upload(base: bytes, n: int) -> tuple[bytes, str]:
    """The base JPEG with a unique comment after its end marker: decoders ignore it, the
    sha256 differs per request."""
    data = base + f"soak-{n:08d}-{os.getpid()}".encode()
    return data, hashlib.sha256(data).hexdigest()


async def post(
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None],
    port: int,
    body: bytes,
    headers: dict[str, str],
) -> tuple[int, bytes]:
    if streams[0] is None:
        streams[0] = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = streams[0]
    head_lines = [f"POST {API}/predict HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head_lines += [f"Content-Length: {len(body)}"]
    head_lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"connection" and b"close" in value.lower():
            close = True
    answer = await reader.readexactly(length)
    if close:
        writer.close()
        streams[0] = None
    return status, answer


async def run_load(port: int, token: str, base: bytes, load: Load, offset: int) -> None:
    async def client() -> None:
        streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None]
        while load.started < load.total:
            n = offset + load.started
            load.started += 1
            data, sha = unique_upload(base, n)
            body, headers = multipart(data, f"soak-{n}.jpg")
            headers["Authorization"] = f"Bearer {token}"
            code: str | None = None
            try:
                async with asyncio.timeout(120):
                    status, answer = await post(streams, port, body, headers)
                if status != 201:
                    with contextlib.suppress(ValueError, AttributeError):
                        code = json.loads(answer).get("code")
                elif json.loads(answer)["image"]["sha256"] != sha:
                    code = "SHA_MISMATCH"
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                status, code = 0, type(exc).__name__
                if streams[0] is not None:
                    streams[0][1].close()
                streams[0] = None
            load.outcomes.append(Outcome(sha, status, code, time.perf_counter() - load.begin))
        if streams[0] is not None:
            streams[0][1].close()

    await asyncio.gather(*(client() for _ in range(load.clients)))


# --------------------------------------------------------------------------- helpers


def service_env(db: PrivateMariaDB, relay: Relay, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "OCUPREDICT_"))}
    for name in ("MODEL_SOURCE", "MODEL_S3_KEY", "TRUSTED_PROXIES", "METRICS_ALLOWED"):
        env.pop(name, None)
    env.update(
        {
            "ENVIRONMENT": "development",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": db.url,
            "JWT_SECRET_KEY": "soak-" + "x" * 40,
            "STORAGE_BACKEND": "s3",
            "AWS_S3_BUCKET": BUCKET,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{relay.port}",
            "MAIL_BACKEND": "console",
            "MODEL_CACHE_DIR": str(ROOT / "var" / "model-cache"),
            "SHUTDOWN_TIMEOUT_SECONDS": "30",
        }
    )
    return env


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def predict_counts(stack: NginxStack) -> dict[str, float]:
    """POST /predict answers per process index, from /metrics (all statuses)."""
    import urllib.request

    with urllib.request.urlopen(stack.url("/metrics"), timeout=30) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ocupredict_http_requests_total{") and 'route="/predict"' in line:
            process = re.search(r'process="(\d+)"', line).group(1)  # type: ignore[union-attr]
            counts[process] = counts.get(process, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def login(base_url: str) -> str:
    import httpx

    response = httpx.post(
        f"{base_url}{API}/auth/login", data={"username": EMAIL, "password": PASSWORD}, timeout=60
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def first_201_after(load: Load, moment: float) -> float | None:
    times = [o.at for o in load.outcomes if o.status == 201 and o.at >= moment]
    return min(times) - moment if times else None


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def list_objects(s3) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """key -> sha256 of the object's bytes."""
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            found[item["Key"]] = hashlib.sha256(body).hexdigest()
    return found


def rows(db: PrivateMariaDB) -> dict[str, str]:
    """sha256 -> image_key of every prediction row."""
    out = db.sql(f"SELECT sha256, image_key FROM {DB_NAME}.predictions").stdout
    return dict(line.split("\t") for line in out.splitlines() if line)


# --------------------------------------------------------------------------- phases


def throughput(env: dict[str, str], tmp: Path, base: bytes, processes: int, n: int) -> float:
    stack = NginxStack(env, processes=processes, socket_dir=tmp / f"run-tp{processes}", cwd=tmp)
    with stack:
        stack.wait_ready()
        token = login(stack.base_url)
        warm = Load(total=32, clients=16)
        asyncio.run(run_load(stack.port, token, base, warm, offset=processes * 10_000_000))
        load = Load(total=n, clients=16)
        started = time.perf_counter()
        asyncio.run(run_load(stack.port, token, base, load, offset=processes * 10_000_000 + 100))
        took = time.perf_counter() - started
        ok = sum(1 for o in load.outcomes if o.status == 201)
        split = predict_counts(stack)
    print(
        f"  {processes} process(es): {ok}/{n} 201 in {took:.1f} s = {ok / took:.1f} images/s;"
        f" /predict per process (incl. warm-up): {split}",
        flush=True,
    )
    return ok / took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--side", type=int, default=512, help="JPEG side in pixels")
    parser.add_argument("--throughput-requests", type=int, default=600)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ocupredict-soak-"))
    print(f"soak: working directory {tmp}; {cpu_count()} cores; load {os.getloadavg()}")
    db = PrivateMariaDB(tmp / "mariadb")
    moto_port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    relay = Relay(moto_port)
    base = fundus_jpeg(args.side)
    try:
        db.install()
        db.start()
        db.sql(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        wait_port(moto_port, 30)
        relay.start()
        s3 = s3_client(f"http://127.0.0.1:{moto_port}")  # behind the app's back
        s3.create_bucket(Bucket=BUCKET)
        env = service_env(db, relay, tmp)
        subprocess.run([str(BIN / "ocupredict"), "migrate"], env=env, cwd=tmp, check=True)
        admin = subprocess.run(
            [str(BIN / "ocupredict"), "create-admin", EMAIL, "--name", "Soak", "--password-stdin"],
            env=env,
            cwd=tmp,
            input=PASSWORD + "\n",
            text=True,
            capture_output=True,
            check=True,
        )
        print(f"soak: {admin.stdout.strip()}")

        if not args.skip_throughput:
            print(f"soak: images/s through nginx at {args.clients} clients, no faults:")
            one = throughput(env, tmp, base, 1, args.throughput_requests)
            two = throughput(env, tmp, base, 2, args.throughput_requests)
            print(f"  2 processes / 1 process: {two / one:.2f}")

        before_rows = set(rows(db))
        before_objects = set(list_objects(s3))
        stack = NginxStack(env, processes=2, socket_dir=tmp / "run", cwd=tmp)
        with stack:
            stack.wait_ready()
            token = login(stack.base_url)
            pids = stack.pids()
            rss_start = {i: rss_mib(pid) for i, pid in pids.items()}
            split_before = predict_counts(stack)
            load = Load(total=args.requests, clients=args.clients)
            faults: dict[str, dict[str, float | None]] = {}

            async def inject() -> None:
                async def at(fraction: float) -> None:
                    while load.started < fraction * load.total:
                        await asyncio.sleep(0.1)

                def now() -> float:
                    return time.perf_counter() - load.begin

                await at(0.15)
                began = now()
                relay.stop()
                print(f"soak: t={began:.1f} s: S3 endpoint stopped for 10 s", flush=True)
                await asyncio.sleep(10)
                relay.start()
                faults["s3 stopped 10 s"] = {"fault_at": began, "restored_at": now()}

                await at(0.40)
                began = now()
                await asyncio.to_thread(db.stop)
                print(f"soak: t={began:.1f} s: MariaDB stopped; starting it again", flush=True)
                await asyncio.to_thread(db.start)
                faults["mariadb restart"] = {"fault_at": began, "restored_at": now()}

                await at(0.65)
                began = now()
                victim = stack.pids()[1]
                os.kill(victim, signal.SIGKILL)
                print(f"soak: t={began:.1f} s: process 1 (pid {victim}) SIGKILLed", flush=True)
                back = await asyncio.to_thread(stack.wait_process_ready, 1, 300)
                faults["process 1 SIGKILL"] = {"fault_at": began, "restored_at": began + back}

            async def soak() -> None:
                await asyncio.gather(run_load(stack.port, token, base, load, offset=0), inject())

            asyncio.run(soak())
            took = time.perf_counter() - load.begin
            pids_end = stack.pids()
            rss_end = {i: rss_mib(pid) for i, pid in pids_end.items()}
            split = predict_counts(stack)
            logs = stack.log_tail(10_000)
        # Everything of the stack has stopped here (the harness checks it).

        statuses: dict[str, int] = {}
        for o in load.outcomes:
            key = str(o.status) if o.status in (0, 201) else f"{o.status} {o.code}"
            statuses[key] = statuses.get(key, 0) + 1
        table = {sha: key for sha, key in rows(db).items() if sha not in before_rows}
        objects = {k: v for k, v in list_objects(s3).items() if k not in before_objects}
        ok = [o for o in load.outcomes if o.status == 201]
        lost = [o for o in ok if o.sha256 not in table or objects.get(table[o.sha256]) != o.sha256]
        refused = [o for o in load.outcomes if o.status != 201]
        undocumented = [o for o in refused if not (o.status == 503 and o.code in DOCUMENTED_503)]
        refused_with_row = [o for o in refused if o.sha256 in table]
        rows_without_object = [sha for sha, key in table.items() if objects.get(key) != sha]
        orphans_before = [k for k in objects if k not in set(table.values())]

        time.sleep(2)  # the sweep looks only at objects older than its grace period
        sweep = subprocess.run(
            [str(BIN / "ocupredict"), "sweep-images", "--older-than-hours", "0.0003"],
            env={**env, "S3_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"},
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        objects_after = {k for k in list_objects(s3) if k not in before_objects}
        orphans_after = [k for k in objects_after if k not in set(table.values())]

        print("\nsoak: results")
        print(f"  requests        {len(load.outcomes)} in {took:.1f} s at {args.clients} clients")
        print(f"  answers         {dict(sorted(statuses.items()))}")
        print(f"  201s            {len(ok)}")
        print(f"  rows            {len(table)} (new)")
        print(f"  objects         {len(objects)} (new, before the sweep)")
        print(
            f"  lost            {len(lost)} (201 without its row or its object, or sha256 differs)"
        )
        print(f"  rows w/o object {len(rows_without_object)}")
        print(f"  non-201 w/ row  {len(refused_with_row)}")
        examples = [(o.status, o.code) for o in undocumented][:5]
        print(f"  undocumented    {len(undocumented)} {examples}")
        print(
            f"  orphans         {len(orphans_before)} before the sweep, {len(orphans_after)} after"
        )
        print(f"  sweep           {sweep.stdout.strip()} (exit {sweep.returncode})")
        for name, info in faults.items():
            first = first_201_after(load, float(info["restored_at"] or 0))
            down = (info["restored_at"] or 0) - (info["fault_at"] or 0)
            first_text = f"{first:.2f} s" if first is not None else "never"
            print(
                f"  fault           {name}: at t={info['fault_at']:.1f} s, restored after "
                f"{down:.1f} s, first 201 {first_text} after that"
            )
        kill = faults.get("process 1 SIGKILL")
        if kill:
            during = [o for o in load.outcomes if kill["fault_at"] <= o.at <= kill["restored_at"]]
            served_ok = sum(o.status == 201 for o in during)
            print(f"  while process 1 restarted: {served_ok} of {len(during)} answers were 201")
        for i in sorted(rss_start):
            print(
                f"  RSS process {i}   start {rss_start[i]:.0f} MiB (pid {pids[i]}), end "
                f"{rss_end.get(i) or 0:.0f} MiB (pid {pids_end.get(i)})"
            )
        served = {k: split.get(k, 0) - split_before.get(k, 0) for k in split}
        total = sum(served.values()) or 1
        shares = ", ".join(
            f"process {k}: {v:.0f} ({100 * v / total:.1f}%)" for k, v in sorted(served.items())
        )
        print(f"  /predict split  {shares} (from /metrics; restarted process counted from 0)")
        restarts = logs.count("starting it again")
        print(f"  restarts        {restarts} (supervisor log)")
        failed = bool(
            lost or rows_without_object or undocumented or refused_with_row or orphans_after
        )
        print(f"\nsoak: {'FAILED' if failed else 'passed'}")
        return 1 if failed else 0
    finally:
        relay.stop()
        moto.terminate()
        moto.wait(10)
        db.stop()
        print(f"soak: working directory kept at {tmp}")


if __name__ == "__main__":
    sys.exit(main())
