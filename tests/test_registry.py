"""Model registry: admin-only routes, validated registration, activation with a hot swap
(in one process and followed by another), rollback, retirement and shadow evaluation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import ShadowPrediction
from app.inference.manifest import DEFAULT_MANIFEST
from tests.support.factories import Doctor, app_of, make_doctor
from tests.support.harness import ClientFactory
from tests.support.images import jpeg
from tests.support.inference import weights_bytes
from tests.support.predict import post_image
from tests.support.registry import MODELS, SOME_VERSION, ready_version, upload_model
from tests.support.waiting import poll_until

THREE_CLASSES = {
    "classes": [
        {"code": "glaucoma", "es": "Glaucoma", "en": "Glaucoma"},
        {"code": "normal", "es": "Normal", "en": "Normal"},
        {"code": "cataract", "es": "Catarata", "en": "Cataract"},
    ]
}


# --------------------------------------------------------------------------- access

ROUTES = [
    ("POST", MODELS, {"json": {"source": "s3://bucket/key.pth"}}),
    ("GET", MODELS, {}),
    ("GET", f"{MODELS}/{SOME_VERSION}", {}),
    ("POST", f"{MODELS}/{SOME_VERSION}/activate", {}),
    ("POST", f"{MODELS}/{SOME_VERSION}/retire", {}),
    ("PUT", f"{MODELS}/{SOME_VERSION}/shadow", {"json": {"rate": 0.5}}),
    ("GET", f"{MODELS}/{SOME_VERSION}/metrics", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES)
async def test_every_admin_route_is_401_without_token_and_403_for_a_doctor(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    anonymous = await client.request(method, path, **kwargs)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "NOT_AUTHENTICATED"
    doctor = await make_doctor(app_of(client))
    forbidden = await client.request(method, path, headers=doctor.headers, **kwargs)
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "FORBIDDEN"


# --------------------------------------------------------------------------- start-up


async def test_the_start_up_model_is_registered_and_active(
    registry_client: httpx.AsyncClient, registry_admin: Doctor
) -> None:
    listed = await registry_client.get(MODELS, headers=registry_admin.headers)
    assert listed.status_code == 200
    (only,) = listed.json()
    assert only["version"] == await ready_version(registry_client)
    assert only["status"] == "active"
    assert only["demo"] is True
    assert only["source"] == "demo"
    assert only["created_by"] is None
    assert [c["code"] for c in only["manifest"]["classes"]] == [
        "glaucoma",
        "diabetic_retinopathy",
        "normal",
        "cataract",
    ]
    detail = await registry_client.get(
        f"{MODELS}/{only['version']}", headers=registry_admin.headers
    )
    assert detail.json() == only
    missing = await registry_client.get(f"{MODELS}/{SOME_VERSION}", headers=registry_admin.headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"


# --------------------------------------------------------------------------- registration


async def test_upload_is_validated_stored_under_models_and_staged(
    registry_client: httpx.AsyncClient, registry_admin: Doctor
) -> None:
    active = await ready_version(registry_client)
    response = await upload_model(registry_client, registry_admin, weights_bytes(101))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "staged"
    assert body["source"] == "upload"
    assert body["demo"] is False
    assert body["created_by"] == registry_admin.id
    assert body["shadow_rate"] == 0
    root = Path(app_of(registry_client).state.settings.local_storage_dir)
    version = body["version"]
    assert (root / "models" / f"{version}.pth").read_bytes() == weights_bytes(101)
    assert json.loads((root / "models" / f"{version}.json").read_text())["input_size"] == 224
    assert await ready_version(registry_client) == active  # registering does not activate

    again = await upload_model(registry_client, registry_admin, weights_bytes(101))
    assert again.status_code == 409
    assert again.json()["code"] == "MODEL_EXISTS"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("corrupt", "strict load failed"),
        ("truncated", "strict load failed"),
        ("wrong_manifest", "strict load failed"),
        ("bad_manifest_json", "invalid model manifest"),
        ("input_size_4096", "input_size 4096 is over the 1024 px cap"),
        ("parity", "parity failed"),
        ("empty", "empty"),
    ],
)
async def test_bad_weights_are_422_and_leave_the_registry_as_it_was(
    registry_client: httpx.AsyncClient, registry_admin: Doctor, case: str, reason: str
) -> None:
    active = await ready_version(registry_client)
    before = (await registry_client.get(MODELS, headers=registry_admin.headers)).json()
    good = weights_bytes(7)
    weights, manifest = {
        "corrupt": (b"not a torch file at all" * 100, None),
        "truncated": (good[: len(good) // 2], None),
        "wrong_manifest": (good, THREE_CLASSES),  # 4-class weights, 3-class manifest
        "bad_manifest_json": (good, b'{"classes": [{"code": "Bad Code!"}]}'),
        "input_size_4096": (good, {**DEFAULT_MANIFEST.model_dump(mode="json"), "input_size": 4096}),
        "parity": (weights_bytes(7, scale_head=1e4), None),  # numerically fragile head
        "empty": (b"", None),
    }[case]
    response = await upload_model(registry_client, registry_admin, weights, manifest)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "INVALID_MODEL"
    assert reason in response.json()["detail"]
    assert (await registry_client.get(MODELS, headers=registry_admin.headers)).json() == before
    assert await ready_version(registry_client) == active
    models_dir = Path(app_of(registry_client).state.settings.local_storage_dir) / "models"
    stored = {p.name for p in models_dir.glob("*")} if models_dir.exists() else set()
    assert not any(name.startswith(weights_bytes_version(weights)) for name in stored)


def weights_bytes_version(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:12]


async def test_register_body_errors(
    registry_client: httpx.AsyncClient, registry_admin: Doctor
) -> None:
    no_weights = await registry_client.post(
        MODELS,
        headers=registry_admin.headers,
        files={"manifest": ("m.json", b"{}", "application/json")},
    )
    assert no_weights.status_code == 422
    assert no_weights.json()["code"] == "VALIDATION_ERROR"
    bad_source = await registry_client.post(
        MODELS, headers=registry_admin.headers, json={"source": "http://x/y"}
    )
    assert bad_source.status_code == 422
    assert bad_source.json()["code"] == "VALIDATION_ERROR"
    wrong_type = await registry_client.post(
        MODELS, headers={**registry_admin.headers, "Content-Type": "text/plain"}, content=b"hello"
    )
    assert wrong_type.status_code == 415
    assert wrong_type.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_register_from_s3_with_its_manifest(
    make_client: ClientFactory, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="models/eye/v3.pth", Body=weights_bytes(33, 3))
    s3_client.put_object(Bucket=s3_bucket, Key="models/eye/v3.json", Body=json.dumps(THREE_CLASSES))
    async with make_client(s3_endpoint_url=s3_endpoint, aws_s3_bucket=s3_bucket) as client:
        admin = await make_doctor(app_of(client), role="admin")
        source = f"s3://{s3_bucket}/models/eye/v3.pth"
        response = await client.post(MODELS, headers=admin.headers, json={"source": source})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["source"] == source
        assert [c["code"] for c in body["manifest"]["classes"]] == [
            "glaucoma",
            "normal",
            "cataract",
        ]
        absent = await client.post(
            MODELS,
            headers=admin.headers,
            json={"source": f"s3://{s3_bucket}/models/eye/none.pth"},
        )
        assert absent.status_code == 422
        assert absent.json()["code"] == "INVALID_MODEL"
        assert "not found" in absent.json()["detail"]

        # A 3-class version serves 3 classes once active.
        activated = await client.post(f"{MODELS}/{body['version']}/activate", headers=admin.headers)
        assert activated.status_code == 200, activated.text
        doctor = await make_doctor(app_of(client), locale="en")
        predicted = await post_image(client, doctor.headers, jpeg())
        assert predicted.status_code == 201, predicted.text
        assert predicted.json()["model"]["version"] == body["version"]
        assert [p["class_code"] for p in predicted.json()["probabilities"]] == [
            "glaucoma",
            "normal",
            "cataract",
        ]


# --------------------------------------------------------------------------- activation


async def test_activate_swaps_under_load_then_rolls_back(
    registry_client: httpx.AsyncClient, registry_admin: Doctor
) -> None:
    old = await ready_version(registry_client)
    new = (await upload_model(registry_client, registry_admin, weights_bytes(202))).json()[
        "version"
    ]
    doctor = await make_doctor(app_of(registry_client))
    image = jpeg()
    seen: list[tuple[int, str | None, bool]] = []  # status, version, sent after activation
    stop = asyncio.Event()
    activated_flag = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            after = activated_flag.is_set()
            r = await post_image(registry_client, doctor.headers, image)
            seen.append((r.status_code, r.json().get("model", {}).get("version"), after))

    def answered(after: bool) -> int:
        return sum(sent_after == after for _, _, sent_after in seen)

    workers = [asyncio.create_task(load()) for _ in range(8)]
    # Load before the swap (8 answers), the swap under load, then 8 answers sent after it.
    await poll_until(lambda: answered(False) >= 8, what="answers before the activation")
    activated = await registry_client.post(
        f"{MODELS}/{new}/activate", headers=registry_admin.headers
    )
    activated_flag.set()
    await poll_until(lambda: answered(True) >= 8, what="answers after the activation")
    stop.set()
    await asyncio.gather(*workers)

    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active"
    assert activated.json()["activated_at"] is not None
    assert {status for status, _, _ in seen} == {201}
    assert {version for _, version, _ in seen} == {old, new}
    assert {version for _, version, after in seen if after} == {new}
    assert await ready_version(registry_client) == new
    statuses = {
        m["version"]: m["status"]
        for m in (await registry_client.get(MODELS, headers=registry_admin.headers)).json()
    }
    assert statuses == {old: "staged", new: "active"}

    rolled_back = await registry_client.post(
        f"{MODELS}/{old}/activate", headers=registry_admin.headers
    )
    assert rolled_back.status_code == 200
    assert await ready_version(registry_client) == old
    again = await registry_client.post(f"{MODELS}/{old}/activate", headers=registry_admin.headers)
    assert again.status_code == 200  # activating the active version changes nothing


async def test_retire_rules(registry_client: httpx.AsyncClient, registry_admin: Doctor) -> None:
    active = await ready_version(registry_client)
    staged = (await upload_model(registry_client, registry_admin, weights_bytes(303))).json()[
        "version"
    ]
    refused = await registry_client.post(
        f"{MODELS}/{active}/retire", headers=registry_admin.headers
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "MODEL_ACTIVE"
    retired = await registry_client.post(
        f"{MODELS}/{staged}/retire", headers=registry_admin.headers
    )
    assert retired.status_code == 200
    assert retired.json()["status"] == "retired"
    no_comeback = await registry_client.post(
        f"{MODELS}/{staged}/activate", headers=registry_admin.headers
    )
    assert no_comeback.status_code == 409
    assert no_comeback.json()["code"] == "MODEL_RETIRED"
    no_shadow = await registry_client.put(
        f"{MODELS}/{staged}/shadow", headers=registry_admin.headers, json={"rate": 1}
    )
    assert no_shadow.status_code == 409
    assert no_shadow.json()["code"] == "MODEL_NOT_STAGED"
    unknown = await registry_client.post(
        f"{MODELS}/{SOME_VERSION}/activate", headers=registry_admin.headers
    )
    assert unknown.status_code == 404
    assert await ready_version(registry_client) == active


async def test_a_second_process_follows_activation_and_rollback(
    make_client: ClientFactory,
) -> None:
    async with (
        make_client(model_poll_seconds=0.2) as first,
        make_client(model_poll_seconds=0.2) as second,
    ):
        admin = await make_doctor(app_of(first), role="admin")
        old = await ready_version(second)
        assert await ready_version(first) == old
        new = (await upload_model(first, admin, weights_bytes(404))).json()["version"]
        assert (
            await first.post(f"{MODELS}/{new}/activate", headers=admin.headers)
        ).status_code == 200
        assert await ready_version(first) == new  # the activating process swapped at once

        async def second_is(version: str) -> bool:
            return await ready_version(second) == version

        await poll_until(lambda: second_is(new))
        assert (
            await first.post(f"{MODELS}/{old}/activate", headers=admin.headers)
        ).status_code == 200
        await poll_until(lambda: second_is(old))
        assert app_of(second).state.models.swaps == 2


# --------------------------------------------------------------------------- shadow


async def test_shadow_at_100_percent_records_every_upload_apart(
    registry_client: httpx.AsyncClient, registry_admin: Doctor, db_engine: AsyncEngine
) -> None:
    served = await ready_version(registry_client)
    staged = (await upload_model(registry_client, registry_admin, weights_bytes(505))).json()[
        "version"
    ]
    refused = await registry_client.put(
        f"{MODELS}/{served}/shadow", headers=registry_admin.headers, json={"rate": 1}
    )
    assert refused.status_code == 409
    bad_rate = await registry_client.put(
        f"{MODELS}/{staged}/shadow", headers=registry_admin.headers, json={"rate": 1.5}
    )
    assert bad_rate.status_code == 422
    response = await registry_client.put(
        f"{MODELS}/{staged}/shadow", headers=registry_admin.headers, json={"rate": 1.0}
    )
    assert response.status_code == 200
    assert response.json()["shadow_rate"] == 1.0
    holder = app_of(registry_client).state.models

    async def shadow_loaded() -> bool:
        return holder.shadow is not None and holder.shadow.version == staged

    await poll_until(shadow_loaded)
    doctor = await make_doctor(app_of(registry_client))
    ids = []
    for seed in range(6):
        r = await post_image(registry_client, doctor.headers, jpeg(seed=seed))
        assert r.status_code == 201
        assert r.json()["model"]["version"] == served  # the answer is the served model's
        ids.append(r.json()["id"])

    async def shadow_rows() -> list[ShadowPrediction]:
        async with app_of(registry_client).state.sessionmaker() as session:
            return list((await session.scalars(select(ShadowPrediction))).all())

    async def all_recorded() -> bool:
        return len(await shadow_rows()) == len(ids)

    await poll_until(all_recorded)
    rows = await shadow_rows()
    assert sorted(r.prediction_id for r in rows) == sorted(ids)
    assert {r.model_version for r in rows} == {staged}

    # Feedback on three of them: the shadow's accuracy is measured on those.
    for pid, verdict in zip(ids[:3], ["correct", "correct", "incorrect"], strict=True):
        body: dict[str, Any] = {"verdict": verdict}
        detail = (
            await registry_client.get(f"/api/v1/history/{pid}", headers=doctor.headers)
        ).json()
        if verdict == "incorrect":
            body["correct_class"] = next(
                p["class_code"]
                for p in detail["probabilities"]
                if p["class_code"] != detail["result"]["class_code"]
            )
        put = await registry_client.put(
            f"/api/v1/history/{pid}/feedback", headers=doctor.headers, json=body
        )
        assert put.status_code == 200
    metrics = (
        await registry_client.get(f"{MODELS}/{staged}/metrics", headers=registry_admin.headers)
    ).json()
    by_id = {r.prediction_id: r for r in rows}
    served_classes = {}
    truths = {}
    for pid in ids:
        detail = (
            await registry_client.get(f"/api/v1/history/{pid}", headers=doctor.headers)
        ).json()
        served_classes[pid] = detail["result"]["class_code"]
        fb = detail["feedback"]
        if fb:
            truths[pid] = served_classes[pid] if fb["verdict"] == "correct" else fb["correct_class"]
    agreement = sum(by_id[p].predicted_class == served_classes[p] for p in ids) / len(ids)
    accuracy = sum(by_id[p].predicted_class == t for p, t in truths.items()) / len(truths)
    assert metrics["predictions"] == 0  # it served nothing
    assert metrics["shadow"] == {
        "compared": 6,
        "agreement": pytest.approx(agreement),
        "accuracy": pytest.approx(accuracy),
        "judged": 3,
    }

    off = await registry_client.put(
        f"{MODELS}/{staged}/shadow", headers=registry_admin.headers, json={"rate": 0}
    )
    assert off.json()["shadow_rate"] == 0

    async def shadow_gone() -> bool:
        return holder.shadow is None

    await poll_until(shadow_gone)
    async with db_engine.connect() as conn:
        before = (await conn.execute(select(func.count()).select_from(ShadowPrediction))).scalar()
    r = await post_image(registry_client, doctor.headers, jpeg())
    assert r.status_code == 201
    # A sampled upload would have spawned its shadow run by now (the response's background
    # task, which the test client awaits): let every such run finish before counting.
    await poll_until(lambda: not holder._tasks, what="shadow runs finished")
    async with db_engine.connect() as conn:
        after = (await conn.execute(select(func.count()).select_from(ShadowPrediction))).scalar()
    assert after == before
