"""Login sessions = refresh-token families: start, rotate (with reuse detection), end."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.models import RefreshToken, User
from app.errors import InvalidRefreshToken
from app.repositories import RefreshTokenRepository, UserRepository
from app.security import create_access_token, new_family_id, new_refresh_token, sha256_hex
from app.services import audit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str

    def __repr__(self) -> str:  # keep tokens out of reprs and tracebacks
        return f"IssuedTokens(session_id={self.session_id!r})"


class LoginSessions:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.db = session
        self.settings = settings
        self.tokens = RefreshTokenRepository(session)
        self.users = UserRepository(session)

    async def start(self, user: User, now: datetime) -> IssuedTokens:
        tokens, _ = await self._issue(user, new_family_id(), now)
        return tokens

    async def rotate(self, raw_token: str, now: datetime) -> IssuedTokens:
        """Trade a refresh token for a new pair in the same family.

        A spent token presented again means someone else holds a copy: the whole family
        is revoked (the caller commits) and InvalidRefreshToken raised.
        """
        current = await self.tokens.get_by_hash(sha256_hex(raw_token))
        if current is None:
            raise InvalidRefreshToken()
        family_id, user_id = current.family_id, current.user_id
        if current.revoked_at is not None:
            if current.replaced_by_id is not None:
                await self._reuse_detected(family_id, user_id, now)
            raise InvalidRefreshToken()
        if current.expires_at <= now:
            raise InvalidRefreshToken()
        user = await self.users.get(user_id)
        if user is None or not user.is_active:
            raise InvalidRefreshToken()
        tokens, new_row = await self._issue(user, family_id, now)
        if not await self.tokens.mark_spent(current.id, new_row.id, now):
            # A concurrent request rotated it first: this is a replay of a spent token.
            await self.db.rollback()
            await self._reuse_detected(family_id, user_id, now)
            raise InvalidRefreshToken()
        return tokens

    async def end(self, raw_token: str, now: datetime) -> None:
        current = await self.tokens.get_by_hash(sha256_hex(raw_token))
        if current is not None and await self.tokens.revoke_family(current.family_id, now):
            await self._record(current.user_id, "auth.logout", current.family_id)

    async def end_all(self, user_id: int, now: datetime, keep_session: str | None = None) -> None:
        await self.tokens.revoke_user(user_id, now, keep_family=keep_session)

    async def _reuse_detected(self, family_id: str, user_id: int, now: datetime) -> None:
        revoked = await self.tokens.revoke_family(family_id, now)
        await self._record(user_id, "auth.refresh_reuse", family_id, revoked=revoked)
        log.warning(
            "spent refresh token presented again: session family of user %s revoked (%s live)",
            user_id,
            revoked,
        )

    async def _record(self, user_id: int, action: str, family_id: str, **new: Any) -> None:
        user = await self.users.get(user_id)
        await audit.record(
            self.db,
            action,
            actor=user or user_id,
            target=("user", user_id),
            new={"session": family_id, **new},
        )

    async def _issue(
        self, user: User, family_id: str, now: datetime
    ) -> tuple[IssuedTokens, RefreshToken]:
        raw = new_refresh_token()
        expires_at = now + timedelta(days=self.settings.refresh_token_days)
        row = await self.tokens.add(user.id, family_id, sha256_hex(raw), expires_at)
        access = create_access_token(self.settings, user.id, family_id, user.role, now)
        issued = IssuedTokens(
            access_token=access,
            refresh_token=raw,
            expires_in=self.settings.access_token_minutes * 60,
            session_id=family_id,
        )
        return issued, row
