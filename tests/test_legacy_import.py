"""`ocupredict import-legacy` against a generated legacy database and bucket.

The legacy database is MariaDB when the suite runs on it (database flask_<label>_<test db>)
and SQLite otherwise, created from the DDL in tests/legacy/; its images are in a bucket of
the moto S3 server. See tests/support/legacy.py for the data and the oracle (`Expected`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.cli import main as cli_main
from app.config import Settings
from app.db.base import utcnow
from app.db.models import Prediction, User
from app.legacy.importer import ImportOptions, import_legacy, legacy_image_key
from app.legacy.mapping import (
    LegacyAccount,
    RowRejected,
    class_code,
    map_feedback,
    parse_probabilities,
    split_case_duplicates,
)
from app.legacy.report import ImportReport
from app.legacy.schema import async_source_url
from app.security import Passwords
from app.security.legacy_hashes import UNUSABLE_PASSWORD, check_legacy_password, is_legacy_hash
from app.services.login_sessions import LoginSessions
from app.services.sweep import sweep_orphan_images
from app.storage.base import is_image_key
from tests.support import legacy
from tests.support.auth import next_code
from tests.support.factories import app_of, make_doctor
from tests.support.harness import ROOT, TEST_JWT_SECRET, ClientFactory, in_own_thread
from tests.support.mail import Mailbox

API = "/api/v1"


@dataclass
class Source:
    url: str  # as the legacy app named it (mysql+pymysql://... or sqlite:///...)
    bucket: str
    data: legacy.LegacyData

    @property
    def expected(self) -> legacy.Expected:
        return self.data.expected


async def _make_source(
    label: str, data: legacy.LegacyData, tmp_dir: Path, s3_client: Any
) -> AsyncIterator[Source]:
    url, async_url = legacy.source_urls(os.environ.get("TEST_DATABASE_URL"), tmp_dir, label)
    await legacy.create_source(async_url, data)
    bucket = f"legacy-{label}-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    legacy.put_objects(bucket, data.objects)
    yield Source(url, bucket, data)
    legacy.delete_objects(bucket, data.objects)
    s3_client.delete_bucket(Bucket=bucket)
    await legacy.drop_source(async_url)


@pytest.fixture(scope="module", autouse=True)
def _quiet_moto() -> Iterator[None]:
    """moto's werkzeug server logs every request: 10,000s of records here, not worth it."""
    server_log = logging.getLogger("werkzeug")
    level = server_log.level
    server_log.setLevel(logging.WARNING)
    yield
    server_log.setLevel(level)


@pytest.fixture(scope="module")
async def big_source(
    tmp_path_factory: pytest.TempPathFactory, s3_client: Any
) -> AsyncIterator[Source]:
    """200 users and 5,000 history rows with their images."""
    data = legacy.generate(n_users=200, n_rows=5000)
    async for source in _make_source("big", data, tmp_path_factory.mktemp("legacy"), s3_client):
        yield source


@pytest.fixture(scope="module")
async def small_source(
    tmp_path_factory: pytest.TempPathFactory, s3_client: Any
) -> AsyncIterator[Source]:
    """12 users and 50 rows (the same kinds of bad rows) for the narrower tests."""
    data = legacy.generate(n_users=12, n_rows=50, seed=5, taken_user=None)
    async for source in _make_source("small", data, tmp_path_factory.mktemp("legacy"), s3_client):
        yield source


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def settings_for(
    base_settings: dict[str, Any], s3_endpoint: str, store_dir: Path, **overrides: Any
) -> Settings:
    return Settings(
        **{
            **base_settings,
            "local_storage_dir": store_dir,
            "s3_endpoint_url": s3_endpoint,
            **overrides,
        }
    )


async def run_import(settings: Settings, source: Source, **options: Any) -> ImportReport:
    report = await import_legacy(settings, ImportOptions(source.url, source.bucket, **options))
    print(report.format().splitlines()[-1])  # the speed line (pytest -s shows it)
    return report


