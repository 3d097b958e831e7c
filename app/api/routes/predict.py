"""POST /predict: upload an eye photograph, get the classification (201 Prediction)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, UploadFile, status
from fastapi.responses import JSONResponse

from app.api.deps import (
    BaseUrl,
    CurrentUser,
    PredictionServiceDep,
    ServingModelDep,
    SettingsDep,
    upload_slot,
)
from app.api.errors import error_responses
from app.errors import (
    DatabaseUnavailable,
    FileTooLarge,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidImage,
    ModelUnavailableError,
    NotAuthenticated,
    ShuttingDown,
    StorageUnavailableError,
    UnsupportedDicom,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.schemas.prediction import Prediction
from app.services.prediction import Upload

router = APIRouter(prefix="/predict", tags=["predict"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Prediction,
    responses={
        200: {
            "model": Prediction,
            "description": "A repeat of an earlier request with the same Idempotency-Key: "
            "its prediction, with the header Idempotent-Replayed: true",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "true: this is the earlier request's prediction",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
        **error_responses(
            NotAuthenticated,
            FileTooLarge,
            UnsupportedMediaType,
            UnsupportedDicom,
            InvalidImage,
            ValidationFailed,
            IdempotencyKeyReused,
            IdempotencyKeyInUse,
            ModelUnavailableError,
            StorageUnavailableError,
            DatabaseUnavailable,
            ShuttingDown,
        ),
    },
    dependencies=[Depends(upload_slot)],
    summary="Classify an eye photograph",
    description=(
        "Multipart upload of a JPEG, PNG or DICOM Part 10 file (decided from the bytes), at "
        "least 64x64, at most MAX_UPLOAD_MB (15 MB) and MAX_IMAGE_PIXELS (50 MP); EXIF "
        "orientation is applied. DICOM: Ophthalmic Photography 8 Bit, VL Photographic or "
        "secondary capture, uncompressed (little endian) or JPEG baseline, RGB, YBR_FULL(_422) "
        "or monochrome; a multi-frame file is classified on its first frame (`image.frames`). "
        "Its Image Laterality fills an `eye` the request left unknown (`eye_source: dicom`); "
        "a request eye that contradicts it is kept and `laterality_conflict` is true. The "
        "file is stored byte for byte; no patient name, id or birth date is kept from it. "
        "The image is stored only after it has been validated and classified. "
        "Errors: 413 FILE_TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE, 415 UNSUPPORTED_DICOM (a "
        "DICOM that is not such a photograph: other SOP class, transfer syntax, no pixel "
        "data), 422 INVALID_IMAGE (also a truncated or oversized DICOM), "
        "503 MODEL_UNAVAILABLE, STORAGE_UNAVAILABLE, DATABASE_UNAVAILABLE or SHUTTING_DOWN "
        "(the process is draining; nothing was stored). "
        "Idempotency-Key (1-255 visible ASCII characters, e.g. a UUID): a retry with the "
        "same key and the same file within IDEMPOTENCY_TTL_HOURS (24) returns the first "
        "prediction (200, Idempotent-Replayed: true; no second record or image), even when "
        "the two requests race; the same key with another file is 422 "
        "IDEMPOTENCY_KEY_REUSED; 409 IDEMPOTENCY_KEY_IN_USE if the first is still at work "
        "after IDEMPOTENCY_WAIT_SECONDS. Keys are per user."
    ),
)
async def create(
    base_url: BaseUrl,
    user: CurrentUser,
    service: PredictionServiceDep,
    model: ServingModelDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The eye photograph (JPEG, PNG or DICOM)")],
    patient_ref: Annotated[
        str | None,
        Form(max_length=64, description="The clinic's reference for the patient (no PHI)"),
    ] = None,
    eye: Annotated[Literal["left", "right", "unknown"], Form()] = "unknown",
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Makes a retry safe: the same key returns the first prediction",
        ),
    ] = None,
) -> Any:
    data = await file.read(settings.max_upload_bytes + 1)
    upload = Upload(
        data=data,
        filename=file.filename,
        patient_ref=(patient_ref or "").strip() or None,
        eye=eye,
    )
    prediction, replayed = await service.create(upload, user, model, base_url, idempotency_key)
    if replayed:
        return JSONResponse(
            prediction.model_dump(mode="json"),
            status_code=status.HTTP_200_OK,
            headers={"Idempotent-Replayed": "true"},
        )
    return prediction
