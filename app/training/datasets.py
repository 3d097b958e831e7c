"""Datasets: immutable, traceable snapshots of labelled images.

Built from the doctors' feedback up to a cut-off, or imported from a folder
(app/training/importer.py). Every item records the image's sha256, the prediction id,
patient_ref, the label and its source, who labelled it and when, the model version whose
answer the doctor saw, and the quality gate's verdict; the image bytes are copied into
the dataset's own content-addressed objects (datasets/..), and the labels are copied
too, so neither a later correction nor a deleted prediction changes a dataset.

Labels from feedback: `correct` -> the predicted class ("confirmed"); `incorrect` with a
class -> that class ("corrected"). Left out, and counted by reason: `incorrect` without a
class, ungradable photographs (the quality gate said so), labels given after the
cut-off (the label as of the cut-off is not known any more), a second copy of the same
image, and images missing from the store. Deleted predictions are gone from the table.

The manifest is canonical JSON of the dataset's kind, source, bounds and items (not its
name, creator or creation time); its sha256 identifies the dataset, so a rebuild with the
same inputs gives the same hash.

Splits come from the dataset, never from a training run: sha256 of the patient_ref (of
the image when there is none; such items are flagged `split_from_image`) decides train
(80%), validation (10%) or calibration (10%); all images of a patient fall on one side. A
test set's items are all `test`, and a test set is locked at creation.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.base import utcnow
from app.db.models import Dataset, DatasetItem, Prediction, User
from app.db.session import SessionFactory
from app.errors import NotFound, ValidationFailed
from app.kit.time import utc_bounds, zone
from app.repositories.datasets import DatasetRepository
from app.services import audit
from app.storage import ImageNotFound, ImageStore, dataset_image_key

log = logging.getLogger(__name__)

DatasetKind = Literal["train", "test"]
SPLIT_SCHEME = "v1: sha256('split-v1:' + patient_ref or image sha256) -> 80/10/10"
SPLITS = ("train", "validation", "calibration")
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/dicom": "dcm"}
COPY_CONCURRENCY = 8

CSV_COLUMNS = (
    "position",
    "image_sha256",
    "prediction_id",
    "patient_ref",
    "split",
    "split_from_image",
    "label",
    "label_source",
    "labelled_by",
    "labelled_at",
    "model_version",
    "source_name",
    "quality_gradable",
    "quality_score",
    "quality_reasons",
)
EXPORT_CHUNK = 1000


# --------------------------------------------------------------------------- pure parts


def split_of(kind: str, patient_ref: str | None, image_sha256: str) -> tuple[str, bool]:
    """(split, derived from the image because patient_ref is absent)."""
    from_image = not patient_ref
    if kind == "test":
        return "test", from_image
    key = image_sha256 if from_image else patient_ref
    digest = hashlib.sha256(f"split-v1:{key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    if bucket < 80:
        return "train", from_image
    return ("validation" if bucket < 90 else "calibration"), from_image


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def item_record(item: DatasetItem) -> dict[str, Any]:
    """An item as it enters the manifest (and its hash)."""
    return {
        "image_sha256": item.image_sha256,
        "prediction_id": item.prediction_id,
        "patient_ref": item.patient_ref,
        "split": item.split,
        "split_from_image": item.split_from_image,
        "label": item.label,
        "label_source": item.label_source,
        "labelled_by": item.labelled_by,
        "labelled_at": _iso(item.labelled_at),
        "model_version": item.model_version,
        "source_name": item.source_name,
        "quality_gradable": item.quality_gradable,
        "quality_score": item.quality_score,
        "quality_reasons": item.quality_reasons,
    }


def manifest(
    kind: str,
    source: str,
    date_from: datetime | None,
    date_to: datetime | None,
    items: Sequence[DatasetItem],
) -> dict[str, Any]:
    return {
        "format": 1,
        "kind": kind,
        "source": source,
        "date_from": _iso(date_from),
        "date_to": _iso(date_to),
        "split_scheme": SPLIT_SCHEME,
        "items": [item_record(item) for item in items],
    }


def manifest_sha256(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_items(items: Iterable[DatasetItem]) -> list[DatasetItem]:
    """Items in manifest order (image hash, then prediction id), positions 1..n."""
    ordered = sorted(items, key=lambda i: (i.image_sha256, i.prediction_id or 0))
    for position, item in enumerate(ordered, start=1):
        item.position = position
    return ordered


def finish_dataset(
    *,
    name: str,
    kind: str,
    source: str,
    date_from: datetime | None,
    date_to: datetime | None,
    items: Sequence[DatasetItem],
    excluded: Counter[str],
    created_by: int | None,
    now: datetime,
) -> Dataset:
    """The dataset row of ordered items: counts and the manifest's sha256."""
    document = manifest(kind, source, date_from, date_to, items)
    return Dataset(
        name=name,
        kind=kind,
        locked=kind == "test",
        source=source,
        date_from=date_from,
        date_to=date_to,
        created_at=now.replace(microsecond=0),  # as a DATETIME column gives it back
        created_by=created_by,
        items=len(items),
        by_class=dict(sorted(Counter(i.label for i in items).items())),
        by_split=dict(sorted(Counter(i.split for i in items).items())),
        unlinked_items=sum(1 for i in items if i.split_from_image),
        excluded=dict(sorted(excluded.items())),
        sha256=manifest_sha256(document),
    )


