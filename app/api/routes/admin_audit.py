"""The audit trail for administrators: filtered list (keyset pages) and CSV export.

Read-only: no route updates or deletes an event. Logic lives in app.services.audit_trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.api.deps import AdminUser, AuditTrailDep
from app.api.errors import error_responses
from app.errors import Forbidden, NotAuthenticated, ValidationFailed
from app.schemas.admin import AuditFilterQuery, AuditPage, AuditQuery

router = APIRouter(prefix="/admin/audit", tags=["admin"])


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
    trail: AuditTrailDep,
    query: Annotated[AuditQuery, Query()],
) -> AuditPage:
    return await trail.page(trail.filters_of(query), query.cursor, query.limit)


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
    trail: AuditTrailDep,
    query: Annotated[AuditFilterQuery, Query()],
) -> StreamingResponse:
    filters = trail.filters_of(query)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    return StreamingResponse(
        trail.export_csv(filters),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
