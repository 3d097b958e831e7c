"""Backend selection and the ONNX export cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.inference import ModelUnavailable, backends
from app.inference.backends import OnnxBackend, TorchBackend, create_backend, softmax
from app.inference.network import EyeDiseaseClassifier, load_network, seeded_state_dict

SHA = "ab" * 32


@pytest.fixture(scope="module")
def network() -> EyeDiseaseClassifier:
    return load_network(seeded_state_dict(4, seed=3), 4)


def make(
    kind: backends.BackendKind, network: EyeDiseaseClassifier, cache: Path
) -> backends.Backend:
    return create_backend(
        kind, network, weights_sha256=SHA, input_size=224, cache_dir=cache, threads=2
    )


def test_softmax_rows_sum_to_one_and_survive_large_logits() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], np.float32))
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(probabilities[1], 1 / 3)


def test_onnx_export_is_cached_by_weights_hash(
    network: EyeDiseaseClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make("auto", network, tmp_path)
    assert isinstance(first, OnnxBackend)
    exported = list((tmp_path / "onnx").iterdir())
    assert [p.name for p in exported] == [f"{SHA}-224-opset17.onnx"]  # no .part left behind

    def no_export(*_args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(backends, "_export", no_export)
    second = make("onnx", network, tmp_path)
    assert isinstance(second, OnnxBackend)
    batch = np.zeros((2, 3, 224, 224), np.float32)
    np.testing.assert_allclose(second.run(batch), first.run(batch), atol=1e-12)


def test_damaged_onnx_cache_is_exported_again(
    network: EyeDiseaseClassifier, tmp_path: Path
) -> None:
    cached = tmp_path / "onnx" / f"{SHA}-224-opset17.onnx"
    cached.parent.mkdir()
    cached.write_bytes(b"not an onnx model")
    backend = make("onnx", network, tmp_path)
    assert backend.name == "onnx"
    assert cached.stat().st_size > 1_000_000


def test_auto_falls_back_to_torch_and_onnx_fails_loudly(
    network: EyeDiseaseClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_export(*_args: object) -> None:
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(backends, "_export", broken_export)
    assert isinstance(make("auto", network, tmp_path), TorchBackend)
    with pytest.raises(ModelUnavailable, match="exporter broke"):
        make("onnx", network, tmp_path)
    assert not list((tmp_path / "onnx").iterdir())


def test_without_onnxruntime_auto_uses_torch(
    network: EyeDiseaseClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "_onnxruntime", lambda: None)
    assert make("auto", network, tmp_path).name == "torch"
    with pytest.raises(ModelUnavailable, match="onnxruntime is not installed"):
        make("onnx", network, tmp_path)


def test_torch_backend_runs_on_cpu_here(network: EyeDiseaseClassifier, tmp_path: Path) -> None:
    backend = make("torch", network, tmp_path)
    assert isinstance(backend, TorchBackend)
    assert backend.device.type == "cpu"
    probabilities = backend.run(np.zeros((3, 3, 224, 224), np.float32))
    assert probabilities.shape == (3, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
