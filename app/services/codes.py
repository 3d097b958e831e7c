"""One-time codes: issue (replacing older ones) and redeem with an attempt limit."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.models import User
from app.mail import CodePurpose
from app.repositories import CodeRepository
from app.repositories.write_guards import WriteGuardRepository, one_time_code
from app.security import code_digest, codes_match, new_code, normalize_code


class OneTimeCodes:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repo = CodeRepository(session)
        self.guards = WriteGuardRepository(session)
        self._secret = settings.jwt_secret_key.get_secret_value()
        self._ttl = timedelta(minutes=settings.code_ttl_minutes)
        self._max_attempts = settings.code_max_attempts

    async def issue(self, user: User, purpose: CodePurpose, now: datetime) -> str:
        """A fresh code (the only copy in clear, for the email); older ones stop working.

        Two issues at once (two nodes, or one node: DELETE then INSERT take gap locks)
        both write the guard, so one waits or retries: at most one code stays live.
        Redeeming needs no guard: its tries and its use are UPDATEs of the code's row."""
        await self.guards.bump(one_time_code(user.id, purpose))
        code = new_code()
        digest = code_digest(self._secret, user.id, purpose, code)
        await self.repo.replace(user.id, purpose, digest, now + self._ttl)
        return code

    async def redeem(self, user: User, purpose: CodePurpose, raw_code: str, now: datetime) -> bool:
        """True once for the right live code; every try counts against the attempt limit."""
        code = normalize_code(raw_code)
        live = await self.repo.find_live(user.id, purpose, now, self._max_attempts)
        if live is None or not await self.repo.take_attempt(live.id, self._max_attempts):
            return False
        if not codes_match(live.code_hash, self._secret, user.id, purpose, code):
            return False
        return await self.repo.mark_used(live.id, now)
