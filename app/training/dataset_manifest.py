"""A dataset's manifest and the row that identifies it.

The manifest is canonical JSON of the dataset's kind, source, bounds and items (not its
name, creator or creation time); its sha256 identifies the dataset, so a rebuild with the
same inputs gives the same hash. Items are in manifest order (image hash, then
prediction id) and numbered from 1.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from app.db.learning import Dataset, DatasetItem
from app.training.splits import SPLIT_SCHEME


def iso(value: datetime | None) -> str | None:
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
        "labelled_at": iso(item.labelled_at),
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
        "date_from": iso(date_from),
        "date_to": iso(date_to),
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
