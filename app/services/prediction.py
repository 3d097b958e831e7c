"""The prediction flow: validate and decode, classify, store the image, record the row.

Order matters (LEGACY defect 8): nothing reaches the image store before the upload has
been decoded and classified, and a failed database write removes the stored object, so
a failed request leaves neither an object nor a row behind. The INSERT runs again (same
object, a new row object) when the database aborts it transiently (app.db.retry).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.clinical import Quality, Recommendation, assess, recommend
from app.config import Settings
from app.db.base import utcnow
from app.db.models import Prediction, User
from app.db.retry import retrying_transaction
from app.errors import FileTooLarge, ModelUnavailable
from app.inference import Classifier, DecodedImage, decode_upload
from app.inference.arrays import FloatArray
from app.kit.text import clean_filename
from app.repositories.idempotency import IdempotencyRepository
from app.repositories.predictions import PredictionRepository
from app.schemas.prediction import Prediction as PredictionOut
from app.services.idempotency import IdempotentUploads, request_fingerprint
from app.services.images import prediction_detail
from app.storage import ImageStore, new_image_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    patient_ref: str | None
    eye: str


@dataclass(frozen=True)
class _Inspected:
    decoded: DecodedImage
    sha256: str
    quality: Quality | None  # None: the gate is off (QUALITY_GATE or the model's manifest)


def eye_of(requested: str, laterality: str | None) -> tuple[str, str, bool]:
    """(eye, eye_source, laterality_conflict): the file's laterality fills an unknown eye;
    a request eye that contradicts it is kept and flagged."""
    if requested == "unknown" and laterality is not None:
        return laterality, "dicom", False
    return requested, "request", laterality is not None and requested != laterality


def _inspect(data: bytes, settings: Settings, classifier: Classifier) -> _Inspected:
    manifest = classifier.manifest
    with metrics.PREPROCESS_SECONDS.time():
        decoded = decode_upload(
            data,
            max_pixels=settings.max_image_pixels,
            fast_jpeg=settings.fast_jpeg_decode,
            input_size=manifest.input_size,
            mean=manifest.mean,
            std=manifest.std,
        )
    quality = None
    if settings.quality_gate and manifest.quality_gate:
        quality = assess(
            decoded.picture,
            (decoded.width, decoded.height),
            settings.quality_thresholds,
            fundus=manifest.modality == "fundus",
        )
    return _Inspected(decoded, hashlib.sha256(data).hexdigest(), quality)


AfterCommit = Callable[[Prediction, FloatArray, bytes], None]


@dataclass(frozen=True, slots=True)
class ServingModel:
    """The classifier that answers this request (leased from the registry's holder) and
    `after_commit(row, model input, upload bytes)`, run once the row is stored (the shadow
    evaluation hooks in there)."""

    classifier: Classifier
    after_commit: AfterCommit | None = None


class PredictionService:
    def __init__(
        self,
        session: AsyncSession,
        storage: ImageStore,
        settings: Settings,
        idempotency: IdempotentUploads,
    ) -> None:
        self.session = session
        self.storage = storage
        self.settings = settings
        self.idempotency = idempotency

    async def create(
        self,
        upload: Upload,
        user: User,
        model: ServingModel,
        base_url: str,
        idempotency_key: str | None = None,
    ) -> tuple[PredictionOut, bool]:
        """Validate, classify, store the image, then the row: (the Prediction resource,
        whether it is an earlier request's, replayed for the same Idempotency-Key)."""
        if idempotency_key is None:
            row = await self._create(upload, user, model)
            return await self._detail(row, user, model, base_url), False
        fingerprint = request_fingerprint(upload.data, upload.patient_ref, upload.eye)
        claimed = await self.idempotency.claim(user.id, idempotency_key, fingerprint)
        if isinstance(claimed, Prediction):
            return await self._detail(claimed, user, model, base_url), True
        try:
            row = await self._create(upload, user, model, claim_id=claimed)
        except BaseException:
            await self.idempotency.release(claimed)
            raise
        return await self._detail(row, user, model, base_url), False

    async def _create(
        self, upload: Upload, user: User, model: ServingModel, claim_id: int | None = None
    ) -> Prediction:
        async def link(row: Prediction) -> None:
            if claim_id is not None:  # in the row's transaction: both or neither
                await IdempotencyRepository(self.session).link(claim_id, row.id)

        return await create_prediction(
            upload,
            user=user,
            session=self.session,
            storage=self.storage,
            classifier=model.classifier,
            settings=self.settings,
            before_commit=link,
            after_commit=model.after_commit,
        )

    async def _detail(
        self, row: Prediction, user: User, model: ServingModel, base_url: str
    ) -> PredictionOut:
        return await prediction_detail(
            row, user, self.storage, self.settings, model.classifier.manifest, base_url
        )


async def create_prediction(
    upload: Upload,
    *,
    user: User,
    session: AsyncSession,
    storage: ImageStore,
    classifier: Classifier,
    settings: Settings,
    before_commit: Callable[[Prediction], Awaitable[None]] | None = None,
    after_commit: AfterCommit | None = None,
) -> Prediction:
    """The stored row of a classified upload (PredictionService.create's steps);
    `before_commit(row)` writes in the row's transaction; `after_commit(row, model input,
    upload bytes)` runs once the row is stored (the shadow evaluation hooks in there)."""
    if len(upload.data) > settings.max_upload_bytes:
        raise FileTooLarge(settings.max_upload_mb)
    # End the auth lookup's read transaction so no pooled connection is held while the
    # image is decoded and classified (under load that would exhaust the pool).
    await session.commit()
    with classifier.expecting():  # an unusable upload raises its ImageRejected (app.errors)
        inspected = await run_in_threadpool(_inspect, upload.data, settings, classifier)
    decoded = inspected.decoded

    try:
        result = await classifier.classify(decoded.array)
    except ModelUnavailable as exc:  # the client gets 503 MODEL_UNAVAILABLE, the log the reason
        log.error("inference failed", exc_info=exc)
        raise

    now = utcnow()
    key = new_image_key(decoded.extension, now)
    await storage.put(key, upload.data, decoded.content_type)  # StorageUnavailable -> 503

    codes = list(classifier.manifest.codes)
    quality = inspected.quality
    eye, eye_source, conflict = eye_of(upload.eye, decoded.laterality)
    recommendation: Recommendation = recommend(
        result.probabilities,
        codes,
        gradable=quality is None or quality.gradable,
        policy=classifier.manifest.referral,
    )
    fields = dict(
        user_id=user.id,
        created_at=now,
        image_key=key,
        original_filename=clean_filename(upload.filename),
        content_type=decoded.content_type,
        size_bytes=len(upload.data),
        width=decoded.width,
        height=decoded.height,
        sha256=inspected.sha256,
        patient_ref=upload.patient_ref,
        eye=eye,
        eye_source=eye_source,
        laterality_conflict=conflict,
        frames=decoded.frames,
        predicted_class=codes[result.top],
        probability=result.top_probability,
        probabilities=result.probabilities,
        class_codes=codes,
        model_version=classifier.version,
        model_demo=classifier.demo,
        backend=classifier.backend_name,
        inference_ms=round(result.inference_ms, 3),
        quality_gradable=None if quality is None else quality.gradable,
        quality_score=None if quality is None else quality.score,
        quality_reasons=None if quality is None else list(quality.reasons),
        recommendation=recommendation,
    )

    async def insert() -> Prediction:
        row = Prediction(**fields)  # a fresh one per attempt: a rollback expunges the last
        await PredictionRepository(session).add(row)
        if before_commit is not None:  # in the row's transaction: both or neither
            await before_commit(row)
        await session.commit()
        return row

    try:
        # `user` is reloaded before a retry: the route reads it afterwards (its locale).
        row = await retrying_transaction(session, insert, name="predict.create", reload=[user])
    except Exception:
        # An orphan object is tolerable; a row pointing at nothing is not, so only a
        # write known to have failed (never a cancelled or lost one, which may have
        # committed) discards the object.
        with contextlib.suppress(Exception):
            await session.rollback()
        if await _row_committed(session, key) is False:
            await _discard_object(storage, key)
        raise
    if after_commit is not None:
        after_commit(row, decoded.array, upload.data)
    metrics.PREDICTIONS.labels(row.predicted_class, row.model_version).inc()
    return row


async def _row_committed(session: AsyncSession, key: str) -> bool | None:
    """After a failed commit: did the row land anyway (the connection dropped after the
    server committed)? None when the database cannot tell us now (keep the object: an
    orphan is swept later, `ocupredict sweep-images`)."""
    try:
        async with AsyncSession(session.bind) as fresh:
            found = await PredictionRepository(fresh).referenced_image_keys([key])
    except Exception:
        log.warning("could not tell whether the row for %s committed; keeping the image", key)
        return None
    return key in found


async def _discard_object(storage: ImageStore, key: str) -> None:
    try:
        await storage.delete(key)
    except Exception:
        log.exception("could not remove image %s after a failed database write", key)
