"""Thumbnails (API.md, third wave): `thumbnail_url` on list items and on the detail, a
signed URL of history-image `format=thumb`, a JPEG at most 256 px on its longer side,
made on first request and cached beside the image in the store."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from app.storage import ImageNotFound, new_image_key, thumbnail_key
from tests.support.dicom import dicom_bytes
from tests.support.factories import add_prediction, add_stored_prediction, app_of, make_doctor
from tests.support.fundus import encoded, fundus
from tests.support.harness import ClientFactory

HISTORY = "/api/v1/history"


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def check_thumbnail_flow(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    photo = encoded(fundus(900).resize((900, 600)), "PNG")
    row = await add_stored_prediction(app, doctor.id, photo, "image/png")

    listed = await client.get(HISTORY, headers=doctor.headers)
    assert listed.status_code == 200
    item = listed.json()["items"][0]
    url = item["thumbnail_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["format"] == ["thumb"] and set(query) == {"format", "expires", "signature"}
    expires_at = datetime.fromisoformat(item["thumbnail_url_expires_at"])
    assert expires_at > datetime.now(UTC)
    assert int(query["expires"][0]) == int(expires_at.timestamp())

    with pytest.raises(ImageNotFound):  # not made before it is asked for
        await app.state.storage.get(thumbnail_key(row.image_key))
    thumb = await client.get(relative(url))  # no bearer token: the signature suffices
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(thumb.content))
    assert image.format == "JPEG"
    assert image.size == (256, 171)  # the longer side 256, the aspect kept
    cached = await app.state.storage.get(thumbnail_key(row.image_key))
    assert cached.data == thumb.content
    again = await client.get(relative(url), headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304

    detail = (await client.get(f"{HISTORY}/{row.id}", headers=doctor.headers)).json()
    assert relative(detail["thumbnail_url"]).startswith(f"/api/v1/history/{row.id}/image?")
    # Deleting the prediction removes the cached thumbnail too.
    assert (await client.delete(f"{HISTORY}/{row.id}", headers=doctor.headers)).status_code == 204
    with pytest.raises(ImageNotFound):
        await app.state.storage.get(thumbnail_key(row.image_key))


async def test_thumbnail_local_store(client: httpx.AsyncClient) -> None:
    await check_thumbnail_flow(client)


async def test_thumbnail_s3_store(
    make_client: ClientFactory, s3_endpoint: str, s3_bucket: str
) -> None:
    async with make_client(
        storage_backend="s3", aws_s3_bucket=s3_bucket, s3_endpoint_url=s3_endpoint
    ) as client:
        await check_thumbnail_flow(client)


async def test_small_and_dicom_images_and_refusals(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    other = await make_doctor(app)
    small = await add_stored_prediction(app, doctor.id, encoded(fundus(120), "PNG"), "image/png")
    response = await client.get(f"{HISTORY}/{small.id}/image?format=thumb", headers=doctor.headers)
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (120, 120)  # never enlarged

    data = dicom_bytes(np.asarray(fundus(400).resize((400, 300))))
    key = new_image_key("dcm", datetime.now(UTC))
    dicom = await add_prediction(
        app, doctor.id, content_type="application/dicom", data=data, image_key=key
    )
    await app.state.storage.put(key, data, "application/dicom")
    response = await client.get(f"{HISTORY}/{dicom.id}/image?format=thumb", headers=doctor.headers)
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (256, 192)

    # Another doctor's id, a forged or expired signature: 404 like a missing one.
    response = await client.get(f"{HISTORY}/{small.id}/image?format=thumb", headers=other.headers)
    assert response.status_code == 404
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    response = await client.get(
        f"{HISTORY}/{small.id}/image",
        params={"format": "thumb", "expires": past, "signature": "x" * 43},
    )
    assert response.status_code == 404
    response = await client.get(f"{HISTORY}/{small.id}/image?format=thumb")
    assert response.status_code == 401
    response = await client.get(f"{HISTORY}/{small.id}/image?format=tiny", headers=doctor.headers)
    assert response.status_code == 422
    # A row whose image is gone: 404, nothing cached.
    gone = await add_prediction(app, doctor.id)
    response = await client.get(f"{HISTORY}/{gone.id}/image?format=thumb", headers=doctor.headers)
    assert response.status_code == 404
