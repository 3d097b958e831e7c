"""Reading the audit trail behind an app's back."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select

from app.db.models import AuditEvent, User


async def events(app: FastAPI, action: str | None = None) -> list[AuditEvent]:
    """Every event so far (the view events queued in the process written first)."""
    await app.state.view_log.flush()
    async with app.state.sessionmaker() as session:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        if action is not None:
            stmt = stmt.where(AuditEvent.action == action)
        return list((await session.scalars(stmt)).all())


def only(rows: list[AuditEvent]) -> AuditEvent:
    """The one event of `rows` (fails, listing them, when there are more or none)."""
    assert len(rows) == 1, [(r.action, r.new) for r in rows]
    return rows[0]


async def user_id(app: FastAPI, email: str) -> int:
    """The id of the user with `email`."""
    async with app.state.sessionmaker() as session:
        uid = await session.scalar(select(User.id).where(User.email == email))
        assert uid is not None
        return int(uid)
