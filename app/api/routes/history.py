"""History: the doctor's own predictions (list, read, image, feedback, delete).

Owner-only: another user's id answers 404 NOT_FOUND exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import RedirectResponse

from app.api.deps import (
    MAX_ID,
    BaseUrl,
    ClassifierDep,
    CurrentUser,
    HistoryServiceDep,
    NowDep,
    OptionalUser,
    OwnedPrediction,
    PredictionId,
    PredictionImagesDep,
)
from app.api.errors import error_responses
from app.errors import (
    DatabaseUnavailable,
    InvalidClassCode,
    InvalidCorrectClass,
    ModelUnavailableError,
    ModelVersionGone,
    NotAuthenticated,
    NotFound,
    StorageUnavailableError,
    ValidationFailed,
)
from app.kit.etag import etag_matches
from app.schemas.history import CLASS_CODE_PATTERN, FeedbackIn, HistoryQuery, PredictionPage
from app.schemas.prediction import Prediction
from app.services.images import ImageRedirect

router = APIRouter(prefix="/history", tags=["history"])

_IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image bytes (local store), with ETag and Cache-Control: private",
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    307: {"description": "Redirect to a short-lived presigned URL (S3 store)"},
    **error_responses(
        NotAuthenticated, NotFound, ValidationFailed, StorageUnavailableError, DatabaseUnavailable
    ),
}


# --------------------------------------------------------------------------- routes


@router.get(
    "",
    response_model=PredictionPage,
    responses=error_responses(NotAuthenticated, ValidationFailed),
    summary="List my predictions",
    description=(
        "Filters compose (AND). Sorted by `sort` then id, so pages are stable. A page past "
        "the end is an empty page with the right total. Items carry no image URL and no "
        "image bytes: GET /history/{id} for that."
    ),
)
async def list(  # the operation id is history-list
    user: CurrentUser,
    service: HistoryServiceDep,
    query: Annotated[HistoryQuery, Query()],
    url: BaseUrl,
    now: NowDep,
) -> PredictionPage:
    return await service.page(user, query, url, now)


@router.get(
    "/{id}",
    response_model=Prediction,
    responses=error_responses(
        NotAuthenticated, NotFound, ValidationFailed, StorageUnavailableError, DatabaseUnavailable
    ),
    summary="One of my predictions, with a fresh image URL",
)
async def read(
    id: PredictionId,  # the path parameter is {id}; the row comes owner-checked
    row: OwnedPrediction,
    user: CurrentUser,
    service: HistoryServiceDep,
    url: BaseUrl,
    now: NowDep,
) -> Prediction:
    return await service.read(row, user, url, now)


@router.get(
    "/{id}/image",
    response_class=Response,
    responses=_IMAGE_RESPONSES,
    summary="The stored image",
    description=(
        "Authorized by the owner's bearer token, or without one by the `expires` and "
        "`signature` of the image_url that GET /history/{id} returned (an <img> tag cannot "
        "send a header). S3 store: 307 to a presigned URL. Local store: the bytes with the "
        "stored content type (application/dicom for a DICOM upload, byte for byte), ETag "
        "(sha256) and Cache-Control: private. `format=png`: a PNG rendered from the stored "
        "image (a DICOM's first frame), served by the API on either store; `format=thumb` "
        "likewise a small JPEG (the list's thumbnail_url). A wrong, expired "
        "or foreign signature, or another user's id, is 404."
    ),
)
async def image(
    id: PredictionId,
    images: PredictionImagesDep,
    user: OptionalUser,
    now: NowDep,
    expires: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="From image_url (unix seconds)")
    ] = None,
    signature: Annotated[str | None, Query(max_length=128, description="From image_url")] = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
    image_format: Annotated[
        Literal["original", "png", "thumb"],
        Query(
            alias="format",
            description="png: a rendered PNG preview (for a DICOM in a browser); thumb: a "
            "JPEG at most 256 px on its longer side (made on first request, then cached)",
        ),
    ] = "original",
) -> Response:
    if user is None and (expires is None or signature is None):
        raise NotAuthenticated()
    result = await images.image(
        id,
        user,
        expires=expires,
        signature=signature,
        now=now,
        preview=image_format == "png",
        thumb=image_format == "thumb",
    )
    if isinstance(result, ImageRedirect):
        return RedirectResponse(
            result.url,
            status_code=status.HTTP_307_TEMPORARY_REDIRECT,
            headers={"Cache-Control": "no-store"},
        )
    headers = {
        "ETag": result.etag,
        "Cache-Control": f"private, max-age={result.max_age}",
        "Vary": "Authorization",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(if_none_match, result.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    data, content_type = await result.load()
    return Response(content=data, media_type=content_type, headers=headers)


@router.get(
    "/{id}/heatmap",
    response_class=Response,
    responses={
        200: {
            "description": "The photograph (longest side at most 512 px) with the Grad-CAM "
            "heatmap of the class blended over it",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(
            NotAuthenticated,
            NotFound,
            ModelVersionGone,
            InvalidClassCode,
            ValidationFailed,
            ModelUnavailableError,
            StorageUnavailableError,
            DatabaseUnavailable,
        ),
    },
    summary="Where the model looked: a Grad-CAM heatmap over the photograph",
    description=(
        "Gradients of the class logit at the network's last convolutional block "
        "(Grad-CAM), computed on first request with the running model and cached beside "
        "the image. 409 MODEL_VERSION_GONE when the running model is not the one that made "
        "the prediction; 422 INVALID_CLASS_CODE for a class the prediction does not have."
    ),
)
async def heatmap(
    id: PredictionId,
    row: OwnedPrediction,
    user: CurrentUser,
    images: PredictionImagesDep,
    classifier: ClassifierDep,
    class_code: Annotated[
        str | None,
        Query(pattern=CLASS_CODE_PATTERN, description="Class code (default: the predicted one)"),
    ] = None,
) -> Response:
    png = await images.heatmap(row, user, class_code, classifier)
    headers = {"Cache-Control": "private, no-store"}  # patient data: kept in no cache
    return Response(content=png, media_type="image/png", headers=headers)


@router.put(
    "/{id}/feedback",
    response_model=Prediction,
    responses=error_responses(
        NotAuthenticated,
        NotFound,
        ValidationFailed,
        InvalidCorrectClass,
        StorageUnavailableError,
        DatabaseUnavailable,
    ),
    summary="Confirm or correct a prediction",
    description=(
        "verdict correct or incorrect; correct_class (a class code of the model, different "
        "from the predicted one) only with incorrect; comment up to 1000 characters. May be "
        "sent again to change it (feedback.updated_at moves). 422 VALIDATION_ERROR for a "
        "malformed body (including correct_class with verdict correct); 422 "
        "INVALID_CORRECT_CLASS for an unknown class code or one equal to the predicted class."
    ),
)
async def set_feedback(
    id: PredictionId,
    row: OwnedPrediction,
    body: FeedbackIn,
    user: CurrentUser,
    service: HistoryServiceDep,
    url: BaseUrl,
    now: NowDep,
) -> Prediction:
    return await service.set_feedback(row, user, body, url, now)


@router.delete(
    "/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(NotAuthenticated, NotFound, ValidationFailed),
    summary="Delete a prediction and its stored image",
)
async def delete(
    id: PredictionId,
    row: OwnedPrediction,
    user: CurrentUser,
    service: HistoryServiceDep,
) -> Response:
    await service.delete(row, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