# --------------------------------------------------------------------------- the command


def cli_env(database_url: str, store_dir: Path, s3_endpoint: str, source: Source) -> dict[str, str]:
    """The environment of `ocupredict import-legacy` run as its own process."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))},
        "PYTHONPATH": str(ROOT),
        "ENVIRONMENT": "development",
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": TEST_JWT_SECRET,
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(store_dir),
        "S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_S3_BUCKET": source.bucket,
        "LEGACY_DATABASE_URL": source.url,
    }


def start_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    """The import as its own process, as an operator runs it."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "import-legacy", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=(cwd / "stderr.log").open("w"),
        text=True,
    )


# --------------------------------------------------------------------------- checks


def issues(report: ImportReport, table: str) -> dict[int, str]:
    return {i.legacy_id: i.reason for i in report.failures if i.table == table}


def assert_report_matches(report: ImportReport, expected: legacy.Expected) -> None:
    """The report of a complete import (this run or earlier ones) against the oracle."""
    assert report.aborted is None
    assert report.users.read == len(expected.user_outcome)
    assert report.users.in_service == expected.count(expected.user_outcome, "imported")
    assert report.users.skipped == expected.count(expected.user_outcome, "CASE_DUPLICATE")
    assert issues(report, "users") == expected.failed(expected.user_outcome)
    assert report.history.read == len(expected.history_outcome)
    assert report.history.in_service == len(expected.rows)
    assert issues(report, "prediction_history") == expected.failed(expected.history_outcome)
    assert report.users.failed + report.history.failed == len(report.failures)
    skipped = {i.legacy_id for i in report.skips}
    assert skipped == {i for i, o in expected.user_outcome.items() if o == "CASE_DUPLICATE"}


async def legacy_users(engine: AsyncEngine) -> dict[int, User]:
    async with AsyncSession(engine) as session:
        users = await session.scalars(select(User).where(User.legacy_id.is_not(None)))
        return {u.legacy_id: u for u in users if u.legacy_id is not None}


async def assert_database_matches(
    engine: AsyncEngine, store_dir: Path, source: Source
) -> dict[int, Prediction]:
    """Every good row is there once, as mapped, with its image byte-exact in the store, and
    the store holds nothing else (no orphans). Returns the rows by legacy id."""
    expected = source.expected
    users = await legacy_users(engine)
    imported_users = {i for i, o in expected.user_outcome.items() if o == "imported"}
    assert set(users) == imported_users
    for legacy_id, user in users.items():
        assert user.email == expected.emails[legacy_id]
        assert user.role == "doctor"
    async with AsyncSession(engine) as session:
        rows = list(await session.scalars(select(Prediction)))
    by_legacy = {r.legacy_id: r for r in rows if r.legacy_id is not None}
    assert len(by_legacy) == len(rows) == len(expected.rows)  # no row twice, nothing else
    assert set(by_legacy) == set(expected.rows)
    for legacy_id, want in expected.rows.items():
        row = by_legacy[legacy_id]
        assert row.user_id == users[want.owner].id, legacy_id
        assert row.predicted_class == want.class_code
        assert row.class_codes == ["glaucoma", "diabetic_retinopathy", "normal", "cataract"]
        assert row.probabilities == pytest.approx(want.probabilities, abs=1e-12)
        # predictions.probability is a FLOAT on MariaDB: read back with 6 significant digits
        assert row.probability == pytest.approx(max(want.probabilities), abs=1e-5)
        assert (row.feedback_verdict, row.feedback_comment) == (want.verdict, want.comment)
        assert row.feedback_correct_class is None
        assert (row.feedback_updated_at is not None) == (want.verdict is not None)
        assert row.created_at == want.created_at.replace(tzinfo=UTC)
        assert row.original_filename == want.filename
        assert row.model_version == "legacy" and row.model_demo is False
        assert (row.content_type, row.width, row.height) == (
            want.content_type,
            want.width,
            want.height,
        )
        assert is_image_key(row.image_key)
        assert row.image_key.startswith(f"images/{want.created_at:%Y/%m}/")
        stored = (store_dir / row.image_key).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == row.sha256 == want.sha256
        assert row.size_bytes == len(stored)
    on_disk = {p.relative_to(store_dir).as_posix() for p in store_dir.rglob("*") if p.is_file()}
    assert on_disk == {r.image_key for r in rows}  # no orphan object, none missing
    return by_legacy


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", data={"username": email, "password": password})


