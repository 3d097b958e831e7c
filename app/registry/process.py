"""How one process follows the model registry: the start-up registration, the loader that
builds a registered version's classifier, the recorder of shadow results, and the holder
that ties them together (app.main's lifespan calls `open_holder`)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import IntegrityError

from app import metrics
from app.config import Settings
from app.db.base import utcnow
from app.db.models import ModelVersion, ShadowPrediction
from app.db.session import SessionFactory
from app.inference import Classifier, ModelManifest, ModelUnavailable
from app.inference.classifier import classifier_from
from app.inference.weights import demo_weights, load_source, weights_from_bytes
from app.registry.holder import ModelHolder, ShadowOutcome
from app.repositories.model_versions import ModelRepository, Pointer
from app.storage import ImageStore

log = logging.getLogger(__name__)


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
