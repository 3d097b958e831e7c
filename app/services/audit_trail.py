"""Reading the audit trail: filtered keyset pages, the CSV export, and retention.

Read-only but for `prune` (the `ocupredict prune-audit` command), which deletes old events
and records that it did, in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.audit_actions import SECURITY_ACTIONS
from app.db.base import utcnow
from app.db.models import AuditEvent, User
from app.db.session import SessionFactory
from app.kit.csv_export import csv_cells, csv_pages
from app.kit.pagination import decode_cursor, encode_cursor
from app.kit.time import bounds
from app.repositories.audit import AuditFilters, AuditRepository
from app.schemas.admin import AuditEvent as AuditEventOut
from app.schemas.admin import AuditFilterQuery, AuditPage
from app.services.audit import record

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


def csv_row(event: AuditEvent | Row[Any]) -> list[str]:
    return csv_cells(
        (
            event.id,
            event.at.isoformat(),
            event.actor_id,
            event.actor_email,
            event.action,
            event.target_type,
            event.target_id,
            event.ip,
            event.request_id,
            json.dumps(event.old, sort_keys=True) if event.old is not None else None,
            json.dumps(event.new, sort_keys=True) if event.new is not None else None,
        )
    )


class AuditTrail:
    def __init__(self, session: AsyncSession, sessions: SessionFactory, default_tz: str) -> None:
        """`session` (the request's) reads pages; the export streams on its own session
        from `sessions` (a streamed body outlives the request's dependencies)."""
        self.session = session
        self.sessions = sessions
        self.default_tz = default_tz

    def filters_of(self, query: AuditFilterQuery) -> AuditFilters:
        """The repository's filters; 422 when date_from is after date_to."""
        at_from, at_before = bounds(query, self.default_tz)
        return AuditFilters(
            actor_id=query.actor_id,
            actions=(query.action,) if query.action else (),
            target_type=query.target_type,
            target_id=query.target_id,
            at_from=at_from,
            at_before=at_before,
        )

    async def page(self, filters: AuditFilters, cursor: str | None, limit: int) -> AuditPage:
        """Newest first; `next_cursor` is None on the last page. Keyset on id, so events
        inserted meanwhile never shift a page: each existing event is seen exactly once."""
        rows = await AuditRepository(self.session).page(
            filters, after_id=decode_cursor(cursor), limit=limit + 1, order="desc"
        )
        items = rows[:limit]
        more = len(rows) > limit
        return AuditPage(
            items=[AuditEventOut.model_validate(event) for event in items],
            next_cursor=encode_cursor(items[-1].id) if more and items else None,
        )

    async def security_page(self, user: User, cursor: str | None, limit: int) -> AuditPage:
        """The security events of the user's own account (GET /auth/me/activity)."""
        filters = AuditFilters(actions=SECURITY_ACTIONS, target_type="user", target_id=str(user.id))
        return await self.page(filters, cursor, limit)

    async def export_csv(self, filters: AuditFilters) -> AsyncIterator[str]:
        """The filtered events, oldest first, as CSV text chunks of a page of rows each:
        memory stays at one page whatever the range."""
        async with self.sessions() as session:
            repo = AuditRepository(session)

            async def page_after(after: int | None, limit: int) -> Sequence[Row[Any]]:
                return await repo.rows(filters, after_id=after, limit=limit)

            async for chunk in csv_pages(CSV_COLUMNS, page_after, lambda row: row.id, csv_row):
                yield chunk

    async def prune(self, older_than_days: int, now: datetime | None = None) -> int:
        """Delete events older than `older_than_days` and record that it happened, in one
        transaction (committed here). Returns the number deleted."""
        now = now or utcnow()
        cutoff = now - timedelta(days=older_than_days)
        deleted = await AuditRepository(self.session).prune_before(cutoff)
        await record(
            self.session,
            "audit.prune",
            new={
                "older_than_days": older_than_days,
                "before": cutoff.isoformat(),
                "deleted": deleted,
            },
            at=now,
        )
        await self.session.commit()
        return deleted
