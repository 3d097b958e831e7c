"""Micro-batcher and Classifier: concurrency, batch limits, errors, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.inference import Classifier, ModelUnavailable, build_classifier
from app.inference.arrays import FloatArray, ProbArray
from app.inference.backends import softmax
from app.inference.batcher import BatchResult, MicroBatcher
from app.inference.classifier import lone_threads, thread_plan
from app.inference.manifest import DEFAULT_MANIFEST
from app.inference.weights import WeightsInfo
from tests.support.waiting import poll_until


class FakeBackend:
    """Probabilities computed per row (so batching must not change them); records batches."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.arrived: list[int] = []  # batch sizes, as each call starts (before the gate)
        self.batches: list[int] = []  # batch sizes, as each call runs (after the gate)
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def run(self, batch: FloatArray) -> ProbArray:
        self.arrived.append(len(batch))
        self.gate.wait(10)
        self.batches.append(len(batch))
        if self.fail:
            raise ValueError("backend exploded")
        return softmax(batch.reshape(len(batch), -1)[:, :4])


def arrays(count: int) -> list[FloatArray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((3, 8, 8)).astype(np.float32) for _ in range(count)]


async def submit_all(
    batcher: MicroBatcher, items: list[FloatArray]
) -> list[asyncio.Future[BatchResult]]:
    """Start a submit per item; return (their futures) once every item has been queued."""
    queued = 0

    async def one(array: FloatArray) -> BatchResult:
        nonlocal queued
        queued += 1  # submit queues the item in this same step, before it first awaits
        return await batcher.submit(array)

    futures = [asyncio.ensure_future(one(a)) for a in items]
    await poll_until(lambda: queued == len(items), timeout=10, what="items queued")
    return futures


async def until_held(backend: FakeBackend, batcher: MicroBatcher, count: int) -> None:
    """Wait until each of `count` submitted items is either in a backend call held at the
    gate or still queued (none is between the queue and the backend)."""

    def held() -> bool:
        return sum(backend.arrived) + batcher._queue.qsize() == count

    await poll_until(held, timeout=10, what=f"{count} items held")


@pytest.mark.parametrize("workers", [1, 2])
async def test_concurrent_submits_resolve_to_their_own_rows(workers: int) -> None:
    backend = FakeBackend()
    batcher = MicroBatcher(backend.run, max_batch=4, wait_ms=20, workers=workers)
    try:
        inputs = arrays(20)
        results = await asyncio.gather(*(batcher.submit(a) for a in inputs))
        assert max(backend.batches) == 4  # batched, and never beyond max_batch
        assert sum(backend.batches) == len(inputs)
        for array, result in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(
                result.probabilities, softmax(array.reshape(1, -1)[:, :4])[0]
            )
            assert result.run_ms >= 0 and result.queue_ms >= 0
    finally:
        await batcher.close()


async def test_batches_never_exceed_max_batch_under_bursts() -> None:
    backend = FakeBackend()
    backend.gate.clear()  # hold the worker so the queue fills up
    batcher = MicroBatcher(backend.run, max_batch=3, wait_ms=1)
    try:
        pending = await submit_all(batcher, arrays(17))  # the worker is held meanwhile
        backend.gate.set()
        results = await asyncio.gather(*pending)
        assert all(r.batch_size <= 3 for r in results)
        assert max(backend.batches) <= 3 and sum(backend.batches) == 17
    finally:
        await batcher.close()


async def test_a_lone_request_does_not_wait_for_company() -> None:
    # wait_ms is a minute: had the worker waited for a batch mate, wait_for would time out.
    batcher = MicroBatcher(FakeBackend().run, max_batch=8, wait_ms=60_000)
    try:
        result = await asyncio.wait_for(batcher.submit(arrays(1)[0]), timeout=10)
        assert result.batch_size == 1
    finally:
        await batcher.close()


class SlowBackend:
    """A model call that takes `seconds`, on two plans: the per-worker share of the cores
    (`run`) and every core (`run_all_cores`); records (plan, batch size, start, end).

    With `pair_up`, the first two calls on the share plan wait for each other (a barrier
    that fails them after 10 s alone): they can only both pass if they run side by side."""

    def __init__(self, seconds: float, pair_up: bool = False) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, int, float, float]] = []
        self._lock = threading.Lock()
        self._pair = threading.Barrier(2, timeout=10) if pair_up else None
        self._paired = 0

    def _call(self, plan: str, batch: FloatArray) -> ProbArray:
        started = time.perf_counter()
        if plan == "share" and self._pair is not None:
            with self._lock:
                meet = self._paired < 2
                self._paired += meet
            if meet:
                self._pair.wait()  # BrokenBarrierError when no partner runs meanwhile
        time.sleep(self.seconds)
        with self._lock:
            self.calls.append((plan, len(batch), started, time.perf_counter()))
        return softmax(batch.reshape(len(batch), -1)[:, :4])

    def run(self, batch: FloatArray) -> ProbArray:
        return self._call("share", batch)

    def run_all_cores(self, batch: FloatArray) -> ProbArray:
        return self._call("all cores", batch)


