"""Micro-batching: concurrent requests share one model call on a worker thread.

A worker takes the first queued item, waits at most `wait_ms` for up to `max_batch - 1`
more, stacks them, runs the model once and resolves each caller's future on the caller's
event loop. It waits only when more work is in sight (queued, or announced with
`expecting()` while a request decodes its image): a lone request runs at once.

The classifier sizes workers x intra-op threads to the cores (thread_plan). Given
`run_all_cores` (the same model on every core's intra-op threads, e.g. a second ONNX
Runtime session), a batch that finds nothing else queued, announced or running runs on
it, so a lone upload is not confined to one worker's share of the cores; meanwhile the
other workers hold their batches (collecting whatever arrives) until it is done, and
under load batches run side by side on their shares as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from app import metrics
from app.errors import ModelUnavailable
from app.inference.arrays import FloatArray, ProbArray, RunBatch


@dataclass(frozen=True)
class BatchResult:
    probabilities: ProbArray  # this item's row
    run_ms: float  # wall time of the model call that computed it (shared with the batch)
    queue_ms: float  # from submit to the start of that call
    batch_size: int


@dataclass
class _Item:
    array: FloatArray
    future: asyncio.Future[BatchResult]
    loop: asyncio.AbstractEventLoop
    submitted: float


class MicroBatcher:
    def __init__(
        self,
        run: RunBatch,
        *,
        max_batch: int,
        wait_ms: float,
        workers: int = 1,
        run_all_cores: RunBatch | None = None,
        name: str = "inference",
    ) -> None:
        if max_batch < 1 or workers < 1:
            raise ValueError("max_batch and workers must be >= 1")
        self._run = run
        self._run_all_cores = run_all_cores
        self._max_batch = max_batch
        self._wait = wait_ms / 1000
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submits against the closing sentinel
        self._closed = False
        self._expected = 0  # requests that announced a submit (expecting()), not yet made
        self._cores = threading.Condition(self._lock)  # guards the two counts below
        self._running = 0  # batches in the backend right now
        self._all_cores_running = False  # one of them is on every core: the others wait
        # Several workers each running a batch on fewer intra-op threads keep both cores
        # busy while one of them stacks its next batch (measured in bench/predict.py).
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, array: FloatArray) -> BatchResult:
        """Queue one (3,S,S) array and wait for its probabilities row."""
        loop = asyncio.get_running_loop()
        item = _Item(array, loop.create_future(), loop, time.perf_counter())
        with self._lock:
            if self._closed:
                raise ModelUnavailable("the classifier is closed")
            self._queue.put(item)
        return await item.future

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce a submit to come (around decoding), so a worker waits for it to batch."""
        with self._lock:
            self._expected += 1
        try:
            yield
        finally:
            with self._lock:
                self._expected -= 1

    async def close(self) -> None:
        """Stop taking work; items already queued are still run; joins the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:  # one stop sentinel per worker
                self._queue.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.perf_counter() + self._wait
            while len(batch) < self._max_batch:
                if self._expected == 0 and self._queue.empty():
                    break  # nothing more in sight: run now rather than wait for nobody
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True  # run what we hold, then stop
                    break
                batch.append(item)
            alone, stopping = self._take_cores(batch, stopping)
            run = self._run_all_cores if alone and self._run_all_cores else self._run
            try:
                self._run_batch([i for i in batch if not i.future.cancelled()], run)
            finally:
                self._release_cores(alone)

    def _take_cores(self, batch: list[_Item], stopping: bool) -> tuple[bool, bool]:
        """Wait while a batch runs on every core (then adding what queued meanwhile to
        `batch`), then decide whether this batch runs on every core: only when nothing else
        is running, queued or announced. Returns that and whether this worker now holds
        its stop sentinel."""
        with self._cores:
            if self._all_cores_running:
                while self._all_cores_running:
                    self._cores.wait()
                while not stopping and len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                    else:
                        batch.append(item)
            alone = (
                self._run_all_cores is not None
                and self._running == 0
                and self._expected == 0
                and self._queue.empty()
            )
            self._running += 1
            self._all_cores_running = alone
        return alone, stopping

    def _release_cores(self, alone: bool) -> None:
        with self._cores:
            self._running -= 1
            if alone:
                self._all_cores_running = False
                self._cores.notify_all()

    def _run_batch(self, batch: list[_Item], run: RunBatch) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            probabilities = run(np.stack([item.array for item in batch]))
            if probabilities.shape[0] != len(batch):
                raise RuntimeError(
                    f"backend returned {probabilities.shape[0]} rows for {len(batch)}"
                )
        except Exception as exc:  # every waiting caller gets the failure
            for item in batch:
                _resolve(item, exc)
            return
        run_ms = (time.perf_counter() - started) * 1000
        metrics.observe_batch(len(batch))
        for item, row in zip(batch, probabilities, strict=True):
            queue_ms = (started - item.submitted) * 1000
            _resolve(item, BatchResult(row, run_ms, queue_ms, len(batch)))


def _resolve(item: _Item, outcome: BatchResult | Exception) -> None:
    def apply() -> None:
        if item.future.done():  # the caller was cancelled meanwhile
            return
        if isinstance(outcome, Exception):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
        item.loop.call_soon_threadsafe(apply)
