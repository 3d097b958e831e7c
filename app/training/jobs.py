"""Training jobs as the admin sees them: create (checked), list, read, cancel; recipes;
a version's evaluation. The work itself is done by `ocupredict train-worker`
(app/training/worker.py)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.base import utcnow
from app.db.learning import Dataset, ModelEvaluation, TrainingJob
from app.db.models import User
from app.errors import (
    DatasetOverlap,
    ModelRetired,
    ModelUnavailableError,
    NotFound,
    TrainingJobFinished,
    UnknownRecipe,
    ValidationFailed,
)
from app.repositories.datasets import DatasetRepository
from app.repositories.model_versions import ModelRepository
from app.repositories.training_jobs import FINISHED, TrainingJobRepository
from app.services import audit
from app.training.recipes import LoadedRecipe, UnknownRecipeError, get_recipe, load_recipes

log = logging.getLogger(__name__)


class TrainingJobService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.repo = TrainingJobRepository(session)
        self.datasets = DatasetRepository(session)
        self.models = ModelRepository(session)

    def recipes(self) -> list[LoadedRecipe]:
        return sorted(
            load_recipes(self.settings.training_recipes_dir).values(),
            key=lambda r: r.recipe.name,
        )

    async def list(self, status: str | None = None) -> list[TrainingJob]:
        return list(await self.repo.all(status))

    async def read(self, job_id: int) -> TrainingJob:
        row = await self.repo.get(job_id)
        if row is None:
            raise NotFound("No such training job")
        return row

    async def evaluation(self, version: str) -> ModelEvaluation:
        if await self.models.get(version) is None:
            raise NotFound("No such model version")
        row = await self.repo.latest_evaluation(version)
        if row is None:
            raise NotFound("This version has no evaluation (it was not made by a training job)")
        return row

    async def _dataset(self, dataset_id: int, kind: str, field: str) -> Dataset:
        row = await self.datasets.get(dataset_id)
        if row is None:
            raise NotFound(f"No such dataset ({field})")
        if row.kind != kind:
            raise ValidationFailed(
                f"{field} must name a {kind} dataset; dataset {row.id} is a {row.kind} set"
            )
        return row

    async def create(
        self,
        *,
        base_version: str | None,
        train_dataset_id: int,
        test_dataset_id: int,
        recipe_name: str,
        user: User,
    ) -> TrainingJob:
        try:
            loaded = get_recipe(self.settings.training_recipes_dir, recipe_name)
        except UnknownRecipeError:
            raise UnknownRecipe(f"No such training recipe: {recipe_name!r}") from None
        if base_version is None:
            pointer = await self.models.pointer()
            if pointer is None:  # pragma: no cover - the lifespan initializes the registry
                raise ModelUnavailableError("The model registry is not initialized")
            base_version = pointer.active_version
        base = await self.models.get(base_version)
        if base is None:
            raise NotFound("No such model version (base_version)")
        if base.status == "retired":
            raise ModelRetired("A retired version cannot be the base of a training job")
        train = await self._dataset(train_dataset_id, "train", "train_dataset_id")
        test = await self._dataset(test_dataset_id, "test", "test_dataset_id")
        codes = {c["code"] for c in base.manifest.get("classes", [])}
        unknown = sorted((set(train.by_class) | set(test.by_class)) - codes)
        if unknown:
            raise ValidationFailed(
                f"the datasets have labels that are not classes of version {base_version}: "
                f"{unknown}"
            )
        images, patients = await self.datasets.overlap(train.id, test.id)
        if images or patients:
            raise DatasetOverlap(
                f"The training set shares {images} images and {patients} patients with "
                "the test set; a test set must be independent of what is trained on"
            )
        recipe = loaded.recipe
        job = TrainingJob(
            status="queued",
            base_version=base_version,
            train_dataset_id=train.id,
            test_dataset_id=test.id,
            recipe=recipe.name,
            recipe_version=recipe.version,
            recipe_sha256=loaded.sha256,
            recipe_body=loaded.body,
            seed=recipe.seed,
            created_at=utcnow().replace(microsecond=0),  # as the column gives it back
            created_by=user.id,
            attempts=0,
            cancel_requested=False,
        )
        await self.repo.add(job)
        await audit.record(
            self.session,
            "training.start",
            actor=user,
            target=("training_job", job.id),
            new={
                "base_version": base_version,
                "train_dataset": {"id": train.id, "sha256": train.sha256},
                "test_dataset": {"id": test.id, "sha256": test.sha256},
                "recipe": recipe.name,
                "recipe_version": recipe.version,
                "recipe_sha256": loaded.sha256,
                "seed": recipe.seed,
            },
        )
        await self.session.commit()
        log.info("training job %s queued by user %s (%s)", job.id, user.id, recipe.name)
        return job

    async def cancel(self, job_id: int, user: User) -> TrainingJob:
        job = await self.read(job_id)
        if job.status in FINISHED:
            raise TrainingJobFinished(f"The training job has finished already ({job.status})")
        before = job.status
        now = utcnow()
        if not (
            await self.repo.cancel_queued(job.id, now) or await self.repo.request_cancel(job.id)
        ):
            await self.session.rollback()  # it finished meanwhile
            raise TrainingJobFinished()
        await audit.record(
            self.session,
            "training.cancel",
            actor=user,
            target=("training_job", job.id),
            old={"status": before},
            new={"cancel_requested": True},
        )
        await self.session.commit()
        self.session.expire_all()
        return await self.read(job_id)
