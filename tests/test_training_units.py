"""The learning loop's pure parts: recipes, the per-doctor cap, temperature scaling,
referral thresholds, the statistics behind the gates, and the manifest temperature at
inference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from app.config import REPOSITORY_RECIPES_DIR
from app.inference.backends import TorchBackend, softmax
from app.inference.manifest import DEFAULT_MANIFEST, ModelManifest
from app.inference.network import load_network, seeded_state_dict
from app.registry.performance import wilson_interval
from app.schemas.recipes import Gate
from app.training.calibration import derive_thresholds, fit_temperature
from app.training.calibration import softmax as training_softmax
from app.training.evaluation import ece, evaluate, mcnemar_p, paired_difference_ci, referral_outcome
from app.training.examples import Examples
from app.training.job_inputs import cap_per_doctor
from app.training.recipes import load_recipes, parse_recipe
from app.training.trainer import Progress, train

CODES = DEFAULT_MANIFEST.codes


def test_the_repositorys_recipes_are_valid_and_versioned() -> None:
    recipes = load_recipes(REPOSITORY_RECIPES_DIR)
    assert {"fine-tune-head", "fine-tune-all"} <= set(recipes)
    for name, loaded in recipes.items():
        assert loaded.recipe.name == name and loaded.recipe.version >= 1
        assert len(loaded.sha256) == 64
        assert loaded.recipe.max_share_per_doctor < 1  # the feedback-loop guard is on
        assert {g.name for g in loaded.recipe.gates} >= {
            "min_test_images_per_class",
            "recall_diff_lower_bound",
            "ece_max",
        }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: other\n", "named after"),  # a later key overrides the earlier one
        ("trainable_layers: [layer9]\n", "layer9"),
        ("learning_rate: {max: 1.0e-5, min: 1.0e-3}\n", "must not exceed"),
        ("surprise: 1\n", "Extra inputs"),
        ("gates: [{name: ece_max, threshold: 0.1}, {name: ece_max, threshold: 0.2}]\n", "once"),
    ],
)
def test_a_recipe_that_does_not_validate_is_refused(text: str, problem: str) -> None:
    base = (REPOSITORY_RECIPES_DIR / "fine-tune-head.yaml").read_text()
    with pytest.raises(ValueError, match=problem):
        parse_recipe((base + text).encode(), "fine-tune-head")
    with pytest.raises(ValueError, match="mapping"):
        parse_recipe(b"- a list\n", "x")
    with pytest.raises(ValueError, match="not YAML"):
        parse_recipe(b"name: [unclosed\n", "x")


def test_an_invalid_recipe_file_is_left_out(tmp_path: Path) -> None:
    good = (REPOSITORY_RECIPES_DIR / "fine-tune-head.yaml").read_bytes()
    (tmp_path / "fine-tune-head.yaml").write_bytes(good)
    (tmp_path / "bad.yaml").write_text("name: bad\nversion: 0\n")
    assert list(load_recipes(tmp_path)) == ["fine-tune-head"]
    assert load_recipes(tmp_path / "missing") == {}


# --------------------------------------------------------------------------- the cap


def test_no_doctor_exceeds_the_share_after_the_cap() -> None:
    doctors: list[int | None] = [1] * 6 + [2] * 2 + [None] * 2
    keys = [f"image-{i}" for i in range(len(doctors))]
    kept, dropped = cap_per_doctor(keys, doctors, 0.5)
    assert dropped == {"1": 2}
    assert len(kept) == 8
    assert sum(doctors[i] == 1 for i in kept) <= 0.5 * len(kept)
    assert all(i in kept for i in (6, 7, 8, 9))  # the other doctor and the imports stay
    assert cap_per_doctor(keys, doctors, 0.5) == (kept, dropped)  # the same subset
    assert cap_per_doctor(keys, doctors, 1.0) == (list(range(10)), {})
    alone, gone = cap_per_doctor(keys[:3], [1, 1, 1], 0.4)
    assert alone == [] and gone == {"1": 3}


# --------------------------------------------------------------------------- calibration


def test_temperature_scaling_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(5)
    true_logits = rng.normal(0, 1.5, (4000, 4))
    labels = np.asarray([rng.choice(4, p=p) for p in training_softmax(true_logits)], dtype=np.int64)
    fitted = fit_temperature(true_logits * 3.0, labels)
    assert fitted == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.1)
    assert fit_temperature(np.zeros((0, 4)), np.zeros(0, np.int64)) == 1.0


def test_referral_thresholds_keep_the_target_sensitivity_on_calibration() -> None:
    probabilities = np.full((12, 4), 0.1)
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2]
    for i, s in enumerate(scores):
        probabilities[i, 0] = s  # ten glaucoma images
    labels = np.asarray([0] * 10 + [2, 2], np.int64)
    thresholds, how = derive_thresholds(
        probabilities,
        labels,
        CODES,
        {"glaucoma": 0.5, "cataract": 0.5},
        target_sensitivity=0.8,
        min_positives=5,
    )
    assert thresholds["glaucoma"] == 0.4  # the 8th highest of 10: 80% still referred
    assert (probabilities[:10, 0] >= thresholds["glaucoma"]).mean() >= 0.8
    assert how["glaucoma"] == {"threshold": 0.4, "positives": 10, "derived": True}
    assert thresholds["cataract"] == 0.5 and how["cataract"]["derived"] is False


# --------------------------------------------------------------------------- statistics


def _pairs(a: int, b: int, c: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray([True] * a + [True] * b + [False] * c + [False] * d)
    second = np.asarray([True] * a + [False] * b + [True] * c + [False] * d)
    return first, second


def test_newcombes_paired_interval_reduces_to_the_unpaired_one_without_correlation() -> None:
    first, second = _pairs(4, 2, 6, 3)  # a*d == b*c: phi = 0
    low, high = paired_difference_ci(first, second)  # type: ignore[misc]
    n = 15
    p1, p2 = 6 / n, 10 / n
    l1, u1 = wilson_interval(6, n)  # type: ignore[misc]
    l2, u2 = wilson_interval(10, n)  # type: ignore[misc]
    assert low == pytest.approx(p1 - p2 - math.hypot(p1 - l1, u2 - p2))
    assert high == pytest.approx(p1 - p2 + math.hypot(u1 - p1, p2 - l2))
    # Positively correlated pairs (most concordant) narrow the interval.
    c_low, c_high = paired_difference_ci(*_pairs(20, 2, 1, 20))  # type: ignore[misc]
    u_low, u_high = paired_difference_ci(*_pairs(11, 11, 10, 11))  # type: ignore[misc]
    assert c_low < (2 - 1) / 43 < c_high and c_high - c_low < u_high - u_low
    assert paired_difference_ci(np.zeros(0, bool), np.zeros(0, bool)) is None


def test_mcnemar_exact_p_value() -> None:
    first, second = _pairs(12, 9, 2, 21)
    assert mcnemar_p(first, second) == pytest.approx(2 * (1 + 11 + 55) / 2**11)
    assert mcnemar_p(*_pairs(5, 0, 0, 5)) == 1.0


def test_ece_and_referral_outcome() -> None:
    probabilities = np.asarray([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    labels = np.asarray([0, 1, 1, 1], np.int64)
    # bin 9: accuracy 1/2 at confidence 0.9; bin 8: 1 at 0.8; bin 6: 1 at 0.6
    assert ece(probabilities, labels) == pytest.approx(0.5 * 0.4 + 0.25 * 0.2 + 0.25 * 0.4)
    sensitivity, specificity = referral_outcome(
        probabilities, labels, ("glaucoma", "normal"), {"glaucoma": 0.5}
    )
    assert sensitivity == 1.0 and specificity == pytest.approx(2 / 3)


def test_gates_pass_fail_and_missing_values() -> None:
    labels = np.asarray([0, 0, 1, 1, 2, 2, 3, 3], np.int64)
    good = np.eye(4)[labels] * 0.9 + 0.025
    bad = np.full((8, 4), 0.25)
    bad[:, 2] = 0.4  # always "normal"
    gates = [
        Gate(name="min_test_images_per_class", threshold=2),
        Gate(name="recall_diff_lower_bound", threshold=-0.5),
        Gate(name="ece_max", threshold=0.2),
        Gate(name="referral_sensitivity_min", threshold=0.9),
    ]
    result = evaluate(
        labels=labels,
        candidate=good,
        candidate_uncalibrated=good,
        parent=bad,
        codes=CODES,
        temperature=1.0,
        thresholds={"glaucoma": 0.5, "cataract": 0.5},
        parent_thresholds={"glaucoma": 0.5, "cataract": 0.5},
        gates=gates,
    )
    assert result["passed"] is True
    assert result["accuracy"] == 1.0 and result["parent_accuracy"] == 0.25
    assert [g["name"] for g in result["gates"]] == [
        "min_test_images_per_class",
        "recall_diff_lower_bound:glaucoma",
        "recall_diff_lower_bound:cataract",
        "ece_max",
        "referral_sensitivity_min",
    ]
    swapped = evaluate(
        labels=labels,
        candidate=bad,
        candidate_uncalibrated=bad,
        parent=good,
        codes=CODES,
        temperature=1.0,
        thresholds={"glaucoma": 0.5, "cataract": 0.5},
        parent_thresholds={"glaucoma": 0.5, "cataract": 0.5},
        gates=[*gates, Gate(name="min_test_images_per_class", threshold=3)][1:],
    )
    failed = {g["name"] for g in swapped["gates"] if not g["passed"]}
    assert swapped["passed"] is False
    assert {"recall_diff_lower_bound:glaucoma", "referral_sensitivity_min"} <= failed
    empty = evaluate(
        labels=labels[:2],
        candidate=good[:2],
        candidate_uncalibrated=good[:2],
        parent=bad[:2],
        codes=CODES,
        temperature=1.0,
        thresholds={"cataract": 0.5},
        parent_thresholds={"cataract": 0.5},
        gates=[Gate(name="recall_diff_lower_bound", threshold=-1.0)],
    )
    assert empty["gates"] == [
        {
            "name": "recall_diff_lower_bound:cataract",
            "passed": False,  # no cataract image: nothing shows it is not worse
            "value": None,
            "threshold": -1.0,
        }
    ]


# --------------------------------------------------------------------------- inference


def test_the_manifest_temperature_scales_the_served_probabilities() -> None:
    assert DEFAULT_MANIFEST.temperature == 1.0
    with pytest.raises(ValueError):
        ModelManifest(classes=DEFAULT_MANIFEST.classes, temperature=0)
    network = load_network(seeded_state_dict(4, 3), 4)
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        logits = network(torch.from_numpy(batch)).numpy()
    plain = TorchBackend(network, threads=1, device="cpu").run(batch)
    warm = TorchBackend(network, threads=1, device="cpu", temperature=2.5).run(batch)
    assert np.allclose(plain, softmax(logits), atol=1e-6)
    assert np.allclose(warm, softmax(logits / 2.5), atol=1e-6)
    assert np.allclose(warm.sum(axis=1), 1.0)
    assert warm.max() < plain.max()  # a temperature above 1 softens


# --------------------------------------------------------------------------- the fit loop


class _GlobalRngMeddler:
    """Training hooks that, between batches, reseed and draw from torch's global
    generator: what another thread of the same process (a model built for a swap) does."""

    def __init__(self, meddle: bool) -> None:
        self.meddle = meddle
        self.calls = 0

    def should_stop(self) -> str | None:
        return None

    def progress(self, progress: Progress) -> None:
        self.calls += 1
        if self.meddle:
            torch.manual_seed(1000 + self.calls)
            torch.rand(97)

    def checkpoint(self, epoch: int, data: bytes) -> None:
        pass


def test_a_jobs_weights_do_not_depend_on_torchs_global_generator() -> None:
    head = (REPOSITORY_RECIPES_DIR / "fine-tune-head.yaml").read_bytes()
    recipe = parse_recipe(head, "fine-tune-head").recipe
    recipe = recipe.model_copy(update={"epochs": 2, "batch_size": 4, "early_stopping": None})
    assert recipe.augmentation.rotation_degrees and recipe.augmentation.brightness
    rng = np.random.default_rng(7)
    train_set = Examples(
        rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
        np.arange(12, dtype=np.int64) % len(CODES),
    )
    validation = Examples(train_set.images[:4], train_set.labels[:4])
    weights: list[dict[str, torch.Tensor]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic both times
    try:
        with torch.random.fork_rng(devices=[]):  # the suite gets its global generator back
            for meddle in (False, True):
                network = load_network(seeded_state_dict(len(CODES), 3), len(CODES))
                hooks = _GlobalRngMeddler(meddle)
                outcome = train(
                    network, recipe, train_set, validation, mean=DEFAULT_MANIFEST.mean,
                    std=DEFAULT_MANIFEST.std, seed=11, hooks=hooks, device=torch.device("cpu"),
                )  # fmt: skip
                assert hooks.calls == 2 * 3 + 2  # each batch, each epoch's end
                assert all(isinstance(m, torch.nn.Dropout) for m in network.base.fc[2:3])
                weights.append(outcome.state_dict)
    finally:
        torch.set_num_threads(threads)
    plain, meddled = weights
    assert plain.keys() == meddled.keys()
    assert all(torch.equal(plain[key], meddled[key]) for key in plain)
