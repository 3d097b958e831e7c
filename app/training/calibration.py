"""Probabilities from logits, and their calibration on the calibration split.

`cross_entropy` is the mean negative log-likelihood the fit loop's early stopping reads
on the validation split and `fit_temperature` minimises (temperature scaling, Guo et al.
2017); `derive_thresholds` re-derives the referral thresholds from the calibrated
probabilities. The test split never reaches this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp


def cross_entropy(logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> float:
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(labels)), labels]))


def softmax(logits: npt.NDArray[np.float64], temperature: float = 1.0) -> npt.NDArray[np.float64]:
    scaled = logits / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return result


def fit_temperature(logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> float:
    """The temperature minimising the negative log-likelihood (Guo et al. 2017), in
    [0.2, 10] (a small calibration set must not make the model wildly over- or
    under-confident: the test set's ECE judges the result); 1.0 without calibration images."""
    if len(labels) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return cross_entropy(logits / math.exp(log_t), labels)

    best = minimize_scalar(
        nll, bounds=(math.log(0.2), math.log(10.0)), method="bounded", options={"xatol": 1e-5}
    )
    return round(math.exp(float(best.x)), 4)


def derive_thresholds(
    probabilities: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    codes: Sequence[str],
    parent: dict[str, float],
    *,
    target_sensitivity: float,
    min_positives: int,
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Per referable class, the highest threshold that still refers `target_sensitivity`
    of that class's calibration images (calibrated probabilities); the parent's
    threshold when there are fewer than `min_positives` of them."""
    thresholds: dict[str, float] = {}
    how: dict[str, dict[str, Any]] = {}
    for code, inherited in parent.items():
        index = list(codes).index(code)
        scores = np.sort(probabilities[labels == index, index])[::-1]
        if len(scores) < min_positives:
            thresholds[code] = inherited
            how[code] = {"threshold": inherited, "positives": len(scores), "derived": False}
            continue
        k = max(1, math.ceil(target_sensitivity * len(scores)))
        value = math.floor(float(scores[k - 1]) * 1e4) / 1e4  # down: never refer fewer
        value = min(0.99, max(0.01, value))
        thresholds[code] = value
        how[code] = {"threshold": value, "positives": len(scores), "derived": True}
    return thresholds, how
