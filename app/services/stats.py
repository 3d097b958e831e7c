"""The dashboard: my numbers and everyone's, for today / last 7 days / last 30 days / all.

Ranges are whole local days in the caller's IANA zone, turned into UTC instants before
they reach SQL (columns hold UTC). Everything is counted by GROUP BY queries, which run
concurrently, each on its own connection:

- one groups my rows by (predicted_class, verdict, correct_class): at most a few dozen
  groups, from which the totals, per-class counts and confusion pairs are summed;
- one groups my rows by local day: the days' UTC start instants are computed here (with
  zoneinfo, so DST changes and :30/:45 offsets are exact) and passed to SQL as plain
  integers, and a CASE over the row's epoch seconds picks its day. No time-zone tables
  are needed in the database (MariaDB's CONVERT_TZ needs them loaded; SQLite has none),
  and at most one row per day comes back;
- one counts everyone's rows in the range. For range=all that is a scan of the whole
  table (about 0.2 s at a million rows), so its result is kept per process for
  OVERALL_ALL_TTL_SECONDS; feedback and deletions made through this process clear it.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.clinical import RECOMMENDATIONS
from app.db.models import User
from app.db.session import SessionFactory
from app.inference.manifest import ModelManifest
from app.kit.time import local_midnight, zone
from app.repositories.local_days import DaySpan
from app.repositories.predictions import PredictionRepository, Totals, in_own_session
from app.schemas.home import (
    MAX_DAILY_DAYS,
    ConfusionCell,
    DailyCount,
    MyStats,
    OverallStats,
    RangeName,
    Stats,
    StatsRange,
)
from app.schemas.prediction import label_lookup

RANGE_DAYS: dict[str, int] = {"today": 1, "week": 7, "month": 30}
OVERALL_ALL_TTL_SECONDS = 60.0


class TotalsCache:
    """Everyone's totals per range key, for a short time (one per process, on app.state)."""

    def __init__(
        self,
        ttl_seconds: float = OVERALL_ALL_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, Totals]] = {}

    def get(self, key: Hashable) -> Totals | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]

    def put(self, key: Hashable, totals: Totals) -> None:
        now = self.clock()
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[key] = (now + self.ttl, totals)

    def clear(self) -> None:
        self._entries = {}


def percentage(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 1)


def range_bounds(
    name: RangeName, tz: ZoneInfo, now: datetime
) -> tuple[date, datetime | None, datetime]:
    """(today in tz, inclusive UTC start or None for all, exclusive UTC end).

    week = the last 7 local days including today; month = the last 30.
    """
    today = now.astimezone(tz).date()
    end = local_midnight(today + timedelta(days=1), tz)
    if name == "all":
        return today, None, end
    first = today - timedelta(days=RANGE_DAYS[name] - 1)
    return today, local_midnight(first, tz), end


def day_spans(starts: list[int]) -> list[DaySpan]:
    """Spans for days starting at starts[0..n-1] (epoch seconds; starts[n] ends the last):
    runs of 24-hour days, and any day of another length (a DST change) on its own."""
    spans: list[DaySpan] = []
    i, n = 0, len(starts) - 1
    while i < n:
        if starts[i + 1] - starts[i] != 86400:
            spans.append(DaySpan(starts[i], starts[i + 1], i, uniform=False))
            i += 1
            continue
        j = i
        while j < n and starts[j + 1] - starts[j] == 86400:
            j += 1
        spans.append(DaySpan(starts[i], starts[j], i, uniform=True))
        i = j
    return spans


