"""GPU path: the CUDA backends give the CPU's probabilities within 1e-3.

Runs wherever a CUDA device is usable by ONNX Runtime (onnxruntime-gpu's
CUDAExecutionProvider) or by torch, and skips, saying which, where neither is. The
weights are the calibrated ones of the parity test, so probabilities move with the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.inference.backends import Backend, OnnxBackend, TorchBackend, _onnxruntime
from app.inference.classifier import GPU_MAX_BATCH
from app.inference.network import EyeDiseaseClassifier, load_network
from app.inference.preprocess import decode_upload
from app.inference.weights import state_dict_sha256
from tests.support.images import encode, synthetic_photo
from tests.support.inference import sensitive_state_dict

GPU_TOLERANCE = 1e-3


def _ort_has_cuda() -> bool:
    ort = _onnxruntime()
    return ort is not None and "CUDAExecutionProvider" in ort.get_available_providers()


ORT_CUDA = _ort_has_cuda()
TORCH_CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(
    not (ORT_CUDA or TORCH_CUDA),
    reason="no GPU here: torch.cuda.is_available() is False and ONNX Runtime offers no "
    "CUDAExecutionProvider (onnxruntime-gpu not installed, or no CUDA device)",
)


@pytest.fixture(scope="module")
def network() -> EyeDiseaseClassifier:
    return load_network(sensitive_state_dict(), 4)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """32 preprocessed photographs of several sizes: a full GPU batch."""
    photos = [
        encode(synthetic_photo(320 + 48 * i, 240 + 32 * i, 100 + i), "JPEG", quality=90)
        for i in range(GPU_MAX_BATCH)
    ]
    return np.stack([decode_upload(p, max_pixels=50_000_000).array for p in photos])


def onnx(network: EyeDiseaseClassifier, cache: Path, device: str) -> OnnxBackend:
    return OnnxBackend.for_network(
        network,
        weights_sha256=state_dict_sha256(network.state_dict()),
        input_size=224,
        cache_dir=cache,
        threads=2,
        device=device,  # type: ignore[arg-type]
    )


def gpu_backends(network: EyeDiseaseClassifier, cache: Path) -> list[Backend]:
    found: list[Backend] = []
    if ORT_CUDA:
        found.append(onnx(network, cache, "cuda"))
    if TORCH_CUDA:
        found.append(TorchBackend(network, threads=2, device="cuda"))
    return found


@needs_gpu
def test_gpu_matches_the_cpu(
    network: EyeDiseaseClassifier, images: np.ndarray, tmp_path: Path
) -> None:
    cpu = onnx(network, tmp_path, "cpu")
    assert cpu.device == "cpu"
    expected = cpu.run(images)
    for backend in gpu_backends(network, tmp_path):
        assert backend.device == "cuda"
        assert backend.run_all_cores is None  # the CPU-only second session is not made
        together = backend.run(images)
        alone = np.concatenate([backend.run(image[None]) for image in images[:4]])
        error = float(np.abs(together - expected).max())
        print(f"\n{backend.name} on cuda vs onnx on cpu: largest difference {error:.2e}")
        assert error <= GPU_TOLERANCE
        assert float(np.abs(alone - expected[:4]).max()) <= GPU_TOLERANCE
        assert (together.argmax(axis=1) == expected.argmax(axis=1)).all()
