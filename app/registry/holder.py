"""The process's classifier behind leases, hot-swapped to follow the registry.

Each request leases the current classifier for as long as it runs (`lease()`); a swap
installs the new one for the requests that start after it, and the old one is closed
(its queued batches run to the end, its threads joined, its memory freed) once its last
lease is returned. So a request never meets a closed classifier and never mixes versions.

Every process converges on the registry's active version: the follower re-reads the
state row every MODEL_POLL_SECONDS (and at once when this process changed it), builds and
warms the new classifier off the event loop while the old one keeps serving, then swaps.
A process therefore serves only the new version at most MODEL_POLL_SECONDS + the build
time (weights fetched, ONNX session created or exported, warm-up) after the activation
committed; the activating process swaps before it answers.

The shadow classifier follows the same way; `sample_shadow` classifies a sampled upload
with it after the response has been sent and records the outcome apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.background import BackgroundTasks

from app.db.models import Prediction
from app.inference import Classifier, decode_upload
from app.inference.arrays import FloatArray
from app.repositories.model_versions import Pointer

log = logging.getLogger(__name__)

T = TypeVar("T")
Build = Callable[[str, bool], Awaitable[Classifier]]  # (version, shadow) -> warmed classifier
ReadPointer = Callable[[], Awaitable[Pointer | None]]


@dataclass(frozen=True, slots=True)
class ShadowOutcome:
    prediction_id: int
    version: str
    probabilities: list[float]
    top: int
    codes: tuple[str, ...]
    inference_ms: float


Record = Callable[[ShadowOutcome], Awaitable[None]]


@dataclass(eq=False)
class _Slot:
    classifier: Classifier
    leases: int = 0
    retired: bool = False
    closing: asyncio.Task[None] | None = field(default=None, repr=False)


class ModelHolder:
    def __init__(
        self,
        classifier: Classifier,
        *,
        build: Build,
        read_pointer: ReadPointer,
        record_shadow: Record,
        poll_seconds: float,
        max_pixels: int,
        fast_jpeg: bool,
        bootstrap: Callable[[], Awaitable[None]] | None = None,
        on_swap: Callable[[Classifier, Classifier], None] | None = None,
    ) -> None:
        self._on_swap = on_swap  # (old, new): e.g. the /metrics model info
        self._slot = _Slot(classifier)
        self._bootstrap = bootstrap  # registers the start-up version in an empty registry
        self._shadow: _Slot | None = None
        self.shadow_rate = 0.0
        self._build = build
        self._read_pointer = read_pointer
        self._record_shadow = record_shadow
        self._poll = poll_seconds
        self._max_pixels = max_pixels
        self._fast_jpeg = fast_jpeg
        self._switch = asyncio.Lock()
        self._wake = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.swaps = 0
        self.last_sync: float | None = None

    # ------------------------------------------------------------------ serving

    @property
    def current(self) -> Classifier:
        return self._slot.classifier

    @property
    def shadow(self) -> Classifier | None:
        return self._shadow.classifier if self._shadow else None

    @contextlib.contextmanager
    def lease(self) -> Iterator[Classifier]:
        """The current classifier, kept open until the block ends."""
        with self._leased(self._slot) as classifier:
            yield classifier

    @contextlib.contextmanager
    def _leased(self, slot: _Slot) -> Iterator[Classifier]:
        slot.leases += 1
        try:
            yield slot.classifier
        finally:
            slot.leases -= 1
            if slot.retired and slot.leases == 0:
                self._close_slot(slot)

    def _retire(self, slot: _Slot) -> None:
        slot.retired = True
        if slot.leases == 0:
            self._close_slot(slot)

    def _close_slot(self, slot: _Slot) -> None:
        if slot.closing is None:
            slot.closing = self._spawn(slot.classifier.close())

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("model holder task failed", exc_info=task.exception())

    def _install(self, classifier: Classifier) -> None:
        old, self._slot = self._slot, _Slot(classifier)
        self.swaps += 1
        log.info("model swapped: %s -> %s", old.classifier.version, classifier.version)
        if self._on_swap is not None:
            self._on_swap(old.classifier, classifier)
        self._retire(old)

    def _install_shadow(self, classifier: Classifier | None) -> None:
        old, self._shadow = self._shadow, (_Slot(classifier) if classifier else None)
        if old is not None:
            self._retire(old)

    # ------------------------------------------------------------------ switching

    async def activate(self, version: str, commit: Callable[[], Awaitable[T]]) -> T:
        """Build and warm `version` (unless it is serving already), run `commit` (the
        registry change), then swap; if commit fails the new classifier is discarded."""
        async with self._switch:
            fresh = None
            if self.current.version != version:
                fresh = await self._build(version, False)
            try:
                result = await commit()
            except BaseException:
                if fresh is not None:
                    await fresh.close()
                raise
            if fresh is not None:
                self._install(fresh)
            if self._shadow and self._shadow.classifier.version == version:
                self._install_shadow(None)
            return result

    def refresh(self) -> None:
        """Re-read the registry now (after this process changed it)."""
        self._wake.set()

    async def sync(self) -> None:
        """Follow the registry's state row once: active version, shadow version and rate."""
        async with self._switch:  # read under the lock: never act on a pre-swap reading
            pointer = await self._read_pointer()
            if pointer is None and self._bootstrap is not None:  # an empty registry
                await self._bootstrap()
                pointer = await self._read_pointer()
            if pointer is None:
                return
            if pointer.active_version != self.current.version:
                self._install(await self._build(pointer.active_version, False))
            serving = self._shadow.classifier.version if self._shadow else None
            if pointer.shadow_version != serving:
                fresh = None
                if pointer.shadow_version is not None:
                    fresh = await self._build(pointer.shadow_version, True)
                self._install_shadow(fresh)
            self.shadow_rate = pointer.shadow_rate if self._shadow else 0.0
        self.last_sync = time.monotonic()

    async def _follow(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll * min(2**failures, 30))
            self._wake.clear()
            try:
                await self.sync()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("could not follow the model registry (attempt %d)", failures)

    def start(self) -> None:
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow(), name="model-follower")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        for slot in (self._slot, self._shadow):
            if slot is not None:
                self._retire(slot)
                slot.leases = 0
                self._close_slot(slot)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ shadow

    def shadow_hook(
        self, tasks: BackgroundTasks, served: Classifier
    ) -> Callable[[Prediction, FloatArray, bytes], None] | None:
        """For create_prediction's after_commit: when a shadow version runs, queue the
        sampling as a background task, which Starlette runs after the response is sent."""
        if self._shadow is None:
            return None

        def hook(row: Prediction, array: FloatArray, data: bytes) -> None:
            tasks.add_task(self.sample_shadow, row.id, array, data, served)

        return hook

    async def sample_shadow(
        self, prediction_id: int, array: FloatArray, data: bytes, served: Classifier
    ) -> bool:
        """Classify a served upload with the shadow version, maybe (sampled at its rate), in
        a task of its own; True when it was sampled."""
        slot = self._shadow
        if slot is None or slot.retired or random.random() >= self.shadow_rate:  # noqa: S311 - sampling
            return False
        self._spawn(self._run_shadow(slot, prediction_id, array, data, served))
        return True

    async def _run_shadow(
        self, slot: _Slot, prediction_id: int, array: FloatArray, data: bytes, served: Classifier
    ) -> None:
        if slot.closing is not None:
            return
        with self._leased(slot) as shadow:
            manifest = shadow.manifest
            same_input = (manifest.input_size, manifest.mean, manifest.std) == (
                served.manifest.input_size,
                served.manifest.mean,
                served.manifest.std,
            )
            if not same_input:
                decoded = await asyncio.to_thread(
                    decode_upload,
                    data,
                    max_pixels=self._max_pixels,
                    fast_jpeg=self._fast_jpeg,
                    input_size=manifest.input_size,
                    mean=manifest.mean,
                    std=manifest.std,
                )
                array = decoded.array
            result = await shadow.classify(array)
            outcome = ShadowOutcome(
                prediction_id=prediction_id,
                version=shadow.version,
                probabilities=result.probabilities,
                top=result.top,
                codes=manifest.codes,
                inference_ms=result.inference_ms,
            )
        await self._record_shadow(outcome)