async def test_a_lone_request_runs_at_once_on_every_core() -> None:
    backend = SlowBackend(0.02)
    # A minute's batch window: had the lone request waited for it, wait_for would time out.
    batcher = MicroBatcher(
        backend.run, max_batch=8, wait_ms=60_000, workers=2, run_all_cores=backend.run_all_cores
    )
    try:
        for _ in range(3):  # one after the other, as a single doctor uploads
            result = await asyncio.wait_for(batcher.submit(arrays(1)[0]), timeout=10)
            plan, size, _, _ = backend.calls[-1]
            assert (plan, size, result.batch_size) == ("all cores", 1, 1)
        assert [c[0] for c in backend.calls] == ["all cores"] * 3
    finally:
        await batcher.close()


async def test_concurrent_requests_still_batch_and_share_the_cores() -> None:
    backend = SlowBackend(0.03, pair_up=True)  # fails unless two shares run side by side
    batcher = MicroBatcher(
        backend.run, max_batch=4, wait_ms=20, workers=2, run_all_cores=backend.run_all_cores
    )
    try:
        inputs = arrays(24)
        results = await asyncio.gather(*(batcher.submit(a) for a in inputs))
        for array, result in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(
                result.probabilities, softmax(array.reshape(1, -1)[:, :4])[0]
            )
        sizes = [size for _, size, _, _ in backend.calls]
        assert sum(sizes) == 24 and max(sizes) == 4  # batched, never beyond max_batch
        shared = [c for c in backend.calls if c[0] == "share"]
        assert len(shared) >= 2 and max(size for _, size, _, _ in shared) > 1
        # The two workers ran their shares side by side ...
        assert any(a[2] < b[3] and b[2] < a[3] for a in shared for b in shared if a is not b)
        # ... but never beside a batch that had every core.
        for plan, _, start, end in backend.calls:
            if plan == "all cores":
                assert not any(o[2] < end and start < o[3] for o in backend.calls if o[2] != start)
    finally:
        await batcher.close()


async def test_work_arriving_during_an_all_cores_run_waits_and_batches() -> None:
    backend = SlowBackend(0.0)
    gate = threading.Event()
    wide_started = threading.Event()

    def held_all_cores(batch: FloatArray) -> ProbArray:
        wide_started.set()
        gate.wait(10)
        return backend.run_all_cores(batch)

    batcher = MicroBatcher(
        backend.run, max_batch=8, wait_ms=0, workers=2, run_all_cores=held_all_cores
    )
    try:
        first = asyncio.ensure_future(batcher.submit(arrays(1)[0]))
        assert await asyncio.to_thread(wide_started.wait, 10)
        later = await submit_all(batcher, arrays(5))
        # The other worker takes work from the queue while every core is busy ...
        await poll_until(lambda: batcher._queue.qsize() < 5, timeout=10, what="work taken")
        assert backend.calls == []  # ... and holds its batch meanwhile
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)
        assert results[0].batch_size == 1
        assert sum(size for _, size, _, _ in backend.calls) == 6
        assert max(r.batch_size for r in results[1:]) > 1  # what queued was batched
    finally:
        gate.set()
        await batcher.close()


async def test_announced_requests_are_waited_for_to_share_a_batch() -> None:
    backend = FakeBackend()
    batcher = MicroBatcher(backend.run, max_batch=3, wait_ms=60_000)
    first_array, *others = arrays(3)
    try:
        with batcher.expecting():  # more requests are still decoding their images
            (first,) = await submit_all(batcher, [first_array])
            await poll_until(batcher._queue.empty, timeout=10, what="the worker takes it")
            assert not first.done()  # the worker waits for them instead of running alone
            rest = [asyncio.ensure_future(batcher.submit(a)) for a in others]
            results = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=10)
        assert [r.batch_size for r in results] == [3, 3, 3] and backend.batches == [3]
    finally:
        await batcher.close()


async def test_backend_exception_reaches_every_waiting_caller() -> None:
    backend = FakeBackend(fail=True)
    batcher = MicroBatcher(backend.run, max_batch=8, wait_ms=20)
    try:
        outcomes = await asyncio.gather(
            *(batcher.submit(a) for a in arrays(5)), return_exceptions=True
        )
        assert all(isinstance(o, ValueError) and "exploded" in str(o) for o in outcomes)
        backend.fail = False  # the worker survived the failure
        assert (await batcher.submit(arrays(1)[0])).batch_size == 1
    finally:
        await batcher.close()


