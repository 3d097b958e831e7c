"""What the model's outputs mean and how its input is prepared.

A JSON manifest may sit beside the weights (`X.pth` -> `X.json`); without one the
service uses DEFAULT_MANIFEST, the order the earlier back-end was trained with.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.clinical.recommendation import ReferralPolicy
from app.errors import ModelUnavailable
from app.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD

Triple = tuple[float, float, float]

# The largest model input side a manifest may ask for. Registration exports and checks
# the network at that size and every prediction resizes to it: 2048 px took 23.6 s and
# 2.3 GB to register, so a larger input is refused (422 INVALID_MODEL at registration).
MAX_INPUT_SIZE = 1024


class ClassLabel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    es: str = Field(min_length=1)
    en: str = Field(min_length=1)


class ModelManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[ClassLabel, ...] = Field(min_length=1)
    input_size: int = Field(224, gt=0)
    mean: Triple = IMAGENET_MEAN
    std: Triple = IMAGENET_STD
    # Which photographs the model grades: the quality gate's fundus checks (field of view)
    # apply to fundus models only; `quality_gate: false` turns the gate off for this model.
    modality: Literal["fundus", "external"] = "fundus"
    quality_gate: bool = True
    referral: ReferralPolicy = ReferralPolicy()
    # Temperature scaling (app/training): probabilities are softmax(logits / temperature).
    # 1.0 (absent) leaves the network's own probabilities unchanged.
    temperature: float = Field(1.0, gt=0, le=100)

    @field_validator("input_size")
    @classmethod
    def _capped(cls, value: int) -> int:
        if value > MAX_INPUT_SIZE:
            raise ValueError(
                f"input_size {value} is over the {MAX_INPUT_SIZE} px cap (a larger input "
                "costs seconds and gigabytes to register and to serve)"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> ModelManifest:
        codes = self.codes
        if len(set(codes)) != len(codes):
            raise ValueError(f"class codes must be unique, got {list(codes)}")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        self.referral.check(codes)
        return self

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def label(self, code: str, locale: str = "es") -> str:
        """The class name in `locale` ("en"; anything else gets Spanish, the default)."""
        for c in self.classes:
            if c.code == code:
                return c.en if locale.lower().startswith("en") else c.es
        raise KeyError(code)

    @classmethod
    def parse(cls, raw: bytes | str, source: str) -> ModelManifest:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            # Where and what, never the input: the file may be anything the caller named.
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'manifest'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_context=False)[:5]
            )
            raise ModelUnavailable(f"invalid model manifest {source}: {problems}") from None


DEFAULT_MANIFEST = ModelManifest(
    classes=(
        ClassLabel(code="glaucoma", es="Glaucoma", en="Glaucoma"),
        ClassLabel(
            code="diabetic_retinopathy", es="Retinopatía diabética", en="Diabetic retinopathy"
        ),
        ClassLabel(code="normal", es="Normal", en="Normal"),
        ClassLabel(code="cataract", es="Catarata", en="Cataract"),
    )
)
