"""A fitted network before it is registered (blocking torch work: the worker runs these
in a thread with its torch thread count).

`calibrate` fits the temperature and re-derives the referral thresholds on the
calibration split; `measure_on_test_set` runs the candidate and its parent on the locked
test set and judges the recipe's gates (evaluation.py); `calibrated_manifest` is the
parent's manifest with the candidate's temperature and thresholds.
"""

from __future__ import annotations

from typing import Any

import torch

from app.clinical.recommendation import ReferralPolicy
from app.inference.manifest import ModelManifest
from app.inference.network import EyeDiseaseClassifier
from app.training.calibration import derive_thresholds, fit_temperature, softmax
from app.training.evaluation import evaluate
from app.training.examples import logits_of
from app.training.job_inputs import JobInputs


def calibrate(
    network: EyeDiseaseClassifier, inputs: JobInputs, device: torch.device, parent: dict[str, float]
) -> tuple[float, dict[str, float], dict[str, dict[str, Any]]]:
    """(temperature, referral thresholds, how each threshold was derived)."""
    m = inputs.manifest
    logits = logits_of(network, inputs.calibration.images, m.mean, m.std, device)
    temperature = fit_temperature(logits, inputs.calibration.labels)
    thresholds, how = derive_thresholds(
        softmax(logits, temperature),
        inputs.calibration.labels,
        m.codes,
        parent,
        target_sensitivity=inputs.recipe.referral.target_sensitivity,
        min_positives=inputs.recipe.referral.min_positives,
    )
    return temperature, thresholds, how


def measure_on_test_set(
    network: EyeDiseaseClassifier,
    parent: EyeDiseaseClassifier,
    inputs: JobInputs,
    device: torch.device,
    temperature: float,
    thresholds: dict[str, float],
    parent_thresholds: dict[str, float],
) -> dict[str, Any]:
    m = inputs.manifest
    ours = logits_of(network, inputs.test.images, m.mean, m.std, device)
    theirs = logits_of(parent.to(device), inputs.test.images, m.mean, m.std, device)
    return evaluate(
        labels=inputs.test.labels,
        candidate=softmax(ours, temperature),
        candidate_uncalibrated=softmax(ours),
        parent=softmax(theirs, m.temperature),
        codes=m.codes,
        temperature=temperature,
        thresholds=thresholds,
        parent_thresholds=parent_thresholds,
        gates=inputs.recipe.gates,
    )


def calibrated_manifest(
    parent: ModelManifest, temperature: float, thresholds: dict[str, float]
) -> ModelManifest:
    manifest = parent.model_copy(
        update={
            "temperature": temperature,
            "referral": ReferralPolicy.model_validate(
                {**parent.referral.model_dump(), "refer_at": thresholds}
            ),
        }
    )
    return ModelManifest.model_validate(manifest.model_dump())  # re-checked
