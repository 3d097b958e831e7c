"""ORM models. Every datetime column holds UTC (see UTCDateTime)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigId, PreciseUTCDateTime, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("ux_users_legacy_id", "legacy_id", unique=True),)  # 0008_legacy_ids

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Stored lower-cased, so the unique index is case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    locale: Mapped[str] = mapped_column(String(5), default="es")
    role: Mapped[str] = mapped_column(String(10), default="doctor")
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # An administrator can disable an account (0006_audit): its tokens stop working at once.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # users.id in the earlier Flask back-end, for accounts `ocupredict import-legacy` made.
    legacy_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class OneTimeCode(Base):
    """A 6-digit code sent by email; only its keyed hash is stored."""

    __tablename__ = "one_time_codes"
    __table_args__ = (Index("ix_one_time_codes_user_purpose", "user_id", "purpose"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(10))  # "verify" | "reset"
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefreshToken(Base):
    """One link of a rotating refresh-token chain (family); only the hash is stored."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    replaced_by_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateLimitHit(Base):
    """One counted event in a sliding window; shared by every worker through the DB."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_bucket_created", "bucket", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(64))  # sha256 of the limit's key
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """A client's Idempotency-Key on POST /predict: its first request claims it (the
    unique index decides between racing requests, on any node), the prediction it made
    is recorded with it, and a repeat within IDEMPOTENCY_TTL_HOURS gets that one back."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        Index("ux_idempotency_keys_user_key", "user_id", "key_hash", unique=True),
        Index("ix_idempotency_keys_expires", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the key
    request_sha256: Mapped[str] = mapped_column(String(64))  # the file and its form fields
    prediction_id: Mapped[int | None] = mapped_column(
        ForeignKey("predictions.id", ondelete="CASCADE"), nullable=True
    )  # NULL while the first request is still at work
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Prediction(Base):
    __tablename__ = "predictions"
    # History and dashboard indexes: why each exists is in alembic 0004_history_indexes.
    __table_args__ = (
        Index("ix_predictions_user_created", "user_id", "created_at", "id"),
        Index(
            "ix_predictions_user_class_feedback",
            "user_id",
            "predicted_class",
            "feedback_verdict",
            "feedback_correct_class",
            "created_at",
        ),
        Index("ix_predictions_user_class_id", "user_id", "predicted_class", "id"),
        Index("ix_predictions_user_feedback", "user_id", "feedback_verdict", "created_at", "id"),
        Index("ix_predictions_user_feedback_id", "user_id", "feedback_verdict", "id"),
        Index(
            "ix_predictions_user_search",
            "user_id",
            "original_filename",
            "id",
            "patient_ref",
            "created_at",
        ),
        Index("ix_predictions_user_patient", "user_id", "patient_ref", "created_at", "id"),
        Index("ix_predictions_created_feedback", "created_at", "feedback_verdict"),
        Index("ux_predictions_image_key", "image_key", unique=True),  # 0005_image_key_unique
        # 0007_clinical: the history filters and dashboard counts of the new fields
        Index(
            "ix_predictions_user_recommendation", "user_id", "recommendation", "created_at", "id"
        ),
        Index("ix_predictions_user_gradable", "user_id", "quality_gradable", "created_at", "id"),
        Index("ux_predictions_legacy_id", "legacy_id", unique=True),  # 0008_legacy_ids
        Index(  # 0009_model_registry: the per-version metrics, from the index alone
            "ix_predictions_version_metrics",
            "model_version",
            "created_at",
            "feedback_verdict",
            "predicted_class",
            "feedback_correct_class",
            "probability",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    image_key: Mapped[str] = mapped_column(String(255))
    original_filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(50))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))

    patient_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    eye: Mapped[str] = mapped_column(String(10), default="unknown")
    # 0010_dicom: where `eye` came from ("request" | "dicom"), whether the request's eye
    # contradicts the file's laterality, and a DICOM's frame count (first one classified).
    eye_source: Mapped[str] = mapped_column(String(10), default="request")
    laterality_conflict: Mapped[bool] = mapped_column(Boolean, default=False)
    frames: Mapped[int | None] = mapped_column(Integer, nullable=True)

    predicted_class: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[Any]] = mapped_column(JSON)  # floats in model order
    class_codes: Mapped[list[Any]] = mapped_column(JSON)  # the manifest's order at the time
    model_version: Mapped[str] = mapped_column(String(32))
    model_demo: Mapped[bool] = mapped_column(Boolean)
    backend: Mapped[str] = mapped_column(String(16))
    inference_ms: Mapped[float] = mapped_column(Float)

    # The quality gate and the recommendation (0007_clinical); null on older rows, and
    # quality_* null when the gate did not run (turned off for the model).
    quality_gradable: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    quality_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    quality_reasons: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    recommendation: Mapped[str | None] = mapped_column(String(16), nullable=True)

    feedback_verdict: Mapped[str | None] = mapped_column(String(10), nullable=True)
    feedback_correct_class: Mapped[str | None] = mapped_column(String(64), nullable=True)
    feedback_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    feedback_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # prediction_history.id in the earlier Flask back-end (`ocupredict import-legacy`).
    legacy_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ModelVersion(Base):
    """A registered set of weights (see alembic 0009_model_registry)."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(32), primary_key=True)  # sha256[:12]
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(1024))  # s3://..., a path, "upload", "demo"
    storage_key: Mapped[str | None] = mapped_column(String(255), nullable=True)  # models/...
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    demo: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(10))  # staged | active | retired
    shadow_rate: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # 0013_learning_loop: what made a version a training job trained (parent version,
    # dataset hashes, recipe and version, seed, code version, evaluation id); null otherwise.
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ModelRegistryState(Base):
    """The single row (id 1) every process follows: the active and the shadow version."""

    __tablename__ = "model_registry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    active_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"))
    shadow_version: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.version"), nullable=True
    )
    generation: Mapped[int] = mapped_column(Integer)  # compare-and-set on every change
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShadowPrediction(Base):
    """What a shadow version said about a live upload, apart from the served prediction."""

    __tablename__ = "shadow_predictions"
    __table_args__ = (
        Index(
            "ux_shadow_predictions_version_prediction",
            "model_version",
            "prediction_id",
            unique=True,
        ),
        Index("ix_shadow_predictions_prediction", "prediction_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    predicted_class: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[Any]] = mapped_column(JSON)
    inference_ms: Mapped[float] = mapped_column(Float)


class ModelMetricsDaily(Base):
    """Per version and UTC day, the count and summed confidence of each (predicted class,
    verdict, confirmed class, confidence bin); kept by triggers on predictions (alembic
    0009_model_registry). '' stands for "no feedback" / "class not given"."""

    __tablename__ = "model_metrics_daily"

    model_version: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    predicted_class: Mapped[str] = mapped_column(String(64), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(10), primary_key=True)
    correct_class: Mapped[str] = mapped_column(String(64), primary_key=True)
    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    sum_p: Mapped[float] = mapped_column(Double)


class AuditEvent(Base):
    """One append-only record of who did or saw what (0006_audit).

    Written in the transaction of the change it records; nothing updates a row, and only
    `ocupredict prune-audit` deletes old ones. actor_id has no foreign key on purpose:
    events outlive the accounts they name. Never holds a password, code, token or image.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor", "actor_id", "id"),
        Index("ix_audit_events_action", "action", "id"),
        Index("ix_audit_events_target", "target_type", "target_id", "id"),
        Index("ix_audit_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(PreciseUTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    actor_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str | None] = mapped_column(String(20), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class WriteGuard(Base):
    """A version counter that every transaction deciding on the same fact moves (0012).

    On a Galera cluster with writers on several nodes, SELECT ... FOR UPDATE locks only
    on the node it runs on; an UPDATE of one shared row is what makes two such
    transactions conflict at certification (one of them fails with 1213 and is retried,
    app.db.retry). app.repositories.write_guards names the guards.
    """

    __tablename__ = "write_guards"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

