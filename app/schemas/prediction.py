"""The Prediction resource shared by predict-create and the history routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from app.clinical import Reason, Recommendation
from app.db.models import Prediction as PredictionRow
from app.inference.manifest import ModelManifest

Eye = Literal["left", "right", "unknown"]
Verdict = Literal["correct", "incorrect"]
LabelFor = Callable[[str], str]


class ClassProbability(BaseModel):
    """One class of the model and its probability."""

    class_code: str = Field(
        description="Stable class code: glaucoma, diabetic_retinopathy, normal, cataract "
        "(or another class of the model's manifest)",
        examples=["glaucoma"],
    )
    label: str = Field(description="Class name in the user's locale", examples=["Glaucoma"])
    probability: float = Field(ge=0, le=1, examples=[0.91])


class ImageInfo(BaseModel):
    """The uploaded image as stored (validated from its bytes)."""

    filename: str = Field(description="The uploaded file's name, kept as metadata only")
    content_type: Literal["image/jpeg", "image/png", "application/dicom"]
    width: int = Field(description="Width of the original image (after EXIF orientation)")
    height: int = Field(description="Height of the original image (after EXIF orientation)")
    size_bytes: int = Field(description="Size of the stored file in bytes")
    sha256: str = Field(description="Hex sha256 of the stored bytes (also the image's ETag)")
    frames: int | None = Field(
        None,
        description="DICOM only: the file's number of frames; only the first was classified",
    )


class ModelInfo(BaseModel):
    """The model that produced the result."""

    version: str = Field(description="sha256[:12] of the weights file", examples=["3f2a9c01b7de"])
    demo: bool = Field(description="True when untrained demo weights produced this result")
    backend: str = Field(description="Inference backend: onnx or torch", examples=["onnx"])


class Feedback(BaseModel):
    """The doctor's verdict on the prediction (PUT /history/{id}/feedback)."""

    verdict: Verdict
    correct_class: str | None = Field(None, description="The doctor's class when incorrect")
    comment: str | None = Field(None, description="Free text, up to 1000 characters")
    updated_at: AwareDatetime = Field(description="When the verdict was last set")


class QualityInfo(BaseModel):
    """The image-quality gate's verdict on the photograph (docs/quality-gate.md)."""

    gradable: bool = Field(description="False: the photograph cannot be graded; retake it")
    score: float = Field(
        ge=0, le=1, description="0..1; at least 0.5 exactly when gradable", examples=[0.93]
    )
    reasons: list[Reason] = Field(
        description="Why it is not gradable (empty when gradable): NO_FUNDUS, "
        "LOW_RESOLUTION, BLURRY, UNDEREXPOSED, OVEREXPOSED"
    )


class PredictionSummary(BaseModel):
    """A prediction as listed by GET /history (no image URL; a thumbnail URL)."""

    id: int = Field(description="Prediction id (path parameter of the history routes)")
    created_at: AwareDatetime = Field(description="When it was classified (ISO 8601, UTC)")
    patient_ref: str | None = Field(description="The clinic's patient reference, if sent")
    eye: Eye
    eye_source: Literal["request", "dicom"] = Field(
        "request",
        description="dicom: `eye` was taken from the DICOM file's Image Laterality "
        "(0020,0062) or Laterality (0020,0060), the request having given none",
    )
    laterality_conflict: bool = Field(
        False,
        description="True when the request's eye contradicts the DICOM file's laterality "
        "(the request's value is kept)",
    )
    image: ImageInfo
    result: ClassProbability = Field(description="The most probable class")
    probabilities: list[ClassProbability] = Field(description="Every class, in model order")
    model: ModelInfo
    inference_ms: float = Field(description="Model time for this image, in milliseconds")
    feedback: Feedback | None = Field(description="null until the doctor gives a verdict")
    quality: QualityInfo | None = Field(
        description="The quality gate's verdict; null on results made before the gate "
        "existed, or when the model's manifest turns the gate off"
    )
    recommendation: Recommendation | None = Field(
        description="What to do: refer, routine, inconclusive (the model is unsure) or "
        "retake_image (ungradable photograph); null on results made before it existed",
        examples=["routine"],
    )
    thumbnail_url: str = Field(
        description="Short-lived signed URL of a small JPEG of the image (at most 256 px on "
        "its longer side; usable in an <img> tag)"
    )
    thumbnail_url_expires_at: AwareDatetime = Field(description="When thumbnail_url stops working")


class Prediction(PredictionSummary):
    """One classified image: the result, every class's probability, the stored image's
    metadata and a short-lived URL to fetch it (usable in an <img> tag)."""

    image_url: str = Field(description="Short-lived URL of the stored image")
    image_url_expires_at: AwareDatetime = Field(description="When image_url stops working")


def summary_from_row(
    row: PredictionRow, label_for: LabelFor, thumbnail: tuple[str, datetime]
) -> PredictionSummary:
    """`thumbnail`: the signed thumbnail URL and its expiry (app.services.thumbnails)."""
    probabilities = [
        ClassProbability(class_code=code, label=label_for(code), probability=float(p))
        for code, p in zip(row.class_codes, row.probabilities, strict=True)
    ]
    top = next(p for p in probabilities if p.class_code == row.predicted_class)
    feedback = None
    if row.feedback_verdict is not None and row.feedback_updated_at is not None:
        feedback = Feedback(
            verdict=row.feedback_verdict,
            correct_class=row.feedback_correct_class,
            comment=row.feedback_comment,
            updated_at=row.feedback_updated_at,
        )
    quality = None
    if row.quality_gradable is not None and row.quality_score is not None:
        quality = QualityInfo(
            gradable=row.quality_gradable,
            score=row.quality_score,
            reasons=list(row.quality_reasons or []),
        )
    return PredictionSummary(
        id=row.id,
        created_at=row.created_at,
        patient_ref=row.patient_ref,
        eye=row.eye,
        eye_source=row.eye_source,
        laterality_conflict=row.laterality_conflict,
        image=ImageInfo(
            filename=row.original_filename,
            content_type=row.content_type,
            width=row.width,
            height=row.height,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            frames=row.frames,
        ),
        result=top,
        probabilities=probabilities,
        model=ModelInfo(version=row.model_version, demo=row.model_demo, backend=row.backend),
        inference_ms=row.inference_ms,
        feedback=feedback,
        quality=quality,
        recommendation=row.recommendation,
        thumbnail_url=thumbnail[0],
        thumbnail_url_expires_at=thumbnail[1],
    )


def detail_from_row(
    row: PredictionRow,
    label_for: LabelFor,
    image_url: str,
    expires_at: datetime,
    thumbnail: tuple[str, datetime],
) -> Prediction:
    summary = summary_from_row(row, label_for, thumbnail)
    return Prediction(**summary.model_dump(), image_url=image_url, image_url_expires_at=expires_at)


def label_lookup(manifest: ModelManifest, locale: str) -> LabelFor:
    """Class names in `locale`; a code the current manifest no longer has keeps its code."""

    def label_for(code: str) -> str:
        try:
            return manifest.label(code, locale)
        except KeyError:
            return code

    return label_for
