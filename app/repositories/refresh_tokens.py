"""Refresh tokens: rotating chains ("families"), stored as sha256 digests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import RefreshToken
from app.repositories._util import rowcount


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, user_id: int, family_id: str, token_hash: str, expires_at: datetime
    ) -> RefreshToken:
        token = RefreshToken(
            user_id=user_id, family_id=family_id, token_hash=token_hash, expires_at=expires_at
        )
        self.session.add(token)
        await self.session.flush()
        return token

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        result = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def mark_spent(self, token_id: int, replaced_by_id: int, now: datetime) -> bool:
        """Retire a token on rotation; False if it was already retired (a race or a replay)."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now, replaced_by_id=replaced_by_id)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)

    async def revoke_user(self, user_id: int, now: datetime, keep_family: str | None = None) -> int:
        """Revoke every live token of the user, except the family `keep_family` if given."""
        stmt = update(RefreshToken).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
        )
        if keep_family is not None:
            stmt = stmt.where(RefreshToken.family_id != keep_family)
        result = await self.session.execute(
            stmt.values(revoked_at=now).execution_options(synchronize_session=False)
        )
        return rowcount(result)
