"""Pages of a sorted list: offset pages (`Page`) and keyset cursors."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

# Cursors are row ids: a database BIGINT, so a cursor beyond it names no row.
MAX_CURSOR = 2**63 - 1
CURSOR_PATTERN = r"^[0-9]{1,19}$"


class Page(BaseModel, Generic[T]):
    """One page of a filtered, sorted list."""

    items: list[T]
    total: int = Field(description="Number of records matching the filters (all pages)")
    page: int
    page_size: int


def encode_cursor(row_id: int) -> str:
    return str(row_id)


def decode_cursor(cursor: str | None) -> int | None:
    """The id of the last row of the previous page (the schema admits digits only)."""
    return int(cursor) if cursor else None
