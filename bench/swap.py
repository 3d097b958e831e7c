"""Hot swap under load: 2 processes, >= 8 clients, activation and rollback through the API.

1. A fresh MariaDB database (default ocupredict_swap on the local server), a moto S3
   server, and two single-process services on it sharing one image store: either two
   plain uvicorns (`--front plain`, the clients split between them) or `ocupredict
   serve-nginx --processes 2` (`--front nginx`, every client through nginx).
2. An administrator (`ocupredict create-admin`) registers a second set of weights by
   multipart upload and a third from s3://; corrupt weights, a wrong manifest and a
   parity failure must each be 422 INVALID_MODEL and leave both processes' active
   version as it was.
3. Under a closed loop of `--clients` (8) keep-alive clients posting a fundus JPEG to
   POST /predict, it activates the upload, then the s3:// version, then rolls back to the
   start-up version, each `--dwell` seconds apart. For every transition it checks: no
   failed request; every answer names the old or the new version; every request sent
   later than `--bound` seconds after the activation answered got the new one. It prints
   per transition the measured convergence (the last old answer after the activation
   answered) against the stated bound MODEL_POLL_SECONDS + one classifier build.

    flock /tmp/ocupredict-bench.lock .venv/bin/python bench/swap.py [--front nginx]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pymysql
import torch
from _common import (  # puts ROOT on sys.path
    LOOPBACK,
    Server,
    _Connection,
    background_load,
    encode_request,
    free_port,
    fundus_jpeg,
    multipart,
    run_checked,
    start_server,
)
from sqlalchemy.engine import make_url

from app.deploy.harness import NginxStack, unix_get
from app.inference.network import seeded_state_dict

API = "/api/v1"
DEFAULT_URL = "mysql+aiomysql://root@127.0.0.1:3306/ocupredict_swap"
POLL_SECONDS = 2.0
ADMIN_EMAIL = "swap-admin@example.com"
ADMIN_PASSWORD = "Swap-admin-password-0123"
DOCTOR_EMAIL = "swap-doctor@example.com"
BUCKET = "swap-models"


def weights(seed: int, scale_head: float = 1.0) -> bytes:
    state = seeded_state_dict(4, seed)
    for name in ("base.fc.3.weight", "base.fc.3.bias"):
        state[name] = state[name] * scale_head
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def recreate_database(url_text: str) -> None:
    url = make_url(url_text)
    conn = pymysql.connect(
        host=url.host or LOOPBACK,
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{url.database}`")
            cur.execute(
                f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        conn.close()


def service_env(workdir: Path, database_url: str, s3_endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "INFERENCE_"))}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
        ENVIRONMENT="development",
        DATABASE_URL=database_url,
        STORAGE_BACKEND="local",
        LOCAL_STORAGE_DIR=str(workdir / "images"),
        MODEL_CACHE_DIR=str(workdir / "model-cache"),
        MODEL_POLL_SECONDS=str(POLL_SECONDS),
        INFERENCE_BACKEND="auto",
        INFERENCE_THREADS="1",  # two processes on this host's cores
        MAIL_BACKEND="console",
        JWT_SECRET_KEY="swap-bench-secret-0123456789abcdef0123456789",
        ACCESS_TOKEN_MINUTES="120",
        LOG_LEVEL="INFO",
        S3_ENDPOINT_URL=s3_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    return env


@dataclass
class Front:
    """Where clients connect: one plain uvicorn, or nginx in front of the processes."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def start_fronts(
    front: str, workdir: Path, env: dict[str, str], stack: ExitStack
) -> tuple[list[Front], Callable[[], set[str]]]:
    """The fronts, and a reading of the version each process serves (asked directly)."""
    cli = [sys.executable, "-m", "app.cli"]
    ready = f"{API}/health/ready"
    if front == "nginx":
        nginx = NginxStack(env, processes=2, socket_dir=workdir / "run", cwd=workdir)
        stack.enter_context(nginx)
        nginx.wait_ready(300)

        def versions() -> set[str]:
            return {
                json.loads(unix_get(nginx.socket(i), ready, 30)[1])["model"]["version"]
                for i in range(2)
            }

        return [Front(nginx.port)], versions
    servers: list[Server] = []
    for i in range(2):
        port = free_port()
        server = start_server(
            f"process {i}",
            [*cli, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "1"],
            env=env,
            port=port,
            log_path=workdir / f"server-{i}.log",
            ready_path=ready,
        )
        stack.callback(server.stop)
        servers.append(server)

    def plain_versions() -> set[str]:
        return {
            httpx.get(s.base_url + ready, timeout=30).json()["model"]["version"] for s in servers
        }

    return [Front(s.port) for s in servers], plain_versions


@dataclass
class Answer:
    sent: float
    received: float
    front: int
    status: int
    version: str | None


