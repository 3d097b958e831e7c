"""The model registry's flows: register (validated), list, read, activate, retire,
shadow, and per-version metrics. Routes call these; heavy work runs in threads."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.config import Settings
from app.db.base import utcnow
from app.db.models import ModelVersion, ShadowPrediction, User
from app.db.session import SessionFactory
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
from app.inference import Classifier, ModelManifest, ModelUnavailable
from app.inference.classifier import classifier_from
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.weights import demo_weights, fetch_s3_model, load_source, weights_from_bytes
from app.registry.holder import ModelHolder, ShadowOutcome
from app.registry.metrics import Metrics, ShadowMetrics, compute, shadow_metrics
from app.registry.promotion import check_promotion
from app.registry.validation import validate_model
from app.repositories.models import ModelRepository, Pointer
from app.schemas.admin_models import MetricsQuery
from app.schemas.history import zone
from app.services import audit
from app.services.history import resolve_date_bounds
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
        tz = zone(query.tz or self.settings.default_timezone)
        start, end = resolve_date_bounds(query.date_from, query.date_to, tz)
        groups = await self.repo.groups(version, start, end)
        codes = [c["code"] for c in row.manifest.get("classes", [])]
        result = compute(groups, codes)
        shadow_groups = await self.repo.shadow_groups(version, start, end)
        shadow = shadow_metrics(shadow_groups) if shadow_groups else None
        return row, result, shadow, start, end


def _busy() -> RegistryBusy:
    return RegistryBusy()


def _parse_manifest(raw: bytes) -> ModelManifest:
    try:
        return ModelManifest.parse(raw, "the manifest")
    except ModelUnavailable as exc:
        raise InvalidModel(str(exc)) from exc


# --------------------------------------------------------------------------- per process


class VersionLoader:
    """Builds and warms the classifier of a registered version (the holder's `build`)."""

    def __init__(self, settings: Settings, storage: ImageStore, sessions: SessionFactory) -> None:
        self.settings = settings
        self.storage = storage
        self.sessions = sessions

    async def __call__(self, version: str, shadow: bool) -> Classifier:
        async with self.sessions() as session:
            row = await ModelRepository(session).get(version)
        if row is None:
            raise ModelUnavailable(f"model version {version} is not registered")
        try:
            manifest = ModelManifest.model_validate(row.manifest)
        except ValueError as exc:
            raise ModelUnavailable(f"model version {version}: bad manifest: {exc}") from exc
        if row.storage_key:
            stored = await self.storage.get(row.storage_key)
            loaded = await asyncio.to_thread(weights_from_bytes, stored.data, manifest, row.source)
        elif row.demo:
            loaded = await asyncio.to_thread(demo_weights)
        else:
            loaded = await load_source(self.settings, row.source)
        if loaded.info.version != version:
            raise ModelUnavailable(
                f"the weights of {row.source} are now version {loaded.info.version}, not {version}"
            )
        settings = self.settings
        if shadow:  # the shadow shares the cores: one batch thread is enough for it
            settings = settings.model_copy(update={"inference_workers": 1})
        return await classifier_from(settings, loaded)


class ShadowRecorder:
    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def __call__(self, outcome: ShadowOutcome) -> None:
        row = ShadowPrediction(
            prediction_id=outcome.prediction_id,
            model_version=outcome.version,
            created_at=utcnow(),
            predicted_class=outcome.codes[outcome.top],
            probability=outcome.probabilities[outcome.top],
            probabilities=outcome.probabilities,
            inference_ms=round(outcome.inference_ms, 3),
        )
        async with self.sessions() as session:
            try:
                await ModelRepository(session).add_shadow(row)
                await session.commit()
            except IntegrityError:  # the prediction was deleted meanwhile
                await session.rollback()


def swap_model_info(old: Classifier, new: Classifier, process: int) -> None:
    """/metrics' ocupredict_model_info follows the swap: the old labels 0, the new 1."""
    for classifier, value in ((old, 0), (new, 1)):
        metrics.MODEL_INFO.labels(
            version=classifier.version,
            backend=classifier.backend_name,
            demo=str(classifier.demo).lower(),
            process=str(process),
        ).set(value)


async def open_holder(
    settings: Settings, storage: ImageStore, sessions: SessionFactory, started: Classifier
) -> ModelHolder:
    """Register the start-up classifier and activate it when the registry is empty (first
    start), switch to the registry's active version if it is another one, and start
    following the registry. A database that cannot be reached yet only delays this: the
    process serves the start-up classifier and the follower tries again."""

    async def register_started() -> None:
        now = utcnow()
        async with sessions() as session:
            repo = ModelRepository(session)
            if await repo.pointer() is not None:
                return
            if await repo.get(started.version) is None:
                try:
                    await repo.add(
                        ModelVersion(
                            version=started.version,
                            sha256=started.weights.sha256,
                            source=started.weights.source,
                            storage_key=None,
                            manifest=started.manifest.model_dump(mode="json"),
                            demo=started.demo,
                            status="staged",
                            shadow_rate=0.0,
                            created_at=now,
                            created_by=None,
                            activated_at=None,
                        )
                    )
                    await session.commit()
                except IntegrityError:  # another process registered it first
                    await session.rollback()
            try:
                await repo.initialize(started.version, now)
                await session.commit()
            except IntegrityError:  # another process initialized it first
                await session.rollback()

    async def read_pointer() -> Pointer | None:
        async with sessions() as session:
            return await ModelRepository(session).pointer()

    holder = ModelHolder(
        started,
        build=VersionLoader(settings, storage, sessions),
        read_pointer=read_pointer,
        record_shadow=ShadowRecorder(sessions),
        poll_seconds=settings.model_poll_seconds,
        max_pixels=settings.max_image_pixels,
        fast_jpeg=settings.fast_jpeg_decode,
        bootstrap=register_started,
        on_swap=lambda old, new: swap_model_info(old, new, settings.process_index),
    )
    try:
        await holder.sync()  # the registry's active (and shadow) version, before serving
    except Exception:
        log.exception(
            "could not reach the model registry or load its active version; serving %s "
            "meanwhile and trying again every MODEL_POLL_SECONDS",
            started.version,
        )
    holder.start()
    return holder