def feedback_label(row: Prediction) -> tuple[str, str] | None:
    """(label, label source) of a prediction's feedback; None when it gives no class."""
    if row.feedback_verdict == "correct":
        return row.predicted_class, "confirmed"
    if row.feedback_verdict == "incorrect" and row.feedback_correct_class:
        return row.feedback_correct_class, "corrected"
    return None


def _cell(value: Any) -> str:
    """OWASP CSV injection: text a spreadsheet would run as a formula gets a leading
    quote (every cell is also quoted by the writer)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def csv_row(item: DatasetItem) -> list[str]:
    record = item_record(item)
    reasons = record["quality_reasons"]
    values = [
        item.position,
        record["image_sha256"],
        record["prediction_id"],
        record["patient_ref"],
        record["split"],
        str(record["split_from_image"]).lower(),
        record["label"],
        record["label_source"],
        record["labelled_by"],
        record["labelled_at"],
        record["model_version"],
        record["source_name"],
        None if record["quality_gradable"] is None else str(record["quality_gradable"]).lower(),
        record["quality_score"],
        None if reasons is None else " ".join(reasons),
    ]
    return [_cell(v) for v in values]


# --------------------------------------------------------------------------- service


@dataclass
class FeedbackSnapshot:
    items: list[DatasetItem] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    sources: dict[str, str] = field(default_factory=dict)  # dataset key -> prediction image key


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

    async def snapshot_feedback(
        self, kind: str, date_from: datetime | None, cutoff: datetime
    ) -> FeedbackSnapshot:
        """The items of the predictions labelled by the cut-off (no image copied yet)."""
        snapshot = FeedbackSnapshot()
        seen: set[str] = set()
        for row in await self.repo.labelled_predictions(date_from, cutoff):
            labelled = feedback_label(row)
            if labelled is None:
                snapshot.excluded["incorrect_without_class"] += 1
                continue
            if row.quality_gradable is False:
                snapshot.excluded["ungradable"] += 1
                continue
            if row.feedback_updated_at is not None and row.feedback_updated_at > cutoff:
                snapshot.excluded["labelled_after_cutoff"] += 1
                continue
            if row.sha256 in seen:
                snapshot.excluded["duplicate_image"] += 1
                continue
            seen.add(row.sha256)
            split, from_image = split_of(kind, row.patient_ref, row.sha256)
            key = dataset_image_key(row.sha256, _EXTENSIONS.get(row.content_type, "jpg"))
            snapshot.sources[key] = row.image_key
            label, label_source = labelled
            snapshot.items.append(
                DatasetItem(
                    image_sha256=row.sha256,
                    image_key=key,
                    content_type=row.content_type,
                    prediction_id=row.id,
                    patient_ref=row.patient_ref,
                    split=split,
                    split_from_image=from_image,
                    label=label,
                    label_source=label_source,
                    labelled_by=row.user_id,  # feedback is given by the prediction's owner
                    labelled_at=row.feedback_updated_at,
                    model_version=row.model_version,
                    source_name=None,
                    quality_gradable=row.quality_gradable,
                    quality_score=row.quality_score,
                    quality_reasons=row.quality_reasons,
                )
            )
        return snapshot

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
        snapshot = await self.snapshot_feedback(kind, start, cutoff)
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
                "date_to": _iso(date_to),
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


async def export_csv(sessions: SessionFactory, dataset_id: int) -> AsyncIterator[str]:
    """The items in manifest order as CSV chunks (every cell quoted), on its own session."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    async with sessions() as session:
        repo = DatasetRepository(session)
        after = 0
        while True:
            rows = await repo.items_page(dataset_id, after, EXPORT_CHUNK)
            if not rows:
                break
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(csv_row(row) for row in rows)
            after = rows[-1].position
            yield buffer.getvalue()
            if len(rows) < EXPORT_CHUNK:
                break
