"""The quality gate on photographs built here (and one real fundus photograph), through the
same decode path as an upload: each failure gives its reason code and retake_image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.clinical import GATE_SIZE, Quality, QualityThresholds, ReferralPolicy, assess, recommend
from app.inference.preprocess import decode_upload
from tests.support.fundus import blurred, encoded, fundus, grey, retina_path, scaled, text_page

THRESHOLDS = QualityThresholds()


def gate(image: Image.Image, fmt: str = "JPEG", *, fundus_model: bool = True) -> Quality:
    decoded = decode_upload(encoded(image, fmt), max_pixels=50_000_000)
    assert decoded.picture.shape == (GATE_SIZE, GATE_SIZE, 3)
    return assess(decoded.picture, (decoded.width, decoded.height), THRESHOLDS, fundus=fundus_model)


def recommendation_of(quality: Quality) -> str:
    # Probabilities that alone would give "routine": only the gate can change the outcome.
    return recommend(
        [0.05, 0.05, 0.85, 0.05],
        ["glaucoma", "diabetic_retinopathy", "normal", "cataract"],
        gradable=quality.gradable,
        policy=ReferralPolicy(),
    )


def test_sharp_well_exposed_synthetic_fundus_is_gradable() -> None:
    quality = gate(fundus(1024))
    assert quality.gradable and quality.reasons == ()
    assert quality.score >= 0.5
    assert recommendation_of(quality) == "routine"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: blurred(fundus(1024)), "BLURRY"),
        (lambda: scaled(fundus(1024), 0.2), "UNDEREXPOSED"),
        (lambda: scaled(fundus(1024), 2.2), "OVEREXPOSED"),
        (lambda: fundus(1024, disc=0.12), "NO_FUNDUS"),  # cropped to a tiny disc
        (lambda: fundus(1024).resize((300, 300)), "LOW_RESOLUTION"),
        (lambda: grey(1024), "NO_FUNDUS"),
        (lambda: text_page(1024), "NO_FUNDUS"),
    ],
    ids=["blurred", "darkened", "overexposed", "tiny-disc", "small", "grey", "text"],
)
def test_each_defect_gives_its_reason_and_retake_image(make, reason: str) -> None:  # type: ignore[no-untyped-def]
    quality = gate(make())
    assert not quality.gradable
    assert reason in quality.reasons
    assert quality.score < 0.5
    assert recommendation_of(quality) == "retake_image"


def test_png_and_jpeg_of_the_same_photograph_agree() -> None:
    image = fundus(768)
    assert gate(image, "PNG").gradable and gate(image, "JPEG").gradable
    assert gate(blurred(image), "PNG").reasons == ("BLURRY",)


@pytest.mark.parametrize("side", [None, 2048])
def test_a_real_fundus_photograph_is_gradable_at_its_size_and_upscaled(side: int | None) -> None:
    image = Image.open(retina_path()).convert("RGB")
    assert image.size == (1411, 1411)
    if side is not None:
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    quality = gate(image)
    assert quality.gradable, quality
    assert quality.measures.fov_diameter_px > 0.9 * image.width


def test_the_real_photograph_blurred_or_darkened_is_not() -> None:
    image = Image.open(retina_path()).convert("RGB")
    assert gate(blurred(image)).reasons == ("BLURRY",)
    assert gate(scaled(image, 0.25)).reasons == ("UNDEREXPOSED",)


def test_focus_does_not_depend_on_the_photograph_size_or_exposure_gain() -> None:
    small, large = gate(fundus(768)), gate(fundus(2048))
    assert large.measures.focus == pytest.approx(small.measures.focus, rel=0.25)
    dim = gate(scaled(fundus(1024), 0.6)).measures.focus
    assert dim == pytest.approx(gate(fundus(1024)).measures.focus, rel=0.25)


def test_thresholds_are_the_settings() -> None:
    image = fundus(1024)
    picture = decode_upload(encoded(image), max_pixels=50_000_000).picture
    strict = QualityThresholds(min_focus=1.0)  # nothing is that sharp
    assert assess(picture, image.size, strict).reasons == ("BLURRY",)
    lenient = QualityThresholds(min_fov_diameter_px=4096)
    assert assess(picture, image.size, lenient).reasons == ("LOW_RESOLUTION",)


def test_external_eye_models_skip_the_fundus_check() -> None:
    # A well-exposed, detailed picture that fills the frame: no fundus, but for an
    # external-eye model that is what a photograph looks like.
    rng = np.random.default_rng(5)
    texture = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    image = Image.fromarray(texture).resize((1024, 1024), Image.Resampling.NEAREST)
    assert gate(image).reasons == ("NO_FUNDUS",)
    assert gate(image, fundus_model=False).gradable


def test_the_gate_refuses_a_picture_of_another_size() -> None:
    with pytest.raises(ValueError, match="uint8"):
        assess(np.zeros((100, 100, 3), np.uint8), (100, 100), THRESHOLDS)
