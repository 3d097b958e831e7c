"""CSV for spreadsheets, streamed: every cell quoted, formula starts defused, rows fetched
and written one page at a time so memory stays at one page whatever the size."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

Row = TypeVar("Row")
Key = TypeVar("Key")

PAGE_ROWS = 1000

# OWASP's CSV injection guidance: a cell a spreadsheet could run as a formula starts with
# one of these (after any quote); it gets a leading apostrophe, and every cell is quoted
# (a locale that splits on ';' must not find a formula inside a cell either).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if text.lstrip("\"'")[:1] in _FORMULA_START:
        return "'" + text
    return text


def csv_cells(values: Iterable[Any]) -> list[str]:
    return [csv_cell(value) for value in values]


async def csv_pages(
    header: Sequence[str],
    page_after: Callable[[Key | None, int], Awaitable[Sequence[Row]]],
    key: Callable[[Row], Key],
    to_cells: Callable[[Row], list[str]],
    page_rows: int = PAGE_ROWS,
) -> AsyncIterator[str]:
    """The header, then one CSV chunk per page: `page_after(last key or None, page_rows)`
    until a page comes back short."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    yield buffer.getvalue()
    after: Key | None = None
    while True:
        rows = await page_after(after, page_rows)
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(to_cells(row) for row in rows)
        after = key(rows[-1])
        yield buffer.getvalue()
        if len(rows) < page_rows:
            return