async def load(
    fronts: list[Front], body: bytes, headers: dict[str, str], clients: int, stop: asyncio.Event
) -> list[Answer]:
    answers: list[Answer] = []

    async def client(i: int) -> None:
        front = fronts[i % len(fronts)]
        request = encode_request(front.base_url, f"{API}/predict", body, headers)
        connection = _Connection(LOOPBACK, front.port, request)
        try:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status, raw = await connection.post()
                    version = json.loads(raw).get("model", {}).get("version")
                except (OSError, EOFError, ValueError, asyncio.IncompleteReadError):
                    status, version = 0, None
                answers.append(Answer(sent, time.monotonic(), i % len(fronts), status, version))
        finally:
            await connection.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front", choices=("plain", "nginx"), default="plain")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"MariaDB database ({DEFAULT_URL})")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--dwell", type=float, default=15.0, help="seconds between activations")
    parser.add_argument(
        "--bound",
        type=float,
        default=12.0,
        help="stated convergence bound: MODEL_POLL_SECONDS (2) + one build (default 12 s)",
    )
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    recreate_database(args.url)
    workdir = Path(tempfile.mkdtemp(prefix="ocupredict-swap-"))
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address=LOOPBACK, port=s3_port, verbose=False)
    moto.start()
    s3_endpoint = f"http://{LOOPBACK}:{s3_port}"
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="eye/v3.pth", Body=weights(3003))
    env = service_env(workdir, args.url, s3_endpoint)
    cli = [sys.executable, "-m", "app.cli"]
    run_checked([*cli, "migrate"], env, workdir / "migrate.log")
    for email, password in ((ADMIN_EMAIL, ADMIN_PASSWORD),):
        subprocess.run(
            [*cli, "create-admin", email, "--name", "Swap Admin", "--password-stdin"],
            input=f"{password}\n".encode(),
            env=env,
            check=True,
            capture_output=True,
        )
    failures: list[str] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)  # last: after every server stopped
        stack.callback(moto.stop)
        fronts, ready_versions = start_fronts(args.front, workdir, env, stack)
        base = fronts[0].base_url + API
        with httpx.Client(base_url=base, timeout=300) as http:
            login = http.post(
                "/auth/login", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
            # The admin's token serves for /predict too (any verified user may predict).
            (old,) = ready_versions()
            up = http.post(
                "/admin/models",
                headers=admin,
                files={"weights": ("v2.pth", weights(2002), "application/octet-stream")},
            )
            s3v = http.post(
                "/admin/models", headers=admin, json={"source": f"s3://{BUCKET}/eye/v3.pth"}
            )
            if up.status_code != 201 or s3v.status_code != 201:
                raise RuntimeError(
                    f"register: {up.status_code} {up.text} / {s3v.status_code} {s3v.text}"
                )
            v_up, v_s3 = up.json()["version"], s3v.json()["version"]
            print(f"start-up version {old}; registered {v_up} (upload), {v_s3} (s3://)")
            bad = {
                "corrupt weights": {
                    "weights": ("x.pth", b"garbage" * 1000, "application/octet-stream")
                },
                "wrong manifest": {
                    "weights": ("x.pth", weights(9), "application/octet-stream"),
                    "manifest": (
                        "x.json",
                        json.dumps({"classes": [{"code": "a", "es": "A", "en": "A"}]}).encode(),
                        "application/json",
                    ),
                },
                "parity failure": {
                    "weights": ("x.pth", weights(9, 1e4), "application/octet-stream")
                },
            }
            for name, files in bad.items():
                r = http.post("/admin/models", headers=admin, files=files)
                versions = ready_versions()
                ok = (
                    r.status_code == 422
                    and r.json()["code"] == "INVALID_MODEL"
                    and versions == {old}
                )
                print(
                    f"  {name:<16} -> {r.status_code} {r.json()['code']};"
                    f" active everywhere {versions}: {'ok' if ok else 'FAILED'}"
                )
                if not ok:
                    failures.append(name)

        body, headers = multipart(fundus_jpeg(512))
        headers["Authorization"] = admin["Authorization"]
        plan = [(v_up, "upload"), (v_s3, "s3://"), (old, "rollback")]
        marks: list[tuple[str, str, float, float]] = []  # old, new, started, answered

        async def scenario() -> list[Answer]:
            stop = asyncio.Event()
            task = asyncio.create_task(load(fronts, body, headers, args.clients, stop))
            await asyncio.sleep(args.dwell / 2)
            current = old
            async with httpx.AsyncClient(base_url=base, timeout=300) as http:
                for target, _ in plan:
                    started = time.monotonic()
                    r = await http.post(f"/admin/models/{target}/activate", headers=admin)
                    answered = time.monotonic()
                    if r.status_code != 200:
                        failures.append(f"activate {target}: {r.status_code} {r.text}")
                    marks.append((current, target, started, answered))
                    current = target
                    await asyncio.sleep(args.dwell)
            stop.set()
            return await task

        answers = asyncio.run(scenario())
        failed = [a for a in answers if a.status != 201]
        print(
            f"\n{len(answers)} answers from {args.clients} clients through {args.front}"
            f" ({len(fronts)} front{'s' if len(fronts) > 1 else ''}): {len(failed)} failed"
        )
        if failed:
            failures.append(f"{len(failed)} failed requests")
        for i, ((before, after, started, answered), (_, label)) in enumerate(
            zip(marks, plan, strict=True)
        ):
            end = marks[i + 1][2] if i + 1 < len(marks) else float("inf")
            window = [a for a in answers if started <= a.sent < end]
            foreign = {a.version for a in window} - {before, after}
            late_old = [a for a in window if a.sent > answered + args.bound and a.version != after]
            last_old = max((a.received for a in window if a.version == before), default=answered)
            converged = max(0.0, last_old - answered)
            ok = not foreign and not late_old
            print(
                f"  {label:<8} {before} -> {after}:"
                f" activation answered in {answered - started:5.1f} s;"
                f" {len(window)} answers, versions {sorted({a.version or '-' for a in window})};"
                f" last old answer {converged:4.1f} s after it (bound {args.bound:.0f} s);"
                f" sent after the bound and not new: {len(late_old)}: {'ok' if ok else 'FAILED'}"
            )
            if not ok:
                failures.append(f"{label}: foreign {foreign}, late old {len(late_old)}")
        final = ready_versions()
        print(
            f"active version everywhere at the end: {final}"
            f" ({'ok' if final == {old} else 'FAILED'})"
        )
        if final != {old}:
            failures.append("not rolled back everywhere")
        print(f"{background_load():.1f} cores busy with other work after the run")

    print("== all checks passed" if not failures else f"== FAILED: {'; '.join(failures)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
