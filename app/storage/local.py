"""Filesystem image store for development and single-host installs.

Blocking file I/O runs in worker threads. Writes go to a temp file in the target
directory and are renamed into place, so readers never see a half-written image.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import anyio.to_thread

from app.storage.base import (
    ImageNotFound,
    StorageUnavailable,
    StoredImage,
    check_content_type,
    content_type_for_key,
    is_image_key,
    validate_key,
)


class LocalImageStore:
    backend_name: str = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        # The strict key pattern already rules out traversal; this is a second fence.
        path = self.root / validate_key(key)
        if not path.is_relative_to(self.root):  # pragma: no cover - unreachable by pattern
            raise ValueError("image key escapes the storage root")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        check_content_type(key, content_type)
        try:
            await anyio.to_thread.run_sync(_write_atomic, path, data)
        except OSError as exc:
            raise StorageUnavailable() from exc

    async def get(self, key: str) -> StoredImage:
        path = self._path(key)
        try:
            data = await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError as exc:
            raise ImageNotFound() from exc
        except OSError as exc:
            raise StorageUnavailable() from exc
        return StoredImage(data=data, content_type=content_type_for_key(key))

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
        except OSError as exc:
            raise StorageUnavailable() from exc

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await anyio.to_thread.run_sync(path.is_file)

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        # The app serves local images itself through app.storage.signing URLs.
        validate_key(key)
        return None

    async def check(self) -> None:
        try:
            await anyio.to_thread.run_sync(_probe_writable, self.root)
        except OSError as exc:
            raise StorageUnavailable() from exc

    async def aclose(self) -> None:
        return None

    async def keys_stored_before(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        try:
            keys = await anyio.to_thread.run_sync(_keys_written_before, self.root, cutoff)
        except OSError as exc:
            raise StorageUnavailable() from exc
        for start in range(0, len(keys), _PAGE):
            yield keys[start : start + _PAGE]

    async def remove_abandoned_writes(self, cutoff: datetime, *, dry_run: bool) -> int:
        try:
            return await anyio.to_thread.run_sync(
                _remove_temp_files_before, self.root, cutoff, dry_run
            )
        except OSError as exc:
            raise StorageUnavailable() from exc


# The shape of _write_atomic's temp files: hidden, so no key can match, and found again by
# _remove_temp_files_before when a killed process never renamed one into place.
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600: patient images are not world-readable.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_PAGE = 1000


def _keys_written_before(root: Path, cutoff: datetime) -> list[str]:
    """images/yyyy/mm/<hex>.<ext> files modified before `cutoff` (temp files excluded)."""
    limit = cutoff.timestamp()
    keys = []
    for path in sorted((root / "images").glob("*/*/*")):
        key = path.relative_to(root).as_posix()
        if is_image_key(key) and _modified_before(path, limit):
            keys.append(key)
    return keys


def _remove_temp_files_before(root: Path, cutoff: datetime, dry_run: bool) -> int:
    """The temp files of _write_atomic that a killed process left (SIGKILL runs no clean-up).
    Only those older than `cutoff`: a younger one may be a write still under way."""
    limit = cutoff.timestamp()
    found = 0
    for path in (root / "images").glob(f"*/*/{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
        if _modified_before(path, limit):
            found += 1
            if not dry_run:
                path.unlink(missing_ok=True)
    return found


def _modified_before(path: Path, limit: float) -> bool:
    """A regular file last modified before `limit`; False for one that is gone meanwhile
    (a write renamed into place, a delete)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_mtime < limit


def _probe_writable(root: Path) -> None:
    # os.access lies for root and on some mounts; actually create and remove a file.
    with tempfile.TemporaryFile(dir=root, prefix=".probe-"):
        pass