async def stored_hash(engine: AsyncEngine, legacy_id: int) -> str:
    return (await legacy_users(engine))[legacy_id].password_hash


async def hash_anywhere(engine: AsyncEngine, old_hash: str) -> bool:
    """Whether any column of any user row still holds `old_hash`."""
    async with AsyncSession(engine) as session:
        result = await session.execute(select(User.__table__))
        return any(old_hash in str(value) for row in result for value in row)


# --------------------------------------------------------------------------- the big import


async def test_import_legacy_database_and_images(
    make_client: ClientFactory,
    big_source: Source,
    base_settings: dict[str, Any],
    s3_endpoint: str,
    store_dir: Path,
    db_engine: AsyncEngine,
) -> None:
    expected = big_source.expected
    settings = settings_for(base_settings, s3_endpoint, store_dir)
    async with make_client(local_storage_dir=store_dir) as client:
        app = app_of(client)
        # Someone already has an account here with the email of legacy user 9.
        await make_doctor(app, email=expected.emails[legacy.TAKEN_USER])

        report = await run_import(settings, big_source)
        assert_report_matches(report, expected)
        assert report.users.already == report.history.already == 0
        assert report.unusable_passwords == expected.unusable_passwords == 1
        rows = await assert_database_matches(db_engine, store_dir, big_source)

        # Legacy users log in with their old passwords: pbkdf2 and scrypt, at werkzeug's
        # real default costs (users 1 and 2) and at the cheap test costs.
        sample = [1, 2, legacy.DUPLICATE_OF, *range(10, 30)]
        methods = {expected.hash_method[i].split(":")[0] for i in sample}
        assert methods == {"pbkdf2", "scrypt"}
        for legacy_id in sample:
            email, password = expected.emails[legacy_id], expected.passwords[legacy_id]
            old = await stored_hash(db_engine, legacy_id)
            assert old.startswith(expected.hash_method[legacy_id].split(":")[0] + ":")
            assert (await login(client, email, password + "x")).status_code == 401
            assert await stored_hash(db_engine, legacy_id) == old  # a wrong one changes nothing
            response = await login(client, email.upper(), password)
            if legacy_id % 25 == 0:  # never verified in the legacy app either
                assert response.json()["code"] == "EMAIL_NOT_VERIFIED", legacy_id
            else:
                assert response.status_code == 200, (legacy_id, response.text)
            assert (await stored_hash(db_engine, legacy_id)).startswith("$argon2id$")
            assert not await hash_anywhere(db_engine, old)  # the werkzeug hash is gone
            if response.status_code == 200:
                headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
                await check_history_over_http(client, headers, legacy_id, rows, big_source)
            again = await login(client, email, password)  # now against the Argon2 hash
            assert again.status_code == response.status_code
        # The account with a pre-2.3 plain sha256 hash cannot log in with its password.
        plain = legacy.PLAIN_HASH_USER
        assert await stored_hash(db_engine, plain) == UNUSABLE_PASSWORD
        assert (
            await login(client, expected.emails[plain], expected.passwords[plain])
        ).status_code == 401

        # A second run imports nothing and finds everything where it left it.
        again = await run_import(settings, big_source)
        assert again.users.imported == again.history.imported == 0
        assert again.users.already == report.users.imported
        assert again.history.already == report.history.imported
        assert_report_matches(again, expected)
        await assert_database_matches(db_engine, store_dir, big_source)


