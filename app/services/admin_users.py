"""Administration of accounts: list, read, disable / enable, grant / revoke admin.

Each change is audited (user.disable, user.enable, user.role) in its own transaction, and
an unchanged value is no change (no event). The last active administrator cannot be
disabled or demoted (409 LAST_ADMIN): each change first writes the "admins" write guard
and then locks the active admins, so two concurrent revokes are serialised and the second
sees the first one's result; on a Galera cluster, where the locks hold only on their own
node, two revokes on two nodes conflict at certification on the guard's row and the
loser runs again (app.repositories.write_guards, app.db.retry).
Disabling an account also revokes all its refresh tokens; its access tokens already fail,
because a disabled account has no live session (UserRepository.get_with_live_session).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.models import User
from app.db.retry import retried
from app.errors import LastAdmin, NotFound
from app.repositories import RefreshTokenRepository, UserRepository
from app.repositories.write_guards import ADMINS, WriteGuardRepository
from app.services import audit

Role = Literal["doctor", "admin"]


@dataclass(frozen=True, slots=True)
class UserPage:
    items: Sequence[User]
    total: int


class AdminUsers:
    def __init__(self, session: AsyncSession) -> None:
        self.db = session
        self.users = UserRepository(session)

    async def page(self, q: str | None, page: int, page_size: int) -> UserPage:
        items = await self.users.page(q, (page - 1) * page_size, page_size)
        return UserPage(items, await self.users.count(q))

    async def get(self, user_id: int) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise NotFound("User not found")
        return user

    async def disable(self, admin: User, user_id: int) -> User:
        return await self._change(admin, user_id, "user.disable", is_active=False)

    async def enable(self, admin: User, user_id: int) -> User:
        return await self._change(admin, user_id, "user.enable", is_active=True)

    async def set_role(self, admin: User, user_id: int, role: Role) -> User:
        return await self._change(admin, user_id, "user.role", role=role)

    @retried("admin.user_change")
    async def _change(
        self,
        admin: User,
        user_id: int,
        action: str,
        *,
        is_active: bool | None = None,
        role: Role | None = None,
    ) -> User:
        await WriteGuardRepository(self.db).bump(ADMINS)
        admins = await self.users.lock_active_admins()
        user = await self.users.get_locked(user_id)
        if user is None:
            await self.db.rollback()
            raise NotFound("User not found")
        old = {"is_active": user.is_active} if is_active is not None else {"role": user.role}
        new = {"is_active": is_active} if is_active is not None else {"role": role}
        if old == new:
            await self.db.commit()  # nothing to change, nothing to record; locks released
            return user
        stays_admin = (role or user.role) == "admin" and (
            is_active if is_active is not None else user.is_active
        )
        if user.id in admins and not stays_admin and len(admins) == 1:
            await self.db.rollback()
            raise LastAdmin()
        if is_active is not None:
            user.is_active = is_active
            if not is_active:
                await RefreshTokenRepository(self.db).revoke_user(user.id, utcnow())
        if role is not None:
            user.role = role
        await audit.record(self.db, action, actor=admin, target=("user", user.id), old=old, new=new)
        await self.db.commit()
        return user
