"""The audit events of the model registry (model.register / activate / retire) and of the
heatmap view: exactly one event per action with its actor, target and values, none for a
refused change."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import ClientFactory
from tests.factories import Doctor, app_of, make_doctor
from tests.test_audit_events import events, only
from tests.test_clinical_heatmap import upload as predict
from tests.test_registry import BASE, SOME_VERSION, ready_version, upload, weights_bytes


@pytest.fixture
async def app_client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(model_poll_seconds=0.2) as client:
        yield client


@pytest.fixture
async def admin(app_client: httpx.AsyncClient) -> Doctor:
    return await make_doctor(app_of(app_client), role="admin", locale="en")


async def test_register_activate_retire_write_one_event_each(
    app_client: httpx.AsyncClient, admin: Doctor
) -> None:
    app = app_of(app_client)
    start = await ready_version(app_client)

    response = await upload(app_client, admin, weights_bytes(501))
    assert response.status_code == 201, response.text
    version = response.json()["version"]
    event = only(await events(app, "model.register"))
    assert (event.actor_id, event.target_type, event.target_id) == (admin.id, "model", version)
    assert event.new == {"source": "upload", "status": "staged"}

    # Refused changes write nothing: a second registration, bad weights, an unknown version.
    assert (await upload(app_client, admin, weights_bytes(501))).status_code == 409
    assert (await upload(app_client, admin, b"not a state dict")).status_code == 422
    unknown = await app_client.post(f"{BASE}/{SOME_VERSION}/activate", headers=admin.headers)
    assert unknown.status_code == 404
    refused = await app_client.post(f"{BASE}/{start}/retire", headers=admin.headers)
    assert refused.status_code == 409  # the active one
    assert len(await events(app, "model.register")) == 1
    assert await events(app, "model.activate") == []
    assert await events(app, "model.retire") == []

    activated = await app_client.post(f"{BASE}/{version}/activate", headers=admin.headers)
    assert activated.status_code == 200, activated.text
    event = only(await events(app, "model.activate"))
    assert (event.actor_id, event.target_id) == (admin.id, version)
    assert (event.old, event.new) == ({"active": start}, {"active": version})
    # Activating the active version again changes nothing and records nothing.
    again = await app_client.post(f"{BASE}/{version}/activate", headers=admin.headers)
    assert again.status_code == 200
    assert len(await events(app, "model.activate")) == 1

    # Roll back, then retire the version that was active.
    back = await app_client.post(f"{BASE}/{start}/activate", headers=admin.headers)
    assert back.status_code == 200
    retired = await app_client.post(f"{BASE}/{version}/retire", headers=admin.headers)
    assert retired.status_code == 200, retired.text
    event = only(await events(app, "model.retire"))
    assert (event.actor_id, event.target_id) == (admin.id, version)
    assert (event.old, event.new) == ({"status": "staged"}, {"status": "retired"})
    assert len(await events(app, "model.activate")) == 2


async def test_heatmap_view_event(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor, other = await make_doctor(app), await make_doctor(app)
    body = await predict(client, doctor.headers)
    url = f"/api/v1/history/{body['id']}/heatmap"
    assert (await client.get(url, headers=other.headers)).status_code == 404
    bad = await client.get(url, headers=doctor.headers, params={"class_code": "keratitis"})
    assert bad.status_code == 422
    assert await events(app, "prediction.heatmap_view") == []

    assert (await client.get(url, headers=doctor.headers)).status_code == 200
    event = only(await events(app, "prediction.heatmap_view"))
    assert (event.actor_id, event.target_type, event.target_id) == (
        doctor.id,
        "prediction",
        str(body["id"]),
    )
    assert event.new == {"class_code": body["result"]["class_code"]}
