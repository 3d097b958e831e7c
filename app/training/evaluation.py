"""A candidate against its parent on a locked test set, and the recipe's gates (pure
numpy / scipy).

- accuracy and per-class recall with 95% Wilson intervals; precision per class;
- the paired difference candidate - parent (accuracy, and each referable class's recall)
  with Newcombe's hybrid score interval for paired proportions (Newcombe 1998, method 10,
  no continuity correction), built from the two Wilson intervals and the phi correlation
  of the pairs;
- the exact McNemar test (two-sided binomial on the discordant pairs);
- ECE over 10 equal-width bins of the top probability, before (temperature 1) and after
  temperature scaling;
- the referral outcome (refer when some referable class's probability reaches its
  threshold) against the truth (the label is a referable class): sensitivity, specificity.

Each gate of the recipe becomes one or more results {name, passed, value, threshold}
(`recall_diff_lower_bound` one per referable class, named `recall_diff_lower_bound:<code>`);
the evaluation passes when every result passes. A value that cannot be computed (no
test image of a class) fails its gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest

from app.registry.performance import wilson_interval
from app.schemas.recipes import UPPER_BOUND_GATES, Gate

BINS = 10
Probs = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _interval(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [round(pair[0], 6), round(pair[1], 6)]


def paired_difference_ci(
    first: npt.NDArray[np.bool_], second: npt.NDArray[np.bool_]
) -> tuple[float, float] | None:
    """95% interval of mean(first) - mean(second) over paired binary outcomes
    (Newcombe's method 10)."""
    n = len(first)
    if n == 0:
        return None
    a = int(np.sum(first & second))
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n) or (0.0, 1.0)
    l2, u2 = wilson_interval(a + c, n) or (0.0, 1.0)
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denominator) if denominator > 0 else 0.0
    delta = p1 - p2
    low_sq = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    high_sq = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    return max(-1.0, delta - math.sqrt(max(0.0, low_sq))), min(
        1.0, delta + math.sqrt(max(0.0, high_sq))
    )


def mcnemar_p(first: npt.NDArray[np.bool_], second: npt.NDArray[np.bool_]) -> float | None:
    if len(first) == 0:
        return None
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def ece(probabilities: Probs, labels: Labels) -> float | None:
    n = len(labels)
    if n == 0:
        return None
    top = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((top * BINS).astype(np.int64), BINS - 1)
    total = 0.0
    for b in range(BINS):
        mask = bins == b
        if mask.any():
            total += mask.sum() / n * abs(correct[mask].mean() - top[mask].mean())
    return float(total)


def referral_outcome(
    probabilities: Probs, labels: Labels, codes: Sequence[str], thresholds: dict[str, float]
) -> tuple[float | None, float | None]:
    """(sensitivity, specificity) of 'refer' against 'the label is a referable class'."""
    index = {code: i for i, code in enumerate(codes)}
    referable = [index[c] for c in thresholds if c in index]
    refer = np.zeros(len(labels), bool)
    for code, threshold in thresholds.items():
        if code in index:
            refer |= probabilities[:, index[code]] >= threshold
    truth = np.isin(labels, referable)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    sensitivity = float((refer & truth).sum() / positives) if positives else None
    specificity = float((~refer & ~truth).sum() / negatives) if negatives else None
    return sensitivity, specificity


def evaluate(
    *,
    labels: Labels,
    candidate: Probs,
    candidate_uncalibrated: Probs,
    parent: Probs,
    codes: Sequence[str],
    temperature: float,
    thresholds: dict[str, float],
    parent_thresholds: dict[str, float],
    gates: Sequence[Gate],
) -> dict[str, Any]:
    """The Evaluation body (without ids) and whether it passed."""
    n = len(labels)
    ours = candidate.argmax(axis=1) == labels if n else np.zeros(0, bool)
    theirs = parent.argmax(axis=1) == labels if n else np.zeros(0, bool)
    predicted = candidate.argmax(axis=1) if n else np.zeros(0, np.int64)
    per_class: dict[str, Any] = {}
    recall_diff: dict[str, tuple[float, float] | None] = {}
    for i, code in enumerate(codes):
        of_class = labels == i
        support = int(of_class.sum())
        hits = int((ours & of_class).sum())
        predicted_as = int((predicted == i).sum())
        per_class[code] = {
            "precision": _r(hits / predicted_as) if predicted_as else None,
            "recall": _r(hits / support) if support else None,
            "recall_ci95": _interval(wilson_interval(hits, support)),
            "support": support,
            "parent_recall": _r(int((theirs & of_class).sum()) / support) if support else None,
        }
        recall_diff[code] = paired_difference_ci(ours[of_class], theirs[of_class])
    accuracy_diff = paired_difference_ci(ours, theirs)
    ece_before = ece(candidate_uncalibrated, labels)
    ece_after = ece(candidate, labels)
    sensitivity, specificity = referral_outcome(candidate, labels, codes, thresholds)
    parent_sens, parent_spec = referral_outcome(parent, labels, codes, parent_thresholds)

    results: list[dict[str, Any]] = []
    for gate in gates:
        if gate.name == "recall_diff_lower_bound":
            for code in thresholds:
                interval = recall_diff.get(code)
                results.append(
                    _gate(f"{gate.name}:{code}", interval[0] if interval else None, gate)
                )
            continue
        value: float | None
        if gate.name == "min_test_images_per_class":
            value = float(min((per_class[c]["support"] for c in codes), default=0))
        elif gate.name == "accuracy_diff_lower_bound":
            value = accuracy_diff[0] if accuracy_diff else None
        elif gate.name == "ece_max":
            value = ece_after
        elif gate.name == "referral_sensitivity_min":
            value = sensitivity
        else:  # referral_specificity_min
            value = specificity
        results.append(_gate(gate.name, value, gate))

    correct, parent_correct = int(ours.sum()), int(theirs.sum())
    return {
        "images": n,
        "accuracy": _r(correct / n) if n else None,
        "accuracy_ci95": _interval(wilson_interval(correct, n)),
        "parent_accuracy": _r(parent_correct / n) if n else None,
        "parent_accuracy_ci95": _interval(wilson_interval(parent_correct, n)),
        "accuracy_diff_ci95": _interval(accuracy_diff),
        "per_class": per_class,
        "mcnemar_p": _r(mcnemar_p(ours, theirs)),
        "ece_before": _r(ece_before),
        "ece_after": _r(ece_after),
        "temperature": temperature,
        "referral": {
            "sensitivity": _r(sensitivity),
            "specificity": _r(specificity),
            "parent_sensitivity": _r(parent_sens),
            "parent_specificity": _r(parent_spec),
            "thresholds": thresholds,
        },
        "gates": results,
        "passed": bool(results) and all(r["passed"] for r in results),
    }


def _gate(name: str, value: float | None, gate: Gate) -> dict[str, Any]:
    if value is None or not math.isfinite(value):
        passed = False
    elif gate.name in UPPER_BOUND_GATES:
        passed = value <= gate.threshold
    else:
        passed = value >= gate.threshold
    return {"name": name, "passed": passed, "value": _r(value), "threshold": gate.threshold}
