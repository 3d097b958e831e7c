"""Logs: JSON lines in production shape, readable text in development, and no secret in
either over a whole flow (register, verify, login, forgot/reset, predict, image URL); and
`ocupredict serve` itself (a real process, uvicorn's own lines included) writes nothing but
JSON lines in production, text in development, and no query string of a signed URL.
Runs on the suite's database (SQLite, or MariaDB with TEST_DATABASE_URL)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.config import Settings
from app.deploy.harness import ServeProcess
from app.observability import RedactSecrets, make_formatter, redact
from tests.support.auth import AUTH, NEW_PASSWORD, PASSWORD, bearer, next_code
from tests.support.fundus import encoded, fundus
from tests.support.harness import ROOT, TEST_JWT_SECRET, ClientFactory, process_env
from tests.support.images import jpeg
from tests.support.logs import assert_no_secret, json_lines, secrets_of, text_lines
from tests.support.mail import Mailbox
from tests.support.predict import post_image

TEST_SIDE_LOGGERS = ("httpx", "httpcore", "mail.log")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record of the service's loggers, as the production formatter writes it (the
    test's own HTTP client and SMTP server log what they send and receive: not ours)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(json_logs=True))
    handler.addFilter(lambda record: not record.name.startswith(TEST_SIDE_LOGGERS))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_logs_by_default_in_production_text_in_development() -> None:
    assert Settings(_env_file=None, environment="production").json_logs
    assert not Settings(_env_file=None).json_logs
    assert Settings(_env_file=None, log_format="json").json_logs
    assert not Settings(_env_file=None, environment="production", log_format="text").json_logs
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.request_id, record.user_id = "rid-1", 7
    line = json.loads(make_formatter(json_logs=True).format(record))
    assert line["message"] == "hello you" and line["level"] == "INFO"
    assert (line["request_id"], line["user_id"], line["logger"]) == ("rid-1", 7, "x")
    assert "time" in line
    text = make_formatter(json_logs=False).format(record)
    assert "INFO [rid-1] x: hello you" in text


async def test_a_whole_flow_logs_no_secret(
    make_client: ClientFactory, mailbox: Mailbox, json_log: io.StringIO
) -> None:
    email = "secrets@example.com"
    secrets: list[str] = [PASSWORD, NEW_PASSWORD, "wrong-password-9", TEST_JWT_SECRET]
    async with make_client(log_format="json") as client:
        response = await client.post(
            f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "Eva"}
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]
        code = await next_code(mailbox, email, 1)
        response = await client.post(f"{AUTH}/verify", json={"email": email, "code": "000000"})
        assert response.status_code == 400
        response = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
        assert response.status_code == 200, response.text
        first = response.json()
        response = await client.post(
            f"{AUTH}/login", data={"username": email, "password": "wrong-password-9"}
        )
        assert response.status_code == 401
        response = await client.post(
            f"{AUTH}/login", data={"username": email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        second = response.json()
        response = await client.post(f"{AUTH}/password/forgot", json={"email": email})
        assert response.status_code == 202
        reset_code = await next_code(mailbox, email, 2)
        response = await client.post(
            f"{AUTH}/password/reset",
            json={"email": email, "code": reset_code, "new_password": NEW_PASSWORD},
        )
        assert response.status_code == 204, response.text
        response = await client.post(
            f"{AUTH}/login", data={"username": email, "password": NEW_PASSWORD}
        )
        third = response.json()
        response = await post_image(client, bearer(third["access_token"]), jpeg())
        assert response.status_code == 201, response.text
        prediction = response.json()
        image = await client.get(prediction["image_url"])
        assert image.status_code == 200
        response = await client.get(
            f"/api/v1/history/{prediction['id']}", headers=bearer("not.a.valid-token")
        )
        assert response.status_code == 401
    signature = parse_qs(urlsplit(prediction["image_url"]).query)["signature"][0]
    secrets += [code, reset_code, signature]
    for pair in (first, second, third):
        secrets += [pair["access_token"], pair["refresh_token"]]

    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    assert len(lines) > 10
    text = json_log.getvalue()
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:4]}...) is in the logs"
        # and not its JWT body/signature parts either
        for part in secret.split("."):
            if len(part) >= 16:
                assert part not in text
    # The access lines say route, status, latency, request and user; never a query string.
    access = [line for line in lines if line["logger"] == "ocupredict.access"]
    assert {line["route"] for line in access} >= {"/auth/register", "/predict", "/history/{id}"}
    predict = next(line for line in access if line["route"] == "/predict")
    assert predict["status"] == 201 and predict["latency_ms"] > 0
    assert predict["user_id"] == user_id and predict["request_id"] != "-"
    assert all("?" not in line["message"] for line in access)


def test_metrics_answer_only_allowed_addresses() -> None:
    from app.metrics import metrics_allowed

    assert metrics_allowed("127.0.0.1", ["127.0.0.1/32"])
    assert not metrics_allowed("10.1.2.3", ["127.0.0.1/32"])
    assert metrics_allowed("10.1.2.3", ["10.0.0.0/8"])
    assert not metrics_allowed("unknown", ["0.0.0.0/0"])


async def test_metrics_403_from_addresses_not_allowed(make_client: ClientFactory) -> None:
    async with make_client(metrics_allowed=["10.0.0.0/8"]) as client:
        response = await client.get("/metrics")  # the test client is 127.0.0.1
        assert response.status_code == 403
        assert response.json()["code"] == "FORBIDDEN"
    async with make_client(trusted_proxies=["127.0.0.1/32"]) as client:
        # Through a trusted proxy, the client it names must be allowed, not the proxy.
        response = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert response.status_code == 403
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert "ocupredict_http_requests_total" in response.text
    async with make_client() as client:
        response = await client.get("/api/v1/metrics")  # not under the API prefix
        assert response.status_code == 404


# --------------------------------------------------------------------------- redaction


def test_redaction_removes_signatures_tokens_codes_and_bearer_credentials() -> None:
    cases = {
        "GET /api/v1/history/3/image?expires=17&signature=Ab-9_x HTTP/1.1": "signature=Ab-9_x",
        "https://s3/bucket/k?X-Amz-Signature=ff00&X-Amz-Security-Token=IQo": "ff00",
        "callback?code=123456&state=x": "123456",
        "reset?token=s3cr3t": "s3cr3t",
        "form username=a@b.c&password=hunter22": "hunter22",
        "Authorization: Bearer abc.def-ghi": "abc.def-ghi",
        '{"access_token": "tok-1", "refresh_token":"tok-2"}': "tok-",
        "sent eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl to": "eyJ",
    }
    for text, secret in cases.items():
        assert secret not in redact(text), text
        assert "[REDACTED]" in redact(text)
    # What is not a secret stays as it was.
    for text in ("returncode=1", "GET /history/{id}/image 200", "codes=2 tokens: none"):
        assert redact(text) == text


def test_the_filter_redacts_a_message_and_its_args() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "fetched %s for %s", ("/i?signature=zz9", "Bearer qq"), None
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "fetched /i?signature=[REDACTED] for Bearer [REDACTED]"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "%d images", (3,), None)
    RedactSecrets().filter(plain)
    assert (plain.msg, plain.args) == ("%d images", (3,))  # untouched: nothing to hide
    try:
        raise RuntimeError("GET https://bucket/x?X-Amz-Signature=beef failed")
    except RuntimeError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", None, sys.exc_info())
    failed.request_id, failed.user_id = "-", None
    for json_logs in (True, False):
        failed.exc_text = None
        assert "beef" not in make_formatter(json_logs).format(failed)


def test_nginx_error_lines_are_relayed_at_their_level_without_query_strings() -> None:
    from app.deploy.nginx import relay_error_log

    stderr = io.BytesIO(
        b"2026/01/02 03:04:05 [error] 41#0: *7 client intended to send too large body: "
        b'9 bytes, client: 127.0.0.1, server: _, request: "POST /api/v1/history/1/image'
        b'?expires=1&signature=s1g HTTP/1.1", upstream: "http://unix:/r/o.sock:/x?code=12"\n'
        b'nginx: [warn] the "user" directive makes sense only as root\n'
        b"2026/01/02 03:04:06 [warn] 41#0: *8 a client request body is buffered to a "
        b'temporary file /run/client_body/01, request: "POST /api/v1/predict HTTP/1.1"\n'
        b"\n"
        b"something nginx never says\n"
    )
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test.nginx.relay")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        relay_error_log(stderr, logger)
    finally:
        logger.removeHandler(handler)
    assert [(r.levelno, r.getMessage()[:40]) for r in records] == [
        (logging.ERROR, "nginx: 41#0: *7 client intended to send "),
        (logging.WARNING, 'nginx: the "user" directive makes sense '),
        (logging.DEBUG, "nginx: 41#0: *8 a client request body is"),
        (logging.WARNING, "nginx: something nginx never says"),
    ]
    first = records[0].getMessage()
    assert 'request: "POST /api/v1/history/1/image HTTP/1.1"' in first
    assert "s1g" not in first and "?" not in first and "code=" not in first


# --------------------------------------------------------------------------- `serve`


API = "/api/v1"


async def _register_to_image(base_url: str, mailbox: Mailbox, email: str) -> list[str]:
    """register -> verify (code by mail) -> login -> predict -> the signed image URL (and a
    tampered one); the secrets that went over the wire."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        response = await client.post(
            f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "Eva"}
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
            files={"file": ("eye.jpg", encoded(fundus(384)), "image/jpeg")},
            headers=bearer(login["access_token"]),
        )
        assert response.status_code == 201, response.text
        url = response.json()["image_url"]
        response = await client.get(url)  # no bearer token: the signature authorizes
        assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
        signature = parse_qs(urlsplit(url).query)["signature"][0]
        tampered = url.replace(signature, "0" * len(signature))
        assert (await client.get(tampered)).status_code == 404
    return secrets_of(verified, login, others=[code, signature, PASSWORD, TEST_JWT_SECRET])


