"""Request and response models of the learning loop's training routes (admin role)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.schemas.recipes import Recipe as RecipeBody

TrainingStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class TrainingJobCreate(BaseModel):
    """Fine-tune a candidate from a registered version with an allow-listed recipe."""

    model_config = ConfigDict(extra="forbid")

    base_version: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{12}$",
        description="The version to start from (default: the active one)",
    )
    train_dataset_id: int = Field(ge=1, le=2**63 - 1, description="A dataset of kind train")
    test_dataset_id: int = Field(ge=1, le=2**63 - 1, description="A locked test set")
    recipe: str = Field(
        min_length=1, max_length=64, description="A recipe's name (GET /admin/recipes)"
    )


class TrainingJobListQuery(BaseModel):
    status: TrainingStatus | None = None


class TrainingProgress(BaseModel):
    """Where a running job is; the numbers of the last finished batch and epoch."""

    phase: Literal["loading", "training", "calibrating", "evaluating", "registering", "done"]
    epoch: int = Field(description="The epoch under way (1-based); 0 before the first")
    epochs: int = Field(description="The recipe's maximum number of epochs")
    step: int = Field(description="Batches done in this epoch")
    steps: int = Field(description="Batches per epoch")
    batches_done: int = Field(description="Batches done by this job, all epochs")
    loss: float | None = Field(description="Training loss of the last batch")
    val_loss: float | None = Field(description="Validation loss of the last finished epoch")
    images_per_s: float | None = Field(description="Training images per second lately")
    eta_s: float | None = Field(description="Seconds left at that pace, for the recipe's epochs")


class TrainingJob(BaseModel):
    """A training job and where it is."""

    id: int
    status: TrainingStatus
    base_version: str
    train_dataset_id: int
    test_dataset_id: int
    recipe: str
    recipe_version: int
    recipe_sha256: str = Field(description="sha256 of the recipe file as read at creation")
    seed: int
    created_at: AwareDatetime
    created_by: int | None
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    heartbeat_at: AwareDatetime | None = Field(description="The worker's last sign of life")
    attempts: int = Field(description="Times a worker took the job (more: resumed)")
    cancel_requested: bool
    checkpoint_epoch: int | None = Field(
        description="The last epoch whose checkpoint is stored (a new worker resumes there)"
    )
    progress: TrainingProgress | None
    data: dict[str, Any] | None = Field(
        description="What the job trained on: images per split, and those the per-doctor "
        "cap left out"
    )
    error: str | None
    candidate_version: str | None = Field(description="The version registered (staged)")
    evaluation_id: int | None


class Recipe(RecipeBody):
    """An allow-listed training recipe (a YAML file of TRAINING_RECIPES_DIR)."""

    sha256: str = Field(description="sha256 of the recipe file")


class EvaluationClass(BaseModel):
    """The candidate on the test images of one class (and the parent's recall)."""

    precision: float | None
    recall: float | None
    recall_ci95: list[float] | None = Field(description="95% Wilson interval [low, high]")
    support: int
    parent_recall: float | None


class ReferralOutcome(BaseModel):
    """The refer / do-not-refer outcome against referable labels on the test set."""

    sensitivity: float | None
    specificity: float | None
    parent_sensitivity: float | None
    parent_specificity: float | None
    thresholds: dict[str, float] = Field(description="The candidate's refer_at thresholds")


class GateResult(BaseModel):
    """One gate of the recipe, judged: its value on the test set against its threshold."""

    name: str
    passed: bool
    value: float | None
    threshold: float


class Evaluation(BaseModel):
    """A candidate and its parent on a locked test set, and the recipe's gates."""

    id: int
    version: str
    parent_version: str
    test_dataset_id: int
    test_dataset_sha256: str
    job_id: int | None
    images: int = Field(description="Test images judged")
    accuracy: float | None
    accuracy_ci95: list[float] | None = Field(description="95% Wilson interval [low, high]")
    parent_accuracy: float | None
    parent_accuracy_ci95: list[float] | None
    accuracy_diff_ci95: list[float] | None = Field(
        description="Newcombe's 95% interval of the paired difference candidate - parent"
    )
    per_class: dict[str, EvaluationClass]
    mcnemar_p: float | None = Field(
        description="Exact McNemar test (two-sided) on the discordant pairs vs the parent"
    )
    ece_before: float | None = Field(description="ECE (10 bins) before temperature scaling")
    ece_after: float | None = Field(description="ECE after it")
    temperature: float
    referral: ReferralOutcome
    gates: list[GateResult]
    passed: bool
    min_shadow_cases: int = Field(description="Live cases to compare in shadow before activation")
    created_at: AwareDatetime
