"""Database-backed sliding-window limits (shared by every worker process).

Buckets are keyed digests of "<limit>:<key>" so the table holds no emails or IPs.
A count and the hit that follows it are exact with concurrent requests, also on a Galera
cluster with writers on several nodes: check() reads the buckets' write guards with the
counts, and hit() advances them from the versions it read, so a hit counted meanwhile
(on any node) makes this transaction run again (app.repositories.write_guards).
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
from app.repositories.write_guards import WriteGuardRepository, rate_limit
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
        self.guards = WriteGuardRepository(session)
        self._seen: dict[str, int | None] = {}  # guard versions read by the last check()
        self.limits = Limits(settings)
        self._secret = settings.jwt_secret_key.get_secret_value()

    def _bucket(self, limit: Limit, key: str) -> str:
        return keyed_digest(self._secret, "rate-limit", f"{limit.name}:{key}")

    async def check(self, checks: Sequence[Keyed], now: datetime) -> None:
        """Raise RateLimited (with Retry-After) if any of the limits is used up."""
        # The guards first: a hit committed between the two reads moves its guard, and
        # hit() then finds a version other than the one read here (a retry, not a miss).
        guards = [rate_limit(self._bucket(limit, key)) for limit, key in checks]
        self._seen.update(await self.guards.read_versions(guards))
        for limit, key in checks:
            count, oldest = await self.repo.window(self._bucket(limit, key), now - limit.window)
            if count >= limit.max_hits and oldest is not None:
                wait = (oldest + limit.window - now).total_seconds()
                raise RateLimited(max(1, math.ceil(wait)))

    async def hit(self, hits: Sequence[Keyed], now: datetime) -> None:
        """Count one hit in each bucket. A bucket that check() read is counted only if
        nobody counted one since (else WriteConflict: the caller's transaction retries)."""
        guards = dict.fromkeys(rate_limit(self._bucket(limit, key)) for limit, key in hits)
        for guard in guards:  # before the DELETE and INSERT below, which take gap locks
            if guard in self._seen:
                await self.guards.advance(guard, self._seen.pop(guard))
            else:
                await self.guards.bump(guard)
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
