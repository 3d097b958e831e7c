"""A dataset's items as CSV (`items.csv`, for review), streamed in manifest order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.db.learning import DatasetItem
from app.db.session import SessionFactory
from app.kit.csv_export import csv_cells, csv_pages
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
    return csv_cells(values)


async def export_csv(sessions: SessionFactory, dataset_id: int) -> AsyncIterator[str]:
    """The items in manifest order as CSV chunks (every cell quoted), on its own session."""
    async with sessions() as session:
        repo = DatasetRepository(session)

        async def page_after(after: int | None, limit: int) -> Sequence[DatasetItem]:
            return await repo.items_page(dataset_id, after or 0, limit)

        async for chunk in csv_pages(CSV_COLUMNS, page_after, lambda item: item.position, csv_row):
            yield chunk
