"""The image-quality gate: is this photograph gradable at all? Pure numpy / scipy.ndimage.

Every measure is computed on the same fixed-size picture, GATE_SIZE x GATE_SIZE RGB uint8
(the image already reduced for the model, so the gate costs well under a millisecond and
its thresholds do not depend on the camera's resolution), inside the field of view:

- field of view (FOV): pixels brighter, in their brightest channel, than `fov_level`/255 of
  the picture's own white point (the 99th percentile of the brightest channel), and than
  the noise on a black border. Relative to the picture's brightness, so the FOV found is
  the same at any exposure gain that leaves the border dark: a dark fundus is found (and
  is then UNDEREXPOSED), a bright one too (OVEREXPOSED). A fundus photograph is a round
  bright area on a dark border: too small a region (`min_fov_fraction` of the picture), or
  no dark border at the corners (a plain grey picture, a page of text, whatever their
  exposure), is NO_FUNDUS;
- resolution: the FOV's diameter in the *original* pixels (its height in the picture
  scaled back by the original height, width likewise), under `min_fov_diameter_px` is
  LOW_RESOLUTION;
- focus: the variance of the Laplacian of the green channel, divided by the squared mean
  green, over the FOV shrunk by a few pixels (so its rim does not count). Dividing by the
  mean makes it independent of the exposure gain; a fixed picture size makes it
  independent of the camera. Under `min_focus` is BLURRY;
- exposure: mean luminance (Rec. 601) in the FOV and the fractions of FOV pixels that are
  dark (under 40 in every channel) or clipped bright (some channel >= 250). Too dark or
  too many dark pixels is UNDEREXPOSED; too bright or too many clipped pixels is
  OVEREXPOSED.

The score (0..1) is the lowest of the per-measure scores, each 0.5 exactly at its
threshold, rising to 1 at a comfortable margin and falling to 0 far on the wrong side; so
`score >= 0.5` for a gradable photograph and `< 0.5` otherwise. Thresholds and how they
were set: docs/quality-gate.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

GATE_SIZE = 224

Reason = Literal["NO_FUNDUS", "BLURRY", "UNDEREXPOSED", "OVEREXPOSED", "LOW_RESOLUTION"]
REASONS: tuple[Reason, ...] = (
    "NO_FUNDUS",
    "LOW_RESOLUTION",
    "BLURRY",
    "UNDEREXPOSED",
    "OVEREXPOSED",
)

UInt8Image = npt.NDArray[np.uint8]

_CORNER = GATE_SIZE // 10  # side of the corner squares that must be dark
_DARK_PIXEL = 40  # a FOV pixel darker than this in every channel counts as dark
_BRIGHT_PIXEL = 250
_STRUCTURE = ndimage.generate_binary_structure(2, 1)
_MIN_AREA = 64  # FOV pixels under which there is nothing to measure
_MIN_RUN = 2  # coarse FOV pixels a row or column must hold to count towards the diameter
_WHITE_POINT = 0.99  # quantile of the brightest channel the FOV level is relative to
_NOISE = 2  # a black border's JPEG noise: the FOV is always brighter than this
_LUMA = np.asarray([0.299, 0.587, 0.114])  # Rec. 601


@dataclass(frozen=True)
class QualityThresholds:
    """The gate's settings (QUALITY_* in app.config; defaults in docs/quality-gate.md)."""

    # 0..255: the FOV is brighter than fov_level/255 of the picture's white point (its 99th
    # percentile) in its brightest channel: 20 at a white point of 255, 10 at 128.
    fov_level: int = 20
    min_fov_fraction: float = 0.20  # of the picture's area
    max_corner_fov: float = 0.5  # of the corner squares' area that the FOV may cover
    min_fov_diameter_px: int = 448  # in the original image's pixels
    min_focus: float = 2.0e-3
    min_brightness: float = 45.0  # mean luminance 0..255 in the FOV
    max_brightness: float = 200.0
    max_dark_fraction: float = 0.25  # FOV pixels under 40 in every channel
    max_clipped_fraction: float = 0.10  # FOV pixels at 250 or more in some channel


