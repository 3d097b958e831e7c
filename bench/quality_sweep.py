"""The quality gate across exposures, and what its field-of-view detection costs.

1. Sweeps skimage's real fundus photograph (retina.jpg, 1411 x 1411) through exposure
   gains 0.03 .. 20 and tone curves (out = in ** gamma, darker and lighter), then grey
   cards and pages of text at several exposures, each through the upload's decode path
   (JPEG quality 92, as tests/support/fundus.py encodes). Prints the gate's measures and verdict
   for each, beside the verdict of an absolute FOV level (the gate before it was made
   relative to the white point: `brightest > QUALITY_FOV_LEVEL`). The sweep tables in
   docs/quality-gate.md come from it.
2. Times `assess` per image on the 224 px pictures of the real photograph at gains 0.5, 1
   and 2 (where both levels find the same FOV, so the same work follows), with the
   relative FOV level and with the absolute one, alternating rounds, and prints the ratio
   and the relative level's own step. Nothing asserts on time.

    .venv/bin/python bench/quality_sweep.py [--calls 300]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import _common  # noqa: F401  (puts the project root on sys.path)
import numpy as np
from PIL import Image

from app.clinical import quality
from app.clinical.quality import Quality, QualityThresholds, UInt8Image, assess
from app.inference.preprocess import decode_upload
from tests.support.fundus import encoded, grey, retina_path, scaled, text_page

DARKER = (0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.7, 1.0)
BRIGHTER = (1.15, 1.3, 1.6, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0, 12.0, 15.0, 20.0)
GAMMAS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 0.7, 0.5)
THRESHOLDS = QualityThresholds()

Picture = tuple[UInt8Image, tuple[int, int]]


@contextmanager
def absolute_level() -> Iterator[None]:
    """The gate as it was: the FOV threshold is QUALITY_FOV_LEVEL itself."""
    relative = quality.fov_threshold
    quality.fov_threshold = lambda brightest, level: level
    try:
        yield
    finally:
        quality.fov_threshold = relative


def picture(image: Image.Image) -> Picture:
    decoded = decode_upload(encoded(image), max_pixels=50_000_000)
    return decoded.picture, (decoded.width, decoded.height)


def verdict(q: Quality) -> str:
    return ", ".join(q.reasons) or "gradable"


def gamma(image: Image.Image, power: float) -> Image.Image:
    pixels = (np.asarray(image, np.float64) / 255) ** power
    return Image.fromarray(np.round(255 * pixels).astype(np.uint8))


def sweep() -> list[tuple[str, Picture]]:
    retina = Image.open(retina_path()).convert("RGB")
    cases = [(f"retina x {g:g}", picture(scaled(retina, g))) for g in DARKER + BRIGHTER]
    cases += [(f"retina ^ {p:g}", picture(gamma(retina, p))) for p in GAMMAS]
    cases += [(f"grey card {v}", picture(grey(512, v))) for v in (0, 3, 12, 40, 128, 250)]
    page = text_page(1024)
    inverted = Image.fromarray(255 - np.asarray(page))
    for g in (0.02, 0.3, 1.0, 3.0):
        cases.append((f"text page x {g:g}", picture(scaled(page, g))))
        cases.append((f"white-on-black text x {g:g}", picture(scaled(inverted, g))))
    return cases


def print_table(cases: list[tuple[str, Picture]]) -> None:
    print(
        f"{'picture':<28} {'level':>5} {'FOV':>5} {'corners':>7} {'diam px':>7} {'focus':>8} "
        f"{'bright':>6} {'dark':>5} {'clip':>5}  verdict (absolute level 20: verdict)"
    )
    for name, (pic, size) in cases:
        q = assess(pic, size, THRESHOLDS)
        with absolute_level():
            before = assess(pic, size, THRESHOLDS)
        m = q.measures
        level = quality.fov_threshold(pic.max(axis=2), THRESHOLDS.fov_level)
        changed = "" if before.reasons == q.reasons else f"   (was: {verdict(before)})"
        print(
            f"{name:<28} {level:>5} {m.fov_fraction:>5.2f} {m.corner_fov:>7.2f} "
            f"{m.fov_diameter_px:>7.0f} {m.focus:>8.1e} {m.brightness:>6.0f} "
            f"{m.dark_fraction:>5.2f} {m.clipped_fraction:>5.2f}  {verdict(q)}{changed}"
        )


def per_image_ms(pictures: list[Picture], calls: int) -> tuple[float, float, float]:
    """Milliseconds per `assess` call with the relative and with the absolute FOV level
    (medians of 7 rounds each, alternating so that both see the same load on a shared
    machine), and of the relative level's own step (`fov_threshold`) alone."""

    def run() -> None:
        for p, s in pictures:
            assess(p, s, THRESHOLDS)

    def timed(work: Callable[[], object]) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            work()
        return (time.perf_counter() - started) * 1000 / (calls * len(pictures))

    brightest = [p.max(axis=2) for p, _ in pictures]
    level = THRESHOLDS.fov_level
    relative, absolute, step = [], [], []
    run()
    for _ in range(7):
        relative.append(timed(run))
        with absolute_level():
            absolute.append(timed(run))
        step.append(timed(lambda: [quality.fov_threshold(b, level) for b in brightest]))
    return float(np.median(relative)), float(np.median(absolute)), float(np.median(step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per picture per round")
    args = parser.parse_args()
    cases = sweep()
    print_table(cases)
    timed = ("retina x 0.5", "retina x 1", "retina x 2")
    pictures = [p for name, p in cases if name in timed]
    relative, absolute, step = per_image_ms(pictures, args.calls)
    print(
        f"\nassess, one thread, {', '.join(timed)}, {args.calls} calls x 7 rounds: "
        f"{relative:.3f} ms/image with the relative FOV level, {absolute:.3f} ms/image with "
        f"the absolute one (x{relative / absolute:.2f}); the white point and level alone: "
        f"{step * 1000:.0f} us/image ({100 * step / relative:.0f}% of the gate)"
    )


if __name__ == "__main__":
    main()
