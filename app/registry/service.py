"""The model registry's flows: register (validated), list, read, activate, retire,
shadow, and per-version metrics. Routes call these; heavy work runs in threads."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.base import utcnow
from app.db.models import ModelVersion, User
from app.errors import (
    FileTooLarge,
    InvalidModel,
    ModelActive,
    ModelExists,
    ModelNotStaged,
    ModelRetired,
    ModelUnavailableError,
    NotFound,
    RegistryBusy,
)
from app.inference import ModelManifest, ModelUnavailable
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.weights import fetch_s3_model
from app.kit.time import bounds
from app.registry.holder import ModelHolder
from app.registry.performance import Metrics, ShadowMetrics, compute, shadow_metrics
from app.registry.promotion import check_promotion
from app.registry.validation import validate_model
from app.repositories.model_versions import ModelRepository, Pointer
from app.schemas.admin_models import MetricsQuery
from app.services import audit
from app.storage import ImageNotFound, ImageStore, StorageUnavailable, model_key

log = logging.getLogger(__name__)


class RegistryService:
    def __init__(
        self, session: AsyncSession, settings: Settings, storage: ImageStore, holder: ModelHolder
    ) -> None:
        self.session = session
        self.repo = ModelRepository(session)
        self.settings = settings
        self.storage = storage
        self.holder = holder

    async def list(self) -> list[ModelVersion]:
        return list(await self.repo.all())

    async def read(self, version: str) -> ModelVersion:
        row = await self.repo.get(version)
        if row is None:
            raise NotFound("No such model version")
        return row

    # ------------------------------------------------------------------ register

    async def register_upload(
        self, weights: bytes, manifest_raw: bytes | None, user: User
    ) -> ModelVersion:
        self._check_size(len(weights))
        if not weights:
            raise InvalidModel("the weights file is empty")
        manifest = DEFAULT_MANIFEST if manifest_raw is None else _parse_manifest(manifest_raw)
        return await self._register(weights, manifest, "upload", user)

    async def register_s3(self, source: str, user: User) -> ModelVersion:
        source = allowed_source(self.settings, source)
        try:
            data, manifest = await fetch_s3_model(
                self.settings, source, max_bytes=self.settings.model_max_upload_mb * 1024 * 1024
            )
        except ModelUnavailable as exc:
            raise InvalidModel(str(exc)) from exc
        return await self._register(data, manifest, source, user)

    def _check_size(self, size: int) -> None:
        if size > self.settings.model_max_upload_mb * 1024 * 1024:
            raise FileTooLarge(self.settings.model_max_upload_mb)

    async def _register(
        self, data: bytes, manifest: ModelManifest, source: str, user: User
    ) -> ModelVersion:
        await self.session.commit()  # hold no transaction while validating (seconds)
        validated = await asyncio.to_thread(
            validate_model,
            data,
            manifest,
            cache_dir=self.settings.model_cache_dir,
            max_pixels=self.settings.max_image_pixels,
        )
        version = validated.version
        if await self.repo.get(version) is not None:
            raise ModelExists(f"Version {version} is registered already")
        weights_key = model_key(version, "pth")
        manifest_json = manifest.model_dump(mode="json")
        await self.storage.put(weights_key, data, "application/octet-stream")
        await self.storage.put(
            model_key(version, "json"), json.dumps(manifest_json).encode(), "application/json"
        )
        row = ModelVersion(
            version=version,
            sha256=validated.sha256,
            source=source,
            storage_key=weights_key,
            manifest=manifest_json,
            demo=False,
            status="staged",
            shadow_rate=0.0,
            created_at=utcnow(),
            created_by=user.id,
            activated_at=None,
        )
        try:
            await self.repo.add(row)
            await audit.record(
                self.session,
                "model.register",
                actor=user,
                target=("model", version),
                new={"source": source, "status": "staged"},
            )
            await self.session.commit()
        except IntegrityError as exc:  # registered concurrently: same bytes, same objects
            await self.session.rollback()
            raise ModelExists(f"Version {version} is registered already") from exc
        log.info(
            "model %s registered from %s by user %s (parity %.2e)",
            version,
            source,
            user.id,
            validated.parity,
        )
        return row

    # ------------------------------------------------------------------ state changes

    async def _pointer(self) -> Pointer:
        pointer = await self.repo.pointer()
        if pointer is None:  # pragma: no cover - the lifespan initializes the registry
            raise ModelUnavailableError("The model registry is not initialized")
        return pointer

    async def activate(self, version: str, user: User) -> ModelVersion:
        row = await self.read(version)
        if row.status == "retired":
            raise ModelRetired()
        if row.status != "active":  # a trained version: gates passed, shadow evidence
            await check_promotion(self.session, row)
        await self.session.commit()  # no snapshot held while the new classifier builds

        async def commit() -> None:
            pointer = await self._pointer()
            changed = pointer.active_version != version
            if changed and not await self.repo.activate(version, pointer, utcnow()):
                await self.session.rollback()
                raise _busy()
            if changed:  # re-activating the active version changes nothing: no event
                await audit.record(
                    self.session,
                    "model.activate",
                    actor=user,
                    target=("model", version),
                    old={"active": pointer.active_version},
                    new={"active": version},
                )
            await self.session.commit()

        try:
            await self.holder.activate(version, commit)
        except (ModelUnavailable, StorageUnavailable, ImageNotFound) as exc:
            log.error("activation of %s failed", version, exc_info=exc)
            raise ModelUnavailableError(
                f"Version {version} could not be loaded; nothing changed"
            ) from exc
        self.holder.refresh()
        return await self._reread(version)

    async def retire(self, version: str, user: User) -> ModelVersion:
        row = await self.read(version)
        if row.status == "active":
            raise ModelActive()
        if row.status != "retired":
            before = row.status
            if not await self.repo.retire(version, await self._pointer(), utcnow()):
                await self.session.rollback()
                raise _busy()
            await audit.record(
                self.session,
                "model.retire",
                actor=user,
                target=("model", version),
                old={"status": before},
                new={"status": "retired"},
            )
            await self.session.commit()
            self.holder.refresh()
        return await self._reread(version)

    async def set_shadow(self, version: str, rate: float) -> ModelVersion:
        row = await self.read(version)
        if row.status != "staged":
            raise ModelNotStaged(
                f"Only a staged version can run in shadow (this one is {row.status})"
            )
        if not await self.repo.set_shadow(version, rate, await self._pointer(), utcnow()):
            await self.session.rollback()
            raise _busy()
        await self.session.commit()
        self.holder.refresh()
        return await self._reread(version)

    async def _reread(self, version: str) -> ModelVersion:
        self.session.expire_all()
        return await self.read(version)

    # ------------------------------------------------------------------ metrics

    async def metrics(
        self, version: str, query: MetricsQuery
    ) -> tuple[ModelVersion, Metrics, ShadowMetrics | None, datetime | None, datetime | None]:
        row = await self.read(version)
        start, end = bounds(query, self.settings.default_timezone)
        groups = await self.repo.groups(version, start, end)
        codes = [c["code"] for c in row.manifest.get("classes", [])]
        result = compute(groups, codes)
        shadow_groups = await self.repo.shadow_groups(version, start, end)
        shadow = shadow_metrics(shadow_groups) if shadow_groups else None
        return row, result, shadow, start, end


def allowed_source(settings: Settings, source: str) -> str:
    """`source` as s3://AWS_S3_BUCKET/MODEL_SOURCE_PREFIX..., normalised; anything else
    is 422 INVALID_MODEL. The service's credentials reach more than model files (the
    patients' images, other buckets): an admin request must not read whatever they reach."""
    bucket, _, key = source.removeprefix("s3://").partition("/")
    prefix = settings.model_source_prefix
    allowed = f"s3://{settings.aws_s3_bucket}/{prefix}"
    if not source.startswith("s3://") or not settings.aws_s3_bucket:
        raise InvalidModel(f"the source must be an s3:// URL under {allowed}")
    parts = key.split("/")
    if bucket != settings.aws_s3_bucket or any(p in ("", ".", "..") for p in parts):
        raise InvalidModel(f"the source must be a plain key under {allowed}")
    if not key.startswith(prefix):
        raise InvalidModel(f"the source must be under {allowed}")
    return f"s3://{bucket}/{key}"


def _busy() -> RegistryBusy:
    return RegistryBusy()


def _parse_manifest(raw: bytes) -> ModelManifest:
    try:
        return ModelManifest.parse(raw, "the manifest")
    except ModelUnavailable as exc:
        raise InvalidModel(str(exc)) from exc
