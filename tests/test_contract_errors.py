"""Findings of the schema fuzzing (e2e/test_schemathesis_live.py), kept as regression tests.

A request body that cannot even be parsed (JSON that is not UTF-8, a multipart body
without its boundary) used to answer FastAPI's bare 400 "There was an error parsing the
body", a status no route declares. It is a validation error like malformed JSON: 422
VALIDATION_ERROR with the problem located at the body.
"""

from __future__ import annotations

import httpx

API = "/api/v1"


def _is_body_validation_error(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert isinstance(body["detail"], list) and body["detail"], body
    assert body["detail"][0]["loc"][0] == "body"


async def test_json_body_that_is_not_utf8_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/password/forgot",
        content=b"\xff\xfe\xfa",
        headers={"Content-Type": "application/json"},
    )
    _is_body_validation_error(response)


async def test_json_body_that_is_not_json_is_still_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/password/forgot",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    _is_body_validation_error(response)
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_multipart_without_boundary_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/login",
        content=b"username=a&password=b",
        headers={"Content-Type": "multipart/form-data"},
    )
    _is_body_validation_error(response)
