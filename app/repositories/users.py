"""Users: looked up by lower-cased email (the unique index is then case-insensitive)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, exists, func, or_, select, true, update
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

    # ------------------------------------------------------------------ administration

    @staticmethod
    def _search(q: str | None) -> ColumnElement[bool]:
        if not q:
            return true()
        needle = q.lower()
        return or_(
            User.email.contains(needle, autoescape=True),
            func.lower(User.name).contains(needle, autoescape=True),
        )

    async def page(self, q: str | None, offset: int, limit: int) -> Sequence[User]:
        """Users whose email or name contains `q` (any case), by id."""
        stmt = select(User).where(self._search(q)).order_by(User.id).offset(offset).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def count(self, q: str | None) -> int:
        return int(
            await self.session.scalar(select(func.count()).select_from(User).where(self._search(q)))
            or 0
        )

    async def lock_active_admins(self) -> set[int]:
        """The ids of the active admins, locked until the transaction ends, so that two
        concurrent demotions or disables queue here and the second sees the first's result.

        MariaDB/MySQL: SELECT ... FOR UPDATE (a locking read sees the latest committed rows,
        whatever snapshot the transaction read before). SQLite ignores FOR UPDATE and runs
        a plain SELECT outside any transaction, so a no-op UPDATE of those rows first takes
        the database's write lock, which SQLite holds until commit.
        """
        active_admin = (User.role == "admin", User.is_active.is_(True))
        if self.session.get_bind().dialect.name == "sqlite":
            await self.session.execute(
                update(User)
                .where(*active_admin)
                .values(role=User.role, updated_at=User.updated_at)
                .execution_options(synchronize_session=False)
            )
        stmt = select(User.id).where(*active_admin).order_by(User.id).with_for_update()
        return set((await self.session.scalars(stmt)).all())

    async def get_locked(self, user_id: int) -> User | None:
        """The user as committed now (row locked on servers), not as first read."""
        stmt = (
            select(User)
            .where(User.id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).one_or_none()
