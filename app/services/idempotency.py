"""Uploads a retry cannot duplicate: the Idempotency-Key of POST /predict.

The first request with a key claims it (a committed row; the unique (user, key) index
decides between requests racing on other processes or database nodes) and links the
prediction to the claim in the prediction's own transaction. A repeat with the same file
gets that prediction back; one that arrives while the first is at work waits for it; a
failed first request releases the claim. Keys are per user, free again after
IDEMPOTENCY_TTL_HOURS, and a key sent with a different upload is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from datetime import timedelta

from sqlalchemy.exc import DBAPIError, IntegrityError

from app.config import Settings
from app.db.base import utcnow
from app.db.models import Prediction
from app.db.session import SessionFactory
from app.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from app.repositories.idempotency import IdempotencyRepository
from app.repositories.predictions import PredictionRepository

POLL_SECONDS = 0.1
# A competing claim on another database node fails certification at COMMIT (Galera
# 1213), a local one waits for the row lock (1205 at worst): both mean "taken".
_CONFLICT_CODES = {1213, 1205}


def request_fingerprint(data: bytes, patient_ref: str | None, eye: str) -> str:
    """What makes two uploads the same request: the file and the form fields."""
    digest = hashlib.sha256(data)
    digest.update(f"\0{patient_ref or ''}\0{eye}".encode())
    return digest.hexdigest()


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _lost_the_race(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return len(args) > 0 and args[0] in _CONFLICT_CODES


class IdempotentUploads:
    def __init__(self, sessions: SessionFactory, settings: Settings) -> None:
        self.sessions = sessions
        self.ttl = timedelta(hours=settings.idempotency_ttl_hours)
        self.wait_seconds = settings.idempotency_wait_seconds

    async def claim(self, user_id: int, key: str, fingerprint: str) -> int | Prediction:
        """The claim's id when this request is the first with the key (it then makes the
        prediction), or the prediction an earlier request with the key made."""
        key_hash = _key_hash(key)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            async with self.sessions() as session:
                repo = IdempotencyRepository(session)
                now = utcnow()
                # Now and then, every user's expired keys; always this user's.
                await repo.drop_expired(now, None if secrets.randbelow(64) == 0 else user_id)
                await session.commit()
                existing = await repo.find(user_id, key_hash)
                if existing is None:
                    try:
                        claimed = await repo.claim(
                            user_id, key_hash, fingerprint, now, now + self.ttl
                        )
                        await session.commit()
                        return claimed.id
                    except DBAPIError as exc:
                        if not _lost_the_race(exc):
                            raise
                        await session.rollback()
                        continue  # another request claimed it first: read theirs
                if existing.request_sha256 != fingerprint:
                    raise IdempotencyKeyReused()
                if existing.prediction_id is not None:
                    row = await PredictionRepository(session).get(existing.prediction_id)
                    if row is not None:
                        return row
                elif existing.created_at < now - 2 * timedelta(seconds=self.wait_seconds):
                    # Its request died before it finished (a killed process): take over.
                    await repo.release(existing.id)
                    await session.commit()
                    continue
            if time.monotonic() >= deadline:
                raise IdempotencyKeyInUse()
            await asyncio.sleep(POLL_SECONDS)

    async def release(self, claim_id: int) -> None:
        async with self.sessions() as session:
            await IdempotencyRepository(session).release(claim_id)
            await session.commit()
