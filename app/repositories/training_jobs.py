"""Data access for training jobs and model evaluations.

A worker claims a job with a conditional UPDATE (`... WHERE id = ? AND status =
'queued'`, or for a job whose worker died, `... AND status = 'running' AND worker = ?
AND heartbeat_at = ?`): of two workers that race for the same row exactly one matches
it, on MariaDB and on SQLite alike. Every later write of the worker names itself
(`worker = ?`), so a worker that lost its job (taken over after a stalled heartbeat)
finds out at its next write and stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.learning import ModelEvaluation, TrainingJob
from app.db.models import ShadowPrediction
from app.repositories._util import rowcount

FINISHED = ("succeeded", "failed", "cancelled")


class TrainingJobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, job_id: int) -> TrainingJob | None:
        return await self.session.get(TrainingJob, job_id)

    async def all(self, status: str | None = None) -> Sequence[TrainingJob]:
        stmt = select(TrainingJob).order_by(TrainingJob.id.desc())
        if status is not None:
            stmt = stmt.where(TrainingJob.status == status)
        return (await self.session.scalars(stmt)).all()

    async def add(self, job: TrainingJob) -> None:
        self.session.add(job)
        await self.session.flush()

    async def cancel_queued(self, job_id: int, now: datetime) -> bool:
        """A queued job is cancelled at once (no worker has it)."""
        result = await self.session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.status == "queued")
            .values(status="cancelled", cancel_requested=True, finished_at=now)
        )
        return rowcount(result) == 1

    async def request_cancel(self, job_id: int) -> bool:
        """A running job's worker stops before its next batch."""
        result = await self.session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.status == "running")
            .values(cancel_requested=True)
        )
        return rowcount(result) == 1

    # ------------------------------------------------------------------ the worker's side

    async def next_claimable(self, stale_before: datetime) -> Sequence[TrainingJob]:
        """Running jobs whose heartbeat stalled (oldest first), then queued ones."""
        stale = (
            select(TrainingJob)
            .where(TrainingJob.status == "running", TrainingJob.heartbeat_at < stale_before)
            .order_by(TrainingJob.id)
            .limit(5)
        )
        queued = (
            select(TrainingJob)
            .where(TrainingJob.status == "queued")
            .order_by(TrainingJob.id)
            .limit(5)
        )
        return [
            *(await self.session.scalars(stale)).all(),
            *(await self.session.scalars(queued)).all(),
        ]

    async def claim(self, job: TrainingJob, worker: str, now: datetime) -> bool:
        """Take `job` as read by next_claimable, if nobody changed it since."""
        conditions: list[Any] = [TrainingJob.id == job.id, TrainingJob.status == job.status]
        if job.status == "running":  # a takeover: the dead worker's last heartbeat
            conditions += [
                TrainingJob.worker == job.worker,
                TrainingJob.heartbeat_at == job.heartbeat_at,
            ]
        values: dict[str, Any] = {
            "status": "running",
            "worker": worker,
            "heartbeat_at": now,
            "attempts": TrainingJob.attempts + 1,
        }
        if job.started_at is None:
            values["started_at"] = now
        result = await self.session.execute(update(TrainingJob).where(*conditions).values(**values))
        return rowcount(result) == 1

    async def heartbeat(
        self, job_id: int, worker: str, now: datetime, progress: dict[str, Any] | None
    ) -> bool:
        """Still ours? (False: taken over or finished meanwhile.)"""
        values: dict[str, Any] = {"heartbeat_at": now}
        if progress is not None:
            values["progress"] = progress
        result = await self.session.execute(
            update(TrainingJob)
            .where(
                TrainingJob.id == job_id,
                TrainingJob.worker == worker,
                TrainingJob.status == "running",
            )
            .values(**values)
        )
        return rowcount(result) == 1

    async def cancel_requested(self, job_id: int) -> bool:
        stmt = select(TrainingJob.cancel_requested).where(TrainingJob.id == job_id)
        return bool((await self.session.execute(stmt)).scalar_one_or_none())

    async def update_running(self, job_id: int, owner: str, **values: Any) -> bool:
        """Change a running job if `owner` (a worker's name) still has it."""
        result = await self.session.execute(
            update(TrainingJob)
            .where(
                TrainingJob.id == job_id,
                TrainingJob.worker == owner,
                TrainingJob.status == "running",
            )
            .values(**values)
        )
        return rowcount(result) == 1

    # ------------------------------------------------------------------ evaluations

    async def add_evaluation(self, row: ModelEvaluation) -> None:
        self.session.add(row)
        await self.session.flush()

    async def evaluation(self, evaluation_id: int) -> ModelEvaluation | None:
        return await self.session.get(ModelEvaluation, evaluation_id)

    async def latest_evaluation(self, version: str) -> ModelEvaluation | None:
        stmt = (
            select(ModelEvaluation)
            .where(ModelEvaluation.version == version)
            .order_by(ModelEvaluation.id.desc())
            .limit(1)
        )
        return (await self.session.scalars(stmt)).first()

    async def shadow_compared(self, version: str) -> int:
        """Live uploads this version has classified in shadow."""
        stmt = select(func.count()).where(ShadowPrediction.model_version == version)
        return int((await self.session.execute(stmt)).scalar_one())
