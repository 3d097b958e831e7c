"""The action a clinician is handed with each result: refer, routine, inconclusive or
retake_image. A pure function of the gate's verdict, the class probabilities and the
model's referral policy (from its manifest, so each model version carries its own).

In this order:
1. an ungradable photograph: `retake_image` (no result is better than a guess on it);
2. a referable class whose probability is at or above its `refer_at` threshold: `refer`
   (the highest such probability wins when several are);
3. the top-1 probability under its minimum confidence, or the top-1 / top-2 margin under
   `band`: `inconclusive` (a margin exactly equal to `band` is not under it);
4. otherwise `routine`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Recommendation = Literal["refer", "routine", "inconclusive", "retake_image"]
RECOMMENDATIONS: tuple[Recommendation, ...] = ("refer", "routine", "inconclusive", "retake_image")

# Classes referred by default when the manifest names no thresholds (those it has).
DEFAULT_REFERABLE = ("glaucoma", "diabetic_retinopathy", "cataract")
DEFAULT_REFER_AT = 0.5
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_BAND = 0.1


class ReferralPolicy(BaseModel):
    """The manifest's `referral` object. Thresholds are probabilities (0..1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    refer_at: dict[str, float] | None = Field(
        None,
        description="Referable class code -> probability at or above which to refer; "
        "absent: glaucoma, diabetic_retinopathy and cataract (those the model has) at 0.5",
    )
    min_confidence: float = Field(DEFAULT_MIN_CONFIDENCE, ge=0, le=1)
    class_min_confidence: dict[str, float] = Field(
        default_factory=dict, description="Per-class overrides of min_confidence"
    )
    band: float = Field(DEFAULT_BAND, ge=0, le=1, description="Minimum top-1 / top-2 margin")

    def thresholds(self, codes: Sequence[str]) -> dict[str, float]:
        """The refer_at table for a model with these class codes."""
        if self.refer_at is not None:
            return dict(self.refer_at)
        return {code: DEFAULT_REFER_AT for code in DEFAULT_REFERABLE if code in codes}

    def check(self, codes: Sequence[str]) -> None:
        """Every class the policy names must be one of the model's (ValueError if not)."""
        named = set(self.refer_at or {}) | set(self.class_min_confidence)
        unknown = sorted(named - set(codes))
        if unknown:
            raise ValueError(f"referral names classes the model does not have: {unknown}")
        for table in (self.refer_at or {}, self.class_min_confidence):
            if any(not 0 <= v <= 1 for v in table.values()):
                raise ValueError("referral thresholds must be probabilities in [0, 1]")


def recommend(
    probabilities: Sequence[float],
    codes: Sequence[str],
    *,
    gradable: bool,
    policy: ReferralPolicy,
) -> Recommendation:
    if len(probabilities) != len(codes) or not codes:
        raise ValueError("one probability per class code is needed")
    if not gradable:
        return "retake_image"
    by_code: Mapping[str, float] = dict(zip(codes, probabilities, strict=True))
    if any(by_code[code] >= at for code, at in policy.thresholds(codes).items()):
        return "refer"
    ranked = sorted(probabilities, reverse=True)
    top = max(range(len(codes)), key=lambda i: probabilities[i])
    floor = policy.class_min_confidence.get(codes[top], policy.min_confidence)
    margin = ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]
    if ranked[0] < floor or margin < policy.band:
        return "inconclusive"
    return "routine"