@dataclass(frozen=True)
class QualityMeasures:
    fov_fraction: float
    corner_fov: float
    fov_diameter_px: float
    focus: float
    brightness: float
    dark_fraction: float
    clipped_fraction: float


@dataclass(frozen=True)
class Quality:
    gradable: bool
    score: float
    reasons: tuple[Reason, ...]
    measures: QualityMeasures


def measure(
    picture: UInt8Image, original_size: tuple[int, int], level: int, *, fundus: bool = True
) -> QualityMeasures:
    """The raw measures of a (GATE_SIZE, GATE_SIZE, 3) uint8 picture; `original_size` is
    (width, height) of the image it was reduced from; `level` is the FOV level relative to
    the picture's white point (QualityThresholds.fov_level). Not `fundus` (an external-eye
    photograph): the whole picture is the field of view."""
    if picture.shape != (GATE_SIZE, GATE_SIZE, 3) or picture.dtype != np.uint8:
        raise ValueError(f"expected a uint8 ({GATE_SIZE}, {GATE_SIZE}, 3) picture")
    red, green, blue = picture[..., 0], picture[..., 1], picture[..., 2]
    brightest = np.maximum(np.maximum(red, green), blue)
    if fundus:
        fov = brightest > fov_threshold(brightest, level)
    else:
        fov = np.ones(brightest.shape, np.bool_)
    area = int(np.count_nonzero(fov))
    side = GATE_SIZE
    c = _CORNER
    corners = (
        np.count_nonzero(fov[:c, :c])
        + np.count_nonzero(fov[:c, -c:])
        + np.count_nonzero(fov[-c:, :c])
        + np.count_nonzero(fov[-c:, -c:])
    ) / (4 * c * c)
    coarse = fov[2::4, 2::4]  # every 4th pixel: enough for the extent and the rim
    inner = _shrink(coarse)
    n = int(np.count_nonzero(inner))
    if area < _MIN_AREA or n == 0:
        return QualityMeasures(area / side**2, corners, 0.0, 0.0, 0.0, 1.0, 0.0)
    # Rows and columns crossed by the FOV (a stray bright pixel does not count).
    rows = np.flatnonzero(coarse.sum(axis=1) >= _MIN_RUN)
    cols = np.flatnonzero(coarse.sum(axis=0) >= _MIN_RUN)
    width, height = original_size
    diameter = 0.0
    if rows.size and cols.size:
        step = side / coarse.shape[0]
        diameter = min(
            (rows[-1] - rows[0] + 1) * step * height / side,
            (cols[-1] - cols[0] + 1) * step * width / side,
        )

    # Sums over the inner FOV as products with its 0/1 weights (BLAS, no gathers).
    weights = inner.ravel().astype(np.float32)
    means = (weights @ picture.reshape(-1, 3).astype(np.float32)).astype(np.float64) / n
    laplacian = ndimage.laplace(green.astype(np.float32)).ravel()
    lap_mean = float(weights @ laplacian) / n
    lap_var = max(0.0, float(weights @ (laplacian * laplacian)) / n - lap_mean**2)
    focus = lap_var / max(float(means[1]), 1.0) ** 2
    dark = int(np.count_nonzero((brightest < _DARK_PIXEL) & inner))
    clipped = int(np.count_nonzero((brightest >= _BRIGHT_PIXEL) & inner))
    return QualityMeasures(
        fov_fraction=area / side**2,
        corner_fov=float(corners),
        fov_diameter_px=float(diameter),
        focus=focus,
        brightness=float(means @ _LUMA),  # the mean of a linear combination
        dark_fraction=dark / n,
        clipped_fraction=clipped / n,
    )


