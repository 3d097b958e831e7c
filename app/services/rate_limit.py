"""Database-backed sliding-window limits (shared by every worker process).

Buckets are keyed digests of "<limit>:<key>" so the table holds no emails or IPs.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import RateLimited
from app.repositories import RateLimitRepository
from app.security import keyed_digest


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    max_hits: int
    window: timedelta


class Limits:
    """Every limit of the auth flows, from the settings."""

    def __init__(self, settings: Settings) -> None:
        login = timedelta(minutes=settings.login_window_minutes)
        mail = timedelta(minutes=settings.mail_window_minutes)
        # Failed logins (and wrong current passwords) per account.
        self.login_account = Limit("login:account", settings.login_max_failures, login)
        # Failed logins and wrong codes per client IP.
        self.failures_ip = Limit("failures:ip", settings.ip_max_failures, login)
        # Code mails asked for (register, resend, forgot) per email and per client IP.
        self.mail_email = Limit("mail:email", settings.mail_requests_per_window, mail)
        self.mail_ip = Limit("mail:ip", settings.mail_requests_per_ip, mail)
        self.longest_window = max(login, mail)


Keyed = tuple[Limit, str]


class RateLimiter:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repo = RateLimitRepository(session)
        self.limits = Limits(settings)
        self._secret = settings.jwt_secret_key.get_secret_value()

    def _bucket(self, limit: Limit, key: str) -> str:
        return keyed_digest(self._secret, "rate-limit", f"{limit.name}:{key}")

    async def check(self, checks: Sequence[Keyed], now: datetime) -> None:
        """Raise RateLimited (with Retry-After) if any of the limits is used up."""
        for limit, key in checks:
            count, oldest = await self.repo.window(self._bucket(limit, key), now - limit.window)
            if count >= limit.max_hits and oldest is not None:
                wait = (oldest + limit.window - now).total_seconds()
                raise RateLimited(max(1, math.ceil(wait)))

    async def hit(self, hits: Sequence[Keyed], now: datetime) -> None:
        for limit, key in hits:
            bucket = self._bucket(limit, key)
            await self.repo.prune(bucket, now - limit.window)
            await self.repo.add(bucket, now)
        if secrets.randbelow(64) == 0:  # now and then, forget buckets nobody touches again
            await self.repo.prune(None, now - self.limits.longest_window)

    async def consume(self, hits: Sequence[Keyed], now: datetime) -> None:
        """check() then hit(): for requests that count whether or not they succeed."""
        await self.check(hits, now)
        await self.hit(hits, now)

    async def clear(self, limit: Limit, key: str) -> None:
        await self.repo.clear(self._bucket(limit, key))
