"""ORM models of the learning loop (app/training; migration 0013_learning_loop): datasets
and their items, training jobs, evaluations. Every datetime column holds UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigId, PreciseUTCDateTime, UTCDateTime, utcnow


class Dataset(Base):
    """An immutable snapshot of labelled images (kind train or test; a test set is locked)."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_kind", "kind", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))  # train | test
    locked: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(10))  # feedback | import
    # Inclusive bounds of created_at (and date_to of the label's time): the cut-off.
    date_from: Mapped[datetime | None] = mapped_column(PreciseUTCDateTime, nullable=True)
    date_to: Mapped[datetime | None] = mapped_column(PreciseUTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    items: Mapped[int] = mapped_column(Integer)
    by_class: Mapped[dict[str, Any]] = mapped_column(JSON)
    by_split: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Items whose split came from the image hash because they had no patient_ref.
    unlinked_items: Mapped[int] = mapped_column(Integer)
    excluded: Mapped[dict[str, Any]] = mapped_column(JSON)  # reason -> count
    sha256: Mapped[str] = mapped_column(String(64))  # of the canonical manifest


class DatasetItem(Base):
    """One labelled image of a dataset, copied at snapshot time (feedback may change later)."""

    __tablename__ = "dataset_items"
    __table_args__ = (
        Index("ux_dataset_items_position", "dataset_id", "position", unique=True),
        Index("ix_dataset_items_image", "dataset_id", "image_sha256"),
        Index("ix_dataset_items_patient", "dataset_id", "patient_ref"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # order in the manifest
    image_sha256: Mapped[str] = mapped_column(String(64))
    image_key: Mapped[str] = mapped_column(String(255))  # datasets/..: the dataset's copy
    content_type: Mapped[str] = mapped_column(String(50))
    # No foreign key: the prediction may be deleted later, the snapshot keeps its id.
    prediction_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    patient_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    split: Mapped[str] = mapped_column(String(12))  # train | validation | calibration | test
    split_from_image: Mapped[bool] = mapped_column(Boolean)  # no patient_ref: flagged
    label: Mapped[str] = mapped_column(String(64))
    label_source: Mapped[str] = mapped_column(String(10))  # confirmed | corrected | import
    labelled_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    labelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    quality_gradable: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    quality_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    quality_reasons: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


class TrainingJob(Base):
    """A fine-tune of a registered version on a training set, judged on a locked test set.

    Claimed by one `ocupredict train-worker` with a conditional UPDATE (status queued ->
    running); `heartbeat_at` tells a dead worker from a slow one; `checkpoint_epoch` is
    the last epoch whose checkpoint is in the image store."""

    __tablename__ = "training_jobs"
    __table_args__ = (Index("ix_training_jobs_status", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(10))  # queued|running|succeeded|failed|cancelled
    base_version: Mapped[str] = mapped_column(String(32))
    train_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    test_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    recipe: Mapped[str] = mapped_column(String(64))
    recipe_version: Mapped[int] = mapped_column(Integer)
    recipe_sha256: Mapped[str] = mapped_column(String(64))
    recipe_body: Mapped[dict[str, Any]] = mapped_column(JSON)  # as read when the job was made
    seed: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    checkpoint_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    candidate_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    evaluation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ModelEvaluation(Base):
    """A candidate and its parent on a locked test set, and the recipe's gates."""

    __tablename__ = "model_evaluations"
    __table_args__ = (Index("ix_model_evaluations_version", "version", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(32))
    parent_version: Mapped[str] = mapped_column(String(32))
    test_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    min_shadow_cases: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)  # the Evaluation body
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
