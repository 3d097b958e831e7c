"""The process-wide classifier: weights + backend + micro-batcher, built once in the lifespan.

`inference_ms` in a Classification is the wall time of the model call that computed the
image; with micro-batching that call is shared with its batch mates (`batch_size`), and
the wait before it is reported apart as `queue_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

import numpy as np

from app import metrics
from app.config import Settings
from app.errors import ModelUnavailable
from app.inference.arrays import FloatArray
from app.inference.backends import Backend, create_backend
from app.inference.batcher import MicroBatcher
from app.inference.explain import Explainer
from app.inference.manifest import ModelManifest
from app.inference.weights import LoadedWeights, WeightsInfo, load_weights

__all__ = [
    "Classification",
    "Classifier",
    "ModelUnavailable",
    "build_classifier",
    "classifier_from",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Classification:
    probabilities: list[float]  # model (manifest) order, sums to 1
    top: int  # index of the most probable class
    inference_ms: float
    queue_ms: float
    batch_size: int

    @property
    def top_probability(self) -> float:
        return self.probabilities[self.top]


class Classifier:
    def __init__(
        self,
        *,
        weights: WeightsInfo,
        manifest: ModelManifest,
        backend: Backend,
        batcher: MicroBatcher,
        explainer: Explainer | None = None,
    ) -> None:
        self.weights = weights
        self.manifest = manifest
        self.explainer = explainer  # Grad-CAM on its own copy of these weights (None: none)
        self.backend_name = backend.name
        self.ready = False  # True once a warm-up batch has gone through
        self._batcher = batcher
        self._shape = (3, manifest.input_size, manifest.input_size)

    def expecting(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the decoding of an image that will be classified: the batcher then waits
        for it to share a batch instead of running a lone request at once."""
        return self._batcher.expecting()

    @property
    def version(self) -> str:
        return self.weights.version

    @property
    def demo(self) -> bool:
        return self.weights.demo

    async def classify(self, array: FloatArray) -> Classification:
        """Classify one preprocessed image (decode_upload(...).array)."""
        if array.shape != self._shape or array.dtype != np.float32:
            raise ValueError(
                f"expected a float32 array {self._shape}, got {array.dtype} {array.shape}"
            )
        try:
            with metrics.pending_inference():
                result = await self._batcher.submit(array)
        except ModelUnavailable:
            raise
        except Exception as exc:
            raise ModelUnavailable(f"inference failed: {exc}") from exc
        metrics.observe_inference(result.queue_ms, result.run_ms)
        probabilities = [float(p) for p in result.probabilities]
        return Classification(
            probabilities=probabilities,
            top=int(np.argmax(result.probabilities)),
            inference_ms=result.run_ms,
            queue_ms=result.queue_ms,
            batch_size=result.batch_size,
        )

    async def warm_up(self) -> None:
        await self.classify(np.zeros(self._shape, np.float32))
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self._batcher.close()


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def inference_threads(settings: Settings) -> int:
    """This process's core budget for the model: INFERENCE_THREADS, or its share of the
    usable cores when WEB_WORKERS processes serve on the same host."""
    if settings.inference_threads:
        return settings.inference_threads
    return max(1, usable_cores() // settings.web_workers)


def lone_threads(settings: Settings) -> int:
    """Intra-op threads of a lone batch: INFERENCE_THREADS, or every usable core of the
    host. A process that finds nothing else to do is most likely the only busy one (one
    doctor, one upload), so it may take the cores its idle siblings leave; when several
    are busy, their batches are not lone and run on their shares."""
    return settings.inference_threads or usable_cores()


def thread_plan(settings: Settings) -> tuple[int, int]:
    """(batch workers, intra-op threads each), so that workers x intra-op <= the budget.

    By default two workers share the budget: one runs a batch while the other collects
    the next, which bench/predict.py measured faster than one worker on all cores. A lone
    batch runs on the whole budget instead (the backend's run_all_cores).
    """
    budget = inference_threads(settings)
    workers = min(settings.inference_workers or 2, budget)
    return workers, max(1, budget // workers)


CPU_MAX_BATCH = 8
GPU_MAX_BATCH = 32  # a GPU gains from larger batches; the CPU saturates by about 8


def max_batch(settings: Settings, device: str) -> int:
    """MAX_BATCH, or the device's default."""
    if settings.max_batch:
        return settings.max_batch
    return GPU_MAX_BATCH if device == "cuda" else CPU_MAX_BATCH


async def build_classifier(settings: Settings) -> Classifier:
    """Fetch and verify weights, build the backend, warm up; blocking work runs in threads.

    Raises ModelUnavailable when the model cannot be served.
    """
    return await classifier_from(settings, await load_weights(settings))


async def classifier_from(settings: Settings, loaded: LoadedWeights) -> Classifier:
    """Build the backend for loaded weights and warm up; blocking work runs in threads."""
    # Copied before the backend takes the network (to a GPU, or into an ONNX export).
    explainer = await asyncio.to_thread(Explainer.for_classifier, loaded.network, loaded.manifest)
    workers, threads = thread_plan(settings)
    backend = await asyncio.to_thread(
        create_backend,
        settings.inference_backend,
        loaded.network,
        weights_sha256=loaded.info.sha256,
        input_size=loaded.manifest.input_size,
        cache_dir=settings.model_cache_dir,
        threads=threads,
        all_cores=lone_threads(settings),
        device=settings.inference_device,
        temperature=loaded.manifest.temperature,
    )
    batch = max_batch(settings, backend.device)
    batcher = MicroBatcher(
        backend.run,
        max_batch=batch,
        wait_ms=settings.batch_wait_ms,
        workers=workers,
        run_all_cores=backend.run_all_cores,
    )
    classifier = Classifier(
        weights=loaded.info,
        manifest=loaded.manifest,
        backend=backend,
        batcher=batcher,
        explainer=explainer,
    )
    try:
        await classifier.warm_up()
    except BaseException:
        await classifier.close()
        raise
    log.info(
        "classifier ready: version=%s demo=%s backend=%s device=%s classes=%s"
        " workers=%d x threads=%d lone batches on %s threads max_batch=%d source=%s",
        classifier.version,
        classifier.demo,
        classifier.backend_name,
        backend.device,
        ",".join(loaded.manifest.codes),
        workers,
        threads,
        lone_threads(settings) if backend.run_all_cores else threads,
        batch,
        loaded.info.source,
    )
    return classifier
