"""A trained candidate joins the model registry: the registry's own validation (strict
load, ONNX export, torch/ONNX parity, smoke prediction), its files in the image store,
the version row staged with its lineage, and its evaluation."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.base import utcnow
from app.db.learning import ModelEvaluation, TrainingJob
from app.db.models import ModelVersion
from app.inference.manifest import ModelManifest
from app.registry.validation import validate_model
from app.repositories.model_versions import ModelRepository
from app.repositories.training_jobs import TrainingJobRepository
from app.services import audit
from app.storage import ImageStore, model_key

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent.parent


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, with the git commit when the code runs from a checkout
    (OCUPREDICT_CODE_VERSION overrides, e.g. set by an image build)."""
    explicit = os.environ.get("OCUPREDICT_CODE_VERSION")
    if explicit:
        return explicit[:64]
    try:
        version = metadata.version("ocupredict")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{commit}" if commit else version


async def register_candidate(
    session: AsyncSession,
    settings: Settings,
    storage: ImageStore,
    *,
    job: TrainingJob,
    weights: bytes,
    manifest: ModelManifest,
    evaluation: dict[str, Any],
    min_shadow_cases: int,
    train_sha256: str,
    test_sha256: str,
) -> tuple[str, int]:
    """Validate and store the candidate, insert its evaluation and its staged version row
    (or find the identical version registered by an earlier job), record model.register;
    the caller commits. Returns (version, evaluation id). InvalidModel when validation
    refuses the weights."""
    validated = await asyncio.to_thread(
        validate_model,
        weights,
        manifest,
        cache_dir=settings.model_cache_dir,
        max_pixels=settings.max_image_pixels,
    )
    version = validated.version
    manifest_json = manifest.model_dump(mode="json")
    models = ModelRepository(session)
    existing = await models.get(version)
    if existing is None:
        await storage.put(model_key(version, "pth"), weights, "application/octet-stream")
        await storage.put(
            model_key(version, "json"), json.dumps(manifest_json).encode(), "application/json"
        )
    row = ModelEvaluation(
        version=version,
        parent_version=job.base_version,
        test_dataset_id=job.test_dataset_id,
        job_id=job.id,
        passed=bool(evaluation["passed"]),
        min_shadow_cases=min_shadow_cases,
        result={**evaluation, "test_dataset_sha256": test_sha256},
        created_at=utcnow(),
    )
    await TrainingJobRepository(session).add_evaluation(row)
    if existing is None:
        await models.add(
            ModelVersion(
                version=version,
                sha256=validated.sha256,
                source=f"training_job:{job.id}",
                storage_key=model_key(version, "pth"),
                manifest=manifest_json,
                demo=False,
                status="staged",
                shadow_rate=0.0,
                created_at=utcnow(),
                created_by=job.created_by,
                activated_at=None,
                lineage={
                    "parent_version": job.base_version,
                    "train_dataset_sha256": train_sha256,
                    "test_dataset_sha256": test_sha256,
                    "recipe": job.recipe,
                    "recipe_version": job.recipe_version,
                    "recipe_sha256": job.recipe_sha256,
                    "seed": job.seed,
                    "code_version": code_version(),
                    "evaluation_id": row.id,
                    "training_job_id": job.id,
                },
            )
        )
        await audit.record(
            session,
            "model.register",
            actor=job.created_by,
            target=("model", version),
            new={"source": f"training_job:{job.id}", "status": "staged"},
        )
    else:
        log.info("training job %s made version %s again (already registered)", job.id, version)
    return version, row.id
