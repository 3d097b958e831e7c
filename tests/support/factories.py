"""Test data straight into the app's database, and bearer tokens without the mail round trip.

Users and predictions are inserted through the app's own session factory (whatever
database the run uses); tokens come from the auth service's `LoginSessions.start`, so they are
real access tokens bound to a live session, accepted by `CurrentUser`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.db.models import Prediction, User
from app.inference.manifest import DEFAULT_MANIFEST
from app.services.login_sessions import LoginSessions
from app.storage import new_image_key

CODES = list(DEFAULT_MANIFEST.codes)  # glaucoma, diabetic_retinopathy, normal, cataract
_counter = itertools.count(1)


@dataclass
class Doctor:
    id: int
    email: str
    locale: str
    headers: dict[str, str] = field(repr=False)


def app_of(client: httpx.AsyncClient) -> FastAPI:
    """The app behind a test client (make_client sets it)."""
    app: FastAPI = client.app  # type: ignore[attr-defined]
    return app


async def make_doctor(
    app: FastAPI,
    *,
    email: str | None = None,
    name: str = "Dr. Test",
    locale: str = "es",
    role: str = "doctor",
) -> Doctor:
    """A verified doctor (or, with role="admin", an administrator) and an Authorization
    header for them."""
    email = email or f"doctor{next(_counter)}@example.com"
    now = datetime.now(UTC)
    async with app.state.sessionmaker() as session:
        user = User(
            email=email.lower(),
            name=name,
            password_hash="not-a-real-hash",  # never logs in with a password
            locale=locale,
            role=role,
            is_verified=True,
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        await session.flush()
        tokens = await LoginSessions(session, app.state.settings).start(user, now)
        await session.commit()
        return Doctor(
            id=user.id,
            email=user.email,
            locale=locale,
            headers={"Authorization": f"Bearer {tokens.access_token}"},
        )


def probabilities_for(predicted: str, codes: list[str] | None = None) -> list[float]:
    codes = codes or CODES
    rest = 0.3 / (len(codes) - 1)
    return [0.7 if c == predicted else rest for c in codes]


async def add_prediction(
    app: FastAPI,
    user_id: int,
    *,
    created_at: datetime | None = None,
    predicted_class: str = "normal",
    filename: str = "eye.jpg",
    patient_ref: str | None = None,
    verdict: str | None = None,
    correct_class: str | None = None,
    comment: str | None = None,
    image_key: str | None = None,
    content_type: str = "image/jpeg",
    data: bytes = b"",
    class_codes: list[str] | None = None,
    probabilities: list[float] | None = None,
    probability: float = 0.7,
    model_version: str = "0123456789ab",
    **extra: Any,
) -> Prediction:
    """One prediction row (no object in the store unless the caller puts one)."""
    created_at = created_at or datetime.now(UTC).replace(microsecond=0)
    ext = "png" if content_type == "image/png" else "jpg"
    row = Prediction(
        user_id=user_id,
        created_at=created_at,
        image_key=image_key or new_image_key(ext, created_at),
        original_filename=filename,
        content_type=content_type,
        size_bytes=len(data) or 1234,
        width=512,
        height=512,
        sha256=hashlib.sha256(data or filename.encode()).hexdigest(),
        patient_ref=patient_ref,
        eye="left",
        predicted_class=predicted_class,
        probability=probability,
        probabilities=probabilities or probabilities_for(predicted_class),
        class_codes=class_codes or CODES,
        model_version=model_version,
        model_demo=True,
        backend="torch",
        inference_ms=12.5,
        feedback_verdict=verdict,
        feedback_correct_class=correct_class,
        feedback_comment=comment,
        feedback_updated_at=created_at if verdict else None,
        **extra,
    )
    async with app.state.sessionmaker() as session:
        session.add(row)
        await session.commit()
    return row


async def add_stored_prediction(
    app: FastAPI, user_id: int, data: bytes, content_type: str = "image/png", **kwargs: Any
) -> Prediction:
    """A prediction whose image really is in the app's store (local or S3)."""
    row = await add_prediction(app, user_id, data=data, content_type=content_type, **kwargs)
    await app.state.storage.put(row.image_key, data, content_type)
    return row
