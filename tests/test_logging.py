"""Logs: JSON lines in production shape, readable text in development, and no secret in
either over a whole flow (register, verify, login, forgot/reset, predict, image URL).
Runs on the suite's database (SQLite, or MariaDB with TEST_DATABASE_URL)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from app.config import Settings
from app.observability import make_formatter
from tests.support.auth import AUTH, NEW_PASSWORD, PASSWORD, bearer, next_code
from tests.support.harness import TEST_JWT_SECRET, ClientFactory
from tests.support.images import jpeg
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
