"""The quality gate across exposures: a real fundus photograph (skimage's retina.jpg) made
darker and brighter, through the same decode path as an upload, is refused for its
exposure (UNDEREXPOSED / OVEREXPOSED), never as NO_FUNDUS; pictures that are no fundus
stay NO_FUNDUS at any exposure. `bench/quality_sweep.py` prints the measures behind it."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from PIL import Image

from app.clinical import Quality, QualityThresholds, assess
from app.clinical.quality import fov_threshold
from app.inference.preprocess import decode_upload
from tests.support.fundus import encoded, grey, retina_path, scaled, text_page

THRESHOLDS = QualityThresholds()
DARK_GAINS = (0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
MID_GAINS = (0.5, 0.7, 1.0)
BRIGHT_GAINS = (1.3, 1.6, 2.0, 2.5, 3.0, 4.0)
DARK_GAMMAS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # a darker tone curve: out = in ** gamma


def gate(image: Image.Image, thresholds: QualityThresholds = THRESHOLDS) -> Quality:
    decoded = decode_upload(encoded(image), max_pixels=50_000_000)
    return assess(decoded.picture, (decoded.width, decoded.height), thresholds)


@cache
def retina() -> Image.Image:
    return Image.open(retina_path()).convert("RGB")


@cache
def retina_at(gain: float) -> Quality:
    return gate(scaled(retina(), gain))


def gamma(image: Image.Image, power: float) -> Image.Image:
    pixels = (np.asarray(image, np.float64) / 255) ** power
    return Image.fromarray(np.round(255 * pixels).astype(np.uint8))


def test_the_gain_sweep_covers_refusals_on_both_sides() -> None:
    # Otherwise the sweeps below would check nothing on that side.
    assert not retina_at(DARK_GAINS[0]).gradable and not retina_at(BRIGHT_GAINS[-1]).gradable


@pytest.mark.parametrize("gain", DARK_GAINS)
def test_a_dark_real_fundus_is_underexposed_never_no_fundus(gain: float) -> None:
    quality = retina_at(gain)
    if not quality.gradable:
        assert quality.reasons == ("UNDEREXPOSED",), (gain, quality)
        assert quality.score < 0.5


@pytest.mark.parametrize("gain", BRIGHT_GAINS)
def test_a_bright_real_fundus_is_overexposed_never_no_fundus(gain: float) -> None:
    quality = retina_at(gain)
    if not quality.gradable:
        assert "OVEREXPOSED" in quality.reasons, (gain, quality)
        assert not {"NO_FUNDUS", "UNDEREXPOSED"} & set(quality.reasons), (gain, quality)


@pytest.mark.parametrize("gain", MID_GAINS)
def test_mid_exposures_of_the_real_fundus_are_gradable(gain: float) -> None:
    quality = retina_at(gain)
    assert quality.gradable and quality.score >= 0.5, (gain, quality)


def test_the_field_of_view_found_does_not_depend_on_the_exposure() -> None:
    reference = retina_at(1.0).measures
    for gain in DARK_GAINS + MID_GAINS + BRIGHT_GAINS:
        measures = retina_at(gain).measures
        assert measures.fov_fraction == pytest.approx(reference.fov_fraction, abs=0.03), gain
        assert measures.corner_fov == 0.0, gain
        assert measures.fov_diameter_px == pytest.approx(reference.fov_diameter_px, rel=0.05)


def test_refusals_are_monotone_in_the_gain() -> None:
    # Darker than a refused dark step is refused too; brighter than a refused bright one too.
    dark = [retina_at(g).gradable for g in DARK_GAINS + MID_GAINS]
    bright = [retina_at(g).gradable for g in MID_GAINS + BRIGHT_GAINS]
    assert dark == sorted(dark) and bright == sorted(bright, reverse=True)


@pytest.mark.parametrize("power", DARK_GAMMAS)
def test_a_darker_tone_curve_is_underexposed_never_no_fundus(power: float) -> None:
    quality = gate(gamma(retina(), power))
    if not quality.gradable:
        assert quality.reasons == ("UNDEREXPOSED",), (power, quality)
    assert power < DARK_GAMMAS[-1] or not quality.gradable  # the darkest step is refused


@pytest.mark.parametrize("level", [0, 3, 12, 40, 128, 250, 255])
def test_a_grey_card_is_no_fundus_at_any_level(level: int) -> None:
    quality = gate(grey(512, level))
    assert quality.reasons == ("NO_FUNDUS",) and quality.score < 0.5


@pytest.mark.parametrize("gain", [0.02, 0.05, 0.3, 1.0, 3.0])
@pytest.mark.parametrize("inverted", [False, True], ids=["black-on-white", "white-on-black"])
def test_a_page_of_text_is_no_fundus_at_any_exposure(gain: float, inverted: bool) -> None:
    page = text_page(1024)
    if inverted:
        page = Image.fromarray(255 - np.asarray(page))
    quality = gate(scaled(page, gain))
    assert quality.reasons == ("NO_FUNDUS",) and quality.score < 0.5


def test_the_fov_level_setting_is_relative_to_the_white_point() -> None:
    flat = np.full((224, 224), 200, np.uint8)
    assert fov_threshold(flat, 20) == 20 * 200 // 255
    assert fov_threshold(np.zeros((224, 224), np.uint8), 20) == 2  # never under the noise
    # The picture's brightest 1% does not move it: a few saturated pixels are not the
    # white point of a dark picture.
    flat[:10, :10] = 255
    assert fov_threshold(flat, 20) == 20 * 200 // 255
    # A level near the white point leaves only the brightest pixels: no fundus.
    assert gate(retina(), QualityThresholds(fov_level=250)).reasons == ("NO_FUNDUS",)
