"""The audit trail for administrators: filtered list (keyset pages) and CSV export.

Read-only: no route updates or deletes an event. Logic lives in app.services.audit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.api.deps import AdminUser, SessionDep, SessionFactoryDep, SettingsDep
from app.api.errors import error_responses
from app.config import Settings
from app.errors import Forbidden, NotAuthenticated, ValidationFailed
from app.repositories.audit import AuditFilters
from app.schemas.admin import AuditFilterQuery, AuditPage, AuditQuery
from app.schemas.history import zone
from app.services import audit
from app.services.history import resolve_date_bounds

router = APIRouter(prefix="/admin/audit", tags=["admin"])


def filters_of(query: AuditFilterQuery, settings: Settings) -> AuditFilters:
    """The repository's filters; 422 when date_from is after date_to."""
    tz = zone(query.tz or settings.default_timezone)
    at_from, at_before = resolve_date_bounds(query.date_from, query.date_to, tz)
    return AuditFilters(
        actor_id=query.actor_id,
        actions=(query.action,) if query.action else (),
        target_type=query.target_type,
        target_id=query.target_id,
        at_from=at_from,
        at_before=at_before,
    )


_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "CSV (header row, then one row per event, oldest first), streamed",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    **error_responses(NotAuthenticated, Forbidden, ValidationFailed),
}


@router.get(
    "",
    response_model=AuditPage,
    responses=error_responses(NotAuthenticated, Forbidden, ValidationFailed),
    summary="Audit events, newest first",
    description="Filters compose (AND). Keyset pages: pass `next_cursor` as `cursor`; every "
    "event is on exactly one page, whatever is recorded meanwhile.",
)
async def list_audit(
    _: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    query: Annotated[AuditQuery, Query()],
) -> AuditPage:
    filters = filters_of(query, settings)
    return AuditPage.of(await audit.page(session, filters, query.cursor, query.limit))


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses=_CSV_RESPONSE,
    summary="Export audit events as CSV",
    description="The same filters as the list; all matching events, oldest first, streamed "
    "in chunks (never built in memory). Cells a spreadsheet would run as a formula are "
    "prefixed with a quote.",
)
async def export_audit(
    _: AdminUser,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    query: Annotated[AuditFilterQuery, Query()],
) -> StreamingResponse:
    filters = filters_of(query, settings)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    return StreamingResponse(
        audit.export_csv(sessions, filters),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
