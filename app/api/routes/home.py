"""Dashboard numbers (GET /home/stats)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentUser, NowDep, SettingsDep, StatsServiceDep
from app.api.errors import error_responses
from app.errors import NotAuthenticated, ValidationFailed
from app.schemas.history import TimeZoneName
from app.schemas.home import RangeName, Stats

router = APIRouter(prefix="/home", tags=["home"])


@router.get(
    "/stats",
    response_model=Stats,
    responses=error_responses(NotAuthenticated, ValidationFailed),
    summary="My numbers and everyone's for a range of local days",
    description=(
        "range: today, week (the last 7 days including today) or month (the last 30), as "
        "whole days in `tz`, or all. `range.start` is inclusive and `range.end` exclusive "
        "(the local midnight that ends today). `mine` counts my predictions, `overall` "
        "everyone's, in the same range (for range=all, recounted at most once a minute per "
        "server process)."
    ),
)
async def stats(
    user: CurrentUser,
    service: StatsServiceDep,
    settings: SettingsDep,
    now: NowDep,
    range_: Annotated[
        RangeName, Query(alias="range", description="today, week, month or all")
    ] = "today",
    tz: Annotated[
        TimeZoneName | None,
        Query(
            description="IANA time zone of the days (default DEFAULT_TIMEZONE); 422 if unknown",
            examples=["America/Lima"],
        ),
    ] = None,
) -> Stats:
    return await service.stats(user, range_, tz or settings.default_timezone, now)
