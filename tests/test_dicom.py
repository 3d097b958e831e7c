"""DICOM intake: POST /predict takes ophthalmic photographs as DICOM Part 10 files (issue 15)."""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.uid import ImplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import Prediction
from app.errors import InvalidImage
from app.inference import dicom
from app.inference.preprocess import decode_upload, render_png
from tests.support.dicom import (
    BIRTH_DATE,
    MULTIFRAME_TRUE_COLOR_SC,
    OCT,
    PATIENT_ID,
    PATIENT_NAME,
    SECONDARY_CAPTURE,
    JPEG2000Lossless,
    dicom_bytes,
    encapsulated_dicom,
    flat_jpeg,
    jpeg_dicom,
)
from tests.support.factories import Doctor
from tests.support.images import encode, synthetic_photo
from tests.support.peak_memory import PeakRss
from tests.support.predict import count_objects, count_rows, post_image

DICOM = "application/dicom"
MAX_PIXELS = 50_000_000  # MAX_IMAGE_PIXELS, the service default


def photo(width: int = 320, height: int = 240, seed: int = 5) -> np.ndarray:
    return np.asarray(synthetic_photo(width, height, seed).convert("RGB"))


async def post_dicom(
    client: httpx.AsyncClient, doctor: Doctor, data: bytes, **fields: str
) -> httpx.Response:
    # The declared type and name say JPEG: the bytes alone decide.
    return await post_image(client, doctor.headers, data, "eye.jpg", "image/jpeg", **fields)


async def stored_row(engine: AsyncEngine, prediction_id: int) -> Prediction:
    async with engine.connect() as conn:
        row = (await conn.execute(select(Prediction).where(Prediction.id == prediction_id))).one()
    return row  # type: ignore[return-value]


async def image_of(client: httpx.AsyncClient, doctor: Doctor, pid: int, **params: str) -> bytes:
    response = await client.get(
        f"/api/v1/history/{pid}/image", headers=doctor.headers, params=params
    )
    assert response.status_code == 200, response.text
    return response.content


def _rgb() -> bytes:
    return dicom_bytes(photo())


def _ybr_jpeg() -> bytes:
    return jpeg_dicom(synthetic_photo(320, 240, 6))[0]


def _monochrome() -> bytes:
    return dicom_bytes(photo()[:, :, 1])


def _multiframe() -> bytes:
    return dicom_bytes(photo(), sop_class=MULTIFRAME_TRUE_COLOR_SC, frames=3)


def _multiframe_jpeg() -> bytes:
    frames = [jpeg_dicom(synthetic_photo(320, 240, seed))[1] for seed in (6, 7)]
    return encapsulated_dicom(frames, rows=240, columns=320)


def _implicit_sc() -> bytes:
    data = dicom_bytes(photo(), sop_class=SECONDARY_CAPTURE, syntax=ImplicitVRLittleEndian)
    assert dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    return data


