"""Model manifest: the default class table and validation of a manifest file."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.inference import ModelManifest, ModelUnavailable
from app.inference.manifest import DEFAULT_MANIFEST, MAX_INPUT_SIZE
from app.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD

THREE = {
    "classes": [
        {"code": "glaucoma", "es": "Glaucoma", "en": "Glaucoma"},
        {"code": "normal", "es": "Normal", "en": "Normal"},
        {"code": "keratitis", "es": "Queratitis", "en": "Keratitis"},
    ]
}


def test_default_manifest_is_the_api_class_table() -> None:
    assert DEFAULT_MANIFEST.codes == ("glaucoma", "diabetic_retinopathy", "normal", "cataract")
    assert DEFAULT_MANIFEST.label("diabetic_retinopathy") == "Retinopatía diabética"
    assert DEFAULT_MANIFEST.label("diabetic_retinopathy", "en") == "Diabetic retinopathy"
    assert DEFAULT_MANIFEST.label("cataract", "es") == "Catarata"
    assert DEFAULT_MANIFEST.label("cataract", "en-GB") == "Cataract"
    assert DEFAULT_MANIFEST.input_size == 224
    assert DEFAULT_MANIFEST.mean == IMAGENET_MEAN
    assert DEFAULT_MANIFEST.std == IMAGENET_STD
    with pytest.raises(KeyError):
        DEFAULT_MANIFEST.label("unknown")


def test_manifest_file_with_defaults() -> None:
    manifest = ModelManifest.parse(json.dumps(THREE), "model.json")
    assert manifest.codes == ("glaucoma", "normal", "keratitis")
    assert manifest.num_classes == 3
    assert manifest.input_size == 224
    assert manifest.label("keratitis", "en") == "Keratitis"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": []}, "classes"),
        ({"classes": [THREE["classes"][0], THREE["classes"][0]]}, "unique"),
        ({"input_size": 0}, "input_size"),
        ({"input_size": 2048}, "input_size 2048 is over the 1024 px cap"),
        ({"input_size": 4096}, "input_size 4096 is over the 1024 px cap"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.2, 0.0, 0.2]}, "positive"),
        ({"classes": [{"code": "Bad Code", "es": "x", "en": "x"}]}, "code"),
        ({"labels": ["x"]}, "labels"),
    ],
)
def test_invalid_manifest_is_refused_clearly(change: dict[str, Any], message: str) -> None:
    with pytest.raises(
        ModelUnavailable, match=f"invalid model manifest model.json(.|\\n)*{message}"
    ):
        ModelManifest.parse(json.dumps({**THREE, **change}), "model.json")


def test_input_size_is_capped_at_1024() -> None:
    assert MAX_INPUT_SIZE == 1024
    manifest = ModelManifest.parse(json.dumps({**THREE, "input_size": 1024}), "model.json")
    assert manifest.input_size == 1024
    with pytest.raises(ModelUnavailable, match="over the 1024 px cap"):
        ModelManifest.parse(json.dumps({**THREE, "input_size": 1025}), "model.json")


def test_manifest_that_is_not_json_is_refused() -> None:
    with pytest.raises(ModelUnavailable, match="invalid model manifest"):
        ModelManifest.parse(b"\xff not json", "s3://b/model.json")
