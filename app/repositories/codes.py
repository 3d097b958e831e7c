"""One-time codes (verify, reset): at most one live code per user and purpose."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import OneTimeCode
from app.repositories._util import rowcount


class CodeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def replace(
        self, user_id: int, purpose: str, code_hash: str, expires_at: datetime
    ) -> OneTimeCode:
        """Store a new code; every older code of the same purpose stops working."""
        await self.delete_all(user_id, purpose)
        code = OneTimeCode(
            user_id=user_id, purpose=purpose, code_hash=code_hash, expires_at=expires_at
        )
        self.session.add(code)
        await self.session.flush()
        return code

    async def delete_all(self, user_id: int, purpose: str) -> None:
        await self.session.execute(
            delete(OneTimeCode).where(
                OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose
            )
        )

    async def find_live(
        self, user_id: int, purpose: str, now: datetime, max_attempts: int
    ) -> OneTimeCode | None:
        result = await self.session.execute(
            select(OneTimeCode)
            .where(
                OneTimeCode.user_id == user_id,
                OneTimeCode.purpose == purpose,
                OneTimeCode.used_at.is_(None),
                OneTimeCode.expires_at > now,
                OneTimeCode.attempts < max_attempts,
            )
            .order_by(OneTimeCode.id.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def take_attempt(self, code_id: int, max_attempts: int) -> bool:
        """Count one try, atomically; False when the code has no tries left (or is used)."""
        result = await self.session.execute(
            update(OneTimeCode)
            .where(
                OneTimeCode.id == code_id,
                OneTimeCode.attempts < max_attempts,
                OneTimeCode.used_at.is_(None),
            )
            .values(attempts=OneTimeCode.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    async def mark_used(self, code_id: int, now: datetime) -> bool:
        """Spend the code; False if a concurrent request spent it first."""
        result = await self.session.execute(
            update(OneTimeCode)
            .where(OneTimeCode.id == code_id, OneTimeCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1
