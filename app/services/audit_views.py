"""The process's batched writer of view events (prediction.view, image_view, heatmap_view)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from app.db.models import User
from app.db.session import SessionFactory
from app.repositories.audit import AuditRepository
from app.services.audit import event_values

log = logging.getLogger(__name__)


class ViewLog:
    """Views (prediction.view, image_view, heatmap_view) without a write on the read's path.

    A view changes nothing, so there is no transaction to join: `add` only queues the row
    (the IP and request id taken now), and a task of the process writes the queue in one
    multi-row INSERT every `interval` seconds (or at `batch` rows), and on shutdown. A
    GET /history/{id} so costs no INSERT and no COMMIT round trip (bench/audit.py). A
    crash loses at most the last interval's views; a failed write is retried with the
    next one (at most `limit` rows are kept).
    """

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        interval: float = 0.25,
        batch: int = 500,
        limit: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self.interval, self.batch, self.limit = interval, batch, limit
        self._queue: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-view-log")

    def add(
        self,
        action: str,
        *,
        actor: User | int | None,
        target: tuple[str, object],
        new: Mapping[str, Any] | None = None,
    ) -> None:
        if not action.endswith("view"):
            raise ValueError(f"{action!r} is a change: record it in its transaction")
        if len(self._queue) >= self.limit:
            log.error("audit view log full (%s queued): a view event is dropped", self.limit)
            return
        self._queue.append(event_values(action, actor=actor, target=target, new=new))
        if len(self._queue) >= self.batch:
            self._wake.set()

    async def flush(self) -> int:
        """Write what is queued now; the number of events written."""
        async with self._lock:
            rows, self._queue = self._queue, []
            if not rows:
                return 0
            try:
                async with self._sessions() as session:
                    await AuditRepository(session).add_many(rows)
                    await session.commit()
            except Exception:
                log.exception("audit view events could not be written; retrying later")
                self._queue[:0] = rows[: max(0, self.limit - len(self._queue))]
                return 0
            return len(rows)

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