async def check_history_over_http(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    legacy_user: int,
    rows: dict[int, Prediction],
    source: Source,
) -> None:
    """The user's history total, and for a few rows the detail and the image bytes."""
    expected = source.expected
    mine = sorted(i for i, r in expected.rows.items() if r.owner == legacy_user)
    page = await client.get(f"{API}/history", params={"page_size": 1}, headers=headers)
    assert page.status_code == 200 and page.json()["total"] == len(mine), legacy_user
    labels = {"glaucoma": "Glaucoma", "diabetic_retinopathy": "Retinopatía diabética"}
    for legacy_id in mine[:2] + [i for i in mine if expected.rows[i].verdict][:2]:
        want, row = expected.rows[legacy_id], rows[legacy_id]
        detail = (await client.get(f"{API}/history/{row.id}", headers=headers)).json()
        assert detail["result"]["class_code"] == want.class_code
        assert detail["result"]["label"] == labels.get(want.class_code, detail["result"]["label"])
        assert [p["class_code"] for p in detail["probabilities"]] == row.class_codes
        feedback = detail["feedback"]
        assert (feedback and feedback["verdict"]) == (want.verdict or None)
        assert detail["image"]["sha256"] == want.sha256
        assert detail["model"]["version"] == "legacy"
        image = await client.get(f"{API}/history/{row.id}/image", headers=headers)
        assert image.status_code == 200
        assert image.headers["content-type"] == want.content_type
        key = source.data.history[legacy_id - 1]["image_s3_key"]
        assert image.content == source.data.objects[key]  # byte-exact round trip


# --------------------------------------------------------------------------- killed half way


async def test_killed_import_resumes_to_the_same_totals(
    make_client: ClientFactory,
    big_source: Source,
    base_settings: dict[str, Any],
    s3_endpoint: str,
    store_dir: Path,
    db_engine: AsyncEngine,
    database_url: str,
) -> None:
    expected = big_source.expected
    async with make_client(local_storage_dir=store_dir) as client:
        await make_doctor(app_of(client), email=expected.emails[legacy.TAKEN_USER])

    env = cli_env(database_url, store_dir, s3_endpoint, big_source)
    process = start_cli(env, store_dir.parent / "killed", "--batch", "100")
    target = len(expected.rows) // 2
    deadline = time.monotonic() + 180
    partial = 0
    try:
        while partial < target:
            assert process.poll() is None, (store_dir.parent / "killed/stderr.log").read_text()
            assert time.monotonic() < deadline, f"only {partial} rows after 180 s"
            await asyncio.sleep(0.05)
            partial = await count_imported(db_engine)
    finally:
        process.send_signal(signal.SIGKILL)  # no clean-up code of the import runs
        process.wait()
    partial = await count_imported(db_engine)
    assert target <= partial < len(expected.rows)

    report = await run_import(settings_for(base_settings, s3_endpoint, store_dir), big_source)
    assert report.history.already == partial
    assert report.history.imported == len(expected.rows) - partial
    assert report.users.imported == 0  # the killed run had done the accounts
    assert_report_matches(report, expected)  # the totals of an uninterrupted import
    # The kill may have landed inside writes: their temp files are all it can leave behind
    # (the keys are the legacy ids', so the resumed run rewrote any image stored for an
    # uncommitted row), and the sweep removes them. No orphan image is left to sweep.
    async with make_client(local_storage_dir=store_dir) as client:
        app = app_of(client)
        sweep = await sweep_orphan_images(
            app.state.sessionmaker,
            app.state.storage,
            cutoff=datetime.now(UTC) + timedelta(minutes=1),
            dry_run=False,
        )
    assert (sweep.orphaned, sweep.failed) == (0, 0)
    assert sweep.abandoned_writes <= ImportOptions("", None).concurrency  # writes under way
    await assert_database_matches(db_engine, store_dir, big_source)


