"""Per-version accuracy from the doctors' feedback, from grouped counts (pure functions).

The repository hands over, per (predicted class, verdict, confirmed class, confidence bin),
the number of predictions and the sum of their top probabilities; everything here is
arithmetic on those few groups.

- The confirmed class of a prediction is its predicted class when the verdict is
  `correct`, the doctor's `correct_class` when `incorrect` and given, and unknown when
  `incorrect` without a class.
- accuracy = correct / with_feedback, with a 95% Wilson score interval.
- per class c: precision = confirmed c among predicted c (with feedback; an incorrect
  verdict is a false positive even without a class), recall = predicted c among
  confirmed c, support = confirmed c. Unknown confirmed classes count in no recall.
- ECE over 10 equal-width bins of the top probability: sum over bins of
  (n_bin / n) * |accuracy_bin - mean confidence_bin|, over the predictions with feedback.
  The non-empty bins themselves (count, mean confidence, accuracy) are the reliability
  diagram.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.repositories.model_versions import BINS, Group, ShadowGroup

Z_95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    precision: float | None
    recall: float | None
    support: int


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    low: float  # [low, high) of the top probability (the last bin includes 1)
    high: float
    count: int
    confidence: float  # mean top probability
    accuracy: float  # share confirmed correct


@dataclass(frozen=True, slots=True)
class Metrics:
    predictions: int
    with_feedback: int
    correct: int
    accuracy: float | None
    accuracy_ci95: tuple[float, float] | None
    per_class: dict[str, ClassMetrics]
    confusion: list[tuple[str, str | None, int]]  # (predicted, confirmed or None, count)
    ece: float | None
    reliability: tuple[ReliabilityBin, ...] = ()


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def merge(groups: Iterable[Group]) -> list[Group]:
    """Add up groups with the same key (whole days from the rollup + the edges)."""
    totals: dict[tuple[str, str | None, str | None, int], list[float]] = defaultdict(
        lambda: [0, 0.0]
    )
    for g in groups:
        entry = totals[g.predicted, g.verdict, g.correct_class, g.bin]
        entry[0] += g.count
        entry[1] += g.sum_probability
    return [
        Group(key[0], key[1], key[2], key[3], int(count), float(total))
        for key, (count, total) in sorted(
            totals.items(), key=lambda item: tuple(str(part) for part in item[0])
        )
        if count > 0
    ]


def compute(groups: Sequence[Group], codes: Sequence[str]) -> Metrics:
    groups = merge(groups)
    predictions = sum(g.count for g in groups)
    rated = [g for g in groups if g.verdict is not None]
    with_feedback = sum(g.count for g in rated)
    correct = sum(g.count for g in rated if g.verdict == "correct")

    confusion: dict[tuple[str, str | None], int] = defaultdict(int)
    for g in rated:
        confusion[g.predicted, g.confirmed] += g.count

    classes = list(dict.fromkeys([*codes, *(g.predicted for g in rated)]))
    per_class = {}
    for code in classes:
        predicted = sum(g.count for g in rated if g.predicted == code)
        confirmed = sum(g.count for g in rated if g.confirmed == code)
        hits = confusion.get((code, code), 0)
        per_class[code] = ClassMetrics(
            precision=hits / predicted if predicted else None,
            recall=hits / confirmed if confirmed else None,
            support=confirmed,
        )

    ece: float | None = None
    reliability: list[ReliabilityBin] = []
    if with_feedback:
        ece = 0.0
        for b in range(BINS):
            in_bin = [g for g in rated if g.bin == b]
            n = sum(g.count for g in in_bin)
            if n:
                accuracy = sum(g.count for g in in_bin if g.verdict == "correct") / n
                confidence = sum(g.sum_probability for g in in_bin) / n
                ece += n / with_feedback * abs(accuracy - confidence)
                reliability.append(
                    ReliabilityBin(b / BINS, (b + 1) / BINS, n, confidence, accuracy)
                )

    return Metrics(
        predictions=predictions,
        with_feedback=with_feedback,
        correct=correct,
        accuracy=correct / with_feedback if with_feedback else None,
        accuracy_ci95=wilson_interval(correct, with_feedback),
        per_class=per_class,
        confusion=sorted(
            ((p, c, n) for (p, c), n in confusion.items()),
            key=lambda item: (item[0], item[1] or ""),
        ),
        ece=ece,
        reliability=tuple(reliability),
    )


@dataclass(frozen=True, slots=True)
class ShadowMetrics:
    compared: int
    agreement: float | None
    accuracy: float | None  # on the images whose confirmed class is known
    judged: int


def shadow_metrics(groups: Sequence[ShadowGroup]) -> ShadowMetrics:
    compared = sum(g.count for g in groups)
    agree = sum(g.count for g in groups if g.shadow_class == g.served_class)
    judged = hits = 0
    for g in groups:
        truth = Group(g.served_class, g.verdict, g.correct_class, 0, g.count, 0.0).confirmed
        if truth is not None:
            judged += g.count
            hits += g.count if g.shadow_class == truth else 0
    return ShadowMetrics(
        compared=compared,
        agreement=agree / compared if compared else None,
        accuracy=hits / judged if judged else None,
        judged=judged,
    )
