"""The production shape for real: `ocupredict serve-nginx` (Debian's nginx in front of two
single-process uvicorns on Unix sockets) started by the shared harness, on the suite's
database (SQLite or TEST_DATABASE_URL's MariaDB), mail to the aiosmtpd capture server,
with ENVIRONMENT=production (real weights, JSON logs: every line it writes is checked).

The stack is started once for the module; the last test stops it with uploads in flight
(the drain test), and the harness fails if anything it started is still running.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import AuditEvent, Prediction, RateLimitHit
from app.deploy.harness import NginxStack, pid_alive, unix_get
from app.deploy.nginx import compose_rendering
from app.errors import too_large_message
from app.security import keyed_digest
from tests.support.auth import AUTH, PASSWORD, bearer, next_code
from tests.support.harness import ROOT, TEST_JWT_SECRET, stack_env
from tests.support.logs import assert_no_secret, json_lines, secrets_of
from tests.support.mail import Mailbox
from tests.support.predict import post_image

pytestmark = [
    pytest.mark.skipif(
        not any(Path(d, "nginx").exists() for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin")),
        reason="nginx is not installed (apt-get install nginx; .ci/run does)",
    ),
    pytest.mark.usefixtures("stack_limits_cleared"),
]

API = "/api/v1"
IP_LIMIT = 4  # IP_MAX_FAILURES of the stack, so the spoofing test reaches it quickly


def unique_jpeg(seed: int, size: int = 256) -> bytes:
    """A small JPEG whose bytes (and sha256) differ per seed."""
    image = Image.effect_noise((size, size), 40 + seed % 50).convert("RGB")
    image.putpixel((seed % size, (seed // size) % size), (seed % 256, 7, 9))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack-images")


@pytest.fixture(scope="module")
def stack(
    stack_database_url: str,
    smtp_server: Mailbox,
    model_cache_dir: Path,
    images_dir: Path,
    weights_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[NginxStack]:
    env = stack_env(stack_database_url, smtp_server, model_cache_dir, images_dir)
    env.update(
        {
            # Production: every line the stack writes must be JSON (the last test reads
            # them all), with real weights and Argon2 at OWASP's minimum.
            "ENVIRONMENT": "production",
            "PASSWORD_HASH_TIME_COST": "2",
            "PASSWORD_HASH_MEMORY_KIB": "19456",
            "IP_MAX_FAILURES": str(IP_LIMIT),
            "LOG_LEVEL": "INFO",
            "MODEL_SOURCE": str(weights_file),
        }
    )
    env.pop("LOG_FORMAT", None)
    directory = tmp_path_factory.mktemp("stack")
    harness = NginxStack(env, processes=2, socket_dir=directory / "run", cwd=directory)
    with harness:
        harness.wait_ready()
        yield harness


async def doctor_token(client: httpx.AsyncClient, mailbox: Mailbox, email: str) -> str:
    response = await client.post(
        f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "Ana"}
    )
    assert response.status_code == 201, response.text
    code = await next_code(mailbox, email, 1)
    response = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def stored_objects(images_dir: Path) -> set[str]:
    return {p.relative_to(images_dir).as_posix() for p in images_dir.rglob("*") if p.is_file()}


def metric_values(text: str, name: str) -> dict[str, float]:
    """{label string: value} of one metric family's samples."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match:
            values[match.group(1) or ""] = float(match.group(2))
    return values


# --------------------------------------------------------------------------- files


def test_deploy_nginx_conf_is_the_rendering_of_the_one_template() -> None:
    committed = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    assert committed == compose_rendering(), (
        "deploy/nginx.conf is stale: python -m app.deploy.nginx > deploy/nginx.conf"
    )
    assert "least_conn;" in committed and "zone ocupredict" in committed
    assert 'proxy_set_header Connection "";' in committed


