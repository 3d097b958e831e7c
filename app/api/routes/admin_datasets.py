"""Learning loop datasets (admin role): snapshot the doctors' feedback, list, read, and
export the items as CSV. Logic lives in app.training.datasets and, for the CSV,
app.training.dataset_export."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.responses import StreamingResponse

from app.api.deps import AdminUser, SessionDep, SessionFactoryDep, SettingsDep, StorageDep
from app.api.errors import error_responses
from app.errors import (
    DatabaseUnavailable,
    Forbidden,
    NotAuthenticated,
    NotFound,
    StorageUnavailableError,
    ValidationFailed,
)
from app.schemas.admin_datasets import Dataset, DatasetCreate, DatasetListQuery
from app.training.dataset_export import export_csv
from app.training.datasets import DatasetService

router = APIRouter(prefix="/admin/datasets", tags=["admin"])
_ADMIN = (NotAuthenticated, Forbidden)
DatasetId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def get_dataset_service(
    session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> DatasetService:
    return DatasetService(session, settings, storage)


DatasetServiceDep = Annotated[DatasetService, Depends(get_dataset_service)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Dataset,
    responses=error_responses(
        *_ADMIN, ValidationFailed, StorageUnavailableError, DatabaseUnavailable
    ),
    summary="Snapshot the doctors' feedback as a dataset",
    description=(
        "Predictions created and labelled by the cut-off (`date_to`, default now): "
        "label = the predicted class when confirmed, the corrected class when corrected. "
        "Left out (counted in `excluded`): incorrect without a class, ungradable images, "
        "labels given after the cut-off, second copies of an image. Labels and images are "
        "copied, so later feedback or deletions do not change the dataset. Splits come "
        "from a hash of patient_ref (of the image when absent). A test set is locked."
    ),
)
async def create_dataset(
    body: DatasetCreate, admin: AdminUser, service: DatasetServiceDep
) -> Dataset:
    row = await service.create_from_feedback(
        name=body.name,
        kind=body.kind,
        date_from=body.date_from,
        date_to=body.date_to,
        tz_name=body.tz,
        user=admin,
    )
    return Dataset.model_validate(row, from_attributes=True)


@router.get(
    "",
    response_model=list[Dataset],
    responses=error_responses(*_ADMIN, ValidationFailed),
    summary="List datasets (newest first)",
)
async def list_datasets(
    _: AdminUser, service: DatasetServiceDep, query: Annotated[DatasetListQuery, Query()]
) -> list[Dataset]:
    return [Dataset.model_validate(r, from_attributes=True) for r in await service.list(query.kind)]


@router.get(
    "/{dataset_id}",
    response_model=Dataset,
    responses=error_responses(*_ADMIN, NotFound, ValidationFailed),
    summary="Read a dataset",
)
async def read_dataset(dataset_id: DatasetId, _: AdminUser, service: DatasetServiceDep) -> Dataset:
    return Dataset.model_validate(await service.read(dataset_id), from_attributes=True)


_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "CSV (header row, then one row per item in manifest order), streamed",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    **error_responses(*_ADMIN, NotFound, ValidationFailed),
}


@router.get(
    "/{dataset_id}/items.csv",
    response_class=StreamingResponse,
    responses=_CSV_RESPONSE,
    summary="Export a dataset's items as CSV",
    description="Every cell is quoted; cells a spreadsheet would run as a formula are "
    "prefixed with a quote (OWASP CSV injection).",
)
async def export_dataset(
    dataset_id: DatasetId,
    _: AdminUser,
    service: DatasetServiceDep,
    sessions: SessionFactoryDep,
) -> StreamingResponse:
    row = await service.read(dataset_id)
    return StreamingResponse(
        export_csv(sessions, row.id),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="dataset-{row.id}-items.csv"',
            "Cache-Control": "no-store",
        },
    )
