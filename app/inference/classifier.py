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
from app.inference.arrays import FloatArray
from app.inference.backends import Backend, create_backend
from app.inference.batcher import MicroBatcher
from app.inference.errors import ModelUnavailable
from app.inference.manifest import ModelManifest
from app.inference.weights import WeightsInfo, load_weights

__all__ = ["Classification", "Classifier", "ModelUnavailable", "build_classifier"]

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
    ) -> None:
        self.weights = weights
        self.manifest = manifest
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


def inference_threads(settings: Settings) -> int:
    """This process's core budget for the model: INFERENCE_THREADS, or its share of the
    usable cores when WEB_WORKERS processes serve on the same host."""
    if settings.inference_threads:
        return settings.inference_threads
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, cores // settings.web_workers)


def thread_plan(settings: Settings) -> tuple[int, int]:
    """(batch workers, intra-op threads each), so that workers x intra-op <= the budget.

    By default two workers share the budget: one runs a batch while the other collects
    the next, which bench/predict.py measured faster than one worker on all cores.
    """
    budget = inference_threads(settings)
    workers = min(settings.inference_workers or 2, budget)
    return workers, max(1, budget // workers)


async def build_classifier(settings: Settings) -> Classifier:
    """Fetch and verify weights, build the backend, warm up; blocking work runs in threads.

    Raises ModelUnavailable when the model cannot be served.
    """
    loaded = await load_weights(settings)
    workers, threads = thread_plan(settings)
    backend = await asyncio.to_thread(
        create_backend,
        settings.inference_backend,
        loaded.network,
        weights_sha256=loaded.info.sha256,
        input_size=loaded.manifest.input_size,
        cache_dir=settings.model_cache_dir,
        threads=threads,
    )
    batcher = MicroBatcher(
        backend.run, max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms, workers=workers
    )
    classifier = Classifier(
        weights=loaded.info, manifest=loaded.manifest, backend=backend, batcher=batcher
    )
    try:
        await classifier.warm_up()
    except BaseException:
        await classifier.close()
        raise
    log.info(
        "classifier ready: version=%s demo=%s backend=%s classes=%s workers=%d x threads=%d"
        " source=%s",
        classifier.version,
        classifier.demo,
        classifier.backend_name,
        ",".join(loaded.manifest.codes),
        workers,
        threads,
        loaded.info.source,
    )
    return classifier
