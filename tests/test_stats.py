"""GET /home/stats with fixed clocks: ranges in the caller's zone, daily series, confusion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.support.factories import Doctor, add_prediction, app_of, make_doctor

URL = "/api/v1/home/stats"


async def stats(client: httpx.AsyncClient, doctor: Doctor, **params: str) -> dict[str, Any]:
    response = await client.get(URL, params=params, headers=doctor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def daily(body: dict[str, Any]) -> dict[str, int]:
    return {d["date"]: d["count"] for d in body["mine"]["daily"]}


def nonzero(body: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in daily(body).items() if v}


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize("tz_name", ["America/Lima", "UTC"])
async def test_range_edges_at_local_midnight(
    client: httpx.AsyncClient, clock: Any, tz_name: str
) -> None:
    """Now is 2025-03-14 23:45 local. week = 03-08..03-14, month = 02-13..03-14."""
    app = app_of(client)
    doctor = await make_doctor(app)
    tz = ZoneInfo(tz_name)

    def local(*args: int) -> datetime:
        return datetime(*args, tzinfo=tz)  # type: ignore[misc]

    clock(local(2025, 3, 14, 23, 45).astimezone(UTC))
    moments = {
        "late_today": local(2025, 3, 14, 23, 30),  # 23:30 local on the last day
        "start_today": local(2025, 3, 14, 0, 0),
        "late_yesterday": local(2025, 3, 13, 23, 30),
        "week_first": local(2025, 3, 8, 0, 0),
        "before_week": local(2025, 3, 7, 23, 30),
        "month_first": local(2025, 2, 13, 0, 0),
        "before_month": local(2025, 2, 12, 23, 30),
        "tomorrow": local(2025, 3, 15, 0, 0),  # outside every range but 'all' ends too
    }
    for when in moments.values():
        await add_prediction(app, doctor.id, created_at=when)

    today = await stats(client, doctor, range="today", tz=tz_name)
    assert today["mine"]["total"] == 2
    assert daily(today) == {"2025-03-14": 2}
    start = datetime.fromisoformat(today["range"]["start"])
    end = datetime.fromisoformat(today["range"]["end"])
    assert start == local(2025, 3, 14, 0, 0) and end == local(2025, 3, 15, 0, 0)
    assert start.utcoffset() == local(2025, 3, 14).utcoffset()  # spoken in tz
    assert today["range"]["tz"] == tz_name and today["range"]["name"] == "today"

    week = await stats(client, doctor, range="week", tz=tz_name)
    assert week["mine"]["total"] == 4
    assert list(daily(week)) == [f"2025-03-{d:02d}" for d in range(8, 15)]
    assert nonzero(week) == {"2025-03-08": 1, "2025-03-13": 1, "2025-03-14": 2}
    assert datetime.fromisoformat(week["range"]["start"]) == local(2025, 3, 8, 0, 0)

    month = await stats(client, doctor, range="month", tz=tz_name)
    assert month["mine"]["total"] == 6
    assert len(month["mine"]["daily"]) == 30
    assert month["mine"]["daily"][0]["date"] == "2025-02-13"
    assert month["mine"]["daily"][-1]["date"] == "2025-03-14"
    assert nonzero(month) == {
        "2025-02-13": 1,
        "2025-03-07": 1,
        "2025-03-08": 1,
        "2025-03-13": 1,
        "2025-03-14": 2,
    }

    everything = await stats(client, doctor, range="all", tz=tz_name)
    assert everything["range"]["start"] is None
    assert everything["mine"]["total"] == 7  # 'tomorrow' is after the range end
    assert everything["mine"]["daily"][0] == {"date": "2025-02-12", "count": 1}
    assert len(everything["mine"]["daily"]) == 31


async def test_same_instant_lands_on_the_local_day_of_each_zone(
    client: httpx.AsyncClient, clock: Any
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    clock(datetime(2025, 3, 15, 4, 45, tzinfo=UTC))  # 23:45 on 03-14 in Lima
    lima_late = datetime(2025, 3, 15, 4, 30, tzinfo=UTC)  # 23:30 on 03-14 in Lima
    utc_late = datetime(2025, 3, 14, 23, 30, tzinfo=UTC)  # 18:30 on 03-14 in Lima
    await add_prediction(app, doctor.id, created_at=lima_late)
    await add_prediction(app, doctor.id, created_at=utc_late)

    lima = await stats(client, doctor, range="today", tz="America/Lima")
    assert lima["mine"]["total"] == 2 and daily(lima) == {"2025-03-14": 2}
    default = await stats(client, doctor)  # range=today, DEFAULT_TIMEZONE=America/Lima
    assert default["range"]["tz"] == "America/Lima" and default["mine"]["total"] == 2

    utc_today = await stats(client, doctor, range="today", tz="UTC")
    assert utc_today["mine"]["total"] == 1 and daily(utc_today) == {"2025-03-15": 1}
    utc_week = await stats(client, doctor, range="week", tz="UTC")
    assert nonzero(utc_week) == {"2025-03-14": 1, "2025-03-15": 1}


async def test_dst_and_fractional_offsets(client: httpx.AsyncClient, clock: Any) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    ny = ZoneInfo("America/New_York")  # DST began 2025-03-09 02:00 local
    clock(datetime(2025, 3, 20, 12, 0, tzinfo=ny).astimezone(UTC))
    for when in [
        datetime(2025, 3, 8, 23, 30, tzinfo=ny),  # EST, 04:30 UTC on 03-09
        datetime(2025, 3, 9, 0, 0, tzinfo=ny),
        datetime(2025, 3, 9, 23, 30, tzinfo=ny),  # EDT, 03:30 UTC on 03-10
        datetime(2025, 3, 10, 0, 0, tzinfo=ny),
    ]:
        await add_prediction(app, doctor.id, created_at=when)
    body = await stats(client, doctor, range="month", tz="America/New_York")
    assert nonzero(body) == {"2025-03-08": 1, "2025-03-09": 2, "2025-03-10": 1}

    # +05:30 and +05:45: an hour bucket would straddle local midnight.
    for tz_name in ("Asia/Kolkata", "Asia/Kathmandu"):
        tz = ZoneInfo(tz_name)
        clock(datetime(2025, 3, 15, 12, 0, tzinfo=tz).astimezone(UTC))
        other = await make_doctor(app)
        await add_prediction(app, other.id, created_at=datetime(2025, 3, 14, 23, 50, tzinfo=tz))
        await add_prediction(app, other.id, created_at=datetime(2025, 3, 15, 0, 10, tzinfo=tz))
        body = await stats(client, other, range="week", tz=tz_name)
        assert nonzero(body) == {"2025-03-14": 1, "2025-03-15": 1}, tz_name


async def test_all_range_daily_starts_at_first_prediction_capped_at_365_days(
    client: httpx.AsyncClient, clock: Any
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    now = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)
    clock(now)
    empty = await stats(client, doctor, range="all", tz="UTC")
    assert empty["mine"]["daily"] == [{"date": "2025-03-14", "count": 0}]

    await add_prediction(app, doctor.id, created_at=now - timedelta(days=10))
    body = await stats(client, doctor, range="all", tz="UTC")
    assert len(body["mine"]["daily"]) == 11
    assert body["mine"]["daily"][0] == {"date": "2025-03-04", "count": 1}

    await add_prediction(app, doctor.id, created_at=now - timedelta(days=400))
    body = await stats(client, doctor, range="all", tz="UTC")
    assert body["mine"]["total"] == 2
    assert len(body["mine"]["daily"]) == 365
    assert body["mine"]["daily"][0]["date"] == str(date(2025, 3, 14) - timedelta(days=364))


# --------------------------------------------------------------------------- counts


async def test_counts_by_class_confusion_and_overall(client: httpx.AsyncClient, clock: Any) -> None:
    app = app_of(client)
    me = await make_doctor(app, locale="en")
    someone = await make_doctor(app)
    clock(datetime(2025, 3, 14, 20, 0, tzinfo=UTC))
    at = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)
    mine = [
        ("glaucoma", "correct", None),
        ("glaucoma", "correct", None),
        ("glaucoma", "incorrect", "cataract"),
        ("normal", "incorrect", "diabetic_retinopathy"),
        ("normal", "incorrect", "diabetic_retinopathy"),
        ("normal", "incorrect", None),  # no confirmed class: not in the confusion list
        ("cataract", "correct", None),
        ("diabetic_retinopathy", None, None),
        ("diabetic_retinopathy", None, None),
        ("diabetic_retinopathy", None, None),
    ]
    for cls, verdict, correct_class in mine:
        await add_prediction(
            app,
            me.id,
            created_at=at,
            predicted_class=cls,
            verdict=verdict,
            correct_class=correct_class,
        )
    await add_prediction(app, someone.id, created_at=at, verdict="correct")
    await add_prediction(app, someone.id, created_at=at)
    # Outside today: in no count of range=today.
    await add_prediction(app, me.id, created_at=at - timedelta(days=3), verdict="correct")

    body = await stats(client, me, range="today", tz="UTC")
    assert body["mine"]["total"] == 10
    assert body["mine"]["with_feedback"] == 7
    assert body["mine"]["correct"] == 3
    assert body["mine"]["incorrect"] == 4
    assert body["mine"]["correct_pct"] == pytest.approx(42.9)
    assert body["mine"]["by_class"] == {
        "glaucoma": 3,
        "diabetic_retinopathy": 3,
        "normal": 3,
        "cataract": 1,
    }
    assert body["mine"]["confusion"] == [
        {"predicted": "cataract", "confirmed": "cataract", "count": 1},
        {"predicted": "glaucoma", "confirmed": "cataract", "count": 1},
        {"predicted": "glaucoma", "confirmed": "glaucoma", "count": 2},
        {"predicted": "normal", "confirmed": "diabetic_retinopathy", "count": 2},
    ]
    assert body["overall"] == {
        "total": 12,
        "with_feedback": 8,
        "correct": 4,
        "correct_pct": 50.0,
    }
    assert body["labels"]["diabetic_retinopathy"] == "Diabetic retinopathy"

    week = await stats(client, me, range="week", tz="UTC")
    assert week["mine"]["total"] == 11 and week["overall"]["total"] == 13


async def test_zero_classes_and_null_pct_without_feedback(
    client: httpx.AsyncClient, clock: Any
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    clock(datetime(2025, 3, 14, 20, 0, tzinfo=UTC))
    body = await stats(client, doctor, range="week", tz="UTC")
    assert body["mine"] == {
        "total": 0,
        "with_feedback": 0,
        "correct": 0,
        "incorrect": 0,
        "correct_pct": None,
        "by_class": {"glaucoma": 0, "diabetic_retinopathy": 0, "normal": 0, "cataract": 0},
        "daily": [{"date": f"2025-03-{d:02d}", "count": 0} for d in range(8, 15)],
        "confusion": [],
        "by_recommendation": {"refer": 0, "routine": 0, "inconclusive": 0, "retake_image": 0},
        "ungradable": 0,
    }
    assert body["overall"]["correct_pct"] is None

    await add_prediction(
        app, doctor.id, created_at=datetime(2025, 3, 14, 10, tzinfo=UTC), predicted_class="normal"
    )
    body = await stats(client, doctor, range="week", tz="UTC")
    assert body["mine"]["total"] == 1 and body["mine"]["correct_pct"] is None
    assert body["mine"]["by_class"]["normal"] == 1 and body["mine"]["by_class"]["glaucoma"] == 0


async def test_class_unknown_to_the_manifest_is_counted(
    client: httpx.AsyncClient, clock: Any
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    clock(datetime(2025, 3, 14, 20, 0, tzinfo=UTC))
    await add_prediction(
        app,
        doctor.id,
        created_at=datetime(2025, 3, 14, 10, tzinfo=UTC),
        predicted_class="keratoconus",
        class_codes=["normal", "keratoconus"],
        probabilities=[0.1, 0.9],
    )
    body = await stats(client, doctor, tz="UTC")
    assert body["mine"]["by_class"]["keratoconus"] == 1
    assert body["labels"]["keratoconus"] == "keratoconus"


async def test_change_of_mind_updates_the_stats(client: httpx.AsyncClient, clock: Any) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    clock(datetime(2025, 3, 14, 20, 0, tzinfo=UTC))
    row = await add_prediction(
        app, doctor.id, created_at=datetime(2025, 3, 14, 10, tzinfo=UTC), predicted_class="normal"
    )
    feedback = f"/api/v1/history/{row.id}/feedback"

    await client.put(feedback, json={"verdict": "correct"}, headers=doctor.headers)
    body = await stats(client, doctor, tz="UTC")
    assert (body["mine"]["correct"], body["mine"]["correct_pct"]) == (1, 100.0)
    assert body["mine"]["confusion"] == [{"predicted": "normal", "confirmed": "normal", "count": 1}]

    response = await client.put(
        feedback,
        json={"verdict": "incorrect", "correct_class": "glaucoma"},
        headers=doctor.headers,
    )
    assert response.status_code == 200
    body = await stats(client, doctor, tz="UTC")
    assert body["mine"]["with_feedback"] == 1
    assert (body["mine"]["correct"], body["mine"]["correct_pct"]) == (0, 0.0)
    assert body["mine"]["confusion"] == [
        {"predicted": "normal", "confirmed": "glaucoma", "count": 1}
    ]
    assert body["overall"]["correct_pct"] == 0.0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "params",
    [
        {"tz": "Mars/Olympus"},
        {"tz": "America"},
        {"tz": "../../etc/passwd"},
        {"tz": "utc"},
        {"range": "year"},
        {"range": "hoy"},
    ],
)
async def test_invalid_params_are_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    doctor = await make_doctor(app_of(client))
    response = await client.get(URL, params=params, headers=doctor.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get(URL)
    assert response.status_code == 401


async def test_overall_for_all_is_cached_briefly_and_cleared_by_feedback(
    client: httpx.AsyncClient, clock: Any
) -> None:
    app = app_of(client)
    me = await make_doctor(app)
    someone = await make_doctor(app)
    clock(datetime(2031, 1, 2, 12, 0, tzinfo=UTC))  # a day no other test uses
    at = datetime(2031, 1, 2, 10, 0, tzinfo=UTC)
    mine = await add_prediction(app, me.id, created_at=at)
    first = await stats(client, me, range="all", tz="UTC")
    assert first["overall"]["total"] == 1 and first["overall"]["with_feedback"] == 0

    # Another doctor's new prediction: my own numbers are live, everyone's may lag.
    await add_prediction(app, someone.id, created_at=at)
    await add_prediction(app, me.id, created_at=at)
    cached = await stats(client, me, range="all", tz="UTC")
    assert cached["mine"]["total"] == 2
    assert cached["overall"]["total"] == 1
    today = await stats(client, me, range="today", tz="UTC")  # bounded ranges: never cached
    assert today["overall"]["total"] == 3

    # Feedback through this process clears the cache.
    response = await client.put(
        f"/api/v1/history/{mine.id}/feedback", json={"verdict": "correct"}, headers=me.headers
    )
    assert response.status_code == 200
    fresh = await stats(client, me, range="all", tz="UTC")
    assert fresh["overall"] == {"total": 3, "with_feedback": 1, "correct": 1, "correct_pct": 100.0}


def test_totals_cache_expires() -> None:
    from app.repositories.predictions import Totals
    from app.services.stats import TotalsCache

    now = [100.0]
    cache = TotalsCache(ttl_seconds=60, clock=lambda: now[0])
    cache.put("k", Totals(1, 0, 0))
    assert cache.get("k") == Totals(1, 0, 0) and cache.get("other") is None
    now[0] += 59.9
    assert cache.get("k") is not None
    now[0] += 0.2
    assert cache.get("k") is None


async def test_fall_back_day_of_25_hours(client: httpx.AsyncClient, clock: Any) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    ny = ZoneInfo("America/New_York")  # 2025-11-02 01:00-02:00 happens twice
    clock(datetime(2025, 11, 5, 12, 0, tzinfo=ny).astimezone(UTC))
    for when in [
        datetime(2025, 11, 1, 23, 59, tzinfo=ny),
        datetime(2025, 11, 2, 1, 30, tzinfo=ny),  # first 01:30 (EDT)
        datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=ny),  # second 01:30 (EST)
        datetime(2025, 11, 2, 23, 30, tzinfo=ny),  # 25 hours after midnight began
        datetime(2025, 11, 3, 0, 0, tzinfo=ny),
    ]:
        await add_prediction(app, doctor.id, created_at=when)
    body = await stats(client, doctor, range="week", tz="America/New_York")
    assert nonzero(body) == {"2025-11-01": 1, "2025-11-02": 3, "2025-11-03": 1}
    assert body["mine"]["total"] == 5


def test_day_spans_split_at_dst_days() -> None:
    from app.repositories.local_days import DaySpan
    from app.services.stats import day_spans

    day = 86400
    starts = [0, day, 2 * day, 3 * day - 3600, 4 * day - 3600, 5 * day - 3600]
    assert day_spans(starts) == [
        DaySpan(0, 2 * day, 0, uniform=True),
        DaySpan(2 * day, 3 * day - 3600, 2, uniform=False),
        DaySpan(3 * day - 3600, 5 * day - 3600, 3, uniform=True),
    ]
    assert day_spans([0, day]) == [DaySpan(0, day, 0, uniform=True)]


@pytest.mark.parametrize("name", ["posix/America/Lima", "America/Atlantis", "../etc/passwd"])
def test_default_timezone_setting_takes_only_what_the_api_takes(name: str) -> None:
    # posix/... opens with ZoneInfo but the tz parameters refuse it: accepted at start-up,
    # it would have turned every history and dashboard request into a 500.
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        Settings(_env_file=None, default_timezone=name)
    assert Settings(_env_file=None, default_timezone="America/Lima").default_timezone
