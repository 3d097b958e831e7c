"""`ocupredict sweep-images`: stored images no prediction references are removed, nothing else.

Both stores for real: the local store in a temp dir and S3 on the moto server; the rows in
the test database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main as cli_main
from app.services.sweep import SweepReport, sweep_orphan_images
from app.storage import ImageStore, LocalImageStore, StorageUnavailable, new_image_key
from tests.support.factories import add_prediction, make_doctor
from tests.support.harness import ClientFactory, in_own_thread

JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64
LATER = timedelta(minutes=1)  # a cutoff just after now: every object counts as old


@pytest.fixture(params=["local", "s3"])
async def client(
    request: pytest.FixtureRequest, make_client: ClientFactory, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        overrides: dict[str, Any] = {
            "storage_backend": "s3",
            "aws_s3_bucket": bucket,
            "s3_endpoint_url": request.getfixturevalue("s3_endpoint"),
        }
    else:
        overrides = {"local_storage_dir": tmp_path / "store"}
    async with make_client(**overrides) as client:
        yield client


def put_foreign_objects(store: ImageStore, request: pytest.FixtureRequest) -> list[str]:
    """Objects that are not ours to judge: other shapes beside and under images/."""
    if isinstance(store, LocalImageStore):
        month = store.root / "images" / "2025" / "03"
        month.mkdir(parents=True, exist_ok=True)
        (month / "notes.txt").write_text("not an image key")
        (month / "abc123.tmp").write_bytes(JPEG)  # not the shape of our unfinished writes
        (store.root / "other.jpg").write_bytes(JPEG)
        return ["images/2025/03/notes.txt", "images/2025/03/abc123.tmp", "other.jpg"]
    s3, bucket = request.getfixturevalue("s3_client"), request.getfixturevalue("s3_bucket")
    keys = ["images/readme.txt", "other/" + new_image_key("jpg", datetime.now(UTC))]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=JPEG)
    return keys


def foreign_exists(store: ImageStore, request: pytest.FixtureRequest, key: str) -> bool:
    if isinstance(store, LocalImageStore):
        return (store.root / key).exists()
    s3, bucket = request.getfixturevalue("s3_client"), request.getfixturevalue("s3_bucket")
    return "Contents" in s3.list_objects_v2(Bucket=bucket, Prefix=key)


async def test_sweep_removes_only_old_unreferenced_images(
    client: httpx.AsyncClient, request: pytest.FixtureRequest
) -> None:
    app = client.app  # type: ignore[attr-defined]
    store: ImageStore = app.state.storage
    sessions = app.state.sessionmaker
    doctor = await make_doctor(app)
    now = datetime.now(UTC)
    kept = await add_prediction(app, doctor.id)
    orphan = new_image_key("jpg", now)
    for key in (kept.image_key, orphan):
        await store.put(key, JPEG, "image/jpeg")
    foreign = put_foreign_objects(store, request)

    # Within the grace period nothing is even looked at: a row may still be on its way.
    report = await sweep_orphan_images(
        sessions, store, cutoff=now - timedelta(hours=1), dry_run=False
    )
    assert report == SweepReport()

    report = await sweep_orphan_images(sessions, store, cutoff=now + LATER, dry_run=True)
    assert report == SweepReport(scanned=2, orphaned=1, deleted=0, failed=0)
    assert await store.exists(orphan)

    report = await sweep_orphan_images(sessions, store, cutoff=now + LATER, dry_run=False)
    assert report == SweepReport(scanned=2, orphaned=1, deleted=1, failed=0)
    assert not await store.exists(orphan)
    assert await store.exists(kept.image_key)
    assert all(foreign_exists(store, request, key) for key in foreign)

    # The referenced image survives its own sweep; only a deleted row frees it.
    report = await sweep_orphan_images(sessions, store, cutoff=now + LATER, dry_run=False)
    assert report == SweepReport(scanned=1, orphaned=0, deleted=0, failed=0)
    response = await client.delete(f"/api/v1/history/{kept.id}", headers=doctor.headers)
    assert response.status_code == 204
    assert not await store.exists(kept.image_key)  # deleting the prediction removed it


class DeleteFails:
    """The local store whose deletes fail, as an unreachable S3 would."""

    def __init__(self, store: LocalImageStore) -> None:
        self.store = store

    def keys_stored_before(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        return self.store.keys_stored_before(cutoff)

    async def remove_abandoned_writes(self, cutoff: datetime, *, dry_run: bool) -> int:
        return await self.store.remove_abandoned_writes(cutoff, dry_run=dry_run)

    async def delete(self, key: str) -> None:
        raise StorageUnavailable()


async def test_failed_delete_is_counted_and_left_for_the_next_sweep(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    async with make_client(local_storage_dir=tmp_path / "store") as client:
        app = client.app  # type: ignore[attr-defined]
        store: LocalImageStore = app.state.storage
        orphan = new_image_key("png", datetime.now(UTC))
        await store.put(orphan, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")
        cutoff = datetime.now(UTC) + LATER
        report = await sweep_orphan_images(
            app.state.sessionmaker,
            DeleteFails(store),  # type: ignore[arg-type]
            cutoff=cutoff,
            dry_run=False,
        )
        assert report == SweepReport(scanned=1, orphaned=1, deleted=0, failed=1)
        assert await store.exists(orphan)
        report = await sweep_orphan_images(
            app.state.sessionmaker, store, cutoff=cutoff, dry_run=False
        )
        assert report.deleted == 1 and not await store.exists(orphan)


async def test_unfinished_writes_of_a_killed_process_are_removed_after_the_grace_period(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A SIGKILL between mkstemp and the rename leaves `.<random>.tmp` beside the images;
    the sweep removes it once it is older than the cutoff, never a younger one (a write
    that may still be under way), and never a real image."""
    async with make_client(local_storage_dir=tmp_path / "store") as client:
        app = client.app  # type: ignore[attr-defined]
        store: LocalImageStore = app.state.storage
        doctor = await make_doctor(app)
        kept = await add_prediction(app, doctor.id)
        await store.put(kept.image_key, JPEG, "image/jpeg")
        month = (store.root / kept.image_key).parent
        abandoned, under_way = month / ".k1ll3d.tmp", month / ".w0rk1ng.tmp"
        for path in (abandoned, under_way):
            path.write_bytes(JPEG[:10])
        two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
        os.utime(abandoned, (two_hours_ago, two_hours_ago))
        cutoff = datetime.now(UTC) - timedelta(hours=1)

        report = await sweep_orphan_images(
            app.state.sessionmaker, store, cutoff=cutoff, dry_run=True
        )
        assert report == SweepReport(abandoned_writes=1)
        assert abandoned.exists() and under_way.exists()

        report = await sweep_orphan_images(
            app.state.sessionmaker, store, cutoff=cutoff, dry_run=False
        )
        assert report == SweepReport(abandoned_writes=1)
        assert not abandoned.exists() and under_way.exists()
        assert await store.exists(kept.image_key)


def test_cli_sweeps_with_a_grace_period(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "store"
    old = root / new_image_key("jpg", datetime(2025, 3, 14, tzinfo=UTC))
    fresh = root / new_image_key("jpg", datetime.now(UTC))
    for path in (old, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(JPEG)
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    os.utime(old, (two_days_ago, two_days_ago))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STORAGE_BACKEND", "local")
    monkeypatch.setenv("LOCAL_STORAGE_DIR", str(root))

    assert in_own_thread(lambda: cli_main(["sweep-images", "--dry-run"])) == 0
    assert "would delete 1" in capsys.readouterr().out
    assert old.exists() and fresh.exists()

    assert in_own_thread(lambda: cli_main(["sweep-images"])) == 0  # default: older than 24 h
    assert "deleted 1" in capsys.readouterr().out
    assert not old.exists() and fresh.exists()

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["sweep-images", "--older-than-hours", "0"])
    assert exit_info.value.code == 2
