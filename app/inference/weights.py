"""Find, fetch, cache and verify the model weights named by MODEL_SOURCE.

- `s3://bucket/key`: HEAD gives the ETag; the file is cached in MODEL_CACHE_DIR under a
  name derived from bucket, key and ETag, so an unchanged object is never downloaded
  twice and a replaced one is. A download goes to a temporary file, is verified by a
  strict load, then renamed into place (atomic), and older versions of the key are pruned.
- a local path: loaded in place.
- unset: deterministic untrained demo weights (refused in production).

A manifest beside the weights (`X.pth` -> `X.json`) overrides DEFAULT_MANIFEST.
The model version is sha256 of the weights file (of the tensors, for demo weights)[:12].
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import aioboto3
import anyio
import torch
from botocore.exceptions import BotoCoreError, ClientError
from torch import Tensor

from app.aws import is_not_found, s3_client_kwargs
from app.config import Settings
from app.errors import ModelUnavailable
from app.inference.manifest import DEFAULT_MANIFEST, ModelManifest
from app.inference.network import EyeDiseaseClassifier, load_network, seeded_state_dict

log = logging.getLogger(__name__)

DEMO_SEED = 20250201
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "s3://bucket/key", a local path, or "demo"
    path: Path | None  # the file loaded (the cache file for S3); None for demo weights
    sha256: str
    demo: bool
    downloaded: bool  # True only when this start fetched the object from S3

    @property
    def version(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class LoadedWeights:
    info: WeightsInfo
    manifest: ModelManifest
    network: EyeDiseaseClassifier


async def load_weights(settings: Settings) -> LoadedWeights:
    """Resolve settings.resolved_model_source to a verified network; ModelUnavailable if not."""
    return await load_source(settings, settings.resolved_model_source)


async def load_source(settings: Settings, source: str | None) -> LoadedWeights:
    """As load_weights, for any source: s3://bucket/key, a path, or None (demo weights)."""
    if source is None:
        if settings.is_production:
            raise ModelUnavailable("no MODEL_SOURCE: demo weights are refused in production")
        return await asyncio.to_thread(demo_weights)
    if source.startswith("s3://"):
        return await _s3_weights(settings, source)
    return await asyncio.to_thread(_local_weights, Path(source))


def state_dict_sha256(state_dict: Mapping[str, Tensor]) -> str:
    """A hash of names, dtypes, shapes and values: stable, unlike torch.save's archive."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def manifest_path(weights: PurePosixPath | Path) -> str:
    """`X.pth` -> `X.json` (a name without suffix gets `.json` appended)."""
    return str(weights.with_suffix(".json") if weights.suffix else f"{weights}.json")


def demo_weights() -> LoadedWeights:
    manifest = DEFAULT_MANIFEST
    state = seeded_state_dict(manifest.num_classes, DEMO_SEED)
    info = WeightsInfo(
        source="demo", path=None, sha256=state_dict_sha256(state), demo=True, downloaded=False
    )
    log.warning(
        "MODEL_SOURCE is not set: using untrained DEMO weights (version %s); "
        "predictions are meaningless",
        info.version,
    )
    return LoadedWeights(info, manifest, load_network(state, manifest.num_classes))


def _local_weights(path: Path) -> LoadedWeights:
    if not path.is_file():
        raise ModelUnavailable(f"model weights not found: {path}")
    json_path = Path(manifest_path(path))
    manifest = (
        ModelManifest.parse(json_path.read_bytes(), str(json_path))
        if json_path.is_file()
        else DEFAULT_MANIFEST
    )
    network, sha256 = _load_file(path, manifest, str(path))
    info = WeightsInfo(source=str(path), path=path, sha256=sha256, demo=False, downloaded=False)
    return LoadedWeights(info, manifest, network)


def weights_from_bytes(data: bytes, manifest: ModelManifest, source: str) -> LoadedWeights:
    """Strict load of a state dict held in memory (blocking: call it in a thread)."""
    network, sha256 = load_bytes(data, manifest, source)
    info = WeightsInfo(source=source, path=None, sha256=sha256, demo=False, downloaded=False)
    return LoadedWeights(info, manifest, network)


def _load_file(
    path: Path, manifest: ModelManifest, source: str
) -> tuple[EyeDiseaseClassifier, str]:
    return load_bytes(path.read_bytes(), manifest, source)


def load_bytes(
    data: bytes, manifest: ModelManifest, source: str
) -> tuple[EyeDiseaseClassifier, str]:
    """Strict load of a state dict file's bytes; the bytes hashed are the bytes loaded."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        network = load_network(state, manifest.num_classes)
    except Exception as exc:  # unpickling and load_state_dict raise many types
        raise ModelUnavailable(
            f"{source} is not a state dict for EyeDiseaseClassifier with "
            f"{manifest.num_classes} classes ({manifest.codes}): {exc}"
        ) from exc
    return network, hashlib.sha256(data).hexdigest()


