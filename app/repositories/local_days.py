"""Counting by the caller's local day in SQL: `LocalDayIndex`, compiled per dialect.

The dashboard's daily series groups a user's rows by local day without a time-zone table
in the database: runs of 24-hour days become one integer division of the epoch seconds,
and a day of another length (a DST change) is its own span (app.services.stats.day_spans).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal


@dataclass(frozen=True, slots=True)
class DaySpan:
    """Consecutive local days [start, end) (epoch seconds), the first of which is day
    `first_index` of the series. `uniform`: every day in it lasts 86,400 s (no DST change),
    so day = first_index + (t - start) DIV 86400; otherwise it is a single day."""

    start: int
    end: int
    first_index: int
    uniform: bool


class LocalDayIndex(ColumnElement[int]):
    """The index of the local day a naive-UTC DATETIME falls in, given the day spans:
    CASE WHEN t < end_0 THEN ... WHEN t < end_1 THEN ... END over epoch seconds t, in
    plain integer SQL on every dialect (no time-zone tables in the database).

    t is TO_SECONDS(col) - TO_SECONDS('1970-01-01') on MySQL/MariaDB (calendar arithmetic;
    UNIX_TIMESTAMP would apply the session time zone) and strftime('%s', col) on SQLite,
    which reads the stored text as UTC. Rows must be limited to [spans[0].start,
    spans[-1].end) by the WHERE clause, so t - start is never negative.
    """

    inherit_cache = True
    type = Integer()
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's visitor protocol
        ("column", InternalTraversal.dp_clauseelement),
        ("spans", InternalTraversal.dp_plain_obj),
    ]

    def __init__(
        self, column: ColumnElement[Any] | QueryableAttribute[Any], spans: Sequence[DaySpan]
    ) -> None:
        if not spans:
            raise ValueError("at least one day span is needed")
        self.column = column.expression if isinstance(column, QueryableAttribute) else column
        self.spans = tuple(spans)


# TO_SECONDS('1970-01-01 00:00:00')
_MYSQL_EPOCH_SECONDS = 62167219200


def _day_case(element: LocalDayIndex, seconds: str, div: str) -> str:
    branches = []
    for span in element.spans:
        day = (
            f"{int(span.first_index)} + ({seconds} - {int(span.start)}) {div} 86400"
            if span.uniform
            else str(int(span.first_index))
        )
        branches.append(f"WHEN {seconds} < {int(span.end)} THEN {day}")
    return f"(CASE {' '.join(branches)} END)"


@compiles(LocalDayIndex, "mysql")
@compiles(LocalDayIndex, "mariadb")
def _local_day_mysql(element: LocalDayIndex, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return _day_case(element, f"(TO_SECONDS({column}) - {_MYSQL_EPOCH_SECONDS})", "DIV")


@compiles(LocalDayIndex, "sqlite")
def _local_day_sqlite(element: LocalDayIndex, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return _day_case(element, f"CAST(strftime('%s', {column}) AS INTEGER)", "/")


@compiles(LocalDayIndex)
def _local_day_default(element: LocalDayIndex, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)  # PostgreSQL and friends
    return _day_case(element, f"CAST(EXTRACT(EPOCH FROM {column}) AS BIGINT)", "/")
