"""The labelled items the doctors' feedback gives, as of a cut-off (no image copied yet).

Labels from feedback: `correct` -> the predicted class ("confirmed"); `incorrect` with a
class -> that class ("corrected"). Left out, and counted by reason: `incorrect` without a
class, ungradable photographs (the quality gate said so), labels given after the cut-off
(the label as of the cut-off is not known any more) and a second copy of the same image.
Deleted predictions are gone from the table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from app.db.learning import DatasetItem
from app.db.models import Prediction
from app.repositories.datasets import DatasetRepository
from app.storage import dataset_image_key
from app.training.splits import split_of

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/dicom": "dcm"}


@dataclass
class FeedbackSnapshot:
    items: list[DatasetItem] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    sources: dict[str, str] = field(default_factory=dict)  # dataset key -> prediction image key


def feedback_label(row: Prediction) -> tuple[str, str] | None:
    """(label, label source) of a prediction's feedback; None when it gives no class."""
    if row.feedback_verdict == "correct":
        return row.predicted_class, "confirmed"
    if row.feedback_verdict == "incorrect" and row.feedback_correct_class:
        return row.feedback_correct_class, "corrected"
    return None


async def snapshot_feedback(
    repo: DatasetRepository, kind: str, date_from: datetime | None, cutoff: datetime
) -> FeedbackSnapshot:
    """The items of the predictions labelled by the cut-off (no image copied yet)."""
    snapshot = FeedbackSnapshot()
    seen: set[str] = set()
    for row in await repo.labelled_predictions(date_from, cutoff):
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
