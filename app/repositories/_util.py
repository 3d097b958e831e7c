from __future__ import annotations

from typing import Any

from sqlalchemy.engine import CursorResult, Result


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (the MySQL dialect asks for FOUND_ROWS)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