@pytest.mark.parametrize(
    ("make", "frames"),
    [
        (_rgb, 1),
        (_ybr_jpeg, 1),
        (_monochrome, 1),
        (_multiframe, 3),
        (_multiframe_jpeg, 2),
        (_implicit_sc, 1),
    ],
    ids=[
        "rgb-op8",
        "ybr422-jpeg-baseline",
        "monochrome2",
        "multiframe",
        "multiframe-jpeg",
        "implicit-vr-sc",
    ],
)
async def test_accepted_dicom_files_are_classified_and_stored_as_sent(
    client: httpx.AsyncClient, doctor: Doctor, db_engine: AsyncEngine, make: object, frames: int
) -> None:
    data = make()  # type: ignore[operator]
    response = await post_dicom(client, doctor, data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["image"]["content_type"] == DICOM
    assert (body["image"]["width"], body["image"]["height"]) == (320, 240)
    assert body["image"]["frames"] == frames
    assert body["image"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["eye"] == "unknown" and body["eye_source"] == "request"
    assert body["laterality_conflict"] is False
    row = await stored_row(db_engine, body["id"])
    assert row.image_key.endswith(".dcm") and row.frames == frames
    assert await image_of(client, doctor, body["id"]) == data


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: dicom_bytes(photo(), with_pixels=False), 415, "UNSUPPORTED_DICOM"),
        (
            lambda: jpeg_dicom(synthetic_photo(320, 240, 6), syntax=JPEG2000Lossless)[0],
            415,
            "UNSUPPORTED_DICOM",
        ),
        (lambda: dicom_bytes(photo(), sop_class=OCT), 415, "UNSUPPORTED_DICOM"),
        (lambda: _rgb()[: len(_rgb()) // 2], 422, "INVALID_IMAGE"),
        # Cut inside the file meta: unreadable. Cut after it, before the pixel data, the
        # file reads as one without pixel data (pydicom stops at the end of the bytes).
        (lambda: _rgb()[:150], 422, "INVALID_IMAGE"),
        (lambda: _rgb()[:400], 415, "UNSUPPORTED_DICOM"),
        (lambda: dicom_bytes(photo(), rows_columns=(8000, 8000)), 422, "INVALID_IMAGE"),
        (lambda: dicom_bytes(photo(60, 60)), 422, "INVALID_IMAGE"),
        (lambda: _lying((640, 480), rows=240, columns=320), 422, "INVALID_IMAGE"),
        (lambda: _lying((200, 100), rows=240, columns=320), 422, "INVALID_IMAGE"),
    ],
    ids=[
        "no-pixel-data",
        "jpeg2000",
        "oct-sop-class",
        "truncated-pixels",
        "truncated-meta",
        "truncated-before-pixels",
        "over-max-pixels",
        "under-64px",
        "jpeg-frame-larger-than-header",
        "jpeg-frame-smaller-than-header",
    ],
)
async def test_refused_dicom_files_leave_no_object_and_no_row(
    client: httpx.AsyncClient,
    doctor: Doctor,
    db_engine: AsyncEngine,
    make: object,
    status: int,
    code: str,
) -> None:
    data = make()  # type: ignore[operator]
    objects, rows = count_objects(client), await count_rows(db_engine)
    response = await post_dicom(client, doctor, data)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert count_objects(client) == objects and await count_rows(db_engine) == rows


async def test_over_max_pixels_is_refused_from_the_header_before_decoding(
    client: httpx.AsyncClient, doctor: Doctor
) -> None:
    # 8000 x 8000 declared but only 320 x 240 of pixel data: decoding would fail with
    # another message, so the pixel limit was applied first.
    response = await post_dicom(client, doctor, dicom_bytes(photo(), rows_columns=(8000, 8000)))
    assert "more than" in response.json()["detail"]


async def test_a_dicom_and_the_same_pixels_as_png_give_the_same_prediction(
    client: httpx.AsyncClient, doctor: Doctor
) -> None:
    pixels = photo(512, 384, 9)
    as_dicom = (await post_dicom(client, doctor, dicom_bytes(pixels))).json()
    png = encode(Image.fromarray(pixels), "PNG")
    as_png = (await post_image(client, doctor.headers, png, "eye.png", "image/png")).json()
    a = [p["probability"] for p in as_dicom["probabilities"]]
    b = [p["probability"] for p in as_png["probabilities"]]
    assert np.max(np.abs(np.subtract(a, b))) < 1e-4
    assert as_dicom["quality"] == as_png["quality"]


async def test_the_png_preview_renders_the_first_frame(
    client: httpx.AsyncClient, doctor: Doctor
) -> None:
    pixels = photo(256, 192, 4)
    data = dicom_bytes(pixels, sop_class=MULTIFRAME_TRUE_COLOR_SC, frames=2)
    pid = (await post_dicom(client, doctor, data)).json()["id"]
    original = await image_of(client, doctor, pid)
    assert hashlib.sha256(original).digest() == hashlib.sha256(data).digest()
    response = await client.get(
        f"/api/v1/history/{pid}/image", headers=doctor.headers, params={"format": "png"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["etag"] != f'"{hashlib.sha256(data).hexdigest()}"'
    with Image.open(io.BytesIO(response.content)) as preview:
        assert preview.format == "PNG"
        assert np.array_equal(np.asarray(preview.convert("RGB")), pixels)
    plain = await client.get(f"/api/v1/history/{pid}/image", headers=doctor.headers)
    assert plain.headers["content-type"] == DICOM


@pytest.mark.parametrize(
    ("image_laterality", "laterality", "sent", "eye", "source", "conflict"),
    [
        ("R", None, None, "right", "dicom", False),
        ("L", None, "unknown", "left", "dicom", False),
        (None, "L", None, "left", "dicom", False),  # Laterality (0020,0060) as fallback
        ("R", "L", None, "right", "dicom", False),  # Image Laterality first
        ("B", None, None, "unknown", "request", False),
        (None, None, "left", "left", "request", False),
        ("R", None, "right", "right", "request", False),
        ("R", None, "left", "left", "request", True),
    ],
)
async def test_laterality_fills_the_eye_and_a_contradiction_is_flagged(
    client: httpx.AsyncClient,
    doctor: Doctor,
    image_laterality: str | None,
    laterality: str | None,
    sent: str | None,
    eye: str,
    source: str,
    conflict: bool,
) -> None:
    data = dicom_bytes(photo(), image_laterality=image_laterality, laterality=laterality)
    fields = {} if sent is None else {"eye": sent}
    response = await post_dicom(client, doctor, data, **fields)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["eye"], body["eye_source"], body["laterality_conflict"]) == (
        eye,
        source,
        conflict,
    )
    listed = await client.get(f"/api/v1/history/{body['id']}", headers=doctor.headers)
    assert listed.json()["laterality_conflict"] is conflict


async def test_no_patient_identifier_is_stored_or_logged(
    client: httpx.AsyncClient,
    doctor: Doctor,
    db_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = dicom_bytes(photo(), image_laterality="L")
    caplog.set_level(logging.DEBUG)
    response = await post_dicom(client, doctor, data, patient_ref="REF-1")
    assert response.status_code == 201, response.text
    # A refused one too (the error path may log more).
    await post_dicom(client, doctor, dicom_bytes(photo(), with_pixels=False))
    await post_dicom(client, doctor, _rgb()[:2000])
    row = await stored_row(db_engine, response.json()["id"])
    stored = repr(tuple(row))
    assert "REF-1" in stored  # the scan does see the row's values
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert logged  # and there were logs to scan
    for secret in (PATIENT_NAME, "Doe", PATIENT_ID, BIRTH_DATE):
        assert secret not in stored
        assert secret not in logged
        assert secret not in response.text
    assert PATIENT_ID.encode() in await image_of(client, doctor, response.json()["id"])


async def test_the_png_preview_of_a_jpeg_keeps_its_full_size(
    client: httpx.AsyncClient, doctor: Doctor
) -> None:
    data = encode(synthetic_photo(1024, 768, 2), "JPEG", quality=90)
    pid = (await post_image(client, doctor.headers, data)).json()["id"]
    assert await image_of(client, doctor, pid) == data
    with Image.open(io.BytesIO(await image_of(client, doctor, pid, format="png"))) as preview:
        assert (preview.format, preview.size) == ("PNG", (1024, 768))


# --------------------------------------------------------------------------- lying sizes


def _lying(size: tuple[int, int], *, rows: int = 64, columns: int = 64, first_of: int = 1) -> bytes:
    """A JPEG baseline file whose header says `rows` x `columns` while its (first) frame is
    `size` (width, height) of flat grey; `first_of` > 1 adds honest frames after it."""
    honest = [flat_jpeg(columns, rows)] * (first_of - 1)
    return encapsulated_dicom([flat_jpeg(*size), *honest], rows=rows, columns=columns)


@pytest.mark.parametrize(
    "side",
    [13_000, 8_000],  # 169 MP, over Pillow's own warning limit (89 MP); 64 MP, under it
)
async def test_a_small_dicom_with_a_huge_frame_is_refused_without_decoding_it(
    client: httpx.AsyncClient, doctor: Doctor, db_engine: AsyncEngine, side: int
) -> None:
    data = _lying((side, side))  # the header says 64 x 64
    assert len(data) < 4 * 2**20  # a small upload: 507 MB of RGB once decoded at 13000
    objects, rows = count_objects(client), await count_rows(db_engine)
    with PeakRss() as peak:
        response = await post_dicom(client, doctor, data)
    assert response.status_code == 422, response.text
    assert peak.grown_mb < 200, f"the peak RSS grew by {peak.grown_mb:.0f} MB"
    assert response.json()["code"] == "INVALID_IMAGE"
    assert response.json()["detail"] == f"The image has more than {MAX_PIXELS} pixels."
    assert count_objects(client) == objects and await count_rows(db_engine) == rows


def _decode_upload(data: bytes) -> object:
    return decode_upload(data, max_pixels=MAX_PIXELS)


def _render_png(data: bytes) -> object:  # the history's PNG preview of a stored file
    return render_png(data, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("decode", [_decode_upload, _render_png], ids=["upload", "preview"])
@pytest.mark.parametrize("first_of", [1, 3], ids=["single-frame", "multi-frame"])
def test_every_decoding_path_checks_the_frame_it_decodes(
    decode: Callable[[bytes], object], first_of: int
) -> None:
    data = _lying((13_000, 13_000), first_of=first_of)
    with PeakRss() as peak, pytest.raises(InvalidImage, match=f"more than {MAX_PIXELS} pixels"):
        decode(data)
    assert peak.grown_mb < 200, f"the peak RSS grew by {peak.grown_mb:.0f} MB"
    with pytest.raises(InvalidImage, match="Rows and Columns"):
        decode(_lying((640, 480), rows=240, columns=320, first_of=first_of))
    honest = decode(_lying((320, 240), rows=240, columns=320, first_of=first_of))
    assert honest is not None


def test_a_frame_is_also_decoded_under_pillows_bomb_limit_as_an_error() -> None:
    # 10000 x 9000: past Pillow's warning limit (89 MP). With a pixel limit that lets it
    # through, the decoder's own bomb warning is an error, not a silenced warning.
    data = _lying((10_000, 9_000), rows=9_000, columns=10_000)
    with pytest.raises(InvalidImage, match="more than"):
        decode_upload(data, max_pixels=10**9)


def test_warnings_other_than_pydicoms_are_not_silenced(monkeypatch: pytest.MonkeyPatch) -> None:
    real = dicom.pixel_array

    def noisy(*args: object, **kwargs: object) -> object:
        warnings.warn("a warning from the decoding stack", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dicom, "pixel_array", noisy)
    with pytest.warns(RuntimeWarning, match="from the decoding stack"):
        decode_upload(_ybr_jpeg(), max_pixels=MAX_PIXELS)