async def count_imported(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).where(Prediction.legacy_id.is_not(None))
        return int((await conn.execute(query)).scalar_one())


# --------------------------------------------------------------------------- passwords


async def test_a_legacy_hash_is_accepted_by_login_only(
    make_client: ClientFactory,
    small_source: Source,
    base_settings: dict[str, Any],
    s3_endpoint: str,
    store_dir: Path,
    db_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    expected = small_source.expected
    settings = settings_for(base_settings, s3_endpoint, store_dir)
    report = await run_import(settings, small_source)
    assert report.aborted is None and report.users.imported == 12
    async with make_client(local_storage_dir=store_dir) as client:
        app = app_of(client)
        # Change password: not with the legacy password, even holding a live session
        # (made here without a login, as verifying an emailed code would).
        user_id = 4
        async with app.state.sessionmaker() as session:
            user = await session.get(User, (await legacy_users(db_engine))[user_id].id)
            assert user is not None
            tokens = await LoginSessions(session, app.state.settings).start(user, utcnow())
            await session.commit()
        headers = {"Authorization": f"Bearer {tokens.access_token}"}
        old = await stored_hash(db_engine, user_id)
        response = await client.post(
            f"{API}/auth/me/password",
            json={"current_password": expected.passwords[user_id], "new_password": "n" * 12},
            headers=headers,
        )
        assert response.status_code == 400 and response.json()["code"] == "INVALID_CREDENTIALS"
        assert await stored_hash(db_engine, user_id) == old

        # Reset: the new password replaces the legacy hash, the old password stops working.
        user_id = 5
        email, old = expected.emails[user_id], await stored_hash(db_engine, user_id)
        forgot = await client.post(f"{API}/auth/password/forgot", json={"email": email})
        assert forgot.status_code == 202
        code = await next_code(mailbox, email, 1)
        reset = await client.post(
            f"{API}/auth/password/reset",
            json={"email": email, "code": code, "new_password": "brand-new-password"},
        )
        assert reset.status_code == 204, reset.text
        assert (await stored_hash(db_engine, user_id)).startswith("$argon2id$")
        assert not await hash_anywhere(db_engine, old)
        assert (await login(client, email, expected.passwords[user_id])).status_code == 401
        assert (await login(client, email, "brand-new-password")).status_code == 200

    # Below the routes: only the login's check accepts a werkzeug hash.
    passwords = Passwords(1, 1024, 1)
    legacy_hash = legacy.generate_password_hash("legacy-pass", "pbkdf2:sha256:1000")
    assert not await passwords.verify("legacy-pass", legacy_hash)
    assert await passwords.verify_and_update("legacy-pass", legacy_hash) == (False, None)
    ok, new_hash = await passwords.verify_for_login("legacy-pass", legacy_hash)
    assert ok and new_hash is not None and new_hash.startswith("$argon2id$")
    assert await passwords.verify_for_login("wrong-pass", legacy_hash) == (False, None)


def test_legacy_hashes_recognised_within_cost_bounds() -> None:
    from werkzeug.security import generate_password_hash

    for method in ("pbkdf2:sha256:1000", "pbkdf2:sha512:2000", "scrypt:1024:8:1"):
        hashed = generate_password_hash("s3cret-pass", method)
        assert is_legacy_hash(hashed) and check_legacy_password(hashed, "s3cret-pass")
        assert not check_legacy_password(hashed, "s3cret-pasS")
    salt, digest = "abcdefgh", "0" * 64
    for hashed in (
        f"pbkdf2:sha256:999999999${salt}${digest}",  # a billion rounds at login: refused
        f"scrypt:1048576:64:16${salt}${digest}",  # gigabytes of memory: refused
        f"scrypt:1000:8:1${salt}${digest}",  # n not a power of two
        f"pbkdf2:md5:1000${salt}${digest}",
        f"sha256${salt}${digest}",  # Werkzeug < 2.3 plain hash
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        UNUSABLE_PASSWORD,
        "",
    ):
        assert not is_legacy_hash(hashed), hashed
        assert not check_legacy_password(hashed, "anything")


# --------------------------------------------------------------------------- dry run, S3, CLI


def test_dry_run_writes_nothing_and_reports_what_would_happen(
    small_source: Source,
    base_settings: dict[str, Any],
    s3_endpoint: str,
    store_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {
        "DATABASE_URL": base_settings["database_url"],
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(store_dir),
        "S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    argv = ["import-legacy", "--source", small_source.url, "--source-bucket", small_source.bucket]
    status = in_own_thread(lambda: cli_main([*argv, "--dry-run"]))
    out = capsys.readouterr().out
    assert status == 3  # completed, some rows failed
    assert "DRY RUN, nothing written" in out
    expected = small_source.expected
    good = len(expected.rows)
    assert f"{'prediction_history':20}{len(expected.history_outcome):>8}{good:>14}" in out, out
    for legacy_id, reason in expected.failed(expected.history_outcome).items():
        assert f"prediction_history id {legacy_id}: {reason}" in out
    assert not store_dir.exists() or not any(store_dir.rglob("*.*"))
    assert in_own_thread(lambda: cli_main(argv)) == 3  # the real run
    out = capsys.readouterr().out
    assert f"{'prediction_history':20}{len(expected.history_outcome):>8}{good:>14}" in out, out
    assert len([p for p in store_dir.rglob("*") if p.is_file()]) == good
    monkeypatch.delenv("LEGACY_DATABASE_URL", raising=False)
    assert in_own_thread(lambda: cli_main(["import-legacy"])) == 2  # no --source
    assert "--source" in capsys.readouterr().err


async def test_import_into_an_s3_store(
    make_client: ClientFactory,
    small_source: Source,
    base_settings: dict[str, Any],
    s3_endpoint: str,
    s3_bucket: str,
    s3_client: Any,
    db_engine: AsyncEngine,
) -> None:
    overrides = {
        "storage_backend": "s3",
        "aws_s3_bucket": s3_bucket,
        "s3_endpoint_url": s3_endpoint,
    }
    settings = Settings(**{**base_settings, **overrides})
    report = await run_import(settings, small_source)
    expected = small_source.expected
    assert report.history.imported == len(expected.rows) and report.aborted is None
    async with AsyncSession(db_engine) as session:
        rows = list(await session.scalars(select(Prediction)))
    listed = s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    assert {o["Key"] for o in listed} == {r.image_key for r in rows}
    for row in rows:
        obj = s3_client.get_object(Bucket=s3_bucket, Key=row.image_key)
        assert obj["ContentType"] == expected.rows[row.legacy_id].content_type  # not the
        assert hashlib.sha256(obj["Body"].read()).hexdigest() == row.sha256  # legacy's jpeg
        assert row.image_key == legacy_image_key(row.legacy_id, row.image_key[-3:], row.created_at)

    row = next(r for r in rows if expected.rows[r.legacy_id].owner != legacy.PLAIN_HASH_USER)
    async with make_client(**overrides) as client:
        owner = expected.rows[row.legacy_id].owner
        response = await login(client, expected.emails[owner], expected.passwords[owner])
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        image = await client.get(f"{API}/history/{row.id}/image", headers=headers)
        assert image.status_code == 307
        async with httpx.AsyncClient() as plain:
            fetched = await plain.get(image.headers["location"])
        key = small_source.data.history[row.legacy_id - 1]["image_s3_key"]
        assert fetched.content == small_source.data.objects[key]


async def test_unreachable_legacy_bucket_stops_the_run_without_writing_history(
    small_source: Source,
    base_settings: dict[str, Any],
    store_dir: Path,
    db_engine: AsyncEngine,
) -> None:
    from tests.support.harness import free_port

    settings = settings_for(base_settings, f"http://127.0.0.1:{free_port()}", store_dir)
    report = await run_import(settings, small_source)
    assert report.aborted is not None and "unreachable" in report.aborted
    assert await count_imported(db_engine) == 0
    assert not store_dir.exists() or not any(p.is_file() for p in store_dir.rglob("*"))
    assert "STOPPED EARLY" in report.format()


# --------------------------------------------------------------------------- mapping


def test_probabilities_are_parsed_without_eval() -> None:
    good = parse_probabilities("[0.7, 0.1, 0.1, 0.1]", "glaucoma")
    assert good == [0.7, 0.1, 0.1, 0.1]
    assert parse_probabilities(" [1e-05,0.99997, 1.5E-5,0] ", "diabetic_retinopathy")[1] == 0.99997
    for text, code in [
        ("[0.7, 0.1, 0.1]", "glaucoma"),
        ("[0.7, 0.1, 0.1, 0.1, 0.0]", "glaucoma"),
        ("[0.7, 0.1, 0.1, 0.2]", "glaucoma"),  # sums to 1.1
        ("[1.5, -0.5, 0.0, 0.0]", "glaucoma"),
        ("[inf, 0, 0, 0]", "glaucoma"),
        ("(0.7, 0.1, 0.1, 0.1)", "glaucoma"),
        ("[0.7, 0.1, 0.1, 0.1]", "normal"),  # not the top class
        ("[[0.7], 0.1, 0.1, 0.1]", "glaucoma"),
        ("().__class__.__base__.__subclasses__()", "glaucoma"),
        (None, "glaucoma"),
    ]:
        with pytest.raises(RowRejected) as caught:
            parse_probabilities(text, code)
        assert caught.value.reason == "MALFORMED_PROBABILITIES", text


def test_class_names_and_feedback_are_mapped() -> None:
    assert class_code("Retinopatia diabetica") == "diabetic_retinopathy"
    assert class_code(" retinopatía  DIABÉTICA ") == "diabetic_retinopathy"
    assert [class_code(n) for n in ("Glaucoma", "Normal", "Catarata")] == [
        "glaucoma",
        "normal",
        "cataract",
    ]
    for name in ("Cataract", "", None, "Glaucoma 2"):
        with pytest.raises(RowRejected):
            class_code(name)
    assert map_feedback("correcto").verdict == "correct"
    assert map_feedback(" Incorrecto ").verdict == "incorrect"
    assert map_feedback(None) == map_feedback("") == map_feedback("Sin feedback")
    assert map_feedback(None).verdict is None and map_feedback(None).comment is None
    note = map_feedback("  dudoso, repetir  ")
    assert (note.verdict, note.comment) == (None, "dudoso, repetir")


def test_case_duplicates_keep_the_oldest() -> None:
    from datetime import datetime

    older, newer = datetime(2024, 1, 1), datetime(2024, 2, 1)
    accounts = [
        LegacyAccount(1, "a@x.org", newer),
        LegacyAccount(2, "a@x.org", older),
        LegacyAccount(3, "b@x.org", None),
        LegacyAccount(4, "a@x.org", None),
        LegacyAccount(5, "b@x.org", None),
    ]
    kept, duplicates = split_case_duplicates(accounts)
    assert [a.id for a in kept] == [2, 3]
    assert {k: v.id for k, v in duplicates.items()} == {1: 2, 4: 2, 5: 3}


def test_source_urls_get_the_async_driver() -> None:
    assert async_source_url("mysql+pymysql://u:p@db:3306/old") == (
        "mysql+aiomysql://u:p@db:3306/old?charset=utf8mb4"
    )
    assert async_source_url("mysql://u@db/old?charset=latin1").endswith("?charset=latin1")
    assert async_source_url("sqlite:///var/test.db") == "sqlite+aiosqlite:///var/test.db"
    for bad in ("postgresql://u@db/old", "not a url"):
        with pytest.raises(ValueError):
            async_source_url(bad)
