"""`ocupredict train-worker`: works the training jobs, one at a time, in its own process.

The process lowers its priority (TRAINING_NICE) and gives torch TRAINING_THREADS
threads, so the web processes on the same host keep serving; it trains on CUDA when
INFERENCE_DEVICE allows and one is present. Each round it claims the oldest claimable
job with a conditional UPDATE (a running job whose heartbeat is older than
TRAINING_STALE_SECONDS first: its worker died, and it resumes from its last
checkpoint), then:

1. loads the parent's weights and manifest, and the images of the training set and the
   locked test set from the image store (decoded and resized as inference does);
2. trains (app/training/trainer.py) in a thread while the event loop writes progress and
   the heartbeat every TRAINING_HEARTBEAT_SECONDS; before each batch it asks the
   database whether a cancel was requested; after each epoch the checkpoint goes to the
   image store (training/{job}/epoch-NNN.ckpt) and the job row names it;
3. fits the temperature and re-derives the referral thresholds on the calibration split;
4. measures the candidate and the parent on the test set, judges the recipe's gates;
5. registers the candidate staged through the registry's validation, with its lineage
   and evaluation, and marks the job succeeded (training.finish), all in one transaction.

A failure marks the job failed with the reason (training.fail); a cancel marks it
cancelled; SIGTERM puts the job back in the queue with its checkpoint, so the next
worker resumes it at once. Checkpoints are deleted when a job ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch
from PIL import Image

from app.clinical.recommendation import ReferralPolicy
from app.config import Settings
from app.db.base import utcnow
from app.db.models import DatasetItem, ModelVersion, TrainingJob
from app.db.session import SessionFactory, make_engine, make_sessionmaker
from app.errors import InvalidModel
from app.inference.backends import torch_device
from app.inference.manifest import ModelManifest
from app.inference.network import EyeDiseaseClassifier, load_network
from app.inference.preprocess import decode_rgb
from app.inference.weights import demo_weights, load_source, weights_from_bytes
from app.repositories.datasets import DatasetRepository
from app.repositories.model_versions import ModelRepository
from app.repositories.training_jobs import TrainingJobRepository
from app.schemas.recipes import Recipe
from app.services import audit
from app.storage import ImageNotFound, ImageStore, build_image_store, checkpoint_key
from app.training.candidate import register_candidate
from app.training.evaluation import evaluate
from app.training.trainer import (
    Examples,
    Outcome,
    Progress,
    Stopped,
    UInt8Images,
    cap_per_doctor,
    derive_thresholds,
    fit_temperature,
    logits_of,
    read_checkpoint,
    softmax,
    state_dict_bytes,
    train,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
LOAD_CONCURRENCY = 8
# (job id, batches done), awaited after each batch: for tests
StepHook = Callable[[int, int], Coroutine[Any, Any, None]]


@dataclass
class _Loaded:
    recipe: Recipe
    manifest: ModelManifest
    parent_state: dict[str, torch.Tensor]
    train: Examples
    validation: Examples
    calibration: Examples
    test: Examples
    train_sha256: str
    test_sha256: str
    data: dict[str, Any]


class TrainingWorker:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: ImageStore,
        *,
        name: str | None = None,
        step_hook: StepHook | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.name = name or f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.step_hook = step_hook
        self.stopping = False  # set on SIGTERM (stop()): the job goes back to the queue
        self._stop = asyncio.Event()
        self._progress = Progress()
        self._lost = False

    # ------------------------------------------------------------------ claiming

    async def claim(self) -> TrainingJob | None:
        now = utcnow()
        stale_before = now - timedelta(seconds=self.settings.training_stale_seconds)
        async with self.sessions() as session:
            repo = TrainingJobRepository(session)
            for job in await repo.next_claimable(stale_before):
                status, previous = job.status, job.worker
                if await repo.claim(job, self.name, now):
                    await session.commit()
                    claimed = await session.get(TrainingJob, job.id, populate_existing=True)
                    if status == "running":
                        log.warning(
                            "training job %s: worker %s stopped beating; %s resumes it",
                            job.id,
                            previous,
                            self.name,
                        )
                    return claimed
                await session.rollback()
        return None

    async def run_once(self) -> int | None:
        """Claim one job and work it to its end; its id, or None when none was waiting."""
        job = await self.claim()
        if job is None:
            return None
        await self.work(job)
        return job.id

    def stop(self) -> None:
        """Stop before the next batch; the job in hand goes back to the queue."""
        self.stopping = True
        self._stop.set()

    async def run_forever(self) -> None:
        while not self.stopping:
            if await self.run_once() is None and not self.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.training_poll_seconds)

    # ------------------------------------------------------------------ one job

    async def work(self, job: TrainingJob) -> None:
        self._progress = Progress(phase="loading")
        self._lost = False
        beating = asyncio.create_task(self._heartbeat(job.id), name=f"heartbeat-{job.id}")
        try:
            await self._work(job)
        except Stopped as stop:
            await self._stopped(job, stop.reason)
        except Exception as exc:
            log.exception("training job %s failed", job.id)
            await self._fail(job, _reason(exc))
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _heartbeat(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(self.settings.training_heartbeat_seconds)
            try:
                async with self.sessions() as session:
                    ours = await TrainingJobRepository(session).heartbeat(
                        job_id, self.name, utcnow(), self._progress.as_dict()
                    )
                    await session.commit()
            except Exception:  # the database hiccuped: try again next beat
                log.warning("training job %s: heartbeat failed", job_id, exc_info=True)
                continue
            if not ours:
                log.error("training job %s is no longer this worker's; stopping", job_id)
                self._lost = True
                return

    async def _update(self, job_id: int, **values: Any) -> bool:
        async with self.sessions() as session:
            ours = await TrainingJobRepository(session).update_running(job_id, self.name, **values)
            await session.commit()
        return ours

    async def _phase(self, job_id: int, phase: str) -> None:
        self._progress.phase = phase
        self._check(await self._stop_reason(job_id))
        await self._update(job_id, progress=self._progress.as_dict(), heartbeat_at=utcnow())

    @staticmethod
    def _check(reason: str | None) -> None:
        if reason is not None:
            raise Stopped(reason)

    async def _stop_reason(self, job_id: int) -> str | None:
        if self._lost:
            return "lost"
        if self.stopping:
            return "interrupted"
        async with self.sessions() as session:
            if await TrainingJobRepository(session).cancel_requested(job_id):
                return "cancelled"
        return None

    async def _work(self, job: TrainingJob) -> None:
        loaded = await self._load(job)
        await self._update(job.id, data=loaded.data)
        resume = await self._resume(job)
        await self._phase(job.id, "training")
        device = torch_device(self.settings.inference_device)
        network = load_network(loaded.parent_state, loaded.manifest.num_classes)
        outcome = await self._train(job, loaded, network, device, resume)

        await self._phase(job.id, "calibrating")
        network.load_state_dict(outcome.state_dict)
        codes = loaded.manifest.codes
        parent_policy = loaded.manifest.referral
        parent_thresholds = parent_policy.thresholds(codes)
        threads = self.settings.training_threads
        temperature, thresholds, derivation = await asyncio.to_thread(
            _in_thread(_calibrate, threads), network, loaded, device, parent_thresholds
        )

        await self._phase(job.id, "evaluating")
        parent = load_network(loaded.parent_state, loaded.manifest.num_classes)
        result = await asyncio.to_thread(
            _in_thread(_evaluate, threads),
            network,
            parent,
            loaded,
            device,
            temperature,
            thresholds,
            parent_thresholds,
        )
        result["training"] = {
            "epochs_run": outcome.epochs_run,
            "best_epoch": outcome.best_epoch,
            "stopped_early": outcome.stopped_early,
            "history": outcome.history,
            "referral_derivation": derivation,
        }

        await self._phase(job.id, "registering")
        manifest = loaded.manifest.model_copy(
            update={
                "temperature": temperature,
                "referral": ReferralPolicy.model_validate(
                    {**parent_policy.model_dump(), "refer_at": thresholds}
                ),
            }
        )
        manifest = ModelManifest.model_validate(manifest.model_dump())  # re-checked
        weights = state_dict_bytes(outcome.state_dict)
        await self._finish(job, loaded, weights, manifest, result)

    async def _train(
        self,
        job: TrainingJob,
        loaded: _Loaded,
        network: EyeDiseaseClassifier,
        device: torch.device,
        resume: dict[str, Any] | None,
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        worker = self

        def call(coroutine: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        class Bridge:
            def should_stop(self) -> str | None:
                return call(worker._stop_reason(job.id))

            def progress(self, progress: Progress) -> None:
                worker._progress = progress
                if worker.step_hook is not None:
                    call(worker.step_hook(job.id, progress.batches_done))

            def checkpoint(self, epoch: int, data: bytes) -> None:
                call(worker._save_checkpoint(job.id, epoch, data))

        recipe = loaded.recipe
        self._progress = Progress(phase="training", epochs=recipe.epochs)
        return await asyncio.to_thread(
            _in_thread(train, self.settings.training_threads),
            network,
            recipe,
            loaded.train,
            loaded.validation,
            mean=loaded.manifest.mean,
            std=loaded.manifest.std,
            seed=job.seed,
            hooks=Bridge(),
            device=device,
            resume=resume,
        )

    async def _save_checkpoint(self, job_id: int, epoch: int, data: bytes) -> None:
        key = checkpoint_key(job_id, epoch)
        await self.storage.put(key, data, "application/octet-stream")
        if not await self._update(job_id, checkpoint_epoch=epoch, heartbeat_at=utcnow()):
            self._lost = True
            return
        if epoch > 1:
            await self.storage.delete(checkpoint_key(job_id, epoch - 1))
        log.info("training job %s: epoch %d checkpointed", job_id, epoch)

    async def _resume(self, job: TrainingJob) -> dict[str, Any] | None:
        if not job.checkpoint_epoch:
            return None
        try:
            stored = await self.storage.get(checkpoint_key(job.id, job.checkpoint_epoch))
        except ImageNotFound:
            log.warning("training job %s: checkpoint missing; starting over", job.id)
            return None
        log.info("training job %s resumes after epoch %d", job.id, job.checkpoint_epoch)
        return await asyncio.to_thread(read_checkpoint, stored.data)

    async def _delete_checkpoints(self, job_id: int, last: int | None) -> None:
        for epoch in range(max(1, (last or 0) - 1), (last or 0) + 1):
            with contextlib.suppress(Exception):
                await self.storage.delete(checkpoint_key(job_id, epoch))

    # ------------------------------------------------------------------ loading

    async def _load(self, job: TrainingJob) -> _Loaded:
        recipe = Recipe.model_validate(job.recipe_body)
        async with self.sessions() as session:
            parent = await ModelRepository(session).get(job.base_version)
            datasets = DatasetRepository(session)
            train_set = await datasets.get(job.train_dataset_id)
            test_set = await datasets.get(job.test_dataset_id)
            train_items = list(await datasets.items(job.train_dataset_id))
            test_items = list(await datasets.items(job.test_dataset_id))
        if parent is None or train_set is None or test_set is None:
            raise RuntimeError("the base version or a dataset is gone")
        manifest, state = await self._parent(parent)
        codes = list(manifest.codes)
        size = manifest.input_size
        pixels = await self._pixels([*train_items, *test_items], size)

        def examples(items: Sequence[DatasetItem]) -> Examples:
            images = np.stack([pixels[i.image_key] for i in items]) if items else None
            return Examples(
                images=images if images is not None else np.zeros((0, size, size, 3), np.uint8),
                labels=np.asarray([codes.index(i.label) for i in items], np.int64),
            )

        by_split: dict[str, list[DatasetItem]] = {"train": [], "validation": [], "calibration": []}
        for item in train_items:
            by_split[item.split].append(item)
        kept, dropped = cap_per_doctor(
            [i.image_sha256 for i in by_split["train"]],
            [i.labelled_by for i in by_split["train"]],
            recipe.max_share_per_doctor,
        )
        trained = [by_split["train"][k] for k in kept]
        if not trained:
            raise ValueError(
                "nothing is left to train on after the per-doctor cap "
                f"(max_share_per_doctor {recipe.max_share_per_doctor})"
            )
        return _Loaded(
            recipe=recipe,
            manifest=manifest,
            parent_state=state,
            train=examples(trained),
            validation=examples(by_split["validation"]),
            calibration=examples(by_split["calibration"]),
            test=examples(test_items),
            train_sha256=train_set.sha256,
            test_sha256=test_set.sha256,
            data={
                "train": len(trained),
                "validation": len(by_split["validation"]),
                "calibration": len(by_split["calibration"]),
                "test": len(test_items),
                "max_share_per_doctor": recipe.max_share_per_doctor,
                "left_out_by_doctor_cap": dropped,
                "device": str(torch_device(self.settings.inference_device)),
            },
        )

    async def _parent(self, row: ModelVersion) -> tuple[ModelManifest, dict[str, torch.Tensor]]:
        manifest = ModelManifest.model_validate(row.manifest)
        if row.storage_key:
            stored = await self.storage.get(row.storage_key)
            loaded = await asyncio.to_thread(weights_from_bytes, stored.data, manifest, row.source)
        elif row.demo:
            loaded = await asyncio.to_thread(demo_weights)
        else:
            loaded = await load_source(self.settings, row.source)
        return manifest, {k: v.clone() for k, v in loaded.network.state_dict().items()}

    async def _pixels(self, items: Sequence[DatasetItem], size: int) -> dict[str, UInt8Images]:
        """The distinct images, decoded and resized exactly as the inference path does."""
        gate = asyncio.Semaphore(LOAD_CONCURRENCY)
        keys = sorted({i.image_key for i in items})
        out: dict[str, UInt8Images] = {}
        settings = self.settings

        async def one(key: str) -> None:
            async with gate:
                stored = await self.storage.get(key)
                out[key] = await asyncio.to_thread(
                    _reduce, stored.data, size, settings.max_image_pixels, settings.fast_jpeg_decode
                )

        await asyncio.gather(*(one(k) for k in keys))
        return out

    # ------------------------------------------------------------------ endings

    async def _finish(
        self,
        job: TrainingJob,
        loaded: _Loaded,
        weights: bytes,
        manifest: ModelManifest,
        result: dict[str, Any],
    ) -> None:
        self._check(await self._stop_reason(job.id))
        async with self.sessions() as session:
            version, evaluation_id = await register_candidate(
                session,
                self.settings,
                self.storage,
                job=job,
                weights=weights,
                manifest=manifest,
                evaluation=result,
                min_shadow_cases=loaded.recipe.min_shadow_cases,
                train_sha256=loaded.train_sha256,
                test_sha256=loaded.test_sha256,
            )
            self._progress.phase = "done"
            now = utcnow()
            ours = await TrainingJobRepository(session).update_running(
                job.id,
                self.name,
                status="succeeded",
                finished_at=now,
                heartbeat_at=now,
                progress=self._progress.as_dict(),
                candidate_version=version,
                evaluation_id=evaluation_id,
            )
            if not ours:
                await session.rollback()
                raise Stopped("lost")
            await audit.record(
                session,
                "training.finish",
                actor=None,
                target=("training_job", job.id),
                new={
                    "candidate_version": version,
                    "evaluation_id": evaluation_id,
                    "passed": result["passed"],
                    "accuracy": result["accuracy"],
                    "parent_accuracy": result["parent_accuracy"],
                },
            )
            await session.commit()
        log.info(
            "training job %s succeeded: candidate %s (gates %s)",
            job.id,
            version,
            "passed" if result["passed"] else "NOT passed",
        )
        await self._delete_checkpoints(job.id, await self._last_checkpoint(job.id))

    async def _last_checkpoint(self, job_id: int) -> int | None:
        async with self.sessions() as session:
            row = await TrainingJobRepository(session).get(job_id)
            return row.checkpoint_epoch if row else None

    async def _stopped(self, job: TrainingJob, reason: str) -> None:
        if reason == "lost":
            return  # another worker has it now: write nothing
        async with self.sessions() as session:
            repo = TrainingJobRepository(session)
            if reason == "interrupted":  # back to the queue, the checkpoint kept
                await repo.update_running(
                    job.id,
                    self.name,
                    status="queued",
                    worker=None,
                    progress=self._progress.as_dict(),
                )
                await session.commit()
                log.warning("training job %s goes back to the queue (worker stopping)", job.id)
                return
            self._progress.phase = "done"
            await repo.update_running(
                job.id,
                self.name,
                status="cancelled",
                finished_at=utcnow(),
                progress=self._progress.as_dict(),
            )
            await session.commit()
        log.info("training job %s cancelled after %d batches", job.id, self._progress.batches_done)
        await self._delete_checkpoints(job.id, await self._last_checkpoint(job.id))

    async def _fail(self, job: TrainingJob, reason: str) -> None:
        if self._lost:
            return
        with contextlib.suppress(Exception):
            async with self.sessions() as session:
                ours = await TrainingJobRepository(session).update_running(
                    job.id,
                    self.name,
                    status="failed",
                    finished_at=utcnow(),
                    error=reason,
                    progress=self._progress.as_dict(),
                )
                if ours:
                    await audit.record(
                        session,
                        "training.fail",
                        actor=None,
                        target=("training_job", job.id),
                        new={"error": reason[:500]},
                    )
                await session.commit()
        await self._delete_checkpoints(job.id, await self._last_checkpoint(job.id))


def _in_thread(function: Callable[P, T], threads: int) -> Callable[P, T]:
    """`function` run with `threads` torch threads. The intra-op thread count is an
    OpenMP setting of the calling thread: a pool thread must set it itself, or it computes
    with whatever the last task on it left (and the same job would give other weights)."""

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        torch.set_num_threads(threads)
        return function(*args, **kwargs)

    return run


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidModel):
        return f"the candidate failed the registry's validation: {exc.detail}"
    return f"{type(exc).__name__}: {exc}"[:2000]


def _reduce(data: bytes, size: int, max_pixels: int, fast_jpeg: bool) -> UInt8Images:
    """A stored image as the model sees it before normalization: RGB, EXIF applied, a
    large JPEG drafted, resized to size x size (PIL bilinear), uint8."""
    image = decode_rgb(data, max_pixels=max_pixels, min_side=2 * size if fast_jpeg else None)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def _calibrate(
    network: EyeDiseaseClassifier, loaded: _Loaded, device: torch.device, parent: dict[str, float]
) -> tuple[float, dict[str, float], dict[str, dict[str, Any]]]:
    m = loaded.manifest
    logits = logits_of(network, loaded.calibration.images, m.mean, m.std, device)
    temperature = fit_temperature(logits, loaded.calibration.labels)
    thresholds, how = derive_thresholds(
        softmax(logits, temperature),
        loaded.calibration.labels,
        m.codes,
        parent,
        target_sensitivity=loaded.recipe.referral.target_sensitivity,
        min_positives=loaded.recipe.referral.min_positives,
    )
    return temperature, thresholds, how


def _evaluate(
    network: EyeDiseaseClassifier,
    parent: EyeDiseaseClassifier,
    loaded: _Loaded,
    device: torch.device,
    temperature: float,
    thresholds: dict[str, float],
    parent_thresholds: dict[str, float],
) -> dict[str, Any]:
    m = loaded.manifest
    ours = logits_of(network, loaded.test.images, m.mean, m.std, device)
    theirs = logits_of(parent.to(device), loaded.test.images, m.mean, m.std, device)
    return evaluate(
        labels=loaded.test.labels,
        candidate=softmax(ours, temperature),
        candidate_uncalibrated=softmax(ours),
        parent=softmax(theirs, m.temperature),
        codes=m.codes,
        temperature=temperature,
        thresholds=thresholds,
        parent_thresholds=parent_thresholds,
        gates=loaded.recipe.gates,
    )


# --------------------------------------------------------------------------- command


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train-worker",
        help="work the queued training jobs, one at a time, at low priority",
        description="Claims training jobs from the database and trains them (README, "
        "Learning loop). Run one or more per host; SIGTERM puts the job in hand back in "
        "the queue with its checkpoint.",
    )
    parser.add_argument("--once", action="store_true", help="work at most one job, then exit")
    parser.set_defaults(func=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.observability import configure_logging

    configure_logging(settings.log_level, settings.json_logs)
    os.nice(settings.training_nice)
    torch.set_num_threads(settings.training_threads)
    with contextlib.suppress(RuntimeError):  # only before any parallel work
        torch.set_num_interop_threads(1)
    return asyncio.run(_serve(settings, once=args.once))


async def _serve(settings: Settings, *, once: bool) -> int:
    engine = make_engine(settings)
    storage = await build_image_store(settings)
    worker = TrainingWorker(settings, make_sessionmaker(engine), storage)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    log.info(
        "train-worker %s started (nice %d, %d threads, device %s)",
        worker.name,
        settings.training_nice,
        settings.training_threads,
        torch_device(settings.inference_device),
    )
    try:
        if once:
            await worker.run_once()
        else:
            await worker.run_forever()
    finally:
        await storage.aclose()
        await engine.dispose()
    return 0
