"""Request and response models of the model registry routes (admin role)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.schemas.history import DateOrDateTime, TimeZoneName

ModelStatusName = Literal["staged", "active", "retired"]


class Lineage(BaseModel):
    """Where a trained version came from (the learning loop)."""

    parent_version: str
    train_dataset_sha256: str
    test_dataset_sha256: str
    recipe: str
    recipe_version: int | None = None
    recipe_sha256: str | None = None
    seed: int
    code_version: str
    evaluation_id: int
    training_job_id: int | None = None


class ModelVersion(BaseModel):
    """A registered set of weights."""

    version: str = Field(description="sha256[:12] of the weights file", examples=["3f2a9c01b7de"])
    status: ModelStatusName = Field(
        description="staged (registered, not serving), active (served by every process), "
        "or retired (withdrawn; cannot be activated or shadowed)"
    )
    demo: bool = Field(description="True for the untrained demo weights")
    source: str = Field(
        description='Where the weights came from: "s3://bucket/key", a path, "upload" or "demo"'
    )
    manifest: dict[str, Any] = Field(
        description="The model manifest: classes (code, es, en), input_size, mean, std"
    )
    created_at: AwareDatetime
    created_by: int | None = Field(description="The admin who registered it; null at start-up")
    activated_at: AwareDatetime | None = Field(description="When it last became active")
    shadow_rate: float = Field(
        ge=0, le=1, description="Share of live uploads also classified by it in shadow (0: off)"
    )
    lineage: Lineage | None = Field(
        description="What made a version a training job trained; null for the others"
    )


class RegisterFromS3(BaseModel):
    """Register weights stored in S3 (the manifest is key.json beside it, if present)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[^\x00-\x1f]+$",
        max_length=1024,
        description="s3://bucket/key of a .pth state dict",
        examples=["s3://my-models/eye/v2.pth"],
    )


class ShadowIn(BaseModel):
    """Sampling rate of a staged version in shadow; 0 turns shadowing off."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(ge=0, le=1, description="0..1: the share of uploads also classified")


class MetricsQuery(BaseModel):
    """Date range of the predictions measured (created_at), as in GET /history."""

    date_from: DateOrDateTime | None = Field(
        None, description="Inclusive lower bound; a date starts at local midnight in tz"
    )
    date_to: DateOrDateTime | None = Field(
        None, description="Inclusive upper bound; a date includes that whole local day"
    )
    tz: TimeZoneName | None = Field(
        None, description="IANA time zone for plain dates (default DEFAULT_TIMEZONE)"
    )


class ClassMetrics(BaseModel):
    """Precision, recall and support of one class."""

    precision: float | None = Field(
        description="Confirmed among those predicted as this class (null: none predicted)"
    )
    recall: float | None = Field(
        description="Predicted among those confirmed as this class (null: none confirmed)"
    )
    support: int = Field(description="Predictions whose confirmed class is this one")


class ModelConfusionCell(BaseModel):
    """How many predictions of `predicted` the doctors confirmed as `confirmed`."""

    predicted: str
    confirmed: str | None = Field(
        description="The class the doctor confirmed; null for 'incorrect' without a class"
    )
    count: int


class ShadowMetrics(BaseModel):
    """This version in shadow, against the version that served the same uploads."""

    compared: int = Field(description="Uploads this version classified in shadow")
    agreement: float | None = Field(description="Share with the same top class as served")
    accuracy: float | None = Field(
        description="Share matching the doctor's confirmed class, where it is known"
    )
    judged: int = Field(description="Shadowed uploads whose confirmed class is known")


class ReliabilityBin(BaseModel):
    """One bin of the top probability: how confident the version was, how often right."""

    low: float = Field(ge=0, le=1, description="The bin's lower edge (inclusive)")
    high: float = Field(ge=0, le=1, description="The bin's upper edge (exclusive; 1 inclusive)")
    count: int = Field(description="Predictions with feedback whose top probability is in it")
    confidence: float = Field(description="Their mean top probability")
    accuracy: float = Field(description="The share of them the doctors confirmed")


class MetricsRange(BaseModel):
    """The range measured, as UTC instants (null: unbounded)."""

    start: datetime | None
    end: datetime | None = Field(description="Exclusive")


class ModelMetrics(BaseModel):
    """How a version performed on live uploads, from the doctors' feedback."""

    version: str
    range: MetricsRange
    predictions: int = Field(description="Predictions this version served in the range")
    with_feedback: int
    correct: int
    accuracy: float | None = Field(description="correct / with_feedback (null: no feedback)")
    accuracy_ci95: list[float] | None = Field(
        min_length=2, max_length=2, description="95% Wilson score interval [low, high]"
    )
    per_class: dict[str, ClassMetrics]
    confusion: list[ModelConfusionCell]
    ece: float | None = Field(
        description="Expected calibration error of the top probability over 10 bins"
    )
    reliability: list[ReliabilityBin] = Field(
        description="The reliability diagram: the non-empty bins of the ECE, lowest first"
    )
    shadow: ShadowMetrics | None = Field(description="Null when it never ran in shadow")
