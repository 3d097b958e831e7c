"""Micro-batching: concurrent requests share one model call on a worker thread.

A worker takes the first queued item, waits at most `wait_ms` for up to `max_batch - 1`
more, stacks them, runs the model once and resolves each caller's future on the caller's
event loop. It waits only when more work is in sight (queued, or announced with
`expecting()` while a request decodes its image): a lone request runs at once. The
classifier sizes workers x intra-op threads to the cores (thread_plan).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from app import metrics
from app.inference.arrays import FloatArray, ProbArray
from app.inference.errors import ModelUnavailable

RunBatch = Callable[[FloatArray], ProbArray]


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
        name: str = "inference",
    ) -> None:
        if max_batch < 1 or workers < 1:
            raise ValueError("max_batch and workers must be >= 1")
        self._run = run
        self._max_batch = max_batch
        self._wait = wait_ms / 1000
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submits against the closing sentinel
        self._closed = False
        self._expected = 0  # requests that announced a submit (expecting()), not yet made
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
            self._run_batch([i for i in batch if not i.future.cancelled()])

    def _run_batch(self, batch: list[_Item]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            probabilities = self._run(np.stack([item.array for item in batch]))
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
