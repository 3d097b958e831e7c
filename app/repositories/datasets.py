"""Data access for the learning loop's datasets: the snapshot rows and the feedback they
are built from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.learning import Dataset, DatasetItem
from app.db.models import Prediction


class DatasetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, dataset_id: int) -> Dataset | None:
        return await self.session.get(Dataset, dataset_id)

    async def all(self, kind: str | None = None) -> Sequence[Dataset]:
        stmt = select(Dataset).order_by(Dataset.id.desc())
        if kind is not None:
            stmt = stmt.where(Dataset.kind == kind)
        return (await self.session.scalars(stmt)).all()

    async def add(self, dataset: Dataset, items: Sequence[DatasetItem]) -> None:
        """Insert a dataset and its items (the caller commits)."""
        self.session.add(dataset)
        await self.session.flush()
        for item in items:
            item.dataset_id = dataset.id
        self.session.add_all(items)
        await self.session.flush()

    async def items(self, dataset_id: int) -> Sequence[DatasetItem]:
        stmt = (
            select(DatasetItem)
            .where(DatasetItem.dataset_id == dataset_id)
            .order_by(DatasetItem.position)
        )
        return (await self.session.scalars(stmt)).all()

    async def items_page(self, dataset_id: int, after: int, limit: int) -> Sequence[DatasetItem]:
        """Items with position > after, in order (the CSV export streams these)."""
        stmt = (
            select(DatasetItem)
            .where(DatasetItem.dataset_id == dataset_id, DatasetItem.position > after)
            .order_by(DatasetItem.position)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def overlap(self, train_id: int, test_id: int) -> tuple[int, int]:
        """(distinct image hashes, distinct patient_refs) the two datasets share."""
        train, test = DatasetItem.__table__.alias("train"), DatasetItem.__table__.alias("test")
        images = select(func.count(func.distinct(train.c.image_sha256))).where(
            train.c.dataset_id == train_id,
            train.c.image_sha256.in_(
                select(test.c.image_sha256).where(test.c.dataset_id == test_id)
            ),
        )
        patients = select(func.count(func.distinct(train.c.patient_ref))).where(
            train.c.dataset_id == train_id,
            train.c.patient_ref.is_not(None),
            train.c.patient_ref.in_(
                select(test.c.patient_ref).where(
                    test.c.dataset_id == test_id, test.c.patient_ref.is_not(None)
                )
            ),
        )
        shared_images = int((await self.session.execute(images)).scalar_one())
        shared_patients = int((await self.session.execute(patients)).scalar_one())
        return shared_images, shared_patients

    async def labelled_predictions(
        self, date_from: datetime | None, date_to: datetime
    ) -> Sequence[Prediction]:
        """Predictions with feedback created in [date_from, date_to], oldest first."""
        conditions = [Prediction.feedback_verdict.is_not(None), Prediction.created_at <= date_to]
        if date_from is not None:
            conditions.append(Prediction.created_at >= date_from)
        stmt = select(Prediction).where(*conditions).order_by(Prediction.id)
        return (await self.session.scalars(stmt)).all()
