"""Datasets: immutable, traceable snapshots of labelled images.

Built from the doctors' feedback up to a cut-off, or imported from a folder
(app/training/importer.py). Every item records the image's sha256, the prediction id,
patient_ref, the label and its source, who labelled it and when, the model version whose
answer the doctor saw, and the quality gate's verdict; the image bytes are copied into
the dataset's own content-addressed objects (datasets/..), and the labels are copied
too, so neither a later correction nor a deleted prediction changes a dataset.

Which items the feedback gives is feedback_snapshot.py (images missing from the store
are left out here, counted as `image_missing`); the split of each item
splits.py; the manifest whose sha256 identifies a dataset dataset_manifest.py; the CSV
export dataset_export.py. A test set is locked at creation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.base import utcnow
from app.db.learning import Dataset, DatasetItem
from app.db.models import User
from app.errors import NotFound, ValidationFailed
from app.kit.time import utc_bounds, zone
from app.repositories.datasets import DatasetRepository
from app.services import audit
from app.storage import ImageNotFound, ImageStore
from app.training.dataset_manifest import finish_dataset, iso, order_items
from app.training.feedback_snapshot import snapshot_feedback

log = logging.getLogger(__name__)

DatasetKind = Literal["train", "test"]
COPY_CONCURRENCY = 8


class DatasetService:
    def __init__(self, session: AsyncSession, settings: Settings, storage: ImageStore) -> None:
        self.session = session
        self.repo = DatasetRepository(session)
        self.settings = settings
        self.storage = storage

    async def list(self, kind: str | None = None) -> list[Dataset]:
        return list(await self.repo.all(kind))

    async def read(self, dataset_id: int) -> Dataset:
        row = await self.repo.get(dataset_id)
        if row is None:
            raise NotFound("No such dataset")
        return row

    def cut_off(
        self,
        date_from: date | datetime | None,
        date_to: date | datetime | None,
        tz_name: str | None,
        now: datetime,
    ) -> tuple[datetime | None, datetime]:
        """(inclusive start, inclusive cut-off) as UTC instants; no date_to: now."""
        tz = zone(tz_name or self.settings.default_timezone)
        start, end = utc_bounds(date_from, date_to, tz)
        cutoff = end - timedelta(microseconds=1) if end is not None else now
        if start is not None and start > cutoff:
            raise ValidationFailed("date_from is after date_to")
        return start, cutoff

    async def create_from_feedback(
        self,
        *,
        name: str,
        kind: DatasetKind,
        date_from: date | datetime | None,
        date_to: date | datetime | None,
        tz_name: str | None,
        user: User,
    ) -> Dataset:
        now = utcnow()
        start, cutoff = self.cut_off(date_from, date_to, tz_name, now)
        snapshot = await snapshot_feedback(self.repo, kind, start, cutoff)
        await self.session.commit()  # no transaction held while images are copied
        missing = await self._copy_images(snapshot.sources)
        items = [i for i in snapshot.items if i.image_key not in missing]
        snapshot.excluded["image_missing"] += len(snapshot.items) - len(items)
        snapshot.excluded = +snapshot.excluded  # drop zero counts
        return await self.save(
            name=name,
            kind=kind,
            source="feedback",
            date_from=start,
            date_to=cutoff,
            items=items,
            excluded=snapshot.excluded,
            user=user,
            now=now,
        )

    async def save(
        self,
        *,
        name: str,
        kind: str,
        source: str,
        date_from: datetime | None,
        date_to: datetime | None,
        items: Sequence[DatasetItem],
        excluded: Counter[str],
        user: User | None,
        now: datetime,
    ) -> Dataset:
        """Insert the dataset and its items with a dataset.create event, and commit."""
        ordered = order_items(items)
        row = finish_dataset(
            name=name,
            kind=kind,
            source=source,
            date_from=date_from,
            date_to=date_to,
            items=ordered,
            excluded=excluded,
            created_by=user.id if user else None,
            now=now,
        )
        await self.repo.add(row, ordered)
        await audit.record(
            self.session,
            "dataset.create",
            actor=user,
            target=("dataset", row.id),
            new={
                "name": name,
                "kind": kind,
                "source": source,
                "items": row.items,
                "sha256": row.sha256,
                "date_to": iso(date_to),
            },
        )
        await self.session.commit()
        log.info(
            "dataset %s (%s, %s) created: %d items, sha256 %s, excluded %s",
            row.id,
            kind,
            source,
            row.items,
            row.sha256,
            dict(excluded),
        )
        return row

    async def _copy_images(self, sources: dict[str, str]) -> set[str]:
        """Copy each prediction image to its dataset key (once per distinct image); the
        dataset keys whose source image is gone."""
        gate = asyncio.Semaphore(COPY_CONCURRENCY)
        missing: set[str] = set()

        async def copy(target: str, source: str) -> None:
            async with gate:
                if await self.storage.exists(target):
                    return
                try:
                    stored = await self.storage.get(source)
                except ImageNotFound:
                    log.warning("image %s is missing from the store; left out", source)
                    missing.add(target)
                    return
                await self.storage.put(target, stored.data, stored.content_type)

        await asyncio.gather(*(copy(t, s) for t, s in sources.items()))
        return missing
