"""Weights resolution: local files, manifests beside them, demo weights, S3 with a cache."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.inference import ModelUnavailable, build_classifier
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.network import seeded_state_dict
from app.inference.weights import load_weights, manifest_path
from tests.support.harness import s3_test_settings
from tests.support.inference import sensitive_state_dict, state_dict_file_bytes

THREE_CLASSES = {
    "classes": [
        {"code": "glaucoma", "es": "Glaucoma", "en": "Glaucoma"},
        {"code": "normal", "es": "Normal", "en": "Normal"},
        {"code": "keratitis", "es": "Queratitis", "en": "Keratitis"},
    ]
}


def settings(cache: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, model_cache_dir=cache, inference_backend="torch", **overrides)


def s3_settings(cache: Path, endpoint: str, source: str, **overrides: Any) -> Settings:
    return s3_test_settings(
        endpoint, model_cache_dir=cache, inference_backend="torch", model_source=source, **overrides
    )


def test_manifest_path_beside_the_weights() -> None:
    assert manifest_path(Path("/m/eye.v2.pth")) == "/m/eye.v2.json"
    assert manifest_path(Path("/m/weights")) == "/m/weights.json"


async def test_local_weights_version_is_the_file_hash(tmp_path: Path) -> None:
    data = state_dict_file_bytes(seeded_state_dict(4, seed=5))
    path = tmp_path / "eye.pth"
    path.write_bytes(data)
    loaded = await load_weights(settings(tmp_path / "cache", model_source=str(path)))
    assert loaded.info.version == hashlib.sha256(data).hexdigest()[:12]
    assert loaded.info.path == path
    assert (loaded.info.demo, loaded.info.downloaded) == (False, False)
    assert loaded.manifest == DEFAULT_MANIFEST


async def test_local_manifest_changes_the_class_list(tmp_path: Path) -> None:
    path = tmp_path / "eye.pth"
    path.write_bytes(state_dict_file_bytes(seeded_state_dict(3, seed=5)))
    (tmp_path / "eye.json").write_text(json.dumps(THREE_CLASSES))
    classifier = await build_classifier(settings(tmp_path / "cache", model_source=str(path)))
    try:
        assert classifier.manifest.codes == ("glaucoma", "normal", "keratitis")
        result = await classifier.classify(np.zeros((3, 224, 224), np.float32))
        assert len(result.probabilities) == 3
    finally:
        await classifier.close()


@pytest.mark.parametrize(
    ("manifest", "weights_classes", "message"),
    [
        ({"classes": []}, 4, "invalid model manifest .*eye.json"),
        ("{not json", 4, "invalid model manifest"),
        (THREE_CLASSES, 4, "3 classes"),  # weights trained for 4 classes
    ],
)
async def test_bad_manifest_or_mismatch_is_a_clear_start_up_error(
    tmp_path: Path, manifest: Any, weights_classes: int, message: str
) -> None:
    path = tmp_path / "eye.pth"
    path.write_bytes(state_dict_file_bytes(seeded_state_dict(weights_classes, seed=5)))
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (tmp_path / "eye.json").write_text(text)
    with pytest.raises(ModelUnavailable, match=message):
        await load_weights(settings(tmp_path / "cache", model_source=str(path)))


@pytest.mark.parametrize("content", [None, b"not a checkpoint", b"PK\x03\x04broken zip"])
async def test_missing_or_corrupt_local_weights(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "eye.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelUnavailable, match=r"eye\.pth"):
        await load_weights(settings(tmp_path / "cache", model_source=str(path)))


async def test_pickled_objects_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "eye.pth"
    path.write_bytes(pickle.dumps(Path("/etc/passwd")))  # any non-tensor global
    with pytest.raises(ModelUnavailable):
        await load_weights(settings(tmp_path / "cache", model_source=str(path)))


async def test_demo_weights_are_deterministic_and_flagged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.inference.weights"):
        first = await load_weights(settings(tmp_path))
    second = await load_weights(settings(tmp_path))
    assert first.info.demo and first.info.source == "demo"
    assert first.info.version == second.info.version
    assert first.manifest == DEFAULT_MANIFEST
    assert any("DEMO weights" in r.getMessage() for r in caplog.records)


async def test_production_refuses_demo_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="production"):
        await load_weights(settings(tmp_path, environment="production"))


async def test_s3_weights_are_cached_by_etag(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    key = "models/eye.pth"
    first_bytes = state_dict_file_bytes(sensitive_state_dict(seed=2))
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=first_bytes)
    config = s3_settings(tmp_path, s3_endpoint, f"s3://{s3_bucket}/{key}")

    classifier = await build_classifier(config)
    try:
        assert classifier.weights.downloaded
        assert classifier.version == hashlib.sha256(first_bytes).hexdigest()[:12]
        assert not classifier.demo
        result = await classifier.classify(np.zeros((3, 224, 224), np.float32))
        assert abs(sum(result.probabilities) - 1) < 1e-9
    finally:
        await classifier.close()

    again = await load_weights(config)
    assert not again.info.downloaded  # same ETag: served from the cache
    assert again.info.version == classifier.version

    second_bytes = state_dict_file_bytes(sensitive_state_dict(seed=3))
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=second_bytes)
    replaced = await load_weights(config)
    assert replaced.info.downloaded
    assert replaced.info.version == hashlib.sha256(second_bytes).hexdigest()[:12]
    cache = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert cache == [replaced.info.path.name]  # type: ignore[union-attr]  # old one pruned


async def test_s3_manifest_beside_the_object(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(
        Bucket=s3_bucket, Key="m/eye.pth", Body=state_dict_file_bytes(seeded_state_dict(3, 5))
    )
    s3_client.put_object(
        Bucket=s3_bucket, Key="m/eye.json", Body=json.dumps(THREE_CLASSES).encode()
    )
    loaded = await load_weights(s3_settings(tmp_path, s3_endpoint, f"s3://{s3_bucket}/m/eye.pth"))
    assert loaded.manifest.codes == ("glaucoma", "normal", "keratitis")


async def test_s3_model_key_setting_is_honoured(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(
        Bucket=s3_bucket, Key="eye.pth", Body=state_dict_file_bytes(seeded_state_dict(4, 5))
    )
    config = s3_settings(tmp_path, s3_endpoint, "", aws_s3_bucket=s3_bucket, model_s3_key="eye.pth")
    loaded = await load_weights(config)
    assert loaded.info.source == f"s3://{s3_bucket}/eye.pth"


async def test_s3_missing_or_corrupt_object(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    with pytest.raises(ModelUnavailable, match="not found"):
        await load_weights(s3_settings(tmp_path, s3_endpoint, f"s3://{s3_bucket}/absent.pth"))

    s3_client.put_object(Bucket=s3_bucket, Key="bad.pth", Body=b"garbage" * 100)
    with pytest.raises(ModelUnavailable, match="not a state dict"):
        await load_weights(s3_settings(tmp_path, s3_endpoint, f"s3://{s3_bucket}/bad.pth"))
    assert list((tmp_path / "weights").iterdir()) == []  # no cache entry, no .part file


async def test_s3_unreachable(tmp_path: Path) -> None:
    config = s3_settings(tmp_path, "http://127.0.0.1:9", "s3://bucket/eye.pth")
    with pytest.raises(ModelUnavailable, match="cannot fetch"):
        await load_weights(config)
