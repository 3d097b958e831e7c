"""What the test harness is built on, for conftest.py and the tests alike: the repository's
root, the JWT secret every test app signs with, a free loopback port, a thread for code that
runs its own event loop, the settings that reach the moto S3 server, and the type of the
`make_client` fixture."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from app.config import Settings
from tests.support.mail import Mailbox

ROOT = Path(__file__).resolve().parents[2]
TEST_JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef"

S3_TEST_REGION = "us-east-1"
S3_TEST_KEY = "testing"  # moto accepts any credentials

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_own_thread(fn: Callable[[], Any]) -> Any:
    """Run `fn` in a thread: Alembic's env.py calls asyncio.run, which refuses to nest."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def s3_test_settings(endpoint: str, **overrides: Any) -> Settings:
    """Settings (no .env) whose S3 clients reach the moto server at `endpoint`."""
    return Settings(
        _env_file=None,
        s3_endpoint_url=endpoint,
        aws_region=S3_TEST_REGION,
        aws_access_key_id=SecretStr(S3_TEST_KEY),
        aws_secret_access_key=SecretStr(S3_TEST_KEY),
        **overrides,
    )


def stack_env(
    database_url: str, smtp: Mailbox, model_cache_dir: Path, images_dir: Path
) -> dict[str, str]:
    """The environment of a real `ocupredict serve-nginx` under test: the suite's
    database, the local image store, mail to the test's SMTP capture, demo weights,
    cheap password hashing, no trusted proxies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    env.update(
        {
            "ENVIRONMENT": "development",
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": TEST_JWT_SECRET,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(images_dir),
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": smtp.host,
            "MAIL_PORT": str(smtp.port),
            "MAIL_STARTTLS": "false",
            "MAIL_SSL_TLS": "false",
            "MODEL_CACHE_DIR": str(model_cache_dir),
            "INFERENCE_BACKEND": "torch",
            "PASSWORD_HASH_TIME_COST": "1",
            "PASSWORD_HASH_MEMORY_KIB": "1024",
            "PASSWORD_HASH_PARALLELISM": "1",
            "SHUTDOWN_TIMEOUT_SECONDS": "60",
        }
    )
    for name in ("MODEL_SOURCE", "MODEL_S3_KEY", "TRUSTED_PROXIES", "METRICS_ALLOWED"):
        env.pop(name, None)
    return env


def process_env(settings: dict[str, Any], **overrides: Any) -> dict[str, str]:
    """The environment of a server subprocess (`ocupredict serve`) with these settings:
    this process's environment less the suite's TEST_* variables, plus each setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    for name, value in {**settings, **overrides}.items():
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env