async def _s3_weights(settings: Settings, source: str) -> LoadedWeights:
    bucket, _, key = source.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ModelUnavailable(f"MODEL_SOURCE {source!r} is not s3://bucket/key")
    cache_dir = anyio.Path(settings.model_cache_dir) / "weights"
    await cache_dir.mkdir(parents=True, exist_ok=True)
    prefix = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:16]
    try:
        async with aioboto3.Session().client("s3", **s3_client_kwargs(settings)) as s3:
            head = await s3.head_object(Bucket=bucket, Key=key)
            etag: str = head["ETag"].strip('"')
            manifest = await _s3_manifest(s3, bucket, manifest_path(PurePosixPath(key)))
            cached = cache_dir / f"{prefix}-{hashlib.sha256(etag.encode()).hexdigest()[:16]}.pth"
            if await cached.is_file():
                try:
                    loaded = await _verified(cached, cached, manifest, source, downloaded=False)
                except ModelUnavailable:
                    log.warning("cached weights %s do not load; downloading again", cached)
                else:
                    log.info(
                        "model weights %s: cache hit (version %s)", source, loaded.info.version
                    )
                    return loaded
            loaded = await _download(s3, bucket, key, etag, cached, manifest, source)
    except (BotoCoreError, ClientError) as exc:
        if isinstance(exc, ClientError) and is_not_found(exc):
            raise ModelUnavailable(f"model weights not found: {source}") from exc
        raise ModelUnavailable(f"cannot fetch model weights {source}: {exc}") from exc
    async for old in cache_dir.glob(f"{prefix}-*.pth"):  # earlier versions of this key
        if old != cached:
            await old.unlink(missing_ok=True)
    log.info("model weights %s: downloaded (version %s)", source, loaded.info.version)
    return loaded


async def _download(
    s3: Any,
    bucket: str,
    key: str,
    etag: str,
    target: anyio.Path,
    manifest: ModelManifest,
    source: str,
) -> LoadedWeights:
    """Stream to a temporary file beside `target`, verify it, then rename it into place."""
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        # IfMatch: the bytes must be the object version whose ETag names the cache file.
        response = await s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
        body = response["Body"]
        async with body, await anyio.open_file(part, "wb") as out:
            async for chunk in body.iter_chunks(_CHUNK):
                await out.write(chunk)
        loaded = await _verified(part, target, manifest, source, downloaded=True)
        await part.rename(target)
        return loaded
    finally:
        await part.unlink(missing_ok=True)


async def _verified(
    path: anyio.Path,
    final_path: anyio.Path,
    manifest: ModelManifest,
    source: str,
    *,
    downloaded: bool,
) -> LoadedWeights:
    network, sha256 = await asyncio.to_thread(_load_file, Path(path), manifest, source)
    info = WeightsInfo(
        source=source, path=Path(final_path), sha256=sha256, demo=False, downloaded=downloaded
    )
    return LoadedWeights(info, manifest, network)


async def fetch_s3_model(
    settings: Settings, source: str, *, max_bytes: int
) -> tuple[bytes, ModelManifest]:
    """The bytes of s3://bucket/key and its manifest (key.json, else the default), unverified.

    ModelUnavailable when the object is missing, larger than max_bytes, or unreachable.
    """
    bucket, _, key = source.removeprefix("s3://").partition("/")
    if not source.startswith("s3://") or not bucket or not key:
        raise ModelUnavailable(f"{source!r} is not s3://bucket/key")
    try:
        async with aioboto3.Session().client("s3", **s3_client_kwargs(settings)) as s3:
            head = await s3.head_object(Bucket=bucket, Key=key)
            if int(head["ContentLength"]) > max_bytes:
                raise ModelUnavailable(f"{source} is larger than {max_bytes} bytes")
            response = await s3.get_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])
            async with response["Body"] as body:
                data: bytes = await body.read()
            manifest = await _s3_manifest(s3, bucket, manifest_path(PurePosixPath(key)))
    except (BotoCoreError, ClientError) as exc:
        if isinstance(exc, ClientError) and is_not_found(exc):
            raise ModelUnavailable(f"model weights not found: {source}") from exc
        raise ModelUnavailable(f"cannot fetch model weights {source}: {exc}") from exc
    return data, manifest


async def _s3_manifest(s3: Any, bucket: str, key: str) -> ModelManifest:
    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return DEFAULT_MANIFEST
        raise
    body = response["Body"]
    async with body:
        raw: bytes = await body.read()
    return ModelManifest.parse(raw, f"s3://{bucket}/{key}")
