"""Time zones, client-supplied dates and the UTC bounds they stand for.

Inside, every instant is UTC; clients speak dates in their own IANA zone. The one way to
turn a query's (date_from, date_to, tz) into UTC bounds is `bounds`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, available_timezones

from app.errors import ValidationFailed

# Dates a client may name. Wide enough for any photograph, narrow enough that a day's
# local midnight, a +14:00 offset or "the day after" never leaves datetime's range.
MIN_YEAR = 1900
MAX_YEAR = 9000


@lru_cache(maxsize=1)
def known_time_zones() -> frozenset[str]:
    """IANA names from tzdata, read once (never probe the filesystem with client input)."""
    return frozenset(available_timezones() | {"UTC"})


def check_time_zone(value: str) -> str:
    if value not in known_time_zones():
        raise ValueError("unknown IANA time zone (e.g. America/Lima, Europe/Madrid, UTC)")
    return value


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(check_time_zone(name))


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which `day` starts in `tz` (if midnight falls in a DST gap, the
    first instant of the day, i.e. the transition)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date_or_datetime(value: object) -> date | datetime:
    """'2025-03-14' -> date; '2025-03-14T10:00:00-05:00' (or Z) -> aware datetime.

    A datetime without an offset is refused (it would be ambiguous), and so is a year
    outside MIN_YEAR..MAX_YEAR.
    """
    if isinstance(value, datetime):
        parsed: date | datetime = value
    elif isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.fullmatch(text):
                parsed = date.fromisoformat(text)
            else:
                parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError as exc:
            raise ValueError(
                "expected a date (YYYY-MM-DD) or a datetime with offset (YYYY-MM-DDTHH:MM:SS+HH:MM)"
            ) from exc
    else:
        raise ValueError("expected a date or a datetime string")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    if isinstance(parsed, datetime) and (parsed.tzinfo is None or parsed.utcoffset() is None):
        raise ValueError("a datetime needs an offset, e.g. 2025-03-14T10:00:00-05:00 or ...Z")
    return parsed


class DateRange(Protocol):
    """A query with a date range in a time zone (the history, audit and metrics filters)."""

    @property
    def date_from(self) -> date | datetime | None: ...
    @property
    def date_to(self) -> date | datetime | None: ...
    @property
    def tz(self) -> str | None: ...


def bounds(query: DateRange, default_tz: str) -> tuple[datetime | None, datetime | None]:
    """(inclusive start, exclusive end) as UTC instants, in `query.tz` or `default_tz`."""
    return utc_bounds(query.date_from, query.date_to, zone(query.tz or default_tz))


def utc_bounds(
    date_from: date | datetime | None, date_to: date | datetime | None, tz: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """(inclusive start, exclusive end) as UTC instants.

    A plain date_from starts at local midnight of that day in `tz`; a plain date_to
    covers its whole local day (end = next local midnight). Datetimes are instants, both
    inclusive. 422 when the start is not before the end.
    """
    start: datetime | None = None
    end: datetime | None = None
    if isinstance(date_from, datetime):
        start = date_from.astimezone(UTC)
    elif date_from is not None:
        start = local_midnight(date_from, tz)
    if isinstance(date_to, datetime):
        end = date_to.astimezone(UTC) + timedelta(microseconds=1)
    elif date_to is not None:
        end = local_midnight(date_to + timedelta(days=1), tz)
    if start is not None and end is not None and start >= end:
        raise ValidationFailed("date_from is after date_to")
    return start, end
