"""The doctor's history: list, read, image access, feedback and delete, owner-only.

Another user's prediction behaves exactly like a missing one (404 NOT_FOUND), for every
operation, so ids leak nothing. Reading a record or its image, feedback and delete each
leave an audit event (app.services.audit), committed with the change they record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.db.models import Prediction as PredictionRow
from app.db.models import User
from app.db.session import SessionFactory
from app.errors import InvalidCorrectClass, NotFound, ValidationFailed
from app.inference import Classifier
from app.inference.manifest import ModelManifest
from app.inference.preprocess import render_png
from app.repositories.predictions import HistoryFilters, PredictionRepository
from app.schemas.history import FeedbackIn, HistoryQuery, PredictionPage, zone
from app.schemas.prediction import Prediction, label_lookup, summary_from_row
from app.services import audit
from app.services.explain import heatmap_keys, heatmap_png
from app.services.images import prediction_detail
from app.services.thumbnails import thumbnail_jpeg, thumbnail_url_for
from app.storage import (
    ImageNotFound,
    ImageStore,
    InvalidImageKey,
    StorageUnavailable,
    thumbnail_key,
    verify_image_access,
)

log = logging.getLogger(__name__)


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which `day` starts in `tz` (if midnight falls in a DST gap, the
    first instant of the day, i.e. the transition)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def resolve_date_bounds(
    date_from: date | datetime | None, date_to: date | datetime | None, tz: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """(inclusive start, exclusive end) as UTC instants.

    A plain date_from starts at local midnight of that day in tz; a plain date_to covers its
    whole local day (end = next local midnight). Datetimes are instants, both inclusive.
    """
    start: datetime | None = None
    end: datetime | None = None
    if isinstance(date_from, datetime):
        start = date_from.astimezone(UTC)
    elif date_from is not None:
        start = local_midnight(date_from, tz)
    if isinstance(date_to, datetime):
        end = date_to.astimezone(UTC) + timedelta(microseconds=1)
    elif date_to is not None:
        end = local_midnight(date_to + timedelta(days=1), tz)
    if start is not None and end is not None and start >= end:
        raise ValidationFailed("date_from is after date_to")
    return start, end


# --------------------------------------------------------------------------- image access


@dataclass(frozen=True, slots=True)
class ImageRedirect:
    """S3: send the client to a short-lived presigned URL."""

    url: str


@dataclass(frozen=True, slots=True)
class ImageBytes:
    """Local store: the bytes themselves (or only the validators when not modified)."""

    data: bytes | None  # None: the client's copy is current (304)
    content_type: str
    etag: str
    max_age: int


def etag_for(row: PredictionRow) -> str:
    return f'"{row.sha256}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


# --------------------------------------------------------------------------- service


def _target(row: PredictionRow) -> tuple[str, int]:
    return ("prediction", row.id)


def _feedback_of(row: PredictionRow) -> dict[str, str | None] | None:
    """The feedback as the audit trail keeps it (None when there is none)."""
    if row.feedback_verdict is None:
        return None
    return {
        "verdict": row.feedback_verdict,
        "correct_class": row.feedback_correct_class,
        "comment": row.feedback_comment,
    }


T = TypeVar("T")


async def in_own_session(
    sessions: SessionFactory, work: Callable[[PredictionRepository], Awaitable[T]]
) -> T:
    """Run one read on a connection of its own, so independent queries overlap."""
    async with sessions() as session:
        return await work(PredictionRepository(session))


class HistoryService:
    def __init__(
        self,
        session: AsyncSession,
        storage: ImageStore,
        settings: Settings,
        manifest: ModelManifest,
        *,
        sessions: SessionFactory,
        on_change: Callable[[], None],
        views: audit.ViewLog,
    ) -> None:
        """`sessions` lets the list run its count and its page concurrently; `on_change`
        is called after feedback or a delete is committed; `views` records who looked."""
        self.session = session
        self.storage = storage
        self.settings = settings
        self.manifest = manifest
        self.repo = PredictionRepository(session)
        self.sessions = sessions
        self.on_change = on_change
        self.views = views

    async def heatmap(
        self, prediction_id: int, user: User, class_code: str | None, classifier: Classifier
    ) -> bytes:
        """The Grad-CAM PNG of the user's prediction (app.services.explain)."""
        row = await self._owned(prediction_id, user)
        # No pooled connection stays checked out while the heatmap is computed.
        await self.session.commit()
        png = await heatmap_png(
            row, class_code, storage=self.storage, classifier=classifier, settings=self.settings
        )
        # Served: a view, recorded like the detail and the image views.
        self.views.add(
            "prediction.heatmap_view",
            actor=user,
            target=_target(row),
            new={"class_code": class_code or row.predicted_class},
        )
        return png

    async def _owned(self, prediction_id: int, user: User) -> PredictionRow:
        row = await self.repo.get_owned(prediction_id, user.id)
        if row is None:
            raise NotFound("Prediction not found")
        return row

    async def detail(
        self, row: PredictionRow, user: User, base_url: str, now: datetime
    ) -> Prediction:
        return await prediction_detail(
            row, self.storage, self.settings, self.manifest, user.locale, base_url, now=now
        )

    async def page(
        self, user: User, query: HistoryQuery, base_url: str, now: datetime
    ) -> PredictionPage:
        tz = zone(query.tz or self.settings.default_timezone)
        created_from, created_before = resolve_date_bounds(query.date_from, query.date_to, tz)
        filters = HistoryFilters(
            predicted_class=query.predicted_class,
            feedback=query.feedback,
            q=query.q or None,
            patient_ref=query.patient_ref,
            recommendation=query.recommendation,
            gradable=query.gradable,
            created_from=created_from,
            created_before=created_before,
        )
        offset = (query.page - 1) * query.page_size

        limit = self.settings.history_count_limit

        async def count(repo: PredictionRepository) -> int:
            return await repo.count(user.id, filters, limit=limit)

        async def rows_of(repo: PredictionRepository) -> Sequence[PredictionRow]:
            # Past the last page this is simply empty; the total still comes from count.
            return await repo.page(
                user.id, filters, query.sort, query.effective_order, offset, query.page_size
            )

        # The count on a second connection meanwhile: both are index range reads.
        counted, rows = await asyncio.gather(
            in_own_session(self.sessions, count), rows_of(self.repo)
        )
        estimate = counted > limit  # the count stopped at limit + 1
        seen = offset + len(rows) if rows else 0  # records up to the end of this page
        label = label_lookup(self.manifest, user.locale)
        return PredictionPage(
            items=[
                summary_from_row(
                    row, label, thumbnail_url_for(row.id, self.settings, base_url, now)
                )
                for row in rows
            ],
            total=max(counted, seen) if estimate else counted,
            total_is_estimate=estimate,
            page=query.page,
            page_size=query.page_size,
        )

    async def read(
        self, prediction_id: int, user: User, base_url: str, now: datetime
    ) -> Prediction:
        row = await self._owned(prediction_id, user)
        detail = await self.detail(row, user, base_url, now)
        self.views.add("prediction.view", actor=user, target=_target(row))
        return detail

    async def image(
        self,
        prediction_id: int,
        user: User | None,
        *,
        expires: int | None,
        signature: str | None,
        if_none_match: str | None,
        now: datetime,
        preview: bool = False,
        thumb: bool = False,
    ) -> ImageRedirect | ImageBytes:
        """Access by a valid signed URL (any client; it was issued to the owner) or by the
        owner's bearer token. Anything else, including an expired or forged signature, is
        404. The caller turns `user is None and no signature` into 401 beforehand."""
        ttl = self.settings.image_url_ttl_seconds
        row: PredictionRow | None = None
        max_age = ttl
        via = "signed_url"
        if expires is not None and signature is not None:
            secret = self.settings.jwt_secret_key.get_secret_value()
            if verify_image_access(secret, prediction_id, expires, signature, now):
                row = await self.repo.get(prediction_id)
                max_age = max(0, min(ttl, int(expires - now.timestamp())))
        if row is None and user is not None:
            row = await self.repo.get_owned(prediction_id, user.id)
            max_age, via = ttl, "token"
        if row is None:
            raise NotFound("Prediction not found")
        result: ImageRedirect | ImageBytes
        if thumb:
            result = await self._thumbnail_of(row, max_age, if_none_match)
        else:
            result = await self._image_of(row, ttl, max_age, if_none_match, preview)
        # Served: a view. A signed URL was issued to the owner: the event names them.
        self.views.add(
            "prediction.image_view",
            actor=user if via == "token" else row.user_id,
            target=_target(row),
            new={"via": via},
        )
        return result

    async def _thumbnail_of(
        self, row: PredictionRow, max_age: int, if_none_match: str | None
    ) -> ImageBytes:
        """The small JPEG of the list (app.services.thumbnails), served by the API."""
        etag = f'"{row.sha256}-thumb"'
        if etag_matches(if_none_match, etag):
            return ImageBytes(None, "image/jpeg", etag, max_age)
        try:
            data = await thumbnail_jpeg(row, self.storage, self.settings)
        except (ImageNotFound, InvalidImageKey) as exc:
            raise NotFound("Image not found") from exc
        return ImageBytes(data, "image/jpeg", etag, max_age)

    async def _image_of(
        self,
        row: PredictionRow,
        ttl: int,
        max_age: int,
        if_none_match: str | None,
        preview: bool,
    ) -> ImageRedirect | ImageBytes:
        """The original bytes, or with `preview` a PNG rendered from them (a DICOM's first
        frame; a browser cannot show application/dicom)."""
        if not preview:
            presigned = await self.storage.presigned_url(row.image_key, ttl)
            if presigned is not None:
                return ImageRedirect(presigned)
        etag = f'"{row.sha256}-png"' if preview else etag_for(row)
        content_type = "image/png" if preview else row.content_type
        if etag_matches(if_none_match, etag):
            return ImageBytes(None, content_type, etag, max_age)
        try:
            stored = await self.storage.get(row.image_key)
        except (ImageNotFound, InvalidImageKey) as exc:
            raise NotFound("Image not found") from exc
        if preview:
            data = await run_in_threadpool(
                render_png, stored.data, max_pixels=self.settings.max_image_pixels
            )
            return ImageBytes(data, content_type, etag, max_age)
        return ImageBytes(stored.data, stored.content_type or row.content_type, etag, max_age)

    async def set_feedback(
        self,
        prediction_id: int,
        user: User,
        body: FeedbackIn,
        base_url: str,
        now: datetime,
    ) -> Prediction:
        row = await self._owned(prediction_id, user)
        correct_class = body.correct_class
        if correct_class is not None:
            known = set(self.manifest.codes) | {str(code) for code in row.class_codes}
            if correct_class not in known:
                raise InvalidCorrectClass(
                    f"correct_class {correct_class!r} is not a class of the model "
                    f"({', '.join(sorted(known))})",
                )
            if correct_class == row.predicted_class:
                raise InvalidCorrectClass(
                    "correct_class must differ from the predicted class; "
                    "send verdict 'correct' instead",
                )
        comment = (body.comment or "").strip() or None
        old = _feedback_of(row)
        await self.repo.set_feedback(row, body.verdict, correct_class, comment, now)
        await audit.record(
            self.session,
            "prediction.feedback",
            actor=user,
            target=_target(row),
            old=old,
            new=_feedback_of(row),
        )
        await self.session.commit()
        self.on_change()
        return await self.detail(row, user, base_url, now)

    async def delete(self, prediction_id: int, user: User) -> None:
        """Row first, image second.

        The row delete is committed before the object is touched: if the commit fails the
        image is still there for the surviving row, and if the object delete fails
        afterwards only an unreferenced object is left (logged with its key for cleanup).
        The other order could leave a row pointing at nothing, which is never acceptable.
        """
        row = await self._owned(prediction_id, user)
        # The image, any cached heatmaps and its thumbnail.
        keys = [row.image_key, *heatmap_keys(row), thumbnail_key(row.image_key)]
        old = {
            "patient_ref": row.patient_ref,
            "filename": row.original_filename,
            "predicted_class": row.predicted_class,
            "sha256": row.sha256,
        }
        if not await self.repo.delete_owned(prediction_id, user.id):
            raise NotFound("Prediction not found")  # deleted concurrently
        await audit.record(
            self.session,
            "prediction.delete",
            actor=user,
            target=("prediction", prediction_id),
            old=old,
        )
        await self.session.commit()
        self.on_change()
        for key in keys:
            try:
                await self.storage.delete(key)
            except (StorageUnavailable, InvalidImageKey):
                log.error(
                    "prediction %s deleted but an object could not be removed; orphan %s",
                    prediction_id,
                    key,
                    exc_info=True,
                )
