"""Request and response models of the learning loop's dataset routes (admin role)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.schemas.history import DateOrDateTime, TimeZoneName

DatasetKindName = Literal["train", "test"]


class DatasetCreate(BaseModel):
    """A snapshot of the doctors' feedback up to a cut-off."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["feedback until 2026-11-30"])
    kind: DatasetKindName = Field(
        description="train (split into train/validation/calibration) or test (a locked "
        "test set: never trained on, used only to judge candidates)"
    )
    source: Literal["feedback"] = Field(
        description="feedback: predictions with a doctor's confirmation or correction "
        "(folders are imported with `ocupredict import-labelled`)"
    )
    date_from: DateOrDateTime | None = Field(
        None, description="Inclusive lower bound of created_at (a date: local midnight in tz)"
    )
    date_to: DateOrDateTime | None = Field(
        None,
        description="The cut-off: predictions created and labelled by then (a date: the end "
        "of that local day; absent: now). The same cut-off gives the same dataset hash.",
    )
    tz: TimeZoneName | None = Field(
        None, description="IANA time zone for plain dates (default DEFAULT_TIMEZONE)"
    )


class DatasetListQuery(BaseModel):
    kind: DatasetKindName | None = None


class Dataset(BaseModel):
    """An immutable snapshot of labelled images."""

    id: int
    name: str
    kind: DatasetKindName
    locked: bool = Field(description="True for a test set: fixed at creation, never trained on")
    source: Literal["feedback", "import"]
    date_from: AwareDatetime | None = Field(description="Inclusive lower bound of created_at")
    date_to: AwareDatetime | None = Field(
        description="The cut-off (inclusive): created and labelled by then"
    )
    created_at: AwareDatetime
    created_by: int | None = Field(description="The admin who made it (null: the CLI)")
    items: int = Field(description="Images in the dataset")
    by_class: dict[str, int] = Field(description="Images per label")
    by_split: dict[str, int] = Field(
        description="Images per split: train, validation, calibration (test for a test set)"
    )
    unlinked_items: int = Field(
        description="Images without patient_ref, whose split came from the image hash"
    )
    excluded: dict[str, int] = Field(
        description="Left out, by reason: incorrect_without_class, ungradable, "
        "labelled_after_cutoff, duplicate_image, image_missing, invalid_image"
    )
    sha256: str = Field(description="sha256 of the canonical manifest (items, splits, labels)")
