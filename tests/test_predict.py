"""POST /predict: the upload is validated before storing, and failures leave nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import Prediction
from tests.support.factories import Doctor, make_doctor
from tests.support.harness import ClientFactory
from tests.support.images import bilevel_png, encode, jpeg, synthetic_photo
from tests.support.predict import PREDICT, count_objects, count_rows, post_image


async def test_predict_returns_the_prediction_and_a_usable_image_url(
    client: httpx.AsyncClient, doctor: Doctor, db_engine: AsyncEngine
) -> None:
    data = jpeg(640, 480)
    response = await post_image(
        client,
        doctor.headers,
        data,
        filename="../../etc/fundus.JPG",
        patient_ref=" P-001 ",
        eye="left",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["patient_ref"] == "P-001" and body["eye"] == "left"
    assert body["image"] == {
        "filename": "fundus.JPG",
        "content_type": "image/jpeg",
        "width": 640,
        "height": 480,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),  # of the bytes sent
        "frames": None,  # DICOM only
    }
    codes = [p["class_code"] for p in body["probabilities"]]
    assert codes == ["glaucoma", "diabetic_retinopathy", "normal", "cataract"]
    assert [p["label"] for p in body["probabilities"]][1] == "Diabetic retinopathy"
    assert sum(p["probability"] for p in body["probabilities"]) == pytest.approx(1, abs=1e-6)
    top = max(body["probabilities"], key=lambda p: p["probability"])
    assert body["result"] == top
    assert body["model"]["demo"] is True and len(body["model"]["version"]) == 12
    assert body["feedback"] is None and body["inference_ms"] > 0
    assert body["created_at"].endswith(("Z", "+00:00"))

    image = await client.get(body["image_url"])  # signed URL: no bearer header needed
    assert image.status_code == 200
    assert image.content == data and image.headers["content-type"] == "image/jpeg"
    assert await count_rows(db_engine) == 1
    async with db_engine.connect() as conn:
        stored = (await conn.execute(select(Prediction.sha256))).scalar_one()
    assert stored == hashlib.sha256(data).hexdigest()


async def test_png_upload_and_exif_orientation(client: httpx.AsyncClient, doctor: Doctor) -> None:
    png = encode(synthetic_photo(100, 80, 3), "PNG")
    response = await post_image(
        client, doctor.headers, png, filename="x.png", content_type="image/png"
    )
    assert response.status_code == 201, response.text
    assert response.json()["image"]["content_type"] == "image/png"

    rotated = synthetic_photo(300, 200, 4)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display: width and height swap
    data = encode(rotated, "JPEG", exif=exif)
    response = await post_image(client, doctor.headers, data)
    assert response.status_code == 201, response.text
    assert (response.json()["image"]["width"], response.json()["image"]["height"]) == (200, 300)


BAD_UPLOADS = {
    "empty file": (b"", "eye.jpg", 422, "INVALID_IMAGE"),
    "text named .jpg": (
        b"just some text, not an image\n" * 10,
        "eye.jpg",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    "truncated jpeg": (None, "eye.jpg", 422, "INVALID_IMAGE"),
    "10x10 image": (None, "tiny.png", 422, "INVALID_IMAGE"),
    "gif": (None, "eye.gif", 415, "UNSUPPORTED_MEDIA_TYPE"),
    "png bomb": (None, "bomb.png", 422, "INVALID_IMAGE"),
    "16 MB file": (None, "big.jpg", 413, "FILE_TOO_LARGE"),
}


def _bad_upload_bytes(case: str) -> bytes:
    if case == "truncated jpeg":
        return jpeg(800, 600)[:5000]
    if case == "10x10 image":
        return encode(Image.new("RGB", (10, 10), "red"), "PNG")
    if case == "gif":
        return encode(synthetic_photo(200, 200, 1).convert("P"), "GIF")
    if case == "png bomb":  # 20000 x 20000 (400 MP) in a few dozen kilobytes
        return bilevel_png(20_000, 20_000)
    if case == "16 MB file":
        return jpeg() + b"\0" * (16 * 1024 * 1024)
    raise AssertionError(case)


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
async def test_bad_uploads_get_their_code_and_leave_nothing_behind(
    case: str, client: httpx.AsyncClient, doctor: Doctor, db_engine: AsyncEngine
) -> None:
    data, filename, status, code = BAD_UPLOADS[case]
    payload = data if data is not None else _bad_upload_bytes(case)
    objects_before = count_objects(client)
    response = await post_image(client, doctor.headers, payload, filename=filename)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert await count_rows(db_engine) == 0
    assert count_objects(client) == objects_before


async def test_oversized_body_without_content_length_is_cut_off(
    client: httpx.AsyncClient, doctor: Doctor
) -> None:
    boundary = "ocupredict-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
        yield head
        for _ in range(20):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        PREDICT,
        headers={**doctor.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=chunks(),
    )
    assert response.status_code == 413
    assert response.json()["code"] == "FILE_TOO_LARGE"


@pytest.mark.parametrize(
    ("fields", "files"),
    [
        ({"patient_ref": "x" * 65}, True),
        ({"eye": "both"}, True),
        ({}, False),
    ],
)
async def test_invalid_form_fields_are_422(
    client: httpx.AsyncClient, doctor: Doctor, fields: dict[str, str], files: bool
) -> None:
    kwargs = {"files": {"file": ("eye.jpg", jpeg(), "image/jpeg")}} if files else {}
    response = await client.post(PREDICT, headers=doctor.headers, data=fields, **kwargs)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_predict_requires_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post(PREDICT, files={"file": ("eye.jpg", jpeg(), "image/jpeg")})
    assert response.status_code == 401
    assert response.json()["code"] == "NOT_AUTHENTICATED"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_twenty_concurrent_uploads(
    client: httpx.AsyncClient, doctor: Doctor, db_engine: AsyncEngine
) -> None:
    objects_before = count_objects(client)
    images = [jpeg(300 + i, 200 + i, seed=i) for i in range(20)]
    responses = await asyncio.gather(*(post_image(client, doctor.headers, data) for data in images))
    assert [r.status_code for r in responses] == [201] * 20
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 20
    assert await count_rows(db_engine) == 20
    assert count_objects(client) == objects_before + 20
    # Each result belongs to its own image, even though they were batched together.
    assert {r.json()["image"]["width"] for r in responses} == {300 + i for i in range(20)}


async def test_s3_unreachable_is_503_and_writes_no_row(
    make_client: ClientFactory, db_engine: AsyncEngine
) -> None:
    async with make_client(
        storage_backend="s3", aws_s3_bucket="images", s3_endpoint_url="http://127.0.0.1:1"
    ) as client:
        doctor = await make_doctor(client.app)  # type: ignore[attr-defined]
        response = await post_image(client, doctor.headers, jpeg())
    assert response.status_code == 503
    assert response.json()["code"] == "STORAGE_UNAVAILABLE"
    assert await count_rows(db_engine) == 0


async def test_s3_store_keeps_real_content_type_and_presigned_url_works(
    make_client: ClientFactory, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    async with make_client(
        storage_backend="s3", aws_s3_bucket=s3_bucket, s3_endpoint_url=s3_endpoint
    ) as client:
        doctor = await make_doctor(client.app)  # type: ignore[attr-defined]
        png = encode(synthetic_photo(128, 128, 9), "PNG")
        response = await post_image(
            client, doctor.headers, png, filename="my scan.jpg", content_type="image/jpeg"
        )
    assert response.status_code == 201, response.text
    body = response.json()
    s3 = s3_client
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("images/") and keys[0].endswith(".png")
    assert "my scan" not in keys[0]
    head = s3.head_object(Bucket=s3_bucket, Key=keys[0])
    assert head["ContentType"] == "image/png"
    async with httpx.AsyncClient() as http:
        fetched = await http.get(body["image_url"])
    assert fetched.status_code == 200 and fetched.content == png


async def test_failed_database_write_removes_the_stored_object(
    make_client: ClientFactory, db_engine: AsyncEngine
) -> None:
    """A real database failure (a trigger refuses the insert), not a mock."""
    async with db_engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_predictions BEFORE INSERT ON predictions "
                    "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_predictions BEFORE INSERT ON predictions FOR EACH ROW "
                    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'"
                )
            )
    try:
        async with make_client(raise_app_exceptions=False) as client:
            doctor = await make_doctor(client.app)  # type: ignore[attr-defined]
            objects_before = count_objects(client)
            response = await post_image(client, doctor.headers, jpeg())
            objects_after = count_objects(client)
        assert response.status_code == 500
        assert response.json()["code"] == "INTERNAL_ERROR"
        assert "refused" not in response.text
        assert objects_after == objects_before
        assert await count_rows(db_engine) == 0
    finally:
        async with db_engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse_predictions"))


async def test_ready_reports_model_and_storage(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/health/ready")).json()
    assert body["status"] == "ready"
    assert body["storage"] == "ok"
    assert body["model"]["ready"] is True and body["model"]["demo"] is True
    assert body["model"]["backend"] in ("torch", "onnx")
