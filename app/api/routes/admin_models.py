"""Model registry (admin role): register validated weights, list, read, activate (and roll
back), retire, shadow, and per-version metrics from the doctors' feedback."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.api.deps import AdminUser, RegistryDep, SettingsDep
from app.api.errors import error_responses
from app.errors import (
    DatabaseUnavailable,
    FileTooLarge,
    Forbidden,
    GatesNotMet,
    InvalidModel,
    ModelActive,
    ModelExists,
    ModelNotStaged,
    ModelRetired,
    ModelUnavailableError,
    NotAuthenticated,
    NotFound,
    RegistryBusy,
    ShadowInsufficient,
    StorageUnavailableError,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.schemas.admin_models import (
    ClassMetrics,
    MetricsQuery,
    MetricsRange,
    ModelConfusionCell,
    ModelMetrics,
    ModelVersion,
    RegisterFromS3,
    ReliabilityBin,
    ShadowIn,
    ShadowMetrics,
)

router = APIRouter(prefix="/admin/models", tags=["admin"])

Version = Annotated[
    str, Path(pattern=r"^[0-9a-f]{12}$", description="The version: sha256[:12] of the weights")
]


_ADMIN = (NotAuthenticated, Forbidden)

_REGISTER_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["weights"],
                "properties": {
                    "weights": {
                        "type": "string",
                        "format": "binary",
                        "description": "A .pth state dict of EyeDiseaseClassifier",
                    },
                    "manifest": {
                        "type": "string",
                        "format": "binary",
                        "description": "The model manifest JSON (default: the four classes)",
                    },
                },
            }
        },
        "application/json": {"schema": RegisterFromS3.model_json_schema()},
    },
}


def _missing(field: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "missing", "loc": ("body", field), "msg": "Field required"}]
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelVersion,
    responses=error_responses(
        *_ADMIN,
        ModelExists,
        FileTooLarge,
        UnsupportedMediaType,
        InvalidModel,
        ValidationFailed,
        StorageUnavailableError,
        DatabaseUnavailable,
    ),
    openapi_extra={"requestBody": _REGISTER_BODY},
    summary="Register model weights (validated)",
    description=(
        "Multipart `weights` (.pth) with an optional `manifest` (JSON file), or JSON "
        '{"source": "s3://bucket/key"} (the manifest is key.json beside it, if present). '
        "Accepted only after a strict load into the network, an ONNX export, torch/ONNX "
        "parity within 1e-4 on a fixed probe batch and one smoke prediction; the files are "
        "kept in the image store under models/. The new version is staged. Errors: 422 "
        "INVALID_MODEL (the reason in detail), 409 MODEL_EXISTS, 413 FILE_TOO_LARGE, 415 "
        "UNSUPPORTED_MEDIA_TYPE."
    ),
)
async def register_model(
    request: Request, admin: AdminUser, service: RegistryDep, settings: SettingsDep
) -> ModelVersion:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        limit = settings.model_max_upload_mb * 1024 * 1024
        async with request.form(max_files=2, max_fields=2) as form:
            weights = form.get("weights")
            manifest = form.get("manifest")
            if not isinstance(weights, UploadFile):
                raise _missing("weights")
            data = await weights.read(limit + 1)
            if isinstance(manifest, UploadFile):
                manifest_raw: bytes | None = await manifest.read(1024 * 1024)
            elif isinstance(manifest, str):
                manifest_raw = manifest.encode()
            else:
                manifest_raw = None
        row = await service.register_upload(data, manifest_raw, admin)
    elif content_type == "application/json":
        try:
            body = RegisterFromS3.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        row = await service.register_s3(body.source, admin)
    else:
        raise UnsupportedMediaType(
            "Send multipart/form-data (weights, manifest) or application/json ({source})"
        )
    return ModelVersion.model_validate(row, from_attributes=True)


@router.get(
    "",
    response_model=list[ModelVersion],
    responses=error_responses(*_ADMIN),
    summary="List model versions (newest first)",
)
async def list_models(_: AdminUser, service: RegistryDep) -> list[ModelVersion]:
    return [ModelVersion.model_validate(r, from_attributes=True) for r in await service.list()]


@router.get(
    "/{version}",
    response_model=ModelVersion,
    responses=error_responses(*_ADMIN, NotFound, ValidationFailed),
    summary="Read a model version",
)
async def read_model(version: Version, _: AdminUser, service: RegistryDep) -> ModelVersion:
    return ModelVersion.model_validate(await service.read(version), from_attributes=True)


@router.post(
    "/{version}/activate",
    response_model=ModelVersion,
    responses=error_responses(
        *_ADMIN,
        NotFound,
        ModelRetired,
        GatesNotMet,
        ShadowInsufficient,
        RegistryBusy,
        ValidationFailed,
        ModelUnavailableError,
        DatabaseUnavailable,
    ),
    summary="Make a version the one every process serves (also the rollback)",
    description=(
        "This process builds and warms the version's classifier while the old one keeps "
        "serving, records the change, then swaps; requests already running finish on the "
        "old one. Every other process follows within MODEL_POLL_SECONDS plus its own build "
        "time. Activating an older version is the rollback. A version made by a training "
        "job must have passed its recipe's gates (else 409 GATES_NOT_MET) and run in shadow "
        "on the recipe's minimum of live cases (else 409 SHADOW_INSUFFICIENT). Errors: 409 "
        "MODEL_RETIRED, 409 REGISTRY_BUSY (a concurrent change; try again), 503 "
        "MODEL_UNAVAILABLE (the weights could not be loaded; nothing changed)."
    ),
)
async def activate_model(version: Version, admin: AdminUser, service: RegistryDep) -> ModelVersion:
    row = await service.activate(version, admin)
    return ModelVersion.model_validate(row, from_attributes=True)


@router.post(
    "/{version}/retire",
    response_model=ModelVersion,
    responses=error_responses(*_ADMIN, NotFound, ModelActive, RegistryBusy, ValidationFailed),
    summary="Retire a version (not the active one)",
    description="Errors: 409 MODEL_ACTIVE (activate another version first), 409 REGISTRY_BUSY.",
)
async def retire_model(version: Version, admin: AdminUser, service: RegistryDep) -> ModelVersion:
    row = await service.retire(version, admin)
    return ModelVersion.model_validate(row, from_attributes=True)


@router.put(
    "/{version}/shadow",
    response_model=ModelVersion,
    responses=error_responses(*_ADMIN, NotFound, ModelNotStaged, RegistryBusy, ValidationFailed),
    summary="Run a staged version in shadow at a sampling rate",
    description=(
        "A share `rate` of live uploads is also classified by this version after the "
        "response has been sent; its outputs are stored apart and never change the answer. "
        "One version runs in shadow at a time (setting one replaces the other); rate 0 "
        "stops it. Errors: 409 MODEL_NOT_STAGED, 409 REGISTRY_BUSY."
    ),
)
async def shadow_model(
    version: Version, body: ShadowIn, _: AdminUser, service: RegistryDep
) -> ModelVersion:
    row = await service.set_shadow(version, body.rate)
    return ModelVersion.model_validate(row, from_attributes=True)


@router.get(
    "/{version}/metrics",
    response_model=ModelMetrics,
    responses=error_responses(*_ADMIN, NotFound, ValidationFailed),
    summary="Accuracy of a version from the doctors' feedback",
    description=(
        "Over the version's predictions created in the range: counts, accuracy with a 95% "
        "Wilson interval, per-class precision/recall/support, the confusion matrix "
        "(predicted x confirmed), the expected calibration error over 10 bins, and, if it "
        "ran in shadow, its agreement with the served version and its accuracy on the same "
        "images."
    ),
)
async def model_metrics(
    version: Version,
    query: Annotated[MetricsQuery, Query()],
    _: AdminUser,
    service: RegistryDep,
) -> ModelMetrics:
    row, m, shadow, start, end = await service.metrics(version, query)
    return ModelMetrics(
        version=row.version,
        range=MetricsRange(start=start, end=end),
        predictions=m.predictions,
        with_feedback=m.with_feedback,
        correct=m.correct,
        accuracy=m.accuracy,
        accuracy_ci95=list(m.accuracy_ci95) if m.accuracy_ci95 else None,
        per_class={
            code: ClassMetrics(precision=c.precision, recall=c.recall, support=c.support)
            for code, c in m.per_class.items()
        },
        confusion=[
            ModelConfusionCell(predicted=p, confirmed=c, count=n) for p, c, n in m.confusion
        ],
        ece=m.ece,
        reliability=[
            ReliabilityBin(
                low=b.low,
                high=b.high,
                count=b.count,
                confidence=b.confidence,
                accuracy=b.accuracy,
            )
            for b in m.reliability
        ],
        shadow=(
            ShadowMetrics(
                compared=shadow.compared,
                agreement=shadow.agreement,
                accuracy=shadow.accuracy,
                judged=shadow.judged,
            )
            if shadow
            else None
        ),
    )
