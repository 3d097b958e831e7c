"""The recommendation: the pure rule (boundaries exact), and end to end through POST
/predict with models whose logits the test sets (the real architecture, its last layer's
weights zero and its bias the logits), thresholds read from the manifest beside them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from pydantic import ValidationError

from app.clinical import ReferralPolicy, recommend
from app.inference import ModelManifest
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.network import seeded_state_dict
from tests.support.factories import make_doctor
from tests.support.fundus import encoded, fundus, grey
from tests.support.harness import ClientFactory
from tests.support.predict import post_image

CODES = list(DEFAULT_MANIFEST.codes)  # glaucoma, diabetic_retinopathy, normal, cataract


def test_each_outcome_and_the_order_of_the_rules() -> None:
    policy = ReferralPolicy()
    assert recommend([0.6, 0.1, 0.25, 0.05], CODES, gradable=True, policy=policy) == "refer"
    assert recommend([0.05, 0.05, 0.85, 0.05], CODES, gradable=True, policy=policy) == "routine"
    assert recommend([0.2, 0.1, 0.4, 0.3], CODES, gradable=True, policy=policy) == "inconclusive"
    # Ungradable wins over everything, even a confident referable class.
    assert recommend([0.97, 0.01, 0.01, 0.01], CODES, gradable=False, policy=policy) == (
        "retake_image"
    )
    # A referable class at its threshold refers even when it is not the top-1.
    custom = ReferralPolicy(refer_at={"cataract": 0.25})
    assert recommend([0.0, 0.0, 0.75, 0.25], CODES, gradable=True, policy=custom) == "refer"


def test_the_band_boundary_is_exact() -> None:
    codes = ["normal", "other", "third"]  # nothing referable by default
    policy = ReferralPolicy(band=0.25, min_confidence=0.5)
    # Binary fractions: the margin is exactly 0.25, which is not under the band.
    assert recommend([0.625, 0.375, 0.0], codes, gradable=True, policy=policy) == "routine"
    just_under = [0.625, math.nextafter(0.375, 1.0), 0.0]
    assert recommend(just_under, codes, gradable=True, policy=policy) == "inconclusive"
    # min_confidence: at it is enough, just under is not.
    at = ReferralPolicy(band=0.0, min_confidence=0.625)
    assert recommend([0.625, 0.375, 0.0], codes, gradable=True, policy=at) == "routine"
    under = [math.nextafter(0.625, 0.0), 0.375, 0.0]
    assert recommend(under, codes, gradable=True, policy=at) == "inconclusive"
    per_class = ReferralPolicy(band=0.0, class_min_confidence={"normal": 0.7})
    assert recommend([0.625, 0.375, 0.0], codes, gradable=True, policy=per_class) == (
        "inconclusive"
    )


def test_refer_threshold_boundary_is_inclusive() -> None:
    policy = ReferralPolicy(refer_at={"glaucoma": 0.375})
    assert recommend([0.375, 0.0, 0.625, 0.0], CODES, gradable=True, policy=policy) == "refer"
    below = [math.nextafter(0.375, 0.0), 0.0, 0.625, 0.0]
    assert recommend(below, CODES, gradable=True, policy=policy) != "refer"


def test_the_manifest_carries_the_policy_and_checks_it() -> None:
    manifest = ModelManifest.parse(
        json.dumps(
            {
                "classes": [c.model_dump() for c in DEFAULT_MANIFEST.classes],
                "referral": {"refer_at": {"glaucoma": 0.8}, "band": 0.2, "min_confidence": 0.6},
            }
        ),
        "m.json",
    )
    assert manifest.referral.thresholds(manifest.codes) == {"glaucoma": 0.8}
    assert manifest.referral.band == 0.2 and manifest.modality == "fundus"
    assert DEFAULT_MANIFEST.referral.thresholds(DEFAULT_MANIFEST.codes) == {
        "glaucoma": 0.5,
        "diabetic_retinopathy": 0.5,
        "cataract": 0.5,
    }
    with pytest.raises(ValidationError, match="does not have"):
        ModelManifest(classes=DEFAULT_MANIFEST.classes, referral={"refer_at": {"keratitis": 0.5}})
    with pytest.raises(ValidationError):
        ModelManifest(classes=DEFAULT_MANIFEST.classes, referral={"band": 1.5})


# --------------------------------------------------------------------------- end to end


def controlled_model(tmp_path: Path, probabilities: list[float], **manifest: Any) -> str:
    """A .pth whose network outputs log(probabilities) for every input, and its manifest."""
    state = seeded_state_dict(len(CODES), seed=11)
    state["base.fc.3.weight"] = torch.zeros_like(state["base.fc.3.weight"])
    state["base.fc.3.bias"] = torch.log(torch.tensor(probabilities, dtype=torch.float32))
    name = f"m{len(list(tmp_path.iterdir()))}"
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    if manifest:
        body = {"classes": [c.model_dump() for c in DEFAULT_MANIFEST.classes], **manifest}
        (tmp_path / f"{name}.json").write_text(json.dumps(body))
    return str(path)


async def predict(client: httpx.AsyncClient, data: bytes) -> dict[str, Any]:
    doctor = await make_doctor(client.app)  # type: ignore[attr-defined]
    response = await post_image(client, doctor.headers, data)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    detail = await client.get(f"/api/v1/history/{body['id']}", headers=doctor.headers)
    listed = await client.get("/api/v1/history", headers=doctor.headers)
    for other in (detail.json(), listed.json()["items"][0]):
        assert other["quality"] == body["quality"]
        assert other["recommendation"] == body["recommendation"]
    return body


GOOD = encoded(fundus(1024))


@pytest.mark.parametrize(
    ("probabilities", "manifest", "expected"),
    [
        ([0.6, 0.1, 0.25, 0.05], {}, "refer"),
        # the same model, its manifest raising glaucoma's threshold above 0.6
        ([0.6, 0.1, 0.25, 0.05], {"referral": {"refer_at": {"glaucoma": 0.7}}}, "routine"),
        ([0.05, 0.05, 0.85, 0.05], {}, "routine"),
        ([0.2, 0.1, 0.4, 0.3], {}, "inconclusive"),
        # the manifest's band: a margin of 0.3 under a band of 0.4
        ([0.05, 0.05, 0.6, 0.3], {"referral": {"band": 0.4}}, "inconclusive"),
    ],
)
async def test_predict_recommends_from_the_models_outputs_and_manifest(
    make_client: ClientFactory,
    tmp_path: Path,
    probabilities: list[float],
    manifest: dict[str, Any],
    expected: str,
) -> None:
    source = controlled_model(tmp_path, probabilities, **manifest)
    async with make_client(model_source=source) as client:
        body = await predict(client, GOOD)
        assert [p["probability"] for p in body["probabilities"]] == pytest.approx(
            probabilities, abs=1e-5
        )
        assert body["quality"]["gradable"] is True and body["quality"]["reasons"] == []
        assert body["recommendation"] == expected
        retake = await predict(client, encoded(grey(512)))
        assert retake["quality"] == {
            "gradable": False,
            "score": retake["quality"]["score"],
            "reasons": ["NO_FUNDUS"],
        }
        assert retake["recommendation"] == "retake_image"


async def test_a_manifest_may_turn_the_gate_off(make_client: ClientFactory, tmp_path: Path) -> None:
    source = controlled_model(tmp_path, [0.05, 0.05, 0.85, 0.05], quality_gate=False)
    async with make_client(model_source=source) as client:
        body = await predict(client, encoded(grey(512)))
        assert body["quality"] is None
        assert body["recommendation"] == "routine"  # no gate: the classes alone decide
