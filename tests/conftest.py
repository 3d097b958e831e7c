"""Shared test infrastructure: real servers on loopback, one migrated database per run.

- TEST_DATABASE_URL selects MariaDB/MySQL (a dedicated database `<name>` is dropped,
  created and migrated once per run); unset, a SQLite file in a temporary directory.
- `s3_endpoint`: a moto ThreadedMotoServer on 127.0.0.1 (credentials testing/testing).
- `smtp_server`: an aiosmtpd server capturing every message (tests read codes from mail).
- `client`: httpx.AsyncClient over ASGITransport with the app's lifespan running; the
  app is built once per run. `make_client(**overrides)` builds one with other settings.
- Every test starts with empty tables (truncation after each test).
- Every error response a test client receives is recorded (tests/support/error_codes.py)
  and checked against the schema by tests/test_error_codes.py, which runs last.

Only fixtures and hooks live here; the helpers tests import come from tests/support/ (no
test module imports another test module, nor this one: tests/test_test_hygiene.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from alembic.config import Config
from asgi_lifespan import LifespanManager
from fastapi.dependencies import models as fastapi_dependency_models
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from alembic import command
from app.config import Settings
from app.db.base import Base
from app.db.models import RateLimitHit
from app.main import create_app
from tests.support.error_codes import ErrorRecorder
from tests.support.factories import Doctor, app_of, make_doctor
from tests.support.harness import (
    ROOT,
    S3_TEST_KEY,
    S3_TEST_REGION,
    TEST_JWT_SECRET,
    ClientFactory,
    free_port,
    in_own_thread,
)
from tests.support.mail import Mailbox

# --------------------------------------------------------------------------- database


def _alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


async def _recreate_mysql_database(url: str) -> None:
    parsed = make_url(url)
    server = create_async_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            name = parsed.database
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            await conn.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
    finally:
        await server.dispose()


def _migrated_database(tmp_path_factory: pytest.TempPathFactory, suffix: str) -> str:
    """TEST_DATABASE_URL's database (with `suffix` on its name), or a SQLite file, made
    empty and migrated to head."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        parsed = make_url(url)
        url = parsed.set(database=f"{parsed.database}{suffix}").render_as_string(
            hide_password=False
        )
        mysql_url = url
        in_own_thread(lambda: asyncio.run(_recreate_mysql_database(mysql_url)))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db' + suffix) / 'test.db'}"
    cfg = _alembic_config(url)
    in_own_thread(lambda: command.upgrade(cfg, "head"))
    return url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _migrated_database(tmp_path_factory, "")


