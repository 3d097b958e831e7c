"""Parity: numpy preprocessing + torch/ONNX backends against the torchvision reference.

The weights are calibrated (see tests/support/inference.py) so probabilities are far from
uniform and move with the input; otherwise a 1e-4 tolerance would prove little.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.inference.backends import OnnxBackend, TorchBackend, softmax
from app.inference.network import EyeDiseaseClassifier, load_network
from app.inference.preprocess import decode_upload
from app.inference.weights import state_dict_sha256
from tests.support.images import encode, synthetic_photo
from tests.support.inference import REFERENCE, sensitive_state_dict

EXACT = 1e-4  # same pixels: only float differences between backends
FAST = 1e-2  # reduced-scale JPEG decode
IMAGES = {
    "png-300x200": encode(synthetic_photo(300, 200, 21), "PNG"),
    "jpeg-640x480": encode(synthetic_photo(640, 480, 22), "JPEG", quality=90),
    "jpeg-1024x768": encode(synthetic_photo(1024, 768, 23), "JPEG", quality=95),
    "jpeg-2048x2048": encode(synthetic_photo(2048, 2048, 24), "JPEG", quality=90),
    "jpeg-2048x2048-b": encode(synthetic_photo(2048, 2048, 25), "JPEG", quality=85),
}
LARGEST: dict[str, float] = {}


@pytest.fixture(scope="module")
def network() -> EyeDiseaseClassifier:
    return load_network(sensitive_state_dict(), 4)


@pytest.fixture(scope="module")
def torch_backend(network: EyeDiseaseClassifier) -> TorchBackend:
    return TorchBackend(network, threads=2)


@pytest.fixture(scope="module")
def onnx_backend(
    network: EyeDiseaseClassifier, tmp_path_factory: pytest.TempPathFactory
) -> OnnxBackend:
    return OnnxBackend.for_network(
        network,
        weights_sha256=state_dict_sha256(network.state_dict()),
        input_size=224,
        cache_dir=Path(tmp_path_factory.mktemp("onnx-cache")),
        threads=2,
    )


def reference_probabilities(network: EyeDiseaseClassifier, data: bytes) -> np.ndarray:
    """The earlier back-end: full decode, torchvision transforms, torch model, softmax."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    with torch.inference_mode():
        logits = network(REFERENCE(image).unsqueeze(0))
    return softmax(logits.numpy())[0]


def record(name: str, value: float) -> float:
    LARGEST[name] = max(LARGEST.get(name, 0.0), value)
    return value


@pytest.fixture(scope="module", autouse=True)
def _report() -> object:
    yield
    print("\nlargest probability differences:", {k: f"{v:.2e}" for k, v in LARGEST.items()})


def test_weights_make_a_discriminating_model(network: EyeDiseaseClassifier) -> None:
    probabilities = np.stack([reference_probabilities(network, d) for d in IMAGES.values()])
    assert probabilities.max() > 0.6
    assert (probabilities.max(axis=0) - probabilities.min(axis=0)).max() > 0.3


@pytest.mark.parametrize("name", list(IMAGES))
def test_backends_match_the_reference(
    name: str,
    network: EyeDiseaseClassifier,
    torch_backend: TorchBackend,
    onnx_backend: OnnxBackend,
) -> None:
    data = IMAGES[name]
    reference = reference_probabilities(network, data)
    full = decode_upload(data, max_pixels=50_000_000, fast_jpeg=False).array[None]
    by_torch = torch_backend.run(full)[0]
    by_onnx = onnx_backend.run(full)[0]
    assert record("torch vs reference", float(np.abs(by_torch - reference).max())) <= EXACT
    assert record("onnx vs reference", float(np.abs(by_onnx - reference).max())) <= EXACT
    assert record("onnx vs torch", float(np.abs(by_onnx - by_torch).max())) <= EXACT
    assert abs(by_onnx.sum() - 1) < 1e-9
    assert int(np.argmax(by_onnx)) == int(np.argmax(reference))

    fast = decode_upload(data, max_pixels=50_000_000, fast_jpeg=True).array[None]
    assert (
        record(
            "fast decode (onnx) vs reference",
            float(np.abs(onnx_backend.run(fast)[0] - reference).max()),
        )
        <= FAST
    )


def test_batching_does_not_change_results(
    torch_backend: TorchBackend, onnx_backend: OnnxBackend
) -> None:
    arrays = np.stack([decode_upload(d, max_pixels=50_000_000).array for d in IMAGES.values()])
    for backend in (torch_backend, onnx_backend):
        together = backend.run(arrays)
        alone = np.concatenate([backend.run(a[None]) for a in arrays])
        assert together.shape == (len(IMAGES), 4)
        assert (
            record(f"{backend.name} batch vs alone", float(np.abs(together - alone).max())) <= 1e-5
        )
