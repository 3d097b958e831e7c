"""The training worker: works the training jobs, one at a time, in its own process
(`ocupredict train-worker`, worker_command.py).

It trains on CUDA when INFERENCE_DEVICE allows and one is present. Each round it claims
the oldest claimable job (job_lease.py: a running job whose heartbeat is older than
TRAINING_STALE_SECONDS first: its worker died, and it resumes from its last checkpoint),
then:

1. loads the parent's weights and manifest, and the images of the training set and the
   locked test set from the image store (job_inputs.py);
2. trains (trainer.py) in a thread while the event loop writes progress and the
   heartbeat every TRAINING_HEARTBEAT_SECONDS; before each batch it asks the database
   whether a cancel was requested; after each epoch the checkpoint goes to the image
   store (checkpoints.py: training/{job}/epoch-NNN.ckpt) and the job row names it;
3. fits the temperature and re-derives the referral thresholds on the calibration split;
4. measures the candidate and the parent on the test set, judges the recipe's gates
   (measuring.py);
5. registers the candidate staged through the registry's validation, with its lineage
   and evaluation, and marks the job succeeded (training.finish), all in one transaction.

A failure marks the job failed with the reason (training.fail); a cancel marks it
cancelled; SIGTERM puts the job back in the queue with its checkpoint, so the next
worker resumes it at once. Checkpoints are deleted when a job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import torch

from app.config import Settings
from app.db.base import utcnow
from app.db.learning import TrainingJob
from app.db.session import SessionFactory
from app.errors import InvalidModel
from app.inference.backends import torch_device
from app.inference.manifest import ModelManifest
from app.inference.network import EyeDiseaseClassifier, load_network
from app.storage import ImageStore
from app.training.candidate import register_candidate
from app.training.checkpoints import CheckpointStore, state_dict_bytes
from app.training.job_inputs import JobInputs, load_job_inputs
from app.training.job_lease import JobLease, claim_job
from app.training.measuring import calibrate, calibrated_manifest, measure_on_test_set
from app.training.trainer import Outcome, Progress, Stopped, train

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
# (job id, batches done), awaited after each batch: for tests
StepHook = Callable[[int, int], Coroutine[Any, Any, None]]


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
        self.checkpoints = CheckpointStore(storage)
        self.name = name or f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.step_hook = step_hook
        self.stopping = False  # set on SIGTERM (stop()): the job goes back to the queue
        self._stop = asyncio.Event()

    async def claim(self) -> TrainingJob | None:
        return await claim_job(self.sessions, self.name, self.settings.training_stale_seconds)

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
        lease = JobLease(self.sessions, self.name, job.id)
        beating = asyncio.create_task(
            lease.keep_beating(self.settings.training_heartbeat_seconds),
            name=f"heartbeat-{job.id}",
        )
        try:
            await self._work(job, lease)
        except Stopped as stop:
            await self._stopped(lease, stop.reason)
        except Exception as exc:
            log.exception("training job %s failed", job.id)
            await self._fail(lease, _reason(exc))
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _phase(self, lease: JobLease, phase: str) -> None:
        lease.progress.phase = phase
        self._check(await self._stop_reason(lease))
        await lease.update(progress=lease.progress.as_dict(), heartbeat_at=utcnow())

    @staticmethod
    def _check(reason: str | None) -> None:
        if reason is not None:
            raise Stopped(reason)

    async def _stop_reason(self, lease: JobLease) -> str | None:
        if lease.lost:
            return "lost"
        if self.stopping:
            return "interrupted"
        if await lease.cancel_requested():
            return "cancelled"
        return None

    async def _work(self, job: TrainingJob, lease: JobLease) -> None:
        inputs = await load_job_inputs(self.settings, self.sessions, self.storage, job)
        await lease.update(data=inputs.data)
        resume = await self.checkpoints.resume(job)
        await self._phase(lease, "training")
        device = torch_device(self.settings.inference_device)
        network = load_network(inputs.parent_state, inputs.manifest.num_classes)
        outcome = await self._train(job, lease, inputs, network, device, resume)

        await self._phase(lease, "calibrating")
        network.load_state_dict(outcome.state_dict)
        parent_thresholds = inputs.manifest.referral.thresholds(inputs.manifest.codes)
        threads = self.settings.training_threads
        temperature, thresholds, derivation = await asyncio.to_thread(
            _in_thread(calibrate, threads), network, inputs, device, parent_thresholds
        )

        await self._phase(lease, "evaluating")
        parent = load_network(inputs.parent_state, inputs.manifest.num_classes)
        result = await asyncio.to_thread(
            _in_thread(measure_on_test_set, threads),
            network,
            parent,
            inputs,
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

        await self._phase(lease, "registering")
        manifest = calibrated_manifest(inputs.manifest, temperature, thresholds)
        weights = state_dict_bytes(outcome.state_dict)
        await self._finish(job, lease, inputs, weights, manifest, result)

    async def _train(
        self,
        job: TrainingJob,
        lease: JobLease,
        inputs: JobInputs,
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
                return call(worker._stop_reason(lease))

            def progress(self, progress: Progress) -> None:
                lease.progress = progress
                if worker.step_hook is not None:
                    call(worker.step_hook(job.id, progress.batches_done))

            def checkpoint(self, epoch: int, data: bytes) -> None:
                call(worker._save_checkpoint(lease, epoch, data))

        recipe = inputs.recipe
        lease.progress = Progress(phase="training", epochs=recipe.epochs)
        return await asyncio.to_thread(
            _in_thread(train, self.settings.training_threads),
            network,
            recipe,
            inputs.train,
            inputs.validation,
            mean=inputs.manifest.mean,
            std=inputs.manifest.std,
            seed=job.seed,
            hooks=Bridge(),
            device=device,
            resume=resume,
        )

    async def _save_checkpoint(self, lease: JobLease, epoch: int, data: bytes) -> None:
        await self.checkpoints.put(lease.job_id, epoch, data)
        if not await lease.update(checkpoint_epoch=epoch, heartbeat_at=utcnow()):
            lease.lost = True
            return
        if epoch > 1:
            await self.checkpoints.drop(lease.job_id, epoch - 1)
        log.info("training job %s: epoch %d checkpointed", lease.job_id, epoch)

    # ------------------------------------------------------------------ endings

    async def _finish(
        self,
        job: TrainingJob,
        lease: JobLease,
        inputs: JobInputs,
        weights: bytes,
        manifest: ModelManifest,
        result: dict[str, Any],
    ) -> None:
        self._check(await self._stop_reason(lease))
        async with self.sessions() as session:
            version, evaluation_id = await register_candidate(
                session,
                self.settings,
                self.storage,
                job=job,
                weights=weights,
                manifest=manifest,
                evaluation=result,
                min_shadow_cases=inputs.recipe.min_shadow_cases,
                train_sha256=inputs.train_sha256,
                test_sha256=inputs.test_sha256,
            )
            if not await lease.succeed(
                session, version=version, evaluation_id=evaluation_id, result=result
            ):
                await session.rollback()
                raise Stopped("lost")
            await session.commit()
        log.info(
            "training job %s succeeded: candidate %s (gates %s)",
            job.id,
            version,
            "passed" if result["passed"] else "NOT passed",
        )
        await self.checkpoints.delete_all(job.id, await lease.last_checkpoint())

    async def _stopped(self, lease: JobLease, reason: str) -> None:
        if reason == "lost":
            return  # another worker has it now: write nothing
        if reason == "interrupted":  # back to the queue, the checkpoint kept
            await lease.requeue()
            log.warning("training job %s goes back to the queue (worker stopping)", lease.job_id)
            return
        await lease.cancel()
        log.info(
            "training job %s cancelled after %d batches",
            lease.job_id,
            lease.progress.batches_done,
        )
        await self.checkpoints.delete_all(lease.job_id, await lease.last_checkpoint())

    async def _fail(self, lease: JobLease, reason: str) -> None:
        if lease.lost:
            return
        with contextlib.suppress(Exception):
            await lease.fail(reason)
        await self.checkpoints.delete_all(lease.job_id, await lease.last_checkpoint())


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
