"""A training recipe's body: what may train, how, and the gates a candidate must pass
(the YAML files app.training.recipes reads, and GET /admin/recipes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LAYERS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")

GateName = Literal[
    "min_test_images_per_class",  # the smallest class of the test set has >= N images
    "accuracy_diff_lower_bound",  # 95% lower bound of accuracy(candidate) - accuracy(parent)
    "recall_diff_lower_bound",  # the same for the recall of each referable class
    "ece_max",  # expected calibration error after temperature scaling <= threshold
    "referral_sensitivity_min",  # the referral outcome's sensitivity >= threshold
    "referral_specificity_min",  # and its specificity
]
GATE_NAMES: tuple[str, ...] = GateName.__args__  # type: ignore[attr-defined]
# Gates whose value must stay at or below the threshold (the others: at or above).
UPPER_BOUND_GATES = frozenset({"ece_max"})


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LearningRate(_Strict):
    """Cosine annealing per step from `max` down to `min` over the recipe's epochs."""

    max: float = Field(gt=0, le=1)
    min: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> LearningRate:
        if self.min > self.max:
            raise ValueError("learning_rate.min must not exceed learning_rate.max")
        return self


class Augmentation(_Strict):
    """torchvision transforms v2 on each training image (none at validation or test)."""

    horizontal_flip: float = Field(0.0, ge=0, le=1, description="probability")
    rotation_degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.0, ge=0, le=0.5, description="fraction of the side")
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, le=1)
    saturation: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _scale(self) -> Augmentation:
        low, high = self.scale
        if not 0.5 <= low <= high <= 2.0:
            raise ValueError("augmentation.scale must be [low, high] within [0.5, 2.0]")
        return self


class EarlyStopping(_Strict):
    """Stop when the validation loss has not improved by min_delta for `patience` epochs;
    the weights of the best epoch are kept."""

    patience: int = Field(ge=1, le=100)
    min_delta: float = Field(0.0, ge=0)


class RecipeReferral(_Strict):
    """How the candidate's referral thresholds are re-derived on the calibration split."""

    target_sensitivity: float = Field(0.9, gt=0, le=1)
    min_positives: int = Field(
        10, ge=1, description="fewer calibration images of a class: keep the parent's threshold"
    )


class Gate(_Strict):
    """A criterion set in advance: the candidate's value must reach the threshold (or,
    for ece_max, stay at or below it)."""

    name: GateName
    threshold: float


class Recipe(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str = Field(min_length=1, max_length=2000)
    trainable_layers: tuple[str, ...] = Field(min_length=1)
    epochs: int = Field(ge=1, le=500)
    batch_size: int = Field(32, ge=1, le=1024)
    learning_rate: LearningRate
    weight_decay: float = Field(0.0, ge=0, le=1)
    augmentation: Augmentation = Augmentation()
    class_balancing: Literal["sampler", "none"] = "sampler"
    early_stopping: EarlyStopping | None = None
    max_share_per_doctor: float = Field(gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**62)
    referral: RecipeReferral = RecipeReferral()
    gates: tuple[Gate, ...] = Field(min_length=1)
    min_shadow_cases: int = Field(ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _layers(self) -> Recipe:
        unknown = sorted(set(self.trainable_layers) - {*LAYERS, "all"})
        if unknown:
            raise ValueError(f"unknown trainable_layers {unknown}; known: {[*LAYERS, 'all']}")
        names = [g.name for g in self.gates]
        if len(set(names)) != len(names):
            raise ValueError("each gate may appear once")
        return self