def fov_threshold(brightest: UInt8Image, level: int) -> int:
    """The absolute FOV threshold (0..255) of a picture's brightest channel: `level`/255 of
    its white point (99th percentile), never under the noise of a black border. Scaling the
    picture's exposure scales the white point and so the threshold: the FOV stays put."""
    sample = brightest[1::2, 1::2].ravel()  # every 2nd pixel: a quarter of the cost
    k = int(_WHITE_POINT * (sample.size - 1))
    white = int(np.partition(sample, k)[k])
    return max(_NOISE, level * white // 255)


def assess(
    picture: UInt8Image,
    original_size: tuple[int, int],
    thresholds: QualityThresholds,
    *,
    fundus: bool = True,
) -> Quality:
    """Gradable or not, with a score and the reasons (in REASONS order). For a model of
    external-eye photographs (`fundus=False`) the field-of-view check does not apply."""
    t = thresholds
    m = measure(picture, original_size, t.fov_level, fundus=fundus)
    scores: dict[Reason, float] = {
        "NO_FUNDUS": min(
            _above(m.fov_fraction, t.min_fov_fraction, 1.5 * t.min_fov_fraction),
            _below(m.corner_fov, t.max_corner_fov, 0.5 * t.max_corner_fov),
        ),
        "LOW_RESOLUTION": _above(
            m.fov_diameter_px, t.min_fov_diameter_px, 2 * t.min_fov_diameter_px
        ),
        "BLURRY": _above_log(m.focus, t.min_focus, 4 * t.min_focus),
        "UNDEREXPOSED": min(
            _above(m.brightness, t.min_brightness, 1.5 * t.min_brightness),
            _below(m.dark_fraction, t.max_dark_fraction, 0.5 * t.max_dark_fraction),
        ),
        "OVEREXPOSED": min(
            _below(m.brightness, t.max_brightness, 0.85 * t.max_brightness),
            _below(m.clipped_fraction, t.max_clipped_fraction, 0.5 * t.max_clipped_fraction),
        ),
    }
    if not fundus:
        del scores["NO_FUNDUS"]
    if scores.get("NO_FUNDUS", 1.0) < 0.5:
        # Without a fundus the other measures describe nothing: report that alone.
        reasons: tuple[Reason, ...] = ("NO_FUNDUS",)
        score = scores["NO_FUNDUS"]
    else:
        reasons = tuple(r for r in REASONS if scores.get(r, 1.0) < 0.5)
        score = min(scores.values())
    return Quality(gradable=not reasons, score=round(score, 4), reasons=reasons, measures=m)


def _above(value: float, threshold: float, good: float) -> float:
    """0.5 at threshold, 1 at `good` (> threshold), linearly 0 at zero."""
    if value >= threshold:
        return 0.5 + 0.5 * min(1.0, (value - threshold) / (good - threshold))
    return 0.5 * max(0.0, value / threshold) if threshold > 0 else 0.0


def _below(value: float, threshold: float, good: float) -> float:
    """0.5 at threshold, 1 at `good` (< threshold), 0 at twice the threshold."""
    if value <= threshold:
        return 0.5 + 0.5 * min(1.0, (threshold - value) / (threshold - good))
    return 0.5 * max(0.0, 1.0 - (value - threshold) / threshold)


def _above_log(value: float, threshold: float, good: float) -> float:
    """As _above on a log scale (focus spans orders of magnitude); 0 at threshold / 10."""
    if value <= 0:
        return 0.0
    x, t, g = math.log(value), math.log(threshold), math.log(good)
    if x >= t:
        return 0.5 + 0.5 * min(1.0, (x - t) / (g - t))
    return 0.5 * max(0.0, 1.0 - (t - x) / math.log(10))


def _shrink(coarse: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The FOV without its rim, at full size: `coarse` (the FOV sampled every 4th pixel)
    eroded once and scaled back up takes 4-8 pixels off the edge, at a tenth of the cost
    of a full-size erosion."""
    eroded = ndimage.binary_erosion(coarse, _STRUCTURE)
    inner: npt.NDArray[np.bool_] = np.repeat(np.repeat(eroded, 4, axis=0), 4, axis=1)
    return inner
