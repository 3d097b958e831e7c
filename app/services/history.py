"""The doctor's history: list, read, feedback and delete.

Owner-only: the routes resolve the prediction through the owner-checked dependency
(app.api.deps.OwnedPrediction), so another user's prediction behaves exactly like a missing
one (404 NOT_FOUND). Reading a record leaves a view event; feedback and delete each leave
an audit event (app.services.audit), committed with the change they record. Images and
heatmaps: app.services.images.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.models import Prediction as PredictionRow
from app.db.models import User
from app.db.retry import retried
from app.db.session import SessionFactory
from app.errors import InvalidCorrectClass, NotFound
from app.inference.manifest import ModelManifest
from app.kit.time import bounds
from app.repositories.predictions import HistoryFilters, PredictionRepository, in_own_session
from app.schemas.history import FeedbackIn, HistoryQuery, PredictionPage
from app.schemas.prediction import Prediction, label_lookup, summary_from_row
from app.services import audit
from app.services.audit_views import ViewLog
from app.services.explain import heatmap_keys
from app.services.images import prediction_detail
from app.services.thumbnails import thumbnail_url_for
from app.storage import ImageStore, InvalidImageKey, StorageUnavailable, thumbnail_key

log = logging.getLogger(__name__)


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
        views: ViewLog,
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

    async def detail(
        self, row: PredictionRow, user: User, base_url: str, now: datetime
    ) -> Prediction:
        return await prediction_detail(
            row, user, self.storage, self.settings, self.manifest, base_url, now=now
        )

    async def page(
        self, user: User, query: HistoryQuery, base_url: str, now: datetime
    ) -> PredictionPage:
        created_from, created_before = bounds(query, self.settings.default_timezone)
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
                    row, label, thumbnail_url_for(row.id, user, self.settings, base_url, now)
                )
                for row in rows
            ],
            total=max(counted, seen) if estimate else counted,
            total_is_estimate=estimate,
            page=query.page,
            page_size=query.page_size,
        )

    async def read(
        self, row: PredictionRow, user: User, base_url: str, now: datetime
    ) -> Prediction:
        detail = await self.detail(row, user, base_url, now)
        self.views.add("prediction.view", actor=user, target=_target(row))
        return detail

    async def set_feedback(
        self,
        row: PredictionRow,
        user: User,
        body: FeedbackIn,
        base_url: str,
        now: datetime,
    ) -> Prediction:
        await self._save_feedback(row, user, body, now)
        self.on_change()
        return await self.detail(row, user, base_url, now)

    @retried("history.set_feedback", session_attr="session")
    async def _save_feedback(
        self, row: PredictionRow, user: User, body: FeedbackIn, now: datetime
    ) -> None:
        """One transaction (the last feedback wins; run again on a conflict, `row` read
        again first)."""
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

    @retried("history.delete", session_attr="session")
    async def delete(self, row: PredictionRow, user: User) -> None:
        """Row first, image second.

        The row delete is committed before the object is touched: if the commit fails the
        image is still there for the surviving row, and if the object delete fails
        afterwards only an unreferenced object is left (logged with its key for cleanup).
        The other order could leave a row pointing at nothing, which is never acceptable.
        """
        prediction_id = row.id
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
