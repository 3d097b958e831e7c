"""One record: detail with a fresh image URL, the image itself, feedback, delete; owner-only."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.storage import StorageUnavailable
from tests.support.factories import (
    Doctor,
    add_prediction,
    add_stored_prediction,
    app_of,
    make_doctor,
)
from tests.support.harness import ClientFactory

URL = "/api/v1/history"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def path_and_query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


# --------------------------------------------------------------------------- owner-only


async def test_other_users_record_is_404_everywhere(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    b = await make_doctor(app)
    row = await add_stored_prediction(app, a.id, PNG)
    rid = row.id
    calls = [
        ("GET", URL + "/{}", None),
        ("GET", URL + "/{}/image", None),
        ("PUT", URL + "/{}/feedback", {"verdict": "correct"}),
        ("DELETE", URL + "/{}", None),
    ]
    for method, url, body in calls:
        response = await client.request(method, url.format(rid), json=body, headers=b.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["code"] == "NOT_FOUND"
        # Exactly what a missing id answers.
        missing = await client.request(method, url.format(rid + 1000), json=body, headers=b.headers)
        assert missing.status_code == 404 and missing.json() == response.json()
    # A's record is untouched: no feedback, still there, image still served.
    detail = await client.get(f"{URL}/{rid}", headers=a.headers)
    assert detail.status_code == 200 and detail.json()["feedback"] is None
    assert (await client.get(f"{URL}/{rid}/image", headers=a.headers)).status_code == 200


async def test_record_routes_require_authentication(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    row = await add_prediction(app, a.id)
    for method, url in [
        ("GET", f"{URL}/{row.id}"),
        ("GET", f"{URL}/{row.id}/image"),
        ("PUT", f"{URL}/{row.id}/feedback"),
        ("DELETE", f"{URL}/{row.id}"),
    ]:
        body = {"verdict": "correct"} if method == "PUT" else None
        response = await client.request(method, url, json=body)
        assert response.status_code == 401, (method, url)
        assert response.headers["www-authenticate"] == "Bearer"


async def test_invalid_id_is_422(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(app_of(client))
    for rid in ("abc", "0", str(2**63)):
        response = await client.get(f"{URL}/{rid}", headers=doctor.headers)
        assert response.status_code == 422, rid


# --------------------------------------------------------------------------- detail + image


async def test_detail_has_fresh_signed_url_that_serves_the_bytes(
    client: httpx.AsyncClient, clock: Any
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app, locale="en")
    row = await add_stored_prediction(app, doctor.id, PNG, filename="left.png")
    now = datetime.now(UTC).replace(microsecond=0)
    clock(now)
    response = await client.get(f"{URL}/{row.id}", headers=doctor.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == row.id
    assert body["image"]["sha256"] == row.sha256
    ttl = app.state.settings.image_url_ttl_seconds
    expires_at = datetime.fromisoformat(body["image_url_expires_at"])
    assert expires_at == now + timedelta(seconds=ttl)
    path, query = path_and_query(body["image_url"])
    assert body["image_url"].startswith("http://testserver/api/v1/history/")
    assert path == f"{URL}/{row.id}/image"
    assert set(query) == {"expires", "signature"}
    assert int(query["expires"]) == int(expires_at.timestamp())

    # An <img> tag: no Authorization header, only the signed URL.
    image = await client.get(body["image_url"])
    assert image.status_code == 200
    assert image.content == PNG
    assert image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"].startswith("private, max-age=")
    assert 0 < int(image.headers["cache-control"].split("max-age=")[1]) <= ttl
    assert image.headers["etag"] == f'"{row.sha256}"'

    # Revalidation.
    again = await client.get(body["image_url"], headers={"If-None-Match": image.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == image.headers["etag"]
    weak = await client.get(
        body["image_url"], headers={"If-None-Match": f"W/{image.headers['etag']}"}
    )
    assert weak.status_code == 304
    other = await client.get(body["image_url"], headers={"If-None-Match": '"abc"'})
    assert other.status_code == 200

    # A second read signs again (fresh URL for a later clock).
    clock(now + timedelta(seconds=60))
    later = (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).json()
    assert later["image_url"] != body["image_url"]
    assert datetime.fromisoformat(later["image_url_expires_at"]) == expires_at + timedelta(
        seconds=60
    )


async def test_image_with_bearer_token(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_stored_prediction(app, doctor.id, PNG)
    image = await client.get(f"{URL}/{row.id}/image", headers=doctor.headers)
    assert image.status_code == 200 and image.content == PNG
    assert image.headers["cache-control"] == (
        f"private, max-age={app.state.settings.image_url_ttl_seconds}"
    )
    assert "Authorization" in image.headers["vary"]


async def test_bad_or_expired_signature_is_404(client: httpx.AsyncClient, clock: Any) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_stored_prediction(app, doctor.id, PNG)
    other = await add_stored_prediction(app, doctor.id, PNG)
    now = datetime.now(UTC).replace(microsecond=0)
    clock(now)
    url = (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).json()["image_url"]
    path, query = path_and_query(url)

    tampered = {**query, "signature": query["signature"][:-2] + "AA"}
    assert (await client.get(path, params=tampered)).status_code == 404
    moved = {**query, "expires": str(int(query["expires"]) + 1)}
    assert (await client.get(path, params=moved)).status_code == 404
    # A signature is for one id only.
    foreign = await client.get(f"{URL}/{other.id}/image", params=query)
    assert foreign.status_code == 404
    # Expired.
    clock(now + timedelta(seconds=app.state.settings.image_url_ttl_seconds))
    expired = await client.get(path, params=query)
    assert expired.status_code == 404 and expired.json()["code"] == "NOT_FOUND"
    clock(now + timedelta(seconds=10))
    assert (await client.get(path, params=query)).status_code == 200
    # Half a signature is no credential at all.
    assert (await client.get(path, params={"expires": query["expires"]})).status_code == 401


async def test_missing_object_is_404(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_prediction(app, doctor.id)  # no object stored
    response = await client.get(f"{URL}/{row.id}/image", headers=doctor.headers)
    assert response.status_code == 404


# --------------------------------------------------------------------------- feedback


async def put_feedback(
    client: httpx.AsyncClient, doctor: Doctor, rid: int, **body: Any
) -> httpx.Response:
    return await client.put(f"{URL}/{rid}/feedback", json=body, headers=doctor.headers)


async def test_feedback_correct(client: httpx.AsyncClient, clock: Any) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_prediction(app, doctor.id, predicted_class="glaucoma")
    now = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)
    clock(now)
    response = await put_feedback(client, doctor, row.id, verdict="correct", comment=" ok ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["feedback"] == {
        "verdict": "correct",
        "correct_class": None,
        "comment": "ok",
        "updated_at": "2025-06-01T15:00:00Z",
    }
    assert body["image_url"]  # the full Prediction comes back
    listed = (await client.get(URL, headers=doctor.headers)).json()["items"][0]
    assert listed["feedback"]["verdict"] == "correct"


async def test_feedback_incorrect_with_and_without_class(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_prediction(app, doctor.id, predicted_class="glaucoma")
    response = await put_feedback(
        client, doctor, row.id, verdict="incorrect", correct_class="cataract"
    )
    assert response.status_code == 200
    assert response.json()["feedback"]["correct_class"] == "cataract"
    assert response.json()["feedback"]["verdict"] == "incorrect"

    response = await put_feedback(client, doctor, row.id, verdict="incorrect")
    assert response.status_code == 200
    assert response.json()["feedback"]["correct_class"] is None
    assert response.json()["feedback"]["comment"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"verdict": "incorrect", "correct_class": "glaucoma"}, "INVALID_CORRECT_CLASS"),
        ({"verdict": "incorrect", "correct_class": "keratoconus"}, "INVALID_CORRECT_CLASS"),
        ({"verdict": "incorrect", "correct_class": "Not a code"}, "VALIDATION_ERROR"),
        ({"verdict": "correct", "correct_class": "cataract"}, "VALIDATION_ERROR"),
        ({"verdict": "maybe"}, "VALIDATION_ERROR"),
        ({}, "VALIDATION_ERROR"),
        ({"verdict": "correct", "comment": "x" * 1001}, "VALIDATION_ERROR"),
        ({"verdict": "correct", "extra": 1}, "VALIDATION_ERROR"),
    ],
)
async def test_feedback_rejected(
    client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_prediction(app, doctor.id, predicted_class="glaucoma")
    response = await client.put(f"{URL}/{row.id}/feedback", json=body, headers=doctor.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    detail = (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).json()
    assert detail["feedback"] is None


async def test_feedback_comment_of_1000_chars(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_prediction(app, doctor.id)
    comment = "é" * 1000
    response = await put_feedback(client, doctor, row.id, verdict="correct", comment=comment)
    assert response.status_code == 200
    assert response.json()["feedback"]["comment"] == comment


async def test_feedback_change_of_mind(client: httpx.AsyncClient, clock: Any) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_prediction(app, doctor.id, predicted_class="normal")
    first = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)
    clock(first)
    await put_feedback(client, doctor, row.id, verdict="correct")
    clock(first + timedelta(hours=2))
    response = await put_feedback(
        client, doctor, row.id, verdict="incorrect", correct_class="glaucoma", comment="on review"
    )
    feedback = response.json()["feedback"]
    assert feedback["verdict"] == "incorrect"
    assert feedback["correct_class"] == "glaucoma"
    assert feedback["updated_at"] == "2025-06-01T17:00:00Z"
    assert (await client.get(URL, params={"feedback": "correct"}, headers=doctor.headers)).json()[
        "total"
    ] == 0


# --------------------------------------------------------------------------- delete


async def test_delete_local(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_stored_prediction(app, doctor.id, PNG)
    keep = await add_stored_prediction(app, doctor.id, PNG)
    url = (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).json()["image_url"]
    assert (await client.get(url)).status_code == 200

    response = await client.delete(f"{URL}/{row.id}", headers=doctor.headers)
    assert response.status_code == 204 and response.content == b""
    assert not await app.state.storage.exists(row.image_key)
    assert await app.state.storage.exists(keep.image_key)
    assert (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).status_code == 404
    assert (await client.get(url)).status_code == 404
    assert (await client.delete(f"{URL}/{row.id}", headers=doctor.headers)).status_code == 404
    assert [i["id"] for i in (await client.get(URL, headers=doctor.headers)).json()["items"]] == [
        keep.id
    ]


async def test_delete_keeps_no_row_when_the_store_fails(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Row first, object second: a store failure leaves an orphan object, logged; never a
    row pointing at nothing."""
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_stored_prediction(app, doctor.id, PNG)

    async def broken_delete(key: str) -> None:
        raise StorageUnavailable()

    monkeypatch.setattr(app.state.storage, "delete", broken_delete)
    with caplog.at_level(logging.ERROR, logger="app.services.history"):
        response = await client.delete(f"{URL}/{row.id}", headers=doctor.headers)
    assert response.status_code == 204
    assert (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).status_code == 404
    assert any(row.image_key in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    await app.state.storage.delete(row.image_key)


async def test_s3_image_redirect_and_delete(
    make_client: ClientFactory, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    s3 = s3_client
    async with make_client(
        storage_backend="s3", aws_s3_bucket=s3_bucket, s3_endpoint_url=s3_endpoint
    ) as client:
        app = app_of(client)
        doctor = await make_doctor(app)
        row = await add_stored_prediction(app, doctor.id, PNG)
        keep = await add_stored_prediction(app, doctor.id, PNG)
        assert s3.head_object(Bucket=s3_bucket, Key=row.image_key)["ContentLength"] == len(PNG)

        detail = (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).json()
        presigned = detail["image_url"]
        assert presigned.startswith(f"{s3_endpoint}/{s3_bucket}/{row.image_key}?")
        assert "X-Amz-Signature" in presigned
        async with httpx.AsyncClient() as web:
            fetched = await web.get(presigned)
            assert fetched.status_code == 200 and fetched.content == PNG

            redirect = await client.get(f"{URL}/{row.id}/image", headers=doctor.headers)
            assert redirect.status_code == 307
            assert redirect.headers["location"].startswith(f"{s3_endpoint}/{s3_bucket}/")
            assert (await web.get(redirect.headers["location"])).content == PNG

            response = await client.delete(f"{URL}/{row.id}", headers=doctor.headers)
            assert response.status_code == 204

            listed = s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
            assert [o["Key"] for o in listed] == [keep.image_key]
            with pytest.raises(s3.exceptions.ClientError):
                s3.head_object(Bucket=s3_bucket, Key=row.image_key)
            assert (await web.get(presigned)).status_code == 404
        assert (await client.get(f"{URL}/{row.id}", headers=doctor.headers)).status_code == 404
        gone = await client.get(f"{URL}/{row.id}/image", headers=doctor.headers)
        assert gone.status_code == 404
