"""Service foundation: health, error shape, request ids, production safety, migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest
from alembic.config import Config
from fastapi import APIRouter
from sqlalchemy import text

from alembic import command
from app.config import Settings
from app.db.session import make_engine
from app.main import create_app
from tests.support.harness import ROOT, ClientFactory, free_port, in_own_thread


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"


async def test_ready_503_when_database_down(make_client: ClientFactory) -> None:
    # A MySQL URL on a closed port: the app starts, readiness says which part failed.
    async with make_client(database_url="mysql+aiomysql://root@127.0.0.1:1/none") as client:
        response = await client.get("/api/v1/health/ready")
    assert response.status_code == 503
    assert response.json()["database"] == "error"
    assert response.json()["status"] == "not_ready"


async def test_an_unreachable_database_is_503_database_unavailable(
    make_client: ClientFactory,
) -> None:
    """Not a 500: the client may retry (the schema declares it on every operation that
    uses the database, tests/test_openapi_snapshot.py)."""
    async with make_client(database_url="mysql+aiomysql://root@127.0.0.1:1/none") as client:
        answers = [
            await client.post(
                "/api/v1/auth/login", data={"username": "a@example.com", "password": "x" * 10}
            ),
            await client.post("/api/v1/auth/password/forgot", json={"email": "a@example.com"}),
        ]
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "DATABASE_UNAVAILABLE"


async def test_unknown_route_is_404_with_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found", "code": "NOT_FOUND"}


async def test_wrong_method_has_code(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/health/live")
    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


async def test_unexpected_exception_is_500_without_traceback(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client(raise_app_exceptions=False) as client:
        router = APIRouter()

        @router.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals: password=hunter2")

        client.app.include_router(router, prefix="/api/v1")  # type: ignore[attr-defined]
        response = await client.get("/api/v1/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "INTERNAL_ERROR"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert "req-42" in body["detail"]
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert logged and logged[-1].request_id == "req-42"  # type: ignore[attr-defined]


async def test_request_id_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/api/v1/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/api/v1/health/live", headers={"X-Request-ID": "bad id!"})
    assert made.headers["x-request-id"] != "bad id"
    assert len(made.headers["x-request-id"]) == 32


async def test_validation_error_shape(client: httpx.AsyncClient) -> None:
    # Any JSON route will do once auth lands; the OpenAPI route is always there.
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    ops = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert "health-live" in ops and "health-ready" in ops


async def test_docs_serves_swagger_ui_without_a_cdn(client: httpx.AsyncClient) -> None:
    import re

    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", response.text)
    assert assets and all(url.startswith("/") for url in assets), assets
    for url in assets:
        assert (await client.get(url)).status_code == 200, url


def test_production_refuses_default_secret(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "MODEL_"))}
    env.update(ENVIRONMENT="production")
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JWT_SECRET_KEY" in result.stderr


def test_migrations_round_trip_and_no_drift(
    database_url: str, alembic_config_factory: Callable[[str], Config]
) -> None:
    cfg = alembic_config_factory(database_url)

    def round_trip() -> None:
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "base")
        command.upgrade(cfg, "head")
        command.check(cfg)  # raises when the models and the migrations disagree

    in_own_thread(round_trip)


def test_swagger_token_url_follows_api_prefix() -> None:
    schema = create_app(Settings(api_prefix="/v9")).openapi()
    schemes = schema["components"]["securitySchemes"].values()
    assert [s["flows"]["password"]["tokenUrl"] for s in schemes] == ["/v9/auth/login"]
    assert "/v9/predict" in schema["paths"]


async def test_engine_pools_connections_and_pings_only_servers(tmp_path) -> None:
    # Connections beyond pool_size are opened and closed per checkout (for aiosqlite a new
    # thread each time), so the pool holds the usual concurrency; only servers are pinged.
    file_db = make_engine(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/a/b.db"))
    server = make_engine(Settings(database_url="mysql+aiomysql://root@127.0.0.1:1/none"))
    memory = make_engine(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    try:
        assert file_db.pool.size() == 10 and not file_db.pool._pre_ping  # type: ignore[attr-defined]
        assert server.pool.size() == 10 and server.pool._pre_ping  # type: ignore[attr-defined]
        for engine in (file_db, memory):  # both usable; the file's directory was created
            async with engine.connect() as connection:
                assert (await connection.execute(text("select 1"))).scalar() == 1
        assert (tmp_path / "a" / "b.db").is_file()
    finally:
        for engine in (file_db, server, memory):
            await engine.dispose()


def test_serve_workers_split_the_cores_between_them(tmp_path) -> None:
    # Two uvicorn workers, INFERENCE_THREADS unset: each process sizes its model threads to
    # its half of the cores (WEB_WORKERS reaches the workers), not to all of them.
    cores = len(os.sched_getaffinity(0))
    budget = max(1, cores // 2)
    workers = min(2, budget)
    expected = f"workers={workers} x threads={max(1, budget // workers)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERENCE_", "WEB_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        ENVIRONMENT="development",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        STORAGE_BACKEND="local",
        LOCAL_STORAGE_DIR=str(tmp_path / "images"),
        MODEL_CACHE_DIR=str(tmp_path / "models"),
        INFERENCE_BACKEND="torch",
        JWT_SECRET_KEY="w" * 40,
        LOG_LEVEL="INFO",
    )
    log_path = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()), "--workers", "2"]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while log_path.read_text().count("classifier ready") < 2 and time.monotonic() < deadline:
            assert server.poll() is None, log_path.read_text()
            time.sleep(0.2)
        ready = [line for line in log_path.read_text().splitlines() if "classifier ready" in line]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert len(ready) == 2, log_path.read_text()
    assert all(expected in line for line in ready), ready