@pytest.fixture
def serve_env(
    base_settings: dict[str, Any], weights_file: Path, stack_database_url: str
) -> dict[str, str]:
    """`ocupredict serve` in production: a real JWT secret and weights, OWASP's Argon2
    minimum, mail to the suite's aiosmtpd, the database of the suite's server processes."""
    return process_env(
        base_settings,
        database_url=stack_database_url,
        environment="production",
        model_source=weights_file,
        password_hash_time_cost=2,
        password_hash_memory_kib=19456,
        log_level="INFO",
        log_format="auto",
    )


async def test_serve_in_production_writes_only_json_lines_and_no_signature(
    serve_env: dict[str, str], mailbox: Mailbox, tmp_path: Path
) -> None:
    """`serve` as it runs by default (one process: the app in uvicorn's own process)."""
    server = ServeProcess(serve_env, workers=1, cwd=tmp_path)
    with server:
        server.wait_ready()
        secrets = await _register_to_image(server.base_url, mailbox, "json-serve@example.com")
    text = server.log_text()
    # uvicorn ends on the signal it stopped for (after a graceful shutdown)
    assert server.proc is not None and server.proc.returncode in (0, -signal.SIGTERM), text
    lines = json_lines(text)
    assert_no_secret(text, secrets)
    # uvicorn's own lines came through our formatter ...
    messages = [(line["logger"], line["message"]) for line in lines]
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert any(m.startswith("Uvicorn running on") for _, m in messages)
    # ... and its access log did not: one access line per request, ours, with the route.
    access = [line for line in lines if line["logger"] == "ocupredict.access"]
    routes = [(line["method"], line["route"], line["status"]) for line in access]
    image = [r for r in routes if r[1].endswith("/history/{id}/image")]
    assert sorted(s for _, _, s in image) == [200, 404], routes
    assert not any(line["logger"] == "uvicorn.access" for line in lines)


