"""Users: looked up by lower-cased email (the unique index is then case-insensitive)."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import RefreshToken, User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def add(self, user: User) -> User:
        user.email = user.email.lower()
        self.session.add(user)
        await self.session.flush()
        return user

    async def get_with_live_session(self, user_id: int, family_id: str) -> User | None:
        """The user, if the refresh-token family `family_id` is still live (not revoked).

        Access tokens carry their family as `sid`, so logout, password reset and theft
        detection end a session at once instead of when its access token expires; a
        disabled account (is_active false) has no live session either.
        """
        live = exists().where(
            RefreshToken.family_id == family_id,
            RefreshToken.user_id == user_id,
            RefreshToken.revoked_at.is_(None),
        )
        result = await self.session.execute(
            select(User).where(User.id == user_id, User.is_active.is_(True), live)
        )
        return result.scalar_one_or_none()