@pytest.fixture(scope="session")
def stack_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of its own for the servers the tests start as processes (serve,
    serve-nginx): they register and activate their own model version, which the in-process
    app would otherwise follow (its registry poll) into the tests after them."""
    return _migrated_database(tmp_path_factory, "_stack")


@pytest.fixture(scope="session")
async def stack_db_engine(stack_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(stack_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def stack_limits_cleared(stack_db_engine: AsyncEngine) -> AsyncIterator[None]:
    """After each test on a server process: its rate-limit windows start afresh (the
    stack's database outlives the test, unlike the suite's, which is emptied)."""
    yield
    async with stack_db_engine.begin() as conn:
        await conn.execute(RateLimitHit.__table__.delete())


@pytest.fixture(scope="session")
def alembic_config_factory() -> Callable[[str], Config]:
    return _alembic_config


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """FastAPI memoises, per endpoint callable, whether it is a coroutine or generator
    function (LRU caches of 4,096 entries in fastapi.dependencies.models). The docs
    endpoints that FastAPIOffline defines are closures over their app, so those caches kept
    hundreds of the suite's apps alive, each with its classifier: the test process grew to
    9 GB. One app per process in production never notices."""
    yield
    for cached in (
        fastapi_dependency_models._is_gen_callable_cached,
        fastapi_dependency_models._is_async_gen_callable_cached,
        fastapi_dependency_models._is_coroutine_callable_cached,
    ):
        cached.cache_clear()


@pytest.fixture(autouse=True)
async def _clean_tables(db_engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    async with db_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())


# --------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    """A plain (sync) boto3 client on the moto server, to look behind the app's back."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=S3_TEST_REGION,
        aws_access_key_id=S3_TEST_KEY,
        aws_secret_access_key=S3_TEST_KEY,
    )


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket on the moto server for one test."""
    import uuid

    s3 = s3_client
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


# --------------------------------------------------------------------------- SMTP (aiosmtpd)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Mailbox]:
    port = free_port()
    mailbox = Mailbox(host="127.0.0.1", port=port)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: Mailbox) -> Iterator[Mailbox]:
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


# --------------------------------------------------------------------------- app + client


LAST = "tests/test_error_codes.py::test_every_error_answered_is_declared"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The check of every recorded error response runs after all the requests."""
    items.sort(key=lambda item: item.nodeid == LAST)


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real weights file (the service's architecture, seeded untrained values) for a
    process that must not run on demo weights: MODEL_SOURCE in production."""
    import torch

    from app.inference.network import seeded_state_dict

    path = tmp_path_factory.mktemp("weights") / "eye.pth"
    torch.save(seeded_state_dict(4, seed=7), path)
    return path


@pytest.fixture(scope="session")
def base_settings(
    database_url: str,
    smtp_server: Mailbox,
    model_cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Settings every test app starts from: SMTP to the capture server, local store."""
    return {
        "environment": "development",
        "database_url": database_url,
        "jwt_secret_key": TEST_JWT_SECRET,
        "storage_backend": "local",
        "local_storage_dir": tmp_path_factory.mktemp("images"),
        "mail_backend": "smtp",
        "mail_server": smtp_server.host,
        "mail_port": smtp_server.port,
        "mail_starttls": False,
        "mail_ssl_tls": False,
        "model_cache_dir": model_cache_dir,
        "inference_backend": "torch",
        "aws_access_key_id": S3_TEST_KEY,
        "aws_secret_access_key": S3_TEST_KEY,
        "aws_region": S3_TEST_REGION,
        # Apps of one run share the database: only those a test starts to follow the model
        # registry (with a short MODEL_POLL_SECONDS) should act on another app's changes.
        "model_poll_seconds": 300,
        # Argon2 at ~1 ms instead of ~150 ms per hash; production refuses such values.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        "password_hash_parallelism": 1,
    }


@pytest.fixture(scope="session")
def make_client(base_settings: dict[str, Any]) -> ClientFactory:
    """`async with make_client(storage_backend="s3", ...) as client:` for custom settings."""

    @asynccontextmanager
    async def factory(
        raise_app_exceptions: bool = True, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(**{**base_settings, **overrides})
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=120) as manager:
            transport = httpx.ASGITransport(
                app=ErrorRecorder(manager.app, app), raise_app_exceptions=raise_app_exceptions
            )
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                client.app = app  # type: ignore[attr-defined]
                yield client

    return factory


@pytest.fixture(scope="session")
async def session_client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as client:
        yield client


@pytest.fixture
def clock(session_client: httpx.AsyncClient) -> Iterator[Callable[[datetime], None]]:
    """`clock(when)` fixes the app's notion of now (dashboard ranges, date filters)."""
    from app.api.deps import get_now

    app: Any = session_client.app  # type: ignore[attr-defined]

    def set_now(now: datetime) -> None:
        app.dependency_overrides[get_now] = lambda: now

    yield set_now
    app.dependency_overrides.pop(get_now, None)


@pytest.fixture
async def client(
    session_client: httpx.AsyncClient, mailbox: Mailbox
) -> AsyncIterator[httpx.AsyncClient]:
    session_client.headers.pop("Authorization", None)
    yield session_client
    session_client.headers.pop("Authorization", None)
    # The test's queued view events go in before the tables are emptied.
    await session_client.app.state.view_log.flush()  # type: ignore[attr-defined]


@pytest.fixture
async def doctor(client: httpx.AsyncClient) -> Doctor:
    """A verified doctor (English) of the session app, with an Authorization header."""
    return await make_doctor(client.app, locale="en")  # type: ignore[attr-defined]


@pytest.fixture
async def registry_client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own that follows the model registry (polls it every 0.2 s)."""
    async with make_client(model_poll_seconds=0.2) as client:
        yield client


@pytest.fixture
async def registry_admin(registry_client: httpx.AsyncClient) -> Doctor:
    """An administrator (English) of `registry_client`'s app."""
    return await make_doctor(app_of(registry_client), role="admin", locale="en")
