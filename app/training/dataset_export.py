"""A dataset's items as CSV (`items.csv`, for review), streamed in manifest order."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from app.db.learning import DatasetItem
from app.db.session import SessionFactory
from app.repositories.datasets import DatasetRepository
from app.training.dataset_manifest import item_record

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
