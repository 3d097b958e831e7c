"""Image storage: the ImageStore protocol and its S3 and local-filesystem backends."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread

from app.config import Settings
from app.storage.base import (
    CONTENT_TYPES,
    ImageNotFound,
    ImageStore,
    InvalidImageKey,
    StorageUnavailable,
    StoredImage,
    checkpoint_key,
    content_type_for_key,
    dataset_image_key,
    heatmap_key,
    model_key,
    new_image_key,
    normalize_extension,
    source_image_key,
    thumbnail_key,
    validate_key,
)
from app.storage.local import LocalImageStore
from app.storage.s3 import S3ImageStore
from app.storage.signing import (
    credential_stamp,
    image_access_params,
    sign_image_access,
    verify_image_access,
)

__all__ = [
    "CONTENT_TYPES",
    "ImageNotFound",
    "ImageStore",
    "InvalidImageKey",
    "LocalImageStore",
    "S3ImageStore",
    "StorageUnavailable",
    "StoredImage",
    "build_image_store",
    "checkpoint_key",
    "content_type_for_key",
    "credential_stamp",
    "dataset_image_key",
    "heatmap_key",
    "image_access_params",
    "model_key",
    "new_image_key",
    "normalize_extension",
    "sign_image_access",
    "source_image_key",
    "thumbnail_key",
    "validate_key",
    "verify_image_access",
]


async def build_image_store(settings: Settings) -> ImageStore:
    """The configured backend; the caller owns it and must `await store.aclose()`."""
    if settings.storage_backend == "s3":
        return await S3ImageStore.open(settings)
    # Create the root up front so readiness can pass before the first upload.
    root = await anyio.to_thread.run_sync(_prepare_root, settings.local_storage_dir)
    return LocalImageStore(root)


def _prepare_root(path: Path) -> Path:
    root = path.resolve()  # absolute, so a later chdir cannot move the store
    root.mkdir(parents=True, exist_ok=True)
    return root
