"""Data access for predictions: owner-scoped lookups, the history list, and the
aggregate queries behind the dashboard.

Every query here filters by owner where the caller is a user; another user's row is
simply not found. Aggregates are GROUP BY queries: no method loads rows to count them.
The indexes these queries rely on are described in alembic/versions/0004_history_indexes.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app.db.models import Prediction, User
from app.db.session import SessionFactory
from app.repositories._util import rowcount
from app.repositories.local_days import DaySpan, LocalDayIndex

# (user_id, original_filename, id, patient_ref, created_at): see alembic 0004.
SEARCH_INDEX = "ix_predictions_user_search"

SortKey = Literal["created_at", "predicted_class", "feedback", "filename", "id"]
SortOrder = Literal["asc", "desc"]
FeedbackFilter = Literal["correct", "incorrect", "none"]


@dataclass(frozen=True, slots=True)
class HistoryFilters:
    """Filters of the history list; all given ones apply (AND). Bounds are UTC instants."""

    predicted_class: str | None = None
    feedback: FeedbackFilter | None = None
    q: str | None = None
    patient_ref: str | None = None
    recommendation: str | None = None
    gradable: bool | None = None
    created_from: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class FeedbackGroup:
    """Count of one (predicted class, verdict, correct class) combination."""

    predicted_class: str
    verdict: str | None
    correct_class: str | None
    count: int


@dataclass(frozen=True, slots=True)
class Totals:
    total: int
    with_feedback: int
    correct: int


# --------------------------------------------------------------------------- SQL helpers


def _range(start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(Prediction.created_at >= start)
    if end is not None:
        conditions.append(Prediction.created_at < end)
    return conditions


_CORRECT = case((Prediction.feedback_verdict == "correct", 1), else_=0)


# --------------------------------------------------------------------------- repository


class PredictionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def add(self, row: Prediction) -> None:
        """Insert a new prediction row (the caller commits)."""
        self.session.add(row)
        await self.session.flush()

    async def get_with_owner(self, prediction_id: int) -> tuple[Prediction, User] | None:
        """The row and its owner's account (a signed URL is checked against the owner)."""
        found = (
            await self.session.execute(
                select(Prediction, User)
                .join(User, User.id == Prediction.user_id)
                .where(Prediction.id == prediction_id)
            )
        ).first()
        return None if found is None else (found[0], found[1])

    async def get_owned(self, prediction_id: int, user_id: int) -> Prediction | None:
        """The row when it exists and belongs to the user; None otherwise (no leak)."""
        stmt = select(Prediction).where(
            Prediction.id == prediction_id, Prediction.user_id == user_id
        )
        return (await self.session.scalars(stmt)).one_or_none()

    async def get(self, prediction_id: int) -> Prediction | None:
        """By id alone: only for callers that proved access otherwise (a signed URL)."""
        return await self.session.get(Prediction, prediction_id)

    async def referenced_image_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of `keys` that some prediction points at (ux_predictions_image_key)."""
        if not keys:
            return set()
        stmt = select(Prediction.image_key).where(Prediction.image_key.in_(keys))
        return set((await self.session.scalars(stmt)).all())

    # ------------------------------------------------------------------ history list

    def _search_hint(self, stmt: Select[Any], filters: HistoryFilters) -> Select[Any]:
        """A substring search cannot use a B-tree, and MariaDB then walks the created_at
        index reading whole rows until the page is full (a second for a rare term among
        100,000 rows). Make it scan the doctor's entries of the index that holds filename,
        patient_ref and created_at instead: bounded (~50 ms) and never touching rows. Not
        when patient_ref pins a handful of rows anyway."""
        if filters.q and filters.patient_ref is None:
            for dialect in ("mysql", "mariadb"):
                stmt = stmt.with_hint(Prediction, f"FORCE INDEX ({SEARCH_INDEX})", dialect)
        return stmt

    def _conditions(self, user_id: int, filters: HistoryFilters) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [Prediction.user_id == user_id]
        if filters.predicted_class is not None:
            conditions.append(Prediction.predicted_class == filters.predicted_class)
        if filters.feedback == "none":
            conditions.append(Prediction.feedback_verdict.is_(None))
        elif filters.feedback is not None:
            conditions.append(Prediction.feedback_verdict == filters.feedback)
        if filters.patient_ref is not None:
            conditions.append(Prediction.patient_ref == filters.patient_ref)
        if filters.recommendation is not None:
            conditions.append(Prediction.recommendation == filters.recommendation)
        if filters.gradable is not None:
            conditions.append(Prediction.quality_gradable.is_(filters.gradable))
        if filters.q:
            # icontains(autoescape=True): lower(col) LIKE '%' || lower(:q) || '%' ESCAPE '/'
            # with %, _ and / in :q escaped, so they match literally (and so does '\').
            conditions.append(
                Prediction.original_filename.icontains(filters.q, autoescape=True)
                | Prediction.patient_ref.icontains(filters.q, autoescape=True)
            )
        conditions.extend(_range(filters.created_from, filters.created_before))
        return conditions

    def _order_by(self, sort: SortKey, order: SortOrder) -> list[ColumnElement[Any]]:
        key: ColumnElement[Any] | QueryableAttribute[Any]
        if sort == "created_at":
            key = Prediction.created_at
        elif sort == "predicted_class":
            key = Prediction.predicted_class
        elif sort == "feedback":
            # NULL sorts first ascending on MariaDB/MySQL and SQLite alike.
            key = Prediction.feedback_verdict
        elif sort == "filename":
            key = Prediction.original_filename
            if self._dialect == "sqlite":
                # MariaDB's utf8mb4_unicode_ci already compares case-insensitively.
                key = key.collate("NOCASE")
        else:
            key = Prediction.id
        columns = [key] if sort == "id" else [key, Prediction.id]
        return [c.desc() if order == "desc" else c.asc() for c in columns]

    async def count(self, user_id: int, filters: HistoryFilters, *, limit: int) -> int:
        """The number of matching rows, counting no further than `limit` + 1: a result
        above `limit` means "more than limit". The inner LIMIT bounds the index entries
        read, so a doctor with 100,000 records costs what one with `limit` does."""
        matching = select(Prediction.id).where(*self._conditions(user_id, filters)).limit(limit + 1)
        matching = self._search_hint(matching, filters)
        stmt = select(func.count()).select_from(matching.subquery("matching"))
        return int((await self.session.execute(stmt)).scalar_one())

    async def page(
        self,
        user_id: int,
        filters: HistoryFilters,
        sort: SortKey,
        order: SortOrder,
        offset: int,
        limit: int,
    ) -> Sequence[Prediction]:
        """One page as a deferred join: the inner query picks the page's ids from an index
        (so a deep OFFSET skips index entries, not whole rows), the outer one reads just
        those rows by primary key, in the same order."""
        order_by = self._order_by(sort, order)
        ids_stmt = (
            select(Prediction.id)
            .where(*self._conditions(user_id, filters))
            .order_by(*order_by)
            .offset(offset)
            .limit(limit)
        )
        page_ids = self._search_hint(ids_stmt, filters).subquery("page_ids")
        stmt = select(Prediction).join(page_ids, Prediction.id == page_ids.c.id).order_by(*order_by)
        return (await self.session.scalars(stmt)).all()

    # ------------------------------------------------------------------ writes

    async def set_feedback(
        self,
        row: Prediction,
        verdict: str,
        correct_class: str | None,
        comment: str | None,
        now: datetime,
    ) -> None:
        row.feedback_verdict = verdict
        row.feedback_correct_class = correct_class
        row.feedback_comment = comment
        row.feedback_updated_at = now
        await self.session.flush()

    async def delete_owned(self, prediction_id: int, user_id: int) -> bool:
        """Delete the user's row; False when there was none to delete."""
        result = await self.session.execute(
            delete(Prediction)
            .where(Prediction.id == prediction_id, Prediction.user_id == user_id)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) > 0

    # ------------------------------------------------------------------ dashboard

    async def first_created_at(self, user_id: int) -> datetime | None:
        stmt = select(func.min(Prediction.created_at)).where(Prediction.user_id == user_id)
        # min() keeps the column's type, so the value comes back as an aware UTC datetime.
        value: datetime | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return value

    async def feedback_groups(
        self, user_id: int, start: datetime | None, end: datetime | None
    ) -> list[FeedbackGroup]:
        """Counts per (predicted_class, verdict, correct_class) of the user's rows in range:
        totals, per-class counts and the confusion list all derive from these few groups."""
        stmt = (
            select(
                Prediction.predicted_class,
                Prediction.feedback_verdict,
                Prediction.feedback_correct_class,
                func.count(),
            )
            .where(Prediction.user_id == user_id, *_range(start, end))
            .group_by(
                Prediction.predicted_class,
                Prediction.feedback_verdict,
                Prediction.feedback_correct_class,
            )
        )
        result = await self.session.execute(stmt)
        return [FeedbackGroup(str(c), v, cc, int(n)) for c, v, cc, n in result.all()]

    async def recommendation_counts(
        self, user_id: int, start: datetime | None, end: datetime | None
    ) -> dict[str, int]:
        """Rows per recommendation in range (rows without one left out)."""
        stmt = (
            select(Prediction.recommendation, func.count())
            .where(
                Prediction.user_id == user_id,
                Prediction.recommendation.is_not(None),
                *_range(start, end),
            )
            .group_by(Prediction.recommendation)
        )
        return {str(r): int(n) for r, n in (await self.session.execute(stmt)).all()}

    async def ungradable_count(
        self, user_id: int, start: datetime | None, end: datetime | None
    ) -> int:
        stmt = select(func.count()).where(
            Prediction.user_id == user_id,
            Prediction.quality_gradable.is_(False),
            *_range(start, end),
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def counts_by_local_day(
        self, user_id: int, spans: Sequence[DaySpan]
    ) -> list[tuple[int, int]]:
        """(day index, count) of the user's rows in the spans' days: a GROUP BY over at
        most one group per day, whatever the zone's offset or DST changes."""
        day = LocalDayIndex(Prediction.created_at, spans).label("day")
        start = datetime.fromtimestamp(spans[0].start, UTC)
        end = datetime.fromtimestamp(spans[-1].end, UTC)
        stmt = (
            select(day, func.count())
            .where(Prediction.user_id == user_id, *_range(start, end))
            .group_by(day)
        )
        result = await self.session.execute(stmt)
        return [(int(d), int(n)) for d, n in result.all() if d is not None]

    async def overall_totals(self, start: datetime | None, end: datetime | None) -> Totals:
        """Totals across every user's rows in range."""
        stmt = select(
            func.count(),
            func.count(Prediction.feedback_verdict),
            func.coalesce(func.sum(_CORRECT), 0),
        ).where(*_range(start, end))
        total, with_feedback, correct = (await self.session.execute(stmt)).one()
        return Totals(int(total), int(with_feedback), int(correct))


T = TypeVar("T")


async def in_own_session(
    sessions: SessionFactory, work: Callable[[PredictionRepository], Awaitable[T]]
) -> T:
    """Run one read on a connection of its own, so independent queries overlap."""
    async with sessions() as session:
        return await work(PredictionRepository(session))
