"""Checkpoints of a training job: what one holds, and where it is kept.

After each epoch the fit loop hands over a checkpoint (weights, optimizer, best weights,
counters: `checkpoint_bytes`); the worker stores it in the image store
(training/{job}/epoch-NNN.ckpt) and drops the previous epoch's, so a job taken over after
its worker died resumes from it (`CheckpointStore.resume`). A job's checkpoints are
deleted when it ends. `state_dict_bytes` is the candidate's weights file.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import logging
from typing import Any

import torch
from torch import Tensor

from app.db.learning import TrainingJob
from app.inference.network import EyeDiseaseClassifier
from app.storage import ImageNotFound, ImageStore, checkpoint_key

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


def cpu_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def checkpoint_bytes(
    network: EyeDiseaseClassifier, optimizer: torch.optim.Optimizer, **state: Any
) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": cpu_state(network.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            **state,
        },
        buffer,
    )
    return buffer.getvalue()


def read_checkpoint(data: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return loaded


def state_dict_bytes(state: dict[str, Tensor]) -> bytes:
    """The candidate's weights file (a plain state dict, as the registry takes)."""
    buffer = io.BytesIO()
    torch.save(cpu_state(state), buffer)
    return buffer.getvalue()


class CheckpointStore:
    """A job's checkpoints in the image store."""

    def __init__(self, storage: ImageStore) -> None:
        self.storage = storage

    async def put(self, job_id: int, epoch: int, data: bytes) -> None:
        await self.storage.put(checkpoint_key(job_id, epoch), data, "application/octet-stream")

    async def drop(self, job_id: int, epoch: int) -> None:
        await self.storage.delete(checkpoint_key(job_id, epoch))

    async def resume(self, job: TrainingJob) -> dict[str, Any] | None:
        """The state of the job's last checkpoint; None when it has none (or it is gone)."""
        if not job.checkpoint_epoch:
            return None
        try:
            stored = await self.storage.get(checkpoint_key(job.id, job.checkpoint_epoch))
        except ImageNotFound:
            log.warning("training job %s: checkpoint missing; starting over", job.id)
            return None
        log.info("training job %s resumes after epoch %d", job.id, job.checkpoint_epoch)
        return await asyncio.to_thread(read_checkpoint, stored.data)

    async def delete_all(self, job_id: int, last: int | None) -> None:
        """The job's checkpoints (the last and the one before it) gone; errors ignored."""
        for epoch in range(max(1, (last or 0) - 1), (last or 0) + 1):
            with contextlib.suppress(Exception):
                await self.storage.delete(checkpoint_key(job_id, epoch))
