"""Audit events: append (core INSERT), keyset pages by id, and the retention prune.

The only DELETE is `prune_before` (the `ocupredict prune-audit` command); nothing here or
anywhere else updates an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, Select, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AuditEvent
from app.repositories._util import rowcount


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """All given filters apply (AND). Time bounds are UTC instants."""

    actor_id: int | None = None
    actions: tuple[str, ...] = ()
    target_type: str | None = None
    target_id: str | None = None
    at_from: datetime | None = None  # inclusive
    at_before: datetime | None = None  # exclusive

    def clauses(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.actor_id is not None:
            clauses.append(AuditEvent.actor_id == self.actor_id)
        if len(self.actions) == 1:
            clauses.append(AuditEvent.action == self.actions[0])
        elif self.actions:
            clauses.append(AuditEvent.action.in_(self.actions))
        if self.target_type is not None:
            clauses.append(AuditEvent.target_type == self.target_type)
        if self.target_id is not None:
            clauses.append(AuditEvent.target_id == self.target_id)
        if self.at_from is not None:
            clauses.append(AuditEvent.at >= self.at_from)
        if self.at_before is not None:
            clauses.append(AuditEvent.at < self.at_before)
        return clauses


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> None:
        """One event, in the session's transaction (a core INSERT: no ORM bookkeeping)."""
        await self.session.execute(insert(AuditEvent).values(**values))

    async def add_many(self, rows: list[dict[str, Any]]) -> None:
        """Several events in one multi-row INSERT."""
        await self.session.execute(insert(AuditEvent), rows)

    async def page(
        self,
        filters: AuditFilters,
        *,
        after_id: int | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> Sequence[AuditEvent]:
        """Up to `limit` events past `after_id` in `order` of id (keyset: an event is on
        exactly one page, whatever is inserted meanwhile)."""
        stmt = self._keyset(select(AuditEvent), filters, after_id, limit, order)
        return (await self.session.scalars(stmt)).all()

    async def rows(
        self, filters: AuditFilters, *, after_id: int | None, limit: int
    ) -> Sequence[Row[Any]]:
        """As `page`, oldest first, as plain rows (no ORM objects: the export reads many)."""
        table = AuditEvent.__table__
        stmt = self._keyset(select(*table.c), filters, after_id, limit, "asc")
        rows: Sequence[Row[Any]] = (await self.session.execute(stmt)).all()
        return rows

    @staticmethod
    def _keyset(
        stmt: Select[Any],
        filters: AuditFilters,
        after_id: int | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> Select[Any]:
        stmt = stmt.where(*filters.clauses())
        if order == "desc":
            if after_id is not None:
                stmt = stmt.where(AuditEvent.id < after_id)
            stmt = stmt.order_by(AuditEvent.id.desc())
        else:
            if after_id is not None:
                stmt = stmt.where(AuditEvent.id > after_id)
            stmt = stmt.order_by(AuditEvent.id.asc())
        return stmt.limit(limit)

    async def prune_before(self, cutoff: datetime) -> int:
        """Delete the events older than `cutoff` (retention); the number deleted."""
        result = await self.session.execute(
            delete(AuditEvent)
            .where(AuditEvent.at < cutoff)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)