class StatsService:
    def __init__(
        self,
        session: AsyncSession,
        sessions: SessionFactory,
        manifest: ModelManifest,
        overall_cache: TotalsCache,
    ) -> None:
        """`session` (the request's) runs one query; `sessions` opens connections for the
        others, so they all run at the same time."""
        self.repo = PredictionRepository(session)
        self.sessions = sessions
        self.manifest = manifest
        self.overall_cache = overall_cache

    async def stats(self, user: User, name: RangeName, tz_name: str, now: datetime) -> Stats:
        tz = zone(tz_name)
        today, start, end = range_bounds(name, tz, now)

        mine_groups, daily, overall, (by_recommendation, ungradable) = await asyncio.gather(
            self.repo.feedback_groups(user.id, start, end),
            self._daily(user, tz, today, start, end),
            self._overall(name, start, end),
            self._clinical(user, start, end),
        )
        by_class: dict[str, int] = dict.fromkeys(self.manifest.codes, 0)
        confusion: dict[tuple[str, str], int] = defaultdict(int)
        total = with_feedback = correct = incorrect = 0
        for g in mine_groups:
            total += g.count
            by_class[g.predicted_class] = by_class.get(g.predicted_class, 0) + g.count
            if g.verdict is None:
                continue
            with_feedback += g.count
            if g.verdict == "correct":
                correct += g.count
                confusion[(g.predicted_class, g.predicted_class)] += g.count
            else:
                incorrect += g.count
                if g.correct_class is not None:
                    confusion[(g.predicted_class, g.correct_class)] += g.count

        label = label_lookup(self.manifest, user.locale)
        return Stats(
            range=StatsRange(
                name=name,
                start=start.astimezone(tz) if start is not None else None,
                end=end.astimezone(tz),
                tz=tz_name,
            ),
            labels={code: label(code) for code in by_class},
            mine=MyStats(
                total=total,
                with_feedback=with_feedback,
                correct=correct,
                incorrect=incorrect,
                correct_pct=percentage(correct, with_feedback),
                by_class=by_class,
                daily=daily,
                confusion=[
                    ConfusionCell(predicted=p, confirmed=c, count=n)
                    for (p, c), n in sorted(confusion.items())
                ],
                by_recommendation=by_recommendation,
                ungradable=ungradable,
            ),
            overall=OverallStats(
                total=overall.total,
                with_feedback=overall.with_feedback,
                correct=overall.correct,
                correct_pct=percentage(overall.correct, overall.with_feedback),
            ),
        )

    async def _clinical(
        self, user: User, start: datetime | None, end: datetime
    ) -> tuple[dict[str, int], int]:
        """Per-recommendation counts and the ungradable count, on connections of their own."""

        async def counts(repo: PredictionRepository) -> dict[str, int]:
            return await repo.recommendation_counts(user.id, start, end)

        async def ungradable(repo: PredictionRepository) -> int:
            return await repo.ungradable_count(user.id, start, end)

        found, bad = await asyncio.gather(
            in_own_session(self.sessions, counts), in_own_session(self.sessions, ungradable)
        )
        by_recommendation: dict[str, int] = dict.fromkeys(RECOMMENDATIONS, 0)
        by_recommendation.update(found)
        return by_recommendation, bad

    async def _overall(self, name: RangeName, start: datetime | None, end: datetime) -> Totals:
        async def totals(repo: PredictionRepository) -> Totals:
            return await repo.overall_totals(start, end)

        if name != "all":
            return await in_own_session(self.sessions, totals)
        key = (start, end)
        if (hit := self.overall_cache.get(key)) is not None:
            return hit
        result = await in_own_session(self.sessions, totals)
        self.overall_cache.put(key, result)
        return result

    async def _daily(
        self, user: User, tz: ZoneInfo, today: date, start: datetime | None, end: datetime
    ) -> list[DailyCount]:
        async def work(repo: PredictionRepository) -> list[DailyCount]:
            if start is not None:
                first_day = start.astimezone(tz).date()
            else:  # from my first prediction's day, within the last MAX_DAILY_DAYS
                first_at = await repo.first_created_at(user.id)
                first_day = first_at.astimezone(tz).date() if first_at is not None else today
                first_day = max(first_day, today - timedelta(days=MAX_DAILY_DAYS - 1))
                first_day = min(first_day, today)
            days = [first_day + timedelta(days=i) for i in range((today - first_day).days + 1)]
            # Epoch seconds at which each day starts, and the end of the last one.
            starts = [int(local_midnight(d, tz).timestamp()) for d in days]
            starts.append(int(end.timestamp()))
            counts = [0] * len(days)
            for index, n in await repo.counts_by_local_day(user.id, day_spans(starts)):
                if 0 <= index < len(days):
                    counts[index] += n
            return [DailyCount(date=d, count=n) for d, n in zip(days, counts, strict=True)]

        return await in_own_session(self.sessions, work)
