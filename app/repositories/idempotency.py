"""Idempotency keys of uploads: claim (the unique index decides), link, find, release."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import IdempotencyKey


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, user_id: int, key_hash: str) -> IdempotencyKey | None:
        return await self.session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.key_hash == key_hash
            )
        )

    async def claim(
        self, user_id: int, key_hash: str, request_sha256: str, now: datetime, expires: datetime
    ) -> IdempotencyKey:
        """Insert the claim (the caller commits; a duplicate fails there or here)."""
        row = IdempotencyKey(
            user_id=user_id,
            key_hash=key_hash,
            request_sha256=request_sha256,
            prediction_id=None,
            created_at=now,
            expires_at=expires,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def link(self, claim_id: int, prediction_id: int) -> None:
        """Record the prediction the claim made (in the prediction's own transaction)."""
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == claim_id)
            .values(prediction_id=prediction_id)
        )

    async def release(self, claim_id: int) -> None:
        """Forget an unfinished claim (its request failed): a retry may go again."""
        await self.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == claim_id, IdempotencyKey.prediction_id.is_(None)
            )
        )

    async def drop_expired(self, now: datetime, user_id: int | None = None) -> None:
        """Expired keys are free again: the user's (or, without one, everyone's)."""
        statement = delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)
        if user_id is not None:
            statement = statement.where(IdempotencyKey.user_id == user_id)
        await self.session.execute(statement)
