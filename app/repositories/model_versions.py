"""Data access for the model registry: versions, the state row every process follows,
shadow predictions, and the grouped counts behind the per-version metrics.

Changes to the state row are compare-and-set on `generation`: an activation, a shadow
change or a retirement that raced another one matches no row and reports False.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Integer, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import (
    ModelMetricsDaily,
    ModelRegistryState,
    ModelVersion,
    Prediction,
    ShadowPrediction,
)
from app.repositories._util import rowcount

STATE_ID = 1


@dataclass(frozen=True, slots=True)
class Pointer:
    """What every process follows: the active version, the shadow version and its rate."""

    active_version: str
    shadow_version: str | None
    shadow_rate: float
    generation: int


BINS = 10


def confidence_bin(probability: float) -> int:
    """[0, 0.1) -> 0, ..., [0.9, 1] -> 9; the same thresholds as the SQL (alembic 0006)."""
    for k in range(1, BINS):
        if probability < k / 10:
            return k - 1
    return BINS - 1


@dataclass(frozen=True, slots=True)
class Group:
    predicted: str
    verdict: str | None  # None: no feedback
    correct_class: str | None
    bin: int
    count: int
    sum_probability: float

    @property
    def confirmed(self) -> str | None:
        if self.verdict == "correct":
            return self.predicted
        if self.verdict == "incorrect":
            return self.correct_class
        return None


@dataclass(frozen=True, slots=True)
class ShadowGroup:
    """Shadow rows of a version joined to the served prediction, grouped."""

    shadow_class: str
    served_class: str
    verdict: str | None
    correct_class: str | None
    count: int


def _bin(column: Any) -> Any:
    """The confidence bin as SQL: the thresholds of confidence_bin."""
    whens = [(column < k / 10, k - 1) for k in range(1, BINS)]
    return case(*whens, else_=BINS - 1).cast(Integer)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


class ModelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ versions

    async def get(self, version: str) -> ModelVersion | None:
        return await self.session.get(ModelVersion, version)

    async def all(self) -> Sequence[ModelVersion]:
        stmt = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.version)
        return (await self.session.scalars(stmt)).all()

    async def add(self, row: ModelVersion) -> None:
        """Insert a version (IntegrityError at flush when that version exists)."""
        self.session.add(row)
        await self.session.flush()

    # ------------------------------------------------------------------ state

    async def pointer(self) -> Pointer | None:
        shadow = ModelVersion.__table__.alias("shadow")
        stmt = (
            select(
                ModelRegistryState.active_version,
                ModelRegistryState.shadow_version,
                func.coalesce(shadow.c.shadow_rate, 0.0),
                ModelRegistryState.generation,
            )
            .outerjoin(shadow, shadow.c.version == ModelRegistryState.shadow_version)
            .where(ModelRegistryState.id == STATE_ID)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        if row is None:
            return None
        return Pointer(row[0], row[1], float(row[2]), int(row[3]))

    async def initialize(self, version: str, now: datetime) -> None:
        """Make `version` active in a registry without state yet (IntegrityError at flush
        when another process did it first)."""
        self.session.add(
            ModelRegistryState(id=STATE_ID, active_version=version, generation=1, updated_at=now)
        )
        await self.session.flush()
        await self.session.execute(
            update(ModelVersion)
            .where(ModelVersion.version == version)
            .values(status="active", activated_at=now)
        )

    async def _advance(self, generation: int, now: datetime, **values: Any) -> bool:
        result = await self.session.execute(
            update(ModelRegistryState)
            .where(ModelRegistryState.id == STATE_ID, ModelRegistryState.generation == generation)
            .values(generation=ModelRegistryState.generation + 1, updated_at=now, **values)
        )
        return rowcount(result) == 1

    async def activate(self, version: str, pointer: Pointer, now: datetime) -> bool:
        """Make `version` the active one (the old one goes back to staged); False if the
        state changed since `pointer` was read."""
        shadow = None if pointer.shadow_version == version else pointer.shadow_version
        if not await self._advance(
            pointer.generation, now, active_version=version, shadow_version=shadow
        ):
            return False
        await self.session.execute(
            update(ModelVersion)
            .where(ModelVersion.status == "active", ModelVersion.version != version)
            .values(status="staged")
        )
        await self.session.execute(
            update(ModelVersion)
            .where(ModelVersion.version == version)
            .values(status="active", activated_at=now, shadow_rate=0.0)
        )
        return True

    async def set_shadow(self, version: str, rate: float, pointer: Pointer, now: datetime) -> bool:
        """`version` becomes the shadow at `rate` (0 turns shadowing off); one at a time."""
        if rate > 0:
            shadow: str | None = version
        else:
            shadow = None if pointer.shadow_version == version else pointer.shadow_version
        if not await self._advance(pointer.generation, now, shadow_version=shadow):
            return False
        if rate > 0:
            await self.session.execute(
                update(ModelVersion).where(ModelVersion.version != version).values(shadow_rate=0.0)
            )
        await self.session.execute(
            update(ModelVersion).where(ModelVersion.version == version).values(shadow_rate=rate)
        )
        return True

    async def retire(self, version: str, pointer: Pointer, now: datetime) -> bool:
        shadow = None if pointer.shadow_version == version else pointer.shadow_version
        if not await self._advance(pointer.generation, now, shadow_version=shadow):
            return False
        await self.session.execute(
            update(ModelVersion)
            .where(ModelVersion.version == version)
            .values(status="retired", shadow_rate=0.0)
        )
        return True

    # ------------------------------------------------------------------ shadow rows

    async def add_shadow(self, row: ShadowPrediction) -> None:
        self.session.add(row)

    # ------------------------------------------------------------------ metrics

    async def groups(
        self, version: str, start: datetime | None, end: datetime | None
    ) -> list[Group]:
        """Grouped counts of the version's predictions created in [start, end): whole UTC
        days from the rollup, the partial days at either edge from predictions."""
        first_day = _next_day(start) if start is not None else None
        last_day = end.date() if end is not None else None  # exclusive
        if first_day is not None and last_day is not None and first_day >= last_day:
            return await self._raw_groups(version, start, end)
        groups = await self._rollup_groups(version, first_day, last_day)
        if start is not None and first_day is not None and start < _day_start(first_day):
            groups += await self._raw_groups(version, start, _day_start(first_day))
        if end is not None and last_day is not None and _day_start(last_day) < end:
            groups += await self._raw_groups(version, _day_start(last_day), end)
        return groups

    async def _rollup_groups(
        self, version: str, first_day: date | None, last_day: date | None
    ) -> list[Group]:
        r = ModelMetricsDaily
        conditions = [r.model_version == version]
        if first_day is not None:
            conditions.append(r.day >= first_day)
        if last_day is not None:
            conditions.append(r.day < last_day)
        stmt = (
            select(
                r.predicted_class,
                r.verdict,
                r.correct_class,
                r.bin,
                func.sum(r.n),
                func.sum(r.sum_p),
            )
            .where(*conditions)
            .group_by(r.predicted_class, r.verdict, r.correct_class, r.bin)
        )
        return [
            Group(p, v or None, c or None, int(b), int(n or 0), float(s or 0.0))
            for p, v, c, b, n, s in (await self.session.execute(stmt)).all()
        ]

    async def _raw_groups(
        self, version: str, start: datetime | None, end: datetime | None
    ) -> list[Group]:
        p = Prediction
        conditions = [p.model_version == version]
        if start is not None:
            conditions.append(p.created_at >= start)
        if end is not None:
            conditions.append(p.created_at < end)
        bin_ = _bin(p.probability)
        stmt = (
            select(
                p.predicted_class,
                p.feedback_verdict,
                p.feedback_correct_class,
                bin_,
                func.count(),
                func.sum(p.probability),
            )
            .where(*conditions)
            .group_by(p.predicted_class, p.feedback_verdict, p.feedback_correct_class, bin_)
        )
        return [
            Group(pc, v, c, int(b), int(n), float(s or 0.0))
            for pc, v, c, b, n, s in (await self.session.execute(stmt)).all()
        ]

    async def shadow_groups(
        self, version: str, start: datetime | None, end: datetime | None
    ) -> list[ShadowGroup]:
        s, p = ShadowPrediction, Prediction
        conditions = [s.model_version == version]
        if start is not None:
            conditions.append(p.created_at >= start)
        if end is not None:
            conditions.append(p.created_at < end)
        stmt = (
            select(
                s.predicted_class,
                p.predicted_class,
                p.feedback_verdict,
                p.feedback_correct_class,
                func.count(),
            )
            .join(p, p.id == s.prediction_id)
            .where(*conditions)
            .group_by(
                s.predicted_class, p.predicted_class, p.feedback_verdict, p.feedback_correct_class
            )
        )
        return [
            ShadowGroup(sc, pc, v, c, int(n))
            for sc, pc, v, c, n in (await self.session.execute(stmt)).all()
        ]


def _next_day(instant: datetime) -> date:
    """The first UTC day that starts at or after `instant`."""
    day = instant.date()
    return day if _day_start(day) == instant else day + timedelta(days=1)
