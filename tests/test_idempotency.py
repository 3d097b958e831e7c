"""POST /predict with an Idempotency-Key: a retry returns the first prediction, never a
second record or image. The two-process race is in tests/test_deploy.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.base import utcnow
from app.db.models import IdempotencyKey, Prediction
from tests.support.factories import Doctor, app_of, make_doctor
from tests.support.images import jpeg as photo

URL = "/api/v1/predict"


def jpeg(seed: int) -> bytes:
    return photo(seed=seed)


async def upload(
    client: httpx.AsyncClient, doctor: Doctor, data: bytes, key: str | None, **fields: str
) -> httpx.Response:
    headers = dict(doctor.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(
        URL, headers=headers, files={"file": ("eye.jpg", data, "image/jpeg")}, data=fields
    )


async def rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Prediction))).scalar_one())


def objects(client: httpx.AsyncClient) -> int:
    root = Path(app_of(client).state.settings.local_storage_dir)
    return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


async def test_a_repeat_returns_the_first_prediction_and_stores_nothing_more(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    doctor = await make_doctor(app_of(client), locale="en")
    before_rows, before_objects = await rows(db_engine), objects(client)
    first = await upload(client, doctor, jpeg(1), "retry-7f3a", patient_ref="P-1", eye="left")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await upload(client, doctor, jpeg(1), "retry-7f3a", patient_ref="P-1", eye="left")
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["image"]["sha256"] == first.json()["image"]["sha256"]
    assert await rows(db_engine) == before_rows + 1
    assert objects(client) == before_objects + 1
    # Without a key, the same file is a new prediction, as before.
    plain = await upload(client, doctor, jpeg(1), None, patient_ref="P-1", eye="left")
    assert plain.status_code == 201 and plain.json()["id"] != first.json()["id"]


async def test_concurrent_repeats_in_one_process_make_one_prediction(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    doctor = await make_doctor(app_of(client), locale="en")
    before = await rows(db_engine)
    responses = await asyncio.gather(*(upload(client, doctor, jpeg(2), "burst") for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await rows(db_engine) == before + 1


async def test_the_same_key_with_another_upload_is_refused(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(app_of(client), locale="en")
    assert (await upload(client, doctor, jpeg(3), "k1")).status_code == 201
    for data, fields in ((jpeg(4), {}), (jpeg(3), {"patient_ref": "other"})):
        response = await upload(client, doctor, data, "k1", **fields)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_keys_are_per_user(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    ana, ben = await make_doctor(app, locale="en"), await make_doctor(app, locale="en")
    first = await upload(client, ana, jpeg(5), "shared-key")
    second = await upload(client, ben, jpeg(5), "shared-key")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    # Another user's key tells nothing: Ben's different file under it is simply his.
    third = await upload(client, ben, jpeg(6), "shared-key")
    assert third.status_code == 422


async def test_after_the_ttl_the_key_is_free_again(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    doctor = await make_doctor(app_of(client), locale="en")
    first = await upload(client, doctor, jpeg(7), "daily")
    assert first.status_code == 201
    async with db_engine.begin() as conn:
        await conn.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    later = await upload(client, doctor, jpeg(8), "daily")  # another file: no longer reused
    assert later.status_code == 201, later.text
    assert later.json()["id"] != first.json()["id"]


async def test_a_failed_first_request_frees_its_key(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    doctor = await make_doctor(app_of(client), locale="en")
    broken = await upload(client, doctor, b"\xff\xd8 not really a jpeg", "attempt-1")
    assert broken.status_code == 415 and broken.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    async with db_engine.connect() as conn:
        claims = (await conn.execute(select(func.count()).select_from(IdempotencyKey))).scalar()
    assert claims == 0
    fixed = await upload(client, doctor, jpeg(9), "attempt-1")
    assert fixed.status_code == 201, fixed.text


async def test_malformed_keys_are_refused(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(app_of(client), locale="en")
    for key in ("has space", "x" * 256, "ñandú"):
        headers = {**doctor.headers, "Idempotency-Key": key}
        response = await client.post(
            URL,
            headers={k: v.encode() if k == "Idempotency-Key" else v for k, v in headers.items()},
            files={"file": ("eye.jpg", jpeg(10), "image/jpeg")},
        )
        assert response.status_code == 422, (key, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR"