def test_a_refusal_to_start_in_production_is_a_json_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "MODEL_", "LOG_"))}
    env.update(ENVIRONMENT="production", PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "app.cli", "serve", "--port", "1"]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert result.returncode == 2
    (line,) = json_lines(result.stderr.decode() + result.stdout.decode())
    assert line["level"] == "CRITICAL" and "JWT_SECRET_KEY" in line["message"]
    env["LOG_FORMAT"] = "text"
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith(b"ocupredict: refusing")


async def test_serve_with_two_workers_in_development_writes_readable_text(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    """`serve --workers 2`: uvicorn's parent process and each worker it spawns apply the
    same policy (here the development format)."""
    env = {**serve_env, "ENVIRONMENT": "development"}
    server = ServeProcess(env, workers=2, cwd=tmp_path)
    started = " uvicorn.error: Application startup complete."
    with server:
        server.wait_ready()  # one worker answers; the other may still be starting
        deadline = time.monotonic() + 180
        while server.log_text().count(started) < 2:
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.2)
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for _ in range(4):
                response = await client.get(f"{API}/history/1/image?expires=1&signature=abcdef")
                assert response.status_code == 404
    text = server.log_text()
    lines = text_lines(text)  # every line, uvicorn's included, in the development format
    assert any(" uvicorn.error: Started parent process " in line for line in lines)
    assert any(" uvicorn.error: Stopping parent process " in line for line in lines)
    workers = [line for line in lines if " uvicorn.error: Started server process " in line]
    assert len(workers) == 2
    assert sum(" ocupredict.access: GET /history/{id}/image 404" in line for line in lines) == 4
    assert "abcdef" not in text and "signature=" not in text