def test_compose_file_parses_and_refers_only_to_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"app", "mariadb", "minio", "mailpit"} <= set(services)
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert context.is_dir(), f"{name}: build context {context} is missing"
            assert (context / (dockerfile or "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    app = services["app"]
    command = " ".join(app["command"]) if isinstance(app["command"], list) else app["command"]
    assert "serve-nginx --processes 2" in command
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "nginx" in dockerfile


# --------------------------------------------------------------------------- the stack


async def test_both_processes_answer_and_name_themselves(stack: NginxStack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        seen = []
        for _ in range(6):
            response = await client.get(f"{API}/health/ready")
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["database"], body["storage"], body["model"]["ready"]) == (
                "ok",
                "ok",
                True,
            )
            seen.append(body["process"])
        assert set(seen) == {0, 1}
        # /docs and the schema through nginx.
        response = await client.get("/docs")
        assert response.status_code == 200 and "swagger-ui" in response.text
        response = await client.get("/openapi.json")
        assert response.status_code == 200 and response.json()["info"]["title"]


async def test_request_id_passes_through_when_sane_and_is_made_otherwise(
    stack: NginxStack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        response = await client.get(f"{API}/health/live", headers={"X-Request-ID": "abc-123.x_Y"})
        assert response.headers["x-request-id"] == "abc-123.x_Y"
        for bad in (b"has space", b"x" * 65, "é".encode(), b"a;b"):
            response = await client.get(f"{API}/health/live", headers={"X-Request-ID": bad})
            made = response.headers["x-request-id"]
            assert made.encode() != bad and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", made)
        first = (await client.get(f"{API}/health/live")).headers["x-request-id"]
        second = (await client.get(f"{API}/health/live")).headers["x-request-id"]
        assert first != second and re.fullmatch(r"[0-9a-f]{32}", first)
    # nginx logs the same id it passed on.
    access = (stack.socket_dir / "nginx-access.log").read_text(encoding="utf-8")
    assert '"request_id":"abc-123.x_Y"' in access and f'"request_id":"{first}"' in access


def oversized_post(port: int, target: str) -> bytes:
    """A POST whose Content-Length nginx refuses from the header alone (413, and an error
    log line that names the request line, query string and all)."""
    request = f"POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 999999999\r\n"
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(f"{request}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


async def test_a_production_flow_logs_only_json_and_no_signature(
    stack: NginxStack, mailbox: Mailbox
) -> None:
    """register -> verify -> login -> predict -> the signed image URL through nginx: every
    line serve-nginx wrote (supervisor, both uvicorns, nginx's error log) is a JSON object,
    nginx's access log too, and none holds the signature, a token or the code."""
    email = "json-logs@example.com"
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        response = await client.post(
            f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "Ana"}
        )
        assert response.status_code == 201, response.text
        code = await next_code(mailbox, email, 1)
        response = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
        assert response.status_code == 200, response.text
        verified = response.json()
        response = await client.post(
            f"{AUTH}/login", data={"username": email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        login = response.json()
        response = await client.post(
            f"{API}/predict",
            files={"file": ("eye.jpg", unique_jpeg(77), "image/jpeg")},
            headers=bearer(login["access_token"]),
        )
        assert response.status_code == 201, response.text
        url = urlsplit(response.json()["image_url"])
        response = await client.get(f"{url.path}?{url.query}")  # the signature authorizes
        assert response.status_code == 200, response.text
    # nginx itself logs an error that names the request line with the signed query.
    assert oversized_post(stack.port, f"{url.path}?{url.query}").startswith(b"HTTP/1.1 413")
    deadline = time.monotonic() + 10
    while "client intended to send too large body" not in stack.log_tail(400):
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.05)

    signature = parse_qs(url.query)["signature"][0]
    secrets = secrets_of(verified, login, others=[code, signature, PASSWORD, TEST_JWT_SECRET])
    text = stack.log_path.read_text(encoding="utf-8")
    lines = json_lines(text)
    assert_no_secret(text, secrets)
    loggers = {line["logger"] for line in lines}
    assert {"ocupredict.supervisor", "uvicorn.error", "ocupredict.access"} <= loggers
    refused = [line for line in lines if "too large body" in line["message"]]
    assert refused[-1]["logger"] == "ocupredict.nginx" and refused[-1]["level"] == "ERROR"
    assert f'"POST {url.path} HTTP/1.1"' in refused[-1]["message"]  # the path, no query
    image = [
        line
        for line in lines
        if line["logger"] == "ocupredict.access" and line["route"].endswith("/{id}/image")
    ]
    assert 200 in [line["status"] for line in image]
    access = (stack.socket_dir / "nginx-access.log").read_text(encoding="utf-8")
    uris = [line["uri"] for line in json_lines(access)]
    assert url.path in uris and not any("?" in uri for uri in uris)
    assert_no_secret(access, secrets)


async def test_nginx_refuses_a_too_large_body_in_the_apps_envelope(
    stack: NginxStack, mailbox: Mailbox
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        token = await doctor_token(client, mailbox, "big@example.com")
        too_big = b"\xff\xd8" + b"0" * (15 * 1024 * 1024 + 80 * 1024)
        response = await client.post(
            f"{API}/predict",
            files={"file": ("big.jpg", too_big, "image/jpeg")},
            headers=bearer(token),
        )
    assert response.status_code == 413
    assert response.json() == {"detail": too_large_message(15), "code": "FILE_TOO_LARGE"}
    assert response.headers["content-type"].startswith("application/json")


async def test_per_ip_limit_holds_with_a_spoofed_forwarded_for(stack: NginxStack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        statuses = []
        for i in range(IP_LIMIT + 2):
            response = await client.post(
                f"{AUTH}/login",
                data={"username": f"nobody{i}@example.com", "password": "wrong-password-1"},
                headers={"X-Forwarded-For": f"203.0.113.{i + 1}", "X-Real-IP": f"198.51.100.{i}"},
            )
            statuses.append(response.status_code)
    # Each try named another client, and each a new account: only the per-IP limit can
    # stop them, and it does, because nginx overwrites X-Forwarded-For.
    assert statuses[:IP_LIMIT] == [401] * IP_LIMIT
    assert statuses[IP_LIMIT:] == [429, 429]


async def test_audit_and_rate_limit_name_the_client_nginx_vouches_for(
    stack: NginxStack, mailbox: Mailbox, stack_db_engine: AsyncEngine
) -> None:
    """Behind serve-nginx every worker's peer is a Unix socket: the one resolver takes it
    as the local proxy, so the audit trail and the rate limiter both name the address
    nginx saw (this client binds 127.0.0.23), never "unknown", and never the
    X-Forwarded-For the client sent itself (nginx overwrites it)."""
    client_ip = "127.0.0.23"
    forged = {"X-Forwarded-For": "203.0.113.77"}
    transport = httpx.AsyncHTTPTransport(local_address=client_ip)
    async with httpx.AsyncClient(base_url=stack.base_url, transport=transport) as client:
        await doctor_token(client, mailbox, "where@example.com")
        ok = await client.post(
            f"{AUTH}/login",
            data={"username": "where@example.com", "password": PASSWORD},
            headers=forged,
        )
        bad = await client.post(
            f"{AUTH}/login",
            data={"username": "where@example.com", "password": "wrong-password-1"},
            headers=forged,
        )
    assert (ok.status_code, bad.status_code) == (200, 401), (ok.text, bad.text)
    async with stack_db_engine.connect() as conn:
        events = (
            await conn.execute(
                select(AuditEvent.action, AuditEvent.ip).where(
                    AuditEvent.action.in_(("auth.login", "auth.login_failed")),
                    AuditEvent.actor_email == "where@example.com",
                )
            )
        ).all()
        buckets = set((await conn.execute(select(RateLimitHit.bucket))).scalars())
    assert sorted(events) == [("auth.login", client_ip), ("auth.login_failed", client_ip)]

    # The failed login counted against the per-IP limit under the same address.
    def ip_bucket(ip: str) -> str:
        return keyed_digest(TEST_JWT_SECRET, "rate-limit", f"failures:ip:{ip}")

    assert ip_bucket(client_ip) in buckets
    assert ip_bucket("203.0.113.77") not in buckets and ip_bucket("unknown") not in buckets


async def test_racing_retries_on_two_processes_make_one_prediction(
    stack: NginxStack, mailbox: Mailbox, stack_db_engine: AsyncEngine, images_dir: Path
) -> None:
    """The same Idempotency-Key sent at once to both processes (nginx balances them):
    one record, one stored object, one id; the others are replays."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        token = await doctor_token(client, mailbox, "retry@example.com")
        before = stored_objects(images_dir)
        data = unique_jpeg(4242)

        async def send() -> httpx.Response:
            return await client.post(
                f"{API}/predict",
                files={"file": ("eye.jpg", data, "image/jpeg")},
                headers={**bearer(token), "Idempotency-Key": "clinic-retry-1"},
            )

        responses = await asyncio.gather(*(send() for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 200, 200, 201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(stored_objects(images_dir) - before) == 1
    async with stack_db_engine.connect() as conn:
        same = await conn.execute(
            select(Prediction.id).where(Prediction.sha256 == hashlib.sha256(data).hexdigest())
        )
        assert len(same.all()) == 1


async def test_metrics_sum_both_processes_after_a_flow(stack: NginxStack, mailbox: Mailbox) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        before = (await client.get("/metrics")).text
        token = await doctor_token(client, mailbox, "metrics@example.com")
        uploads = 6
        for i in range(uploads):
            response = await post_image(
                client, bearer(token), unique_jpeg(1000 + i), filename=f"eye{i}.jpg"
            )
            assert response.status_code == 201, response.text
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    for name in (
        "ocupredict_http_requests_total",
        "ocupredict_http_request_duration_seconds_bucket",
        "ocupredict_inference_pending_request_count",
        "ocupredict_inference_queue_duration_us_total",
        "ocupredict_inference_compute_infer_duration_us_total",
        "ocupredict_inference_count_total",
        "ocupredict_inference_exec_count_total",
        "ocupredict_adaptive_batch_size_bucket",
        "ocupredict_preprocess_duration_seconds_count",
        "ocupredict_predictions_total",
        "ocupredict_image_store_errors_total",
        "ocupredict_database_errors_total",
        "ocupredict_model_info",
        "ocupredict_build_info",
    ):
        assert metric_values(after, name), f"{name} missing from /metrics"

    def predict_201(text: str) -> dict[str, float]:
        samples = metric_values(text, "ocupredict_http_requests_total")
        return {k: v for k, v in samples.items() if 'route="/predict"' in k and '"201"' in k}

    grown = sum(predict_201(after).values()) - sum(predict_201(before).values())
    assert grown == uploads  # summed over both processes
    processes = {re.search(r'process="(\d)"', k).group(1) for k in predict_201(after)}  # type: ignore[union-attr]
    assert processes == {"0", "1"}
    predicted = sum(metric_values(after, "ocupredict_predictions_total").values())
    assert (
        predicted - sum(metric_values(before, "ocupredict_predictions_total").values()) == uploads
    )
    count = sum(metric_values(after, "ocupredict_inference_count_total").values())
    assert (
        count - sum(metric_values(before, "ocupredict_inference_count_total").values()) == uploads
    )
    models = metric_values(after, "ocupredict_model_info")
    assert {re.search(r'process="(\d)"', k).group(1) for k in models} == {"0", "1"}  # type: ignore[union-attr]
    assert metric_values(after, "ocupredict_inference_pending_request_count") == {"": 0.0}


async def test_a_killed_process_is_started_again(stack: NginxStack) -> None:
    old = stack.pids()[1]
    os.kill(old, signal.SIGKILL)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        # Meanwhile nginx sends everything to the other process.
        for _ in range(5):
            response = await client.get(f"{API}/health/ready")
            assert response.status_code == 200, response.text
        for _ in range(600):
            new = stack.pids().get(1)
            if new not in (None, old) and stack.ready(1):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("process 1 was not started again")
        assert not pid_alive(old)
        seen = {(await client.get(f"{API}/health/ready")).json()["process"] for _ in range(6)}
    assert seen == {0, 1}


async def test_sigterm_with_50_uploads_in_flight_loses_nothing(
    stack: NginxStack, mailbox: Mailbox, stack_db_engine: AsyncEngine, images_dir: Path
) -> None:
    """Stopping serve-nginx with 50 uploads in flight: each gets 201 (row and object) or
    503 (neither); readiness says 503 SHUTTING_DOWN at once; nothing stays running."""
    objects_before = stored_objects(images_dir)  # the earlier tests' (rows truncated)
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120, limits=limits) as client:
        token = await doctor_token(client, mailbox, "drain@example.com")
        images = [unique_jpeg(5000 + i, 512) for i in range(50)]

        tasks = [asyncio.create_task(post_image(client, bearer(token), data)) for data in images]
        # The uploads are on their way: SIGTERM once the first has been answered.
        await asyncio.wait(tasks, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        assert stack.proc is not None
        stack.proc.send_signal(signal.SIGTERM)
        # The supervisor forwards SIGTERM to the workers: poll each one's readiness until
        # it turns 503 SHUTTING_DOWN or its socket is gone (a functional bound, not timing).
        readiness: list[Any] = []
        for index in range(2):
            deadline = asyncio.get_running_loop().time() + 5.0
            while True:
                try:
                    status, body = await asyncio.to_thread(
                        unix_get, stack.socket(index), f"{API}/health/ready"
                    )
                    answer: Any = (status, body)
                except OSError as exc:
                    answer = exc
                draining = isinstance(answer, OSError) or answer[0] == 503
                if draining or asyncio.get_running_loop().time() > deadline:
                    readiness.append(answer)
                    break
                await asyncio.sleep(0.02)
        responses = await asyncio.gather(*tasks)
    returncode = await asyncio.to_thread(stack.stop)  # raises if anything still runs
    assert returncode == 0

    sent = {hashlib.sha256(data).hexdigest() for data in images}
    async with stack_db_engine.connect() as conn:
        rows = {
            sha: key
            for sha, key in await conn.execute(select(Prediction.sha256, Prediction.image_key))
            if sha in sent  # the stack's database holds the module's earlier tests too
        }
    objects = stored_objects(images_dir)
    statuses: dict[int, int] = {}
    for data, response in zip(images, responses, strict=True):
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        sha = hashlib.sha256(data).hexdigest()
        if response.status_code == 201:
            assert response.json()["image"]["sha256"] == sha
            assert sha in rows and rows[sha] in objects
        else:
            assert response.status_code == 503, response.text
            assert response.json()["code"] in {"SHUTTING_DOWN", "SERVICE_UNAVAILABLE"}
            assert sha not in rows
    # Every row has its object, and this test left no object without a row.
    assert objects - objects_before == set(rows.values())
    assert statuses.get(201, 0) >= 1, statuses
    shutting = [
        r
        for r in readiness
        if not isinstance(r, OSError) and r[0] == 503 and b"SHUTTING_DOWN" in r[1]
    ]
    assert shutting or all(isinstance(r, OSError) for r in readiness), readiness
    print(f"drain: {statuses}, readiness right after SIGTERM: {readiness}")


def test_database_url_per_process_for_a_multi_writer_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DATABASE_URL_<i> points process i at its own Galera node; without it, DATABASE_URL."""
    from app.config import Settings
    from app.deploy.supervisor import Supervisor

    monkeypatch.setenv("DATABASE_URL", "mysql+aiomysql://root@127.0.0.1:3306/shared")
    monkeypatch.setenv("DATABASE_URL_1", "mysql+aiomysql://root@127.0.0.1:4001/own")
    monkeypatch.delenv("DATABASE_URL_0", raising=False)
    supervisor = Supervisor(
        settings=Settings(_env_file=None),
        processes=3,
        host="127.0.0.1",
        port=8000,
        socket_dir=tmp_path,
    )
    urls = [supervisor.worker_env(i)["DATABASE_URL"] for i in range(3)]
    assert urls == [
        "mysql+aiomysql://root@127.0.0.1:3306/shared",
        "mysql+aiomysql://root@127.0.0.1:4001/own",
        "mysql+aiomysql://root@127.0.0.1:3306/shared",
    ]


def test_everything_serve_nginx_wrote_from_start_to_stop_is_json(stack: NginxStack) -> None:
    """After the stop (the drain test's, or this one's when run alone): the whole output of
    serve-nginx, a killed and restarted process and nginx's errors included, is JSON lines
    without a query string of a signed URL."""
    assert stack.stop() == 0
    text = stack.log_path.read_text(encoding="utf-8")
    lines = json_lines(text)
    assert_no_secret(text, [])
    assert lines[-1]["logger"] == "ocupredict.supervisor" and lines[-1]["message"] == "stopped"
