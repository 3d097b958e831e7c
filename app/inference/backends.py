"""Inference backends: `run(batch (N,3,S,S) float32) -> probabilities (N,C) float64`.

ONNX Runtime is the fast path on CPU; the ONNX file is exported once from the loaded
torch network and cached by weights sha256, so later starts skip the export. The torch
backend is the fallback and the reference.

INFERENCE_DEVICE picks the device: "cpu", "cuda" (ONNX Runtime's CUDA execution provider,
from the onnxruntime-gpu package, or torch on CUDA; refused when neither works), or
"auto" (CUDA when one of them can use it). TF32 is off on CUDA so that results stay within
1e-3 of the CPU's.

On CPU the ONNX backend can also hold a second session on every usable core
(`run_all_cores`): the batcher runs a lone batch on it, and the batches of a busy
service on the per-worker session. ONNX Runtime sessions are independent thread pools, so
this needs no pool of our own. torch has one process-wide intra-op pool, so its backend
has no such second path.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch

from app.errors import ModelUnavailable
from app.inference.arrays import FloatArray, ProbArray, RunBatch
from app.inference.network import EyeDiseaseClassifier

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_TOLERANCE = 1e-3  # max |logit| difference accepted between torch and a fresh export

BackendKind = Literal["auto", "onnx", "torch"]
DeviceKind = Literal["auto", "cpu", "cuda"]
Providers = list[str | tuple[str, dict[str, str]]]  # ONNX Runtime's providers argument


class Backend(Protocol):
    name: str
    device: str  # "cpu" or "cuda": where the model actually runs
    run_all_cores: RunBatch | None  # the same model on every core (CPU only), if offered

    def run(self, batch: FloatArray) -> ProbArray: ...


def softmax(logits: npt.NDArray[np.floating], temperature: float = 1.0) -> ProbArray:
    """Row-wise softmax of logits / temperature in float64, shared by both backends so they
    post-process alike (the manifest's `temperature`, fitted by a training job; 1.0: none)."""
    scaled = logits.astype(np.float64)
    if temperature != 1.0:
        scaled = scaled / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs: ProbArray = exp / exp.sum(axis=1, keepdims=True)
    return probs


def torch_device(device: DeviceKind) -> torch.device:
    """The torch device INFERENCE_DEVICE asks for; ModelUnavailable when CUDA is not there."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("INFERENCE_DEVICE=cuda but torch sees no CUDA device")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


class TorchBackend:
    name = "torch"
    run_all_cores: RunBatch | None = None  # one process-wide intra-op pool: no second plan

    def __init__(
        self,
        network: EyeDiseaseClassifier,
        *,
        threads: int,
        device: DeviceKind = "auto",
        temperature: float = 1.0,
    ) -> None:
        self.temperature = temperature
        self._device = torch_device(device)
        self.device = self._device.type
        if self.device == "cpu":
            torch.set_num_threads(threads)
        else:  # full fp32, as on the CPU
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._network = network.to(self._device).eval()

    def run(self, batch: FloatArray) -> ProbArray:
        with torch.inference_mode():
            logits = self._network(torch.from_numpy(batch).to(self._device))
        return softmax(logits.float().cpu().numpy(), self.temperature)


def onnx_providers(
    available: list[str], device: DeviceKind
) -> list[str | tuple[str, dict[str, str]]]:
    """The execution providers for INFERENCE_DEVICE, given ort.get_available_providers()."""
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelUnavailable(
            "INFERENCE_DEVICE=cuda but ONNX Runtime has no CUDAExecutionProvider "
            "(install onnxruntime-gpu)"
        )
    return ["CPUExecutionProvider"]


class OnnxBackend:
    name = "onnx"

    def __init__(
        self,
        model_path: Path,
        *,
        threads: int,
        all_cores: int | None = None,
        device: DeviceKind = "auto",
        temperature: float = 1.0,
    ) -> None:
        """`all_cores`: intra-op threads of a second CPU session for lone batches (none when
        it is not above `threads`, or on CUDA)."""
        self.temperature = temperature
        ort = _onnxruntime()
        if ort is None:
            raise ModelUnavailable("onnxruntime is not installed")
        providers = onnx_providers(ort.get_available_providers(), device)
        self._session = self._open(ort, model_path, threads, providers)
        active = self._session.get_providers()
        self.device = "cuda" if "CUDAExecutionProvider" in active else "cpu"
        if device == "cuda" and self.device != "cuda":  # the provider failed to load
            raise ModelUnavailable(f"INFERENCE_DEVICE=cuda but ONNX Runtime runs on {active}")
        self._input = self._session.get_inputs()[0].name
        self.run_all_cores: RunBatch | None = None
        if self.device == "cpu" and all_cores is not None and all_cores > threads:
            wide = self._open(ort, model_path, all_cores, providers)
            self.run_all_cores = lambda batch: self._run_on(wide, batch)

    @staticmethod
    def _open(
        ort: ModuleType,
        model_path: Path,
        threads: int,
        providers: Providers,
    ) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle workers must not spin: image decoding shares the same few cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(model_path), options, providers=providers)

    @classmethod
    def for_network(
        cls,
        network: EyeDiseaseClassifier,
        *,
        weights_sha256: str,
        input_size: int,
        cache_dir: Path,
        threads: int,
        all_cores: int | None = None,
        device: DeviceKind = "auto",
        temperature: float = 1.0,
    ) -> OnnxBackend:
        """Load the cached export for these weights, exporting (and checking) it if absent."""
        ort = _onnxruntime()
        if ort is None:
            raise ModelUnavailable("onnxruntime is not installed")
        onnx_providers(ort.get_available_providers(), device)  # refuse before any export
        path = onnx_cache_path(cache_dir, weights_sha256, input_size)

        def load(source: Path) -> OnnxBackend:
            return cls(
                source,
                threads=threads,
                all_cores=all_cores,
                device=device,
                temperature=temperature,
            )

        if path.is_file():
            try:
                return load(path)
            except ModelUnavailable:  # no such device, no onnxruntime: not the file's fault
                raise
            except Exception:  # a damaged cache file: export again
                log.warning("cached ONNX model %s does not load; exporting again", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            _export(network, part, input_size)
            backend = load(part)
            backend.check_against(network, input_size)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        log.info("exported ONNX model %s", path)
        return backend

    def run(self, batch: FloatArray) -> ProbArray:
        return self._run_on(self._session, batch)

    def _run_on(self, session: Any, batch: FloatArray) -> ProbArray:
        (logits,) = session.run(None, {self._input: batch})
        return softmax(np.asarray(logits), self.temperature)

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
    all_cores: int | None = None,
    device: DeviceKind = "auto",
    temperature: float = 1.0,
) -> Backend:
    """Blocking (export, session creation): call it in a worker thread.

    "auto" means onnx when onnxruntime imports and the export works (and, for
    INFERENCE_DEVICE=cuda, runs on CUDA), else torch.
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
                    all_cores=all_cores,
                    device=device,
                    temperature=temperature,
                )
            except Exception as exc:
                if kind == "onnx":
                    raise ModelUnavailable(f"ONNX backend unavailable: {exc}") from exc
                log.warning("ONNX backend unavailable, using torch", exc_info=True)
    return TorchBackend(network, threads=threads, device=device, temperature=temperature)


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
