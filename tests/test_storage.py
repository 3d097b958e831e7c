"""Image store: S3 against a real moto server, local against a temp dir, URL signing."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import ConfigError, Settings
from app.storage import (
    ImageNotFound,
    ImageStore,
    InvalidImageKey,
    LocalImageStore,
    S3ImageStore,
    StorageUnavailable,
    build_image_store,
    credential_stamp,
    image_access_params,
    new_image_key,
    sign_image_access,
    verify_image_access,
)
from tests.support.harness import s3_test_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64
NOW = datetime(2025, 3, 14, 9, 26, tzinfo=UTC)
HANG_GUARD_S = 20  # not a speed assertion: only stops a hung request from stalling the run


def s3_settings(endpoint: str, bucket: str) -> Settings:
    return s3_test_settings(endpoint, storage_backend="s3", aws_s3_bucket=bucket)


@pytest.fixture
async def s3_store(s3_endpoint: str, s3_bucket: str) -> AsyncIterator[S3ImageStore]:
    store = await S3ImageStore.open(s3_settings(s3_endpoint, s3_bucket))
    yield store
    await store.aclose()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalImageStore:
    root = tmp_path / "images-root"
    root.mkdir()
    return LocalImageStore(root)


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest) -> ImageStore:
    name = "s3_store" if request.param == "s3" else "local_store"
    value: ImageStore = request.getfixturevalue(name)
    return value


# --------------------------------------------------------------------------- keys


def test_new_image_key_format_and_uniqueness() -> None:
    keys = {new_image_key("jpg", NOW) for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert re.fullmatch(r"images/2025/03/[0-9a-f]{32}\.jpg", key)


@pytest.mark.parametrize(
    ("ext", "expected"), [("png", "png"), (".PNG", "png"), ("jpeg", "jpg"), ("JPG", "jpg")]
)
def test_new_image_key_normalizes_extension(ext: str, expected: str) -> None:
    assert new_image_key(ext, NOW).endswith(f".{expected}")


@pytest.mark.parametrize("ext", ["gif", "exe", "", "jpg/../x", "photo.jpg", "svg"])
def test_new_image_key_rejects_other_extensions(ext: str) -> None:
    with pytest.raises(ValueError):
        new_image_key(ext, NOW)


def test_new_image_key_uses_utc_month() -> None:
    lima = timezone(timedelta(hours=-5))
    # 31 Jan 22:00 in Lima is already February in UTC.
    assert new_image_key("png", datetime(2025, 1, 31, 22, 0, tzinfo=lima)).startswith(
        "images/2025/02/"
    )
    assert new_image_key("png", datetime(2024, 12, 1)).startswith("images/2024/12/")


# --------------------------------------------------------------------------- both backends


async def test_round_trip(store: ImageStore) -> None:
    key = new_image_key("png", NOW)
    assert not await store.exists(key)
    await store.put(key, PNG, "image/png")
    assert await store.exists(key)
    stored = await store.get(key)
    assert stored.data == PNG
    assert stored.content_type == "image/png"

    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(ImageNotFound):
        await store.get(key)
    await store.delete(key)  # idempotent


async def test_content_type_kept_per_object(store: ImageStore) -> None:
    jpg_key, png_key = new_image_key("jpg", NOW), new_image_key("png", NOW)
    await store.put(jpg_key, JPEG, "image/jpeg")
    await store.put(png_key, PNG, "image/png")
    assert (await store.get(jpg_key)).content_type == "image/jpeg"
    assert (await store.get(png_key)).content_type == "image/png"


async def test_put_overwrites(store: ImageStore) -> None:
    key = new_image_key("jpg", NOW)
    await store.put(key, JPEG, "image/jpeg")
    await store.put(key, JPEG + b"more", "image/jpeg")
    assert (await store.get(key)).data == JPEG + b"more"


async def test_content_type_must_match_key(store: ImageStore) -> None:
    key = new_image_key("png", NOW)
    with pytest.raises(ValueError):
        await store.put(key, PNG, "image/jpeg")
    assert not await store.exists(key)


async def test_check_ok(store: ImageStore) -> None:
    await store.check()


BAD_KEYS = [
    "../etc/passwd",
    "/etc/passwd",
    "images/2025/03/../../../etc/passwd",
    "images/2025/03/" + "a" * 32 + ".jpg/../../x.jpg",
    "images\\2025\\03\\" + "a" * 32 + ".jpg",
    "images/2025/03/" + "a" * 32 + ".exe",
    "images/2025/03/" + "a" * 32 + ".jpg\n",
    "images/2025/13/" + "a" * 32 + ".jpg",
    "images/2025/03/" + "A" * 32 + ".jpg",
    "images/2025/03/cat photo.jpg",
    "imagenes/2f0c-foto.jpg",  # legacy shape: user filename in the key
    "",
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_rejected(store: ImageStore, key: str) -> None:
    with pytest.raises(InvalidImageKey):
        await store.put(key, JPEG, "image/jpeg")
    with pytest.raises(InvalidImageKey):
        await store.get(key)
    with pytest.raises(InvalidImageKey):
        await store.exists(key)
    with pytest.raises(InvalidImageKey):
        await store.delete(key)
    with pytest.raises(InvalidImageKey):
        await store.presigned_url(key, 60)


# --------------------------------------------------------------------------- local


async def test_local_traversal_cannot_read_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    store = LocalImageStore(root)
    with pytest.raises(InvalidImageKey):
        await store.get("../secret.jpg")
    with pytest.raises(InvalidImageKey):
        await store.delete("../secret.jpg")
    assert (tmp_path / "secret.jpg").exists()


async def test_local_layout_and_no_temp_leftovers(local_store: LocalImageStore) -> None:
    key = new_image_key("jpg", NOW)
    await local_store.put(key, JPEG, "image/jpeg")
    path = local_store.root / key
    assert path.read_bytes() == JPEG
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert path.stat().st_mode & 0o077 == 0  # not readable by other users


async def test_local_presigned_url_is_none(local_store: LocalImageStore) -> None:
    assert await local_store.presigned_url(new_image_key("png", NOW), 60) is None


async def test_local_check_fails_when_root_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    store = LocalImageStore(blocker / "images")
    with pytest.raises(StorageUnavailable) as info:
        await store.check()
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(StorageUnavailable):
        await store.put(new_image_key("png", NOW), PNG, "image/png")


async def test_build_local_creates_root(tmp_path: Path) -> None:
    root = tmp_path / "nested" / "images"
    store = await build_image_store(
        Settings(_env_file=None, storage_backend="local", local_storage_dir=root)
    )
    try:
        assert store.backend_name == "local"
        assert root.is_dir()
        await store.check()
    finally:
        await store.aclose()


# --------------------------------------------------------------------------- S3


async def test_build_s3(s3_endpoint: str, s3_bucket: str) -> None:
    store = await build_image_store(s3_settings(s3_endpoint, s3_bucket))
    try:
        assert store.backend_name == "s3"
        assert isinstance(store, S3ImageStore)
        await store.check()
    finally:
        await store.aclose()
        await store.aclose()  # closing twice is harmless


async def test_build_s3_without_bucket_refused(s3_endpoint: str) -> None:
    with pytest.raises(ConfigError):
        await build_image_store(s3_settings(s3_endpoint, ""))


async def test_s3_presigned_url(s3_store: S3ImageStore) -> None:
    key = new_image_key("jpg", NOW)
    await s3_store.put(key, JPEG, "image/jpeg")
    url = await s3_store.presigned_url(key, 300)
    assert url is not None
    assert key in url
    assert "X-Amz-Expires=300" in url
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
        assert response.status_code == 200
        assert response.content == JPEG
        assert response.headers["content-type"] == "image/jpeg"

        await s3_store.delete(key)
        response = await http.get(url)
        assert response.status_code in (403, 404)


async def test_s3_server_side_encryption_accepted(
    s3_endpoint: str, s3_bucket: str, s3_store: S3ImageStore
) -> None:
    # The AWS code path (no custom endpoint) asks for SSE-S3; moto must accept it.
    store = S3ImageStore(s3_store._client, s3_bucket, server_side_encryption=True)
    key = new_image_key("png", NOW)
    await store.put(key, PNG, "image/png")
    head: dict[str, Any] = await s3_store._client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "image/png"


async def test_s3_missing_bucket(s3_endpoint: str) -> None:
    store = await S3ImageStore.open(s3_settings(s3_endpoint, "no-such-bucket-ocupredict"))
    try:
        with pytest.raises(StorageUnavailable):
            await store.check()
        with pytest.raises(StorageUnavailable):
            await store.put(new_image_key("png", NOW), PNG, "image/png")
    finally:
        await store.aclose()


async def test_s3_unreachable_endpoint_fails_fast() -> None:
    store = await S3ImageStore.open(s3_settings("http://127.0.0.1:1", "bucket"))
    key = new_image_key("png", NOW)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(StorageUnavailable) as info:
                await store.put(key, PNG, "image/png")
            with pytest.raises(StorageUnavailable):
                await store.check()
            with pytest.raises(StorageUnavailable):
                await store.get(key)
            with pytest.raises(StorageUnavailable):
                await store.exists(key)
    finally:
        await store.aclose()
    # Generic message for clients; the botocore error is kept for the logs.
    assert "127.0.0.1" not in str(info.value)
    assert info.value.__cause__ is not None


# --------------------------------------------------------------------------- signing

SECRET = "test-secret-0123456789abcdef0123456789abcdef"
STAMP = credential_stamp("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA")


def test_signing_valid() -> None:
    now = time.time()
    expires = int(now) + 600
    sig = sign_image_access(SECRET, 42, expires, STAMP)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sig)  # urlsafe, no padding
    assert verify_image_access(SECRET, 42, expires, sig, now, STAMP)
    assert verify_image_access(SECRET, 42, expires, sig, datetime.fromtimestamp(now, UTC), STAMP)


def test_signing_rejects_tampering() -> None:
    now = 1_700_000_000
    expires = now + 600
    sig = sign_image_access(SECRET, 42, expires, STAMP)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert not verify_image_access(SECRET, 42, expires, flipped, now, STAMP)
    assert not verify_image_access(SECRET, 43, expires, sig, now, STAMP)  # other id
    assert not verify_image_access(SECRET, 42, expires + 3600, sig, now, STAMP)  # extended expiry
    assert not verify_image_access(SECRET + "x", 42, expires, sig, now, STAMP)  # other secret
    assert not verify_image_access(SECRET, 42, expires, "", now, STAMP)
    assert not verify_image_access(SECRET, 42, expires, sig + "é", now, STAMP)
    # The owner's password changed since: their credential stamp did too.
    assert not verify_image_access(SECRET, 42, expires, sig, now, credential_stamp("other"))


def test_signing_rejects_expired() -> None:
    expires = 1_700_000_000
    sig = sign_image_access(SECRET, 42, expires, STAMP)
    assert verify_image_access(SECRET, 42, expires, sig, expires - 1, STAMP)
    assert not verify_image_access(SECRET, 42, expires, sig, expires, STAMP)
    assert not verify_image_access(SECRET, 42, expires, sig, expires + 1, STAMP)


def test_signing_is_domain_separated() -> None:
    import base64
    import hashlib
    import hmac

    expires = 1_700_000_000
    plain = hmac.new(SECRET.encode(), f"42:{expires}".encode(), hashlib.sha256).digest()
    plain_sig = base64.urlsafe_b64encode(plain).rstrip(b"=").decode()
    assert sign_image_access(SECRET, 42, expires, STAMP) != plain_sig


def test_image_access_params() -> None:
    params = image_access_params(SECRET, 7, 1_700_000_000, 900, STAMP)
    assert params["expires"] == "1700000900"
    assert verify_image_access(
        SECRET, 7, int(params["expires"]), params["signature"], 1_700_000_000, STAMP
    )
