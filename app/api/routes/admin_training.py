"""Learning loop training (admin role): recipes, training jobs (create, list, read,
cancel) and a trained version's evaluation. Logic lives in app.training.jobs; the work
is done by `ocupredict train-worker`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from app.api.deps import AdminUser, SessionDep, SettingsDep
from app.api.errors import error_responses
from app.errors import (
    DatasetOverlap,
    Forbidden,
    ModelRetired,
    NotAuthenticated,
    NotFound,
    TrainingJobFinished,
    UnknownRecipe,
    ValidationFailed,
)
from app.schemas.admin_training import (
    Evaluation,
    Recipe,
    TrainingJob,
    TrainingJobCreate,
    TrainingJobListQuery,
)
from app.training.jobs import TrainingJobService

router = APIRouter(prefix="/admin", tags=["admin"])
_ADMIN = (NotAuthenticated, Forbidden)
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Version = Annotated[
    str, Path(pattern=r"^[0-9a-f]{12}$", description="The version: sha256[:12] of the weights")
]


async def get_training_service(session: SessionDep, settings: SettingsDep) -> TrainingJobService:
    return TrainingJobService(session, settings)


TrainingDep = Annotated[TrainingJobService, Depends(get_training_service)]


def _job(row: object) -> TrainingJob:
    return TrainingJob.model_validate(row, from_attributes=True)


@router.get(
    "/recipes",
    response_model=list[Recipe],
    responses=error_responses(*_ADMIN),
    summary="The allow-listed training recipes",
    description="The valid YAML files of TRAINING_RECIPES_DIR (the repository's recipes/), "
    "each with its version and the file's sha256. A job may use nothing else.",
)
async def list_recipes(_: AdminUser, service: TrainingDep) -> list[Recipe]:
    return [Recipe(**r.body, sha256=r.sha256) for r in service.recipes()]


@router.post(
    "/training-jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TrainingJob,
    responses=error_responses(
        *_ADMIN, NotFound, DatasetOverlap, ModelRetired, UnknownRecipe, ValidationFailed
    ),
    summary="Queue a fine-tune of a registered version",
    description=(
        "From base_version (default: the active one), on a train dataset, judged on a "
        "locked test set, with an allow-listed recipe. `ocupredict train-worker` does the "
        "work and registers the candidate staged with its evaluation. Errors: 409 "
        "DATASET_OVERLAP (the training set shares images or patients with the test set), "
        "422 UNKNOWN_RECIPE, 422 VALIDATION_ERROR (wrong dataset kinds, labels that are "
        "not classes of the base version), 409 MODEL_RETIRED."
    ),
)
async def create_training_job(
    body: TrainingJobCreate, admin: AdminUser, service: TrainingDep
) -> TrainingJob:
    row = await service.create(
        base_version=body.base_version,
        train_dataset_id=body.train_dataset_id,
        test_dataset_id=body.test_dataset_id,
        recipe_name=body.recipe,
        user=admin,
    )
    return _job(row)


@router.get(
    "/training-jobs",
    response_model=list[TrainingJob],
    responses=error_responses(*_ADMIN, ValidationFailed),
    summary="List training jobs (newest first)",
)
async def list_training_jobs(
    _: AdminUser, service: TrainingDep, query: Annotated[TrainingJobListQuery, Query()]
) -> list[TrainingJob]:
    return [_job(r) for r in await service.list(query.status)]


@router.get(
    "/training-jobs/{job_id}",
    response_model=TrainingJob,
    responses=error_responses(*_ADMIN, NotFound, ValidationFailed),
    summary="Read a training job and its progress",
)
async def read_training_job(job_id: JobId, _: AdminUser, service: TrainingDep) -> TrainingJob:
    return _job(await service.read(job_id))


@router.post(
    "/training-jobs/{job_id}/cancel",
    response_model=TrainingJob,
    responses=error_responses(*_ADMIN, NotFound, TrainingJobFinished, ValidationFailed),
    summary="Cancel a training job",
    description="A queued job is cancelled at once; a running one stops before its next "
    "batch (`cancel_requested` until the worker has stopped). Errors: 409 "
    "TRAINING_JOB_FINISHED.",
)
async def cancel_training_job(job_id: JobId, admin: AdminUser, service: TrainingDep) -> TrainingJob:
    return _job(await service.cancel(job_id, admin))


@router.get(
    "/models/{version}/evaluation",
    response_model=Evaluation,
    responses=error_responses(*_ADMIN, NotFound, ValidationFailed),
    summary="A trained version against its parent on the locked test set, with its gates",
)
async def model_evaluation(version: Version, _: AdminUser, service: TrainingDep) -> Evaluation:
    row = await service.evaluation(version)
    return Evaluation.model_validate(
        {
            **row.result,
            "id": row.id,
            "version": row.version,
            "parent_version": row.parent_version,
            "test_dataset_id": row.test_dataset_id,
            "job_id": row.job_id,
            "passed": row.passed,
            "min_shadow_cases": row.min_shadow_cases,
            "created_at": row.created_at,
        }
    )
