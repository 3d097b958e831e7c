"""Sliding-window counters in the database, so every uvicorn worker sees the same counts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import RateLimitHit


class RateLimitRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def window(self, bucket: str, since: datetime) -> tuple[int, datetime | None]:
        """(hits in the bucket since `since`, time of the oldest of them)."""
        result = await self.session.execute(
            select(func.count(), func.min(RateLimitHit.created_at)).where(
                RateLimitHit.bucket == bucket, RateLimitHit.created_at >= since
            )
        )
        count, oldest = result.one()
        return int(count), oldest

    async def add(self, bucket: str, now: datetime) -> None:
        self.session.add(RateLimitHit(bucket=bucket, created_at=now))
        await self.session.flush()

    async def clear(self, bucket: str) -> None:
        await self.session.execute(delete(RateLimitHit).where(RateLimitHit.bucket == bucket))

    async def prune(self, bucket: str | None, before: datetime) -> None:
        """Forget hits older than `before`, in one bucket or (bucket None) in all."""
        stmt = delete(RateLimitHit).where(RateLimitHit.created_at < before)
        if bucket is not None:
            stmt = stmt.where(RateLimitHit.bucket == bucket)
        await self.session.execute(stmt)
