"""The audit trail: who did or saw what, when, from where.

Recording is one call, made by the flow that performs the change, before it commits:

    await audit.record(session, "prediction.feedback", actor=user,
                       target=("prediction", row.id), old=before, new=after)

The event is an INSERT in the caller's transaction: if the change rolls back, so does its
event; when the change commits, its event is committed with it. Views change nothing and
must not slow the read: they go through the process's `ViewLog` (app.state.view_log),
which writes them in batches. The client IP and the
request id come from the request context (ClientIpMiddleware, RequestIdMiddleware), so
callers pass neither. `old` / `new` are small JSON objects of what changed; `record`
refuses keys that name a secret (passwords, codes, tokens), which never belong here.

Events are append-only: nothing updates one, and only `prune` (the `ocupredict
prune-audit` command) deletes, itself leaving an `audit.prune` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.models import AuditEvent, User
from app.db.session import SessionFactory
from app.observability import client_ip_var, request_id_var
from app.repositories.audit import AuditFilters, AuditRepository

log = logging.getLogger(__name__)

ACTIONS: tuple[str, ...] = (
    "auth.login",
    "auth.login_failed",
    "auth.logout",
    "auth.refresh_reuse",
    "auth.password_change",
    "auth.password_reset",
    "auth.verify",
    "prediction.view",
    "prediction.image_view",
    "prediction.heatmap_view",
    "prediction.feedback",
    "prediction.delete",
    "model.register",
    "model.activate",
    "model.retire",
    "user.disable",
    "user.enable",
    "user.role",
    "audit.prune",
    "dataset.create",
    "training.start",
    "training.cancel",
    "training.finish",
    "training.fail",
)

# What GET /auth/me/activity shows a user about their own account (target user = them).
SECURITY_ACTIONS: tuple[str, ...] = tuple(a for a in ACTIONS if a.startswith("auth."))

# Keys that would carry a secret; an event never holds one (not even hashed).
_SECRET_KEYS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "password_hash",
        "code",
        "code_hash",
        "token",
        "access_token",
        "refresh_token",
        "token_hash",
        "signature",
        "secret",
    }
)

CSV_COLUMNS = (
    "id",
    "at",
    "actor_id",
    "actor_email",
    "action",
    "target_type",
    "target_id",
    "ip",
    "request_id",
    "old",
    "new",
)
EXPORT_CHUNK = 1000


def _check_values(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in _SECRET_KEYS:
                raise ValueError(f"audit {where} must not hold {key!r}")
            _check_values(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_values(item, where)


def event_values(
    action: str,
    *,
    actor: User | int | None = None,
    actor_email: str | None = None,
    target: tuple[str, object] | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The row of one event, with the IP and request id of the current request."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    _check_values(old, "old")
    _check_values(new, "new")
    if isinstance(actor, User):
        actor_id: int | None = actor.id
        actor_email = actor_email or actor.email
    else:
        actor_id = actor
    request_id = request_id_var.get()
    return {
        "at": at or utcnow(),
        "actor_id": actor_id,
        "actor_email": actor_email[:254] if actor_email else None,
        "action": action,
        "target_type": target[0] if target else None,
        "target_id": str(target[1])[:64] if target else None,
        "ip": client_ip_var.get(),
        "request_id": None if request_id == "-" else request_id,
        "old": dict(old) if old is not None else None,
        "new": dict(new) if new is not None else None,
    }


async def record(
    session: AsyncSession,
    action: str,
    *,
    actor: User | int | None = None,
    actor_email: str | None = None,
    target: tuple[str, object] | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Add one event to the session's transaction (the caller commits).

    `actor`: the user who acted (a User, or an id), None for the system or an unknown
    caller (then `actor_email` may say who they claimed to be). `target`: (type, id), e.g.
    ("prediction", 42), ("user", 7), ("model", "0123abcd").
    """
    values = event_values(
        action, actor=actor, actor_email=actor_email, target=target, old=old, new=new, at=at
    )
    await AuditRepository(session).add(values)


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


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class EventPage:
    items: Sequence[AuditEvent]
    next_cursor: str | None


def encode_cursor(event_id: int) -> str:
    return str(event_id)


def decode_cursor(cursor: str | None) -> int | None:
    """The schema admits only digits; the id of the last event of the previous page."""
    return int(cursor) if cursor else None


async def page(
    session: AsyncSession, filters: AuditFilters, cursor: str | None, limit: int
) -> EventPage:
    """Newest first; `next_cursor` is None on the last page. Keyset on id, so events
    inserted meanwhile never shift a page: each existing event is seen exactly once."""
    rows = await AuditRepository(session).page(
        filters, after_id=decode_cursor(cursor), limit=limit + 1, order="desc"
    )
    items = rows[:limit]
    more = len(rows) > limit
    return EventPage(items, encode_cursor(items[-1].id) if more and items else None)


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading quote (CSV injection:
    an attempted login email is the caller's own text)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_row(event: AuditEvent | Row[Any]) -> list[Any]:
    return [
        event.id,
        event.at.isoformat(),
        event.actor_id if event.actor_id is not None else "",
        _cell(event.actor_email or ""),
        event.action,
        event.target_type or "",
        _cell(event.target_id or ""),
        event.ip or "",
        event.request_id or "",
        _cell(json.dumps(event.old, sort_keys=True)) if event.old is not None else "",
        _cell(json.dumps(event.new, sort_keys=True)) if event.new is not None else "",
    ]


async def export_csv(sessions: SessionFactory, filters: AuditFilters) -> AsyncIterator[str]:
    """The filtered events, oldest first, as CSV text chunks of EXPORT_CHUNK rows: memory
    stays at one chunk whatever the range. Runs on its own session (a streamed body
    outlives the request's dependencies)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    async with sessions() as session:
        repo = AuditRepository(session)
        after: int | None = None
        while True:
            rows = await repo.rows(filters, after_id=after, limit=EXPORT_CHUNK)
            if not rows:
                break
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(csv_row(row) for row in rows)
            after = rows[-1].id
            yield buffer.getvalue()
            if len(rows) < EXPORT_CHUNK:
                break


# --------------------------------------------------------------------------- retention


async def prune(session: AsyncSession, older_than_days: int, now: datetime | None = None) -> int:
    """Delete events older than `older_than_days` and record that it happened, in one
    transaction (committed here). Returns the number deleted."""
    now = now or utcnow()
    cutoff = now - timedelta(days=older_than_days)
    deleted = await AuditRepository(session).prune_before(cutoff)
    await record(
        session,
        "audit.prune",
        new={"older_than_days": older_than_days, "before": cutoff.isoformat(), "deleted": deleted},
        at=now,
    )
    await session.commit()
    return deleted
