"""A training job's row as the worker that holds it sees it.

`claim_job` takes the oldest claimable job with a conditional UPDATE (a running job whose
heartbeat is older than TRAINING_STALE_SECONDS first: its worker died, and the new one
resumes it). A `JobLease` then writes everything about the job while this worker holds
it: the heartbeat and progress (`keep_beating`), cancel checks, and how the job ends
(succeeded, back to the queue, cancelled, failed). Every write is conditional on the row
still naming this worker; when it no longer does, the lease is `lost` and nothing more is
written.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.learning import TrainingJob
from app.db.session import SessionFactory
from app.repositories.training_jobs import TrainingJobRepository
from app.services import audit
from app.training.trainer import Progress

log = logging.getLogger(__name__)


async def claim_job(
    sessions: SessionFactory, worker: str, stale_seconds: float
) -> TrainingJob | None:
    now = utcnow()
    stale_before = now - timedelta(seconds=stale_seconds)
    async with sessions() as session:
        repo = TrainingJobRepository(session)
        for job in await repo.next_claimable(stale_before):
            status, previous = job.status, job.worker
            if await repo.claim(job, worker, now):
                await session.commit()
                claimed = await session.get(TrainingJob, job.id, populate_existing=True)
                if status == "running":
                    log.warning(
                        "training job %s: worker %s stopped beating; %s resumes it",
                        job.id,
                        previous,
                        worker,
                    )
                return claimed
            await session.rollback()
    return None


class JobLease:
    def __init__(self, sessions: SessionFactory, worker: str, job_id: int) -> None:
        self.sessions = sessions
        self.worker = worker
        self.job_id = job_id
        self.progress = Progress(phase="loading")
        self.lost = False  # another worker has the job now

    async def keep_beating(self, interval: float) -> None:
        """Write the heartbeat and progress every `interval` seconds until cancelled, or
        until the row is no longer this worker's (then `lost`)."""
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.sessions() as session:
                    ours = await TrainingJobRepository(session).heartbeat(
                        self.job_id, self.worker, utcnow(), self.progress.as_dict()
                    )
                    await session.commit()
            except Exception:  # the database hiccuped: try again next beat
                log.warning("training job %s: heartbeat failed", self.job_id, exc_info=True)
                continue
            if not ours:
                log.error("training job %s is no longer this worker's; stopping", self.job_id)
                self.lost = True
                return

    async def update(self, **values: Any) -> bool:
        async with self.sessions() as session:
            ours = await TrainingJobRepository(session).update_running(
                self.job_id, self.worker, **values
            )
            await session.commit()
        return ours

    async def cancel_requested(self) -> bool:
        async with self.sessions() as session:
            return await TrainingJobRepository(session).cancel_requested(self.job_id)

    async def last_checkpoint(self) -> int | None:
        async with self.sessions() as session:
            row = await TrainingJobRepository(session).get(self.job_id)
            return row.checkpoint_epoch if row else None

    async def succeed(
        self, session: AsyncSession, *, version: str, evaluation_id: int, result: dict[str, Any]
    ) -> bool:
        """Mark the job succeeded with its candidate, and record training.finish, in the
        caller's transaction; False (nothing written) when the job is not ours any more."""
        self.progress.phase = "done"
        now = utcnow()
        ours = await TrainingJobRepository(session).update_running(
            self.job_id,
            self.worker,
            status="succeeded",
            finished_at=now,
            heartbeat_at=now,
            progress=self.progress.as_dict(),
            candidate_version=version,
            evaluation_id=evaluation_id,
        )
        if not ours:
            return False
        await audit.record(
            session,
            "training.finish",
            actor=None,
            target=("training_job", self.job_id),
            new={
                "candidate_version": version,
                "evaluation_id": evaluation_id,
                "passed": result["passed"],
                "accuracy": result["accuracy"],
                "parent_accuracy": result["parent_accuracy"],
            },
        )
        return True

    async def requeue(self) -> None:
        """Back to the queue (this worker is stopping); its checkpoint is kept."""
        async with self.sessions() as session:
            await TrainingJobRepository(session).update_running(
                self.job_id,
                self.worker,
                status="queued",
                worker=None,
                progress=self.progress.as_dict(),
            )
            await session.commit()

    async def cancel(self) -> None:
        self.progress.phase = "done"
        async with self.sessions() as session:
            await TrainingJobRepository(session).update_running(
                self.job_id,
                self.worker,
                status="cancelled",
                finished_at=utcnow(),
                progress=self.progress.as_dict(),
            )
            await session.commit()

    async def fail(self, reason: str) -> None:
        """Mark the job failed with `reason`, and record training.fail."""
        async with self.sessions() as session:
            ours = await TrainingJobRepository(session).update_running(
                self.job_id,
                self.worker,
                status="failed",
                finished_at=utcnow(),
                error=reason,
                progress=self.progress.as_dict(),
            )
            if ours:
                await audit.record(
                    session,
                    "training.fail",
                    actor=None,
                    target=("training_job", self.job_id),
                    new={"error": reason[:500]},
                )
            await session.commit()