async def test_cancelled_caller_does_not_disturb_the_others() -> None:
    backend = FakeBackend()
    backend.gate.clear()
    batcher = MicroBatcher(backend.run, max_batch=1, wait_ms=0)
    try:
        first, second, third = (asyncio.ensure_future(batcher.submit(a)) for a in arrays(3))
        await until_held(backend, batcher, 3)  # first in the backend, the others queued
        assert backend.arrived == [1]
        second.cancel()
        backend.gate.set()
        assert (await first).batch_size == 1
        assert (await third).batch_size == 1
        assert second.cancelled()
    finally:
        await batcher.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_close_drains_queued_work_then_refuses(workers: int) -> None:
    backend = FakeBackend()
    backend.gate.clear()
    batcher = MicroBatcher(backend.run, max_batch=2, wait_ms=0, workers=workers)
    pending = [asyncio.ensure_future(batcher.submit(a)) for a in arrays(5)]
    await until_held(backend, batcher, 5)
    closing = asyncio.ensure_future(batcher.close())
    await poll_until(lambda: batcher._closed, timeout=10, what="close begun")
    backend.gate.set()
    await closing
    assert len(await asyncio.gather(*pending)) == 5
    assert not any(thread.is_alive() for thread in batcher._threads)
    with pytest.raises(ModelUnavailable, match="closed"):
        await batcher.submit(arrays(1)[0])
    await batcher.close()  # idempotent


def fake_classifier(backend: FakeBackend) -> Classifier:
    info = WeightsInfo(source="test", path=None, sha256="0" * 64, demo=True, downloaded=False)
    batcher = MicroBatcher(backend.run, max_batch=4, wait_ms=1)
    return Classifier(weights=info, manifest=DEFAULT_MANIFEST, backend=backend, batcher=batcher)


async def test_classifier_maps_failures_to_model_unavailable() -> None:
    classifier = fake_classifier(FakeBackend(fail=True))
    try:
        with pytest.raises(ModelUnavailable, match="inference failed"):
            await classifier.classify(np.zeros((3, 224, 224), np.float32))
        with pytest.raises(ValueError, match="expected a float32 array"):
            await classifier.classify(np.zeros((3, 100, 100), np.float32))
        with pytest.raises(ValueError, match="expected a float32 array"):
            await classifier.classify(np.zeros((3, 224, 224), np.float64))  # type: ignore[arg-type]
    finally:
        await classifier.close()
    with pytest.raises(ModelUnavailable):
        await classifier.classify(np.zeros((3, 224, 224), np.float32))


async def test_real_classifier_concurrency_matches_single_runs(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, model_cache_dir=tmp_path, inference_backend="onnx", max_batch=8
    )
    classifier = await build_classifier(settings)
    try:
        assert classifier.ready
        assert (classifier.backend_name, classifier.demo) == ("onnx", True)
        rng = np.random.default_rng(1)
        inputs = [rng.standard_normal((3, 224, 224)).astype(np.float32) for _ in range(20)]
        together = await asyncio.gather(*(classifier.classify(a) for a in inputs))
        assert max(r.batch_size for r in together) > 1
        for array, result in zip(inputs, together, strict=True):
            alone = await classifier.classify(array)
            np.testing.assert_allclose(result.probabilities, alone.probabilities, atol=1e-6)
            assert result.top == int(np.argmax(result.probabilities))
            assert abs(sum(result.probabilities) - 1) < 1e-9
            assert result.inference_ms > 0
            assert result.top_probability == max(result.probabilities)
    finally:
        await classifier.close()
    assert not classifier.ready


@pytest.mark.parametrize(
    ("cores", "env", "plan"),
    [
        (4, {}, (2, 2)),  # two batch workers share the cores
        (4, {"web_workers": 2}, (2, 1)),  # two processes on the host: half the cores each
        (2, {"web_workers": 2}, (1, 1)),
        (2, {"web_workers": 8}, (1, 1)),  # never below one thread
        (4, {"web_workers": 2, "inference_threads": 3}, (2, 1)),  # explicit budget wins
        (8, {"inference_workers": 1}, (1, 8)),
    ],
)
def test_thread_plan_keeps_threads_within_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, env: dict[str, int], plan: tuple[int, int]
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    defaults = {"inference_threads": None, "inference_workers": None, "web_workers": 1}
    assert thread_plan(Settings(**{**defaults, **env})) == plan  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cores", "env", "lone"),
    [
        (4, {}, 4),
        (4, {"web_workers": 2}, 4),  # a lone batch may take what idle siblings leave
        (2, {"web_workers": 2}, 2),
        (8, {"web_workers": 2, "inference_threads": 3}, 3),  # an explicit budget wins
    ],
)
def test_a_lone_batch_may_use_every_usable_core(
    monkeypatch: pytest.MonkeyPatch, cores: int, env: dict[str, int], lone: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    defaults = {"inference_threads": None, "inference_workers": None, "web_workers": 1}
    assert lone_threads(Settings(**{**defaults, **env})) == lone  # type: ignore[arg-type]
