"""Backend selection and the ONNX export cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.config import Settings
from app.inference import ModelUnavailable, backends
from app.inference.backends import (
    OnnxBackend,
    TorchBackend,
    create_backend,
    onnx_providers,
    softmax,
    torch_device,
)
from app.inference.classifier import CPU_MAX_BATCH, GPU_MAX_BATCH, max_batch
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
    assert backend.device == "cpu" and backend.run_all_cores is None
    probabilities = backend.run(np.zeros((3, 3, 224, 224), np.float32))
    assert probabilities.shape == (3, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)


def test_onnx_offers_an_all_cores_session_with_the_same_results(
    network: EyeDiseaseClassifier, tmp_path: Path
) -> None:
    def onnx(threads: int, all_cores: int) -> OnnxBackend:
        return OnnxBackend.for_network(
            network,
            weights_sha256=SHA,
            input_size=224,
            cache_dir=tmp_path,
            threads=threads,
            all_cores=all_cores,
            device="cpu",
        )

    shared = onnx(1, 2)
    assert shared.device == "cpu" and shared.run_all_cores is not None
    batch = np.random.default_rng(5).standard_normal((3, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(shared.run_all_cores(batch), shared.run(batch), atol=1e-6)
    assert onnx(2, 2).run_all_cores is None  # no wider plan than the one it has


def test_device_choice_follows_inference_device() -> None:
    cpu_only = ["CPUExecutionProvider"]
    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(cpu_only, "auto") == cpu_only
    assert onnx_providers(with_cuda, "cpu") == cpu_only
    for device in ("auto", "cuda"):
        providers = onnx_providers(with_cuda, device)  # type: ignore[arg-type]
        assert providers[0] == ("CUDAExecutionProvider", {"use_tf32": "0"})
        assert providers[-1] == "CPUExecutionProvider"
    with pytest.raises(ModelUnavailable, match="install onnxruntime-gpu"):
        onnx_providers(cpu_only, "cuda")
    assert torch_device("cpu").type == "cpu"
    settings = Settings(_env_file=None)
    assert settings.max_batch is None
    assert (max_batch(settings, "cpu"), max_batch(settings, "cuda")) == (
        CPU_MAX_BATCH,
        GPU_MAX_BATCH,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present here")
def test_cuda_is_refused_where_there_is_none(
    network: EyeDiseaseClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_export(*_args: object) -> None:
        raise AssertionError("exported for a device that is not there")

    monkeypatch.setattr(backends, "_export", no_export)
    assert torch_device("auto").type == "cpu"
    for kind in ("auto", "onnx", "torch"):
        with pytest.raises(ModelUnavailable, match="INFERENCE_DEVICE=cuda"):
            create_backend(
                kind,  # type: ignore[arg-type]
                network,
                weights_sha256=SHA,
                input_size=224,
                cache_dir=tmp_path,
                threads=2,
                device="cuda",
            )
