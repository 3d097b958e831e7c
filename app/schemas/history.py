"""Request and response models of the history routes (list, feedback) and shared params."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from app.clinical import Recommendation
from app.kit.pagination import Page
from app.kit.time import check_time_zone, parse_date_or_datetime
from app.schemas.prediction import PredictionSummary, Verdict

SortKey = Literal["created_at", "predicted_class", "feedback", "filename", "id"]
SortOrder = Literal["asc", "desc"]
FeedbackFilter = Literal["correct", "incorrect", "none"]

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_COMMENT_CHARS = 1000
CLASS_CODE_PATTERN = r"^[a-z0-9_]{1,64}$"

# Default direction per sort key when `order` is omitted: newest first for the time-like
# keys, alphabetical for the others.
DEFAULT_ORDER: dict[str, SortOrder] = {
    "created_at": "desc",
    "id": "desc",
    "predicted_class": "asc",
    "feedback": "asc",
    "filename": "asc",
}


# --------------------------------------------------------------------------- time zones and dates

TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(check_time_zone)]

DateOrDateTime = Annotated[
    date | datetime,
    PlainValidator(parse_date_or_datetime),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
            ]
        }
    ),
]


# --------------------------------------------------------------------------- list


class HistoryQuery(BaseModel):
    """Query parameters of GET /history. Every filter composes with the others (AND)."""

    page: int = Field(1, ge=1, le=1_000_000, description="1-based page number")
    page_size: int = Field(
        DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Items per page (1-100)"
    )
    sort: SortKey = Field(
        "created_at",
        description=(
            "Sort key; ties are always broken by id (same direction), so pages are stable. "
            "`feedback` sorts records without feedback first in ascending order, then "
            "correct, then incorrect."
        ),
    )
    order: SortOrder | None = Field(
        None,
        description=(
            "asc or desc. Default: desc for created_at and id (newest first), asc for "
            "predicted_class, feedback and filename."
        ),
    )
    predicted_class: str | None = Field(
        None, pattern=CLASS_CODE_PATTERN, description="Only this predicted class code"
    )
    feedback: FeedbackFilter | None = Field(
        None, description="correct, incorrect, or none (no feedback given yet)"
    )
    q: str | None = Field(
        None,
        max_length=255,
        description=(
            "Case-insensitive substring of the filename or the patient_ref; `%`, `_` and "
            "`\\` are matched literally. Empty means no filter."
        ),
    )
    patient_ref: str | None = Field(
        None, max_length=64, description="Exactly this patient reference"
    )
    recommendation: Recommendation | None = Field(
        None, description="Only this recommendation (results made before it existed have none)"
    )
    gradable: bool | None = Field(
        None,
        description="true: only photographs the quality gate passed; false: only those it "
        "did not (results without a gate verdict match neither)",
    )
    date_from: DateOrDateTime | None = Field(
        None,
        description=(
            "Inclusive lower bound of created_at. A date (YYYY-MM-DD) means the start of "
            "that day in `tz`; a datetime must carry an offset."
        ),
    )
    date_to: DateOrDateTime | None = Field(
        None,
        description=(
            "Inclusive upper bound of created_at. A date (YYYY-MM-DD) includes that whole "
            "day in `tz` (up to, not including, the next local midnight); a datetime "
            "(with offset) includes that instant."
        ),
    )
    tz: TimeZoneName | None = Field(
        None,
        description=(
            "IANA time zone in which plain dates of date_from/date_to are read "
            "(default DEFAULT_TIMEZONE, America/Lima). Datetimes carry their own offset."
        ),
    )

    @property
    def effective_order(self) -> SortOrder:
        return self.order or DEFAULT_ORDER[self.sort]


class PredictionPage(Page[PredictionSummary]):
    """Page[PredictionSummary]: summaries carry no image URL and no image bytes."""

    total_is_estimate: bool = Field(
        False,
        description=(
            "false: `total` is exact. true: more records match than the service counts "
            "(HISTORY_COUNT_LIMIT, 10,000), and `total` is a lower bound: that limit + 1, or "
            "the records up to this page if more. A full page may have a next one."
        ),
    )


# --------------------------------------------------------------------------- feedback


class FeedbackIn(BaseModel):
    """The doctor's verdict on a prediction; sending it again replaces the previous one."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict = Field(description="The doctor's judgement of the predicted class")
    correct_class: str | None = Field(
        None,
        pattern=CLASS_CODE_PATTERN,
        description=(
            "Only with verdict=incorrect: the class the doctor diagnosed. A class code of "
            "the model, different from the predicted class (otherwise 422 "
            "INVALID_CORRECT_CLASS)."
        ),
    )
    comment: str | None = Field(
        None,
        max_length=MAX_COMMENT_CHARS,
        description="Free-text note, up to 1000 characters; blank means none",
    )

    @model_validator(mode="after")
    def _correct_class_only_when_incorrect(self) -> FeedbackIn:
        if self.correct_class is not None and self.verdict != "incorrect":
            raise ValueError("correct_class is accepted only with verdict 'incorrect'")
        return self
