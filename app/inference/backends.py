"""Inference backends: `run(batch (N,3,S,S) float32) -> probabilities (N,C) float64`.

ONNX Runtime is the fast path on CPU; the ONNX file is exported once from the loaded
torch network and cached by weights sha256, so later starts skip the export. The torch
backend is the fallback and the reference. Both pick CUDA when it is present.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from pathlib import Path
from types import ModuleType
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch

from app.inference.arrays import FloatArray, ProbArray
from app.inference.errors import ModelUnavailable
from app.inference.network import EyeDiseaseClassifier

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_TOLERANCE = 1e-3  # max |logit| difference accepted between torch and a fresh export

BackendKind = Literal["auto", "onnx", "torch"]


class Backend(Protocol):
    name: str

    def run(self, batch: FloatArray) -> ProbArray: ...


def softmax(logits: npt.NDArray[np.floating]) -> ProbArray:
    """Row-wise softmax in float64, shared by both backends so they post-process alike."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs: ProbArray = exp / exp.sum(axis=1, keepdims=True)
    return probs


class TorchBackend:
    name = "torch"

    def __init__(self, network: EyeDiseaseClassifier, *, threads: int) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
        self._network = network.to(self.device).eval()

    def run(self, batch: FloatArray) -> ProbArray:
        with torch.inference_mode():
            logits = self._network(torch.from_numpy(batch).to(self.device))
        return softmax(logits.float().cpu().numpy())


class OnnxBackend:
    name = "onnx"

    def __init__(self, model_path: Path, *, threads: int) -> None:
        ort = _onnxruntime()
        if ort is None:
            raise ModelUnavailable("onnxruntime is not installed")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle workers must not spin: image decoding shares the same few cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def for_network(
        cls,
        network: EyeDiseaseClassifier,
        *,
        weights_sha256: str,
        input_size: int,
        cache_dir: Path,
        threads: int,
    ) -> OnnxBackend:
        """Load the cached export for these weights, exporting (and checking) it if absent."""
        path = onnx_cache_path(cache_dir, weights_sha256, input_size)
        if path.is_file():
            try:
                return cls(path, threads=threads)
            except Exception:  # a damaged cache file: export again
                log.warning("cached ONNX model %s does not load; exporting again", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            _export(network, part, input_size)
            backend = cls(part, threads=threads)
            backend.check_against(network, input_size)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        log.info("exported ONNX model %s", path)
        return backend

    def run(self, batch: FloatArray) -> ProbArray:
        (logits,) = self._session.run(None, {self._input: batch})
        return softmax(np.asarray(logits))

    def check_against(self, network: EyeDiseaseClassifier, input_size: int) -> None:
        sample = np.random.default_rng(0).standard_normal((2, 3, input_size, input_size))
        sample = sample.astype(np.float32)
        (ours,) = self._session.run(None, {self._input: sample})
        with torch.inference_mode():
            reference = network(torch.from_numpy(sample)).numpy()
        error = float(np.abs(np.asarray(ours) - reference).max())
        if error > EXPORT_TOLERANCE:
            raise ModelUnavailable(f"ONNX export differs from torch by {error:.2e} in logits")


def onnx_cache_path(cache_dir: Path, weights_sha256: str, input_size: int) -> Path:
    """Where the ONNX export of these weights is cached (shared with model validation)."""
    return cache_dir / "onnx" / f"{weights_sha256}-{input_size}-opset{OPSET}.onnx"


def export_onnx(network: EyeDiseaseClassifier, path: Path, input_size: int) -> None:
    """Export the network to an ONNX file (batch axis dynamic); blocking."""
    _export(network, path, input_size)


def create_backend(
    kind: BackendKind,
    network: EyeDiseaseClassifier,
    *,
    weights_sha256: str,
    input_size: int,
    cache_dir: Path,
    threads: int,
) -> Backend:
    """Blocking (export, session creation): call it in a worker thread.

    "auto" means onnx when onnxruntime imports and the export works, else torch.
    """
    if kind != "torch":
        if _onnxruntime() is None:
            if kind == "onnx":
                raise ModelUnavailable("INFERENCE_BACKEND=onnx but onnxruntime is not installed")
        else:
            try:
                return OnnxBackend.for_network(
                    network,
                    weights_sha256=weights_sha256,
                    input_size=input_size,
                    cache_dir=cache_dir,
                    threads=threads,
                )
            except Exception as exc:
                if kind == "onnx":
                    raise ModelUnavailable(f"ONNX backend unavailable: {exc}") from exc
                log.warning("ONNX backend unavailable, using torch", exc_info=True)
    return TorchBackend(network, threads=threads)


def _export(network: EyeDiseaseClassifier, path: Path, input_size: int) -> None:
    network = network.cpu().eval()
    # The TorchScript exporter (dynamo=False) needs no extra packages (onnxscript).
    torch.onnx.export(
        network,
        (torch.zeros(1, 3, input_size, input_size),),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def _onnxruntime() -> ModuleType | None:
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        return None
