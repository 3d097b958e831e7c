"""The audit events of the model registry (model.register / activate / retire) and of the
heatmap view: exactly one event per action with its actor, target and values, none for a
refused change."""

from __future__ import annotations

import httpx

from tests.support.audit import events, only
from tests.support.factories import Doctor, app_of, make_doctor
from tests.support.fundus import encoded, fundus
from tests.support.inference import weights_bytes
from tests.support.predict import predict
from tests.support.registry import MODELS, SOME_VERSION, ready_version, upload_model


async def test_register_activate_retire_write_one_event_each(
    registry_client: httpx.AsyncClient, registry_admin: Doctor
) -> None:
    app = app_of(registry_client)
    start = await ready_version(registry_client)

    response = await upload_model(registry_client, registry_admin, weights_bytes(501))
    assert response.status_code == 201, response.text
    version = response.json()["version"]
    event = only(await events(app, "model.register"))
    assert (event.actor_id, event.target_type, event.target_id) == (
        registry_admin.id,
        "model",
        version,
    )
    assert event.new == {"source": "upload", "status": "staged"}

    # Refused changes write nothing: a second registration, bad weights, an unknown version.
    assert (
        await upload_model(registry_client, registry_admin, weights_bytes(501))
    ).status_code == 409
    assert (
        await upload_model(registry_client, registry_admin, b"not a state dict")
    ).status_code == 422
    unknown = await registry_client.post(
        f"{MODELS}/{SOME_VERSION}/activate", headers=registry_admin.headers
    )
    assert unknown.status_code == 404
    refused = await registry_client.post(f"{MODELS}/{start}/retire", headers=registry_admin.headers)
    assert refused.status_code == 409  # the active one
    assert len(await events(app, "model.register")) == 1
    assert await events(app, "model.activate") == []
    assert await events(app, "model.retire") == []

    activated = await registry_client.post(
        f"{MODELS}/{version}/activate", headers=registry_admin.headers
    )
    assert activated.status_code == 200, activated.text
    event = only(await events(app, "model.activate"))
    assert (event.actor_id, event.target_id) == (registry_admin.id, version)
    assert (event.old, event.new) == ({"active": start}, {"active": version})
    # Activating the active version again changes nothing and records nothing.
    again = await registry_client.post(
        f"{MODELS}/{version}/activate", headers=registry_admin.headers
    )
    assert again.status_code == 200
    assert len(await events(app, "model.activate")) == 1

    # Roll back, then retire the version that was active.
    back = await registry_client.post(f"{MODELS}/{start}/activate", headers=registry_admin.headers)
    assert back.status_code == 200
    retired = await registry_client.post(
        f"{MODELS}/{version}/retire", headers=registry_admin.headers
    )
    assert retired.status_code == 200, retired.text
    event = only(await events(app, "model.retire"))
    assert (event.actor_id, event.target_id) == (registry_admin.id, version)
    assert (event.old, event.new) == ({"status": "staged"}, {"status": "retired"})
    assert len(await events(app, "model.activate")) == 2


async def test_heatmap_view_event(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor, other = await make_doctor(app), await make_doctor(app)
    body = await predict(client, doctor.headers, encoded(fundus(800)))
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
