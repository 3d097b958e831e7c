"""The checks a set of weights passes before the registry accepts it (all blocking: run
`validate_model` in a worker thread).

1. strict load into EyeDiseaseClassifier with the manifest's number of classes;
2. ONNX export (kept in the model cache under the name the ONNX backend looks for, so a
   later activation does not export again);
3. torch/ONNX parity: the largest |logit| difference on a fixed probe batch must be at
   most PARITY_TOLERANCE (1e-4), and every logit finite;
4. one smoke prediction: a synthetic fundus-like PNG decoded with the manifest's
   preprocessing, classified, giving finite probabilities over the manifest's classes
   that sum to 1.

Any failure raises InvalidModel (422 INVALID_MODEL) with the reason.
"""

from __future__ import annotations

import importlib
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.errors import ImageRejected, InvalidModel, ModelUnavailable
from app.inference.backends import export_onnx, onnx_cache_path, softmax
from app.inference.manifest import ModelManifest
from app.inference.network import EyeDiseaseClassifier
from app.inference.preprocess import decode_upload
from app.inference.weights import load_bytes

PARITY_TOLERANCE = 1e-4
PROBE_BATCH = 4
PROBE_SEED = 16


@dataclass(frozen=True)
class ValidatedModel:
    sha256: str
    manifest: ModelManifest
    parity: float  # the largest |logit| difference torch vs ONNX on the probe batch
    smoke_probabilities: list[float]

    @property
    def version(self) -> str:
        return self.sha256[:12]


def probe_batch(input_size: int) -> np.ndarray:
    """The fixed probe batch: standard-normal inputs (the scale of normalized images)."""
    rng = np.random.default_rng(PROBE_SEED)
    return rng.standard_normal((PROBE_BATCH, 3, input_size, input_size)).astype(np.float32)


def smoke_image(side: int = 256) -> bytes:
    """A dark disc on black with a bright spot, as PNG: enough structure for a smoke test."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    disc = np.clip(1.0 - np.hypot(x, y) * 2.2, 0, 1)
    spot = np.exp(-((x - 0.15) ** 2 + y**2) / 0.002)
    rgb = np.stack([disc * 200 + spot * 55, disc * 90 + spot * 120, disc * 40], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def validate_model(
    data: bytes, manifest: ModelManifest, *, cache_dir: Path, max_pixels: int
) -> ValidatedModel:
    try:
        network, sha256 = load_bytes(data, manifest, "the weights")
    except ModelUnavailable as exc:
        raise InvalidModel(f"strict load failed: {exc}") from exc
    size = manifest.input_size
    probe = probe_batch(size)
    with torch.inference_mode():
        reference = network(torch.from_numpy(probe)).numpy()
    if not np.isfinite(reference).all():
        raise InvalidModel("the network gives non-finite logits on the probe batch")

    path = onnx_cache_path(cache_dir, sha256, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        try:
            export_onnx(network, part, size)
        except Exception as exc:  # the exporter raises many types
            raise InvalidModel(f"ONNX export failed: {exc}") from exc
        session = _session(part)
        (logits,) = session.run(None, {session.get_inputs()[0].name: probe})
        ours = np.asarray(logits)
        if ours.shape != reference.shape or not np.isfinite(ours).all():
            raise InvalidModel(f"the ONNX export gives logits of shape {ours.shape}, or non-finite")
        parity = float(np.abs(ours - reference).max())
        if parity > PARITY_TOLERANCE:
            raise InvalidModel(
                f"torch/ONNX parity failed: logits differ by up to {parity:.3g} on the probe "
                f"batch (tolerance {PARITY_TOLERANCE:g})"
            )
        probabilities = _smoke(session, network, manifest, max_pixels)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    return ValidatedModel(sha256, manifest, parity, probabilities)


def _session(path: Path) -> Any:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise InvalidModel("onnxruntime is needed to check ONNX parity") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidModel(f"the ONNX export does not load: {exc}") from exc


def _smoke(
    session: Any, network: EyeDiseaseClassifier, manifest: ModelManifest, max_pixels: int
) -> list[float]:
    try:
        decoded = decode_upload(
            smoke_image(),
            max_pixels=max_pixels,
            input_size=manifest.input_size,
            mean=manifest.mean,
            std=manifest.std,
        )
    except ImageRejected as exc:
        raise InvalidModel(f"smoke prediction: the manifest's preprocessing fails: {exc}") from exc
    (logits,) = session.run(None, {session.get_inputs()[0].name: decoded.array[np.newaxis]})
    probabilities = softmax(np.asarray(logits))
    if probabilities.shape != (1, manifest.num_classes) or not np.isfinite(probabilities).all():
        raise InvalidModel(
            f"smoke prediction: {probabilities.shape[-1]} outputs for "
            f"{manifest.num_classes} classes, or non-finite"
        )
    if abs(float(probabilities.sum()) - 1.0) > 1e-6:
        raise InvalidModel("smoke prediction: probabilities do not sum to 1")
    return [float(p) for p in probabilities[0]]
