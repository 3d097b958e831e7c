"""Response model of the dashboard (GET /home/stats)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

RangeName = Literal["today", "week", "month", "all"]

# For range=all the daily series covers at most this many days (ending today).
MAX_DAILY_DAYS = 365


class StatsRange(BaseModel):
    """The local days counted: [start, end) in the caller's time zone."""

    name: RangeName
    start: AwareDatetime | None = Field(
        description=(
            "Inclusive start (local midnight in tz, as an instant with offset); null for range=all"
        )
    )
    end: AwareDatetime = Field(
        description="Exclusive end: the local midnight that ends today in tz"
    )
    tz: str = Field(examples=["America/Lima"])


class DailyCount(BaseModel):
    """My predictions on one local day."""

    date: dt.date = Field(description="Local calendar day in tz")
    count: int


class ConfusionCell(BaseModel):
    """How many of my predictions of one class the doctor confirmed as another (or the
    same) class."""

    predicted: str = Field(description="Class code the model predicted")
    confirmed: str = Field(
        description=(
            "Class code the doctor confirmed: the predicted one when the verdict is "
            "correct, correct_class when incorrect (incorrect without correct_class is "
            "left out)"
        )
    )
    count: int


class MyStats(BaseModel):
    """The calling doctor's own predictions in the range."""

    total: int = Field(description="My predictions in the range")
    with_feedback: int = Field(description="Of those, how many have a verdict")
    correct: int = Field(description="Of those, how many were marked correct")
    incorrect: int = Field(description="Of those, how many were marked incorrect")
    correct_pct: float | None = Field(
        description=(
            "100 * correct / with_feedback, a percentage from 0 to 100 rounded to one "
            "decimal; null when nothing in the range has feedback"
        )
    )
    by_class: dict[str, int] = Field(
        description=(
            "Predictions per predicted class code; every class of the model appears, with 0 "
            "when it has none"
        )
    )
    daily: list[DailyCount] = Field(
        description=(
            "Predictions per local day in tz, oldest first, days without any filled with "
            "0. today: 1 day; week: 7; month: 30; all: from the day of my first prediction "
            f"(at most the last {MAX_DAILY_DAYS} days) to today"
        )
    )
    confusion: list[ConfusionCell] = Field(
        description="Non-zero (predicted, confirmed) pairs, sorted by predicted then confirmed"
    )
    by_recommendation: dict[str, int] = Field(
        description=(
            "Predictions per recommendation (refer, routine, inconclusive, retake_image), "
            "each present, 0 when none; results made before recommendations existed are "
            "not counted"
        )
    )
    ungradable: int = Field(
        description="Of my predictions in the range, how many the quality gate found ungradable"
    )


class OverallStats(BaseModel):
    """Everyone's predictions in the range. For range=all (a count of the whole table) the
    numbers may be up to a minute old."""

    total: int = Field(description="Predictions of all users in the range")
    with_feedback: int
    correct: int
    correct_pct: float | None = Field(
        description="100 * correct / with_feedback (0-100, one decimal); null without feedback"
    )


class Stats(BaseModel):
    """The dashboard: my numbers and everyone's for one range of local days."""

    range: StatsRange
    labels: dict[str, str] = Field(
        description="Label of each class code of by_class, in the user's locale"
    )
    mine: MyStats
    overall: OverallStats
