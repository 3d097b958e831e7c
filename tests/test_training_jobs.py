"""The learning loop end to end: a training job fine-tunes a parent that cannot tell the
classes apart into a candidate that passes its gates, runs in shadow and is activated by
the admin; shuffled labels give a candidate that fails its gates; overlapping sets are
refused; a cancel takes effect within one batch; a SIGKILLed worker's job resumes from
its checkpoint to the same result; every step is audited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from app.db.learning import TrainingJob
from app.db.models import AuditEvent, ShadowPrediction
from app.storage import checkpoint_key
from app.training.worker import TrainingWorker
from tests.support.factories import CODES, Doctor, app_of, make_doctor
from tests.support.harness import ClientFactory
from tests.support.training import (
    TEST_RECIPES,
    labelled,
    photo,
    register_parent,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
JOBS = "/api/v1/admin/training-jobs"
MODELS = "/api/v1/admin/models"
TRAIN_DAY = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
TEST_DAY = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
RECIPE = "synthetic-quick"


@pytest.fixture
async def loop_client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(
        training_recipes_dir=TEST_RECIPES,
        model_poll_seconds=0.2,
        training_heartbeat_seconds=0.2,
        training_stale_seconds=1.0,
        training_threads=1,
    ) as client:
        yield client


@pytest.fixture
async def admin(loop_client: httpx.AsyncClient) -> Doctor:
    return await make_doctor(app_of(loop_client), role="admin", locale="en")


@pytest.fixture
async def parent(loop_client: httpx.AsyncClient, admin: Doctor) -> str:
    return await register_parent(loop_client, admin)


def worker_of(client: httpx.AsyncClient, **kwargs: Any) -> TrainingWorker:
    app = app_of(client)
    return TrainingWorker(app.state.settings, app.state.sessionmaker, app.state.storage, **kwargs)


async def make_sets(
    client: httpx.AsyncClient, admin: Doctor, *, shuffled: bool = False, train: int = 48
) -> tuple[int, int]:
    """A training set (two doctors, one patient per image) and a locked 32-image test set."""
    app = app_of(client)
    doctors = [await make_doctor(app), await make_doctor(app)]
    truth = [CODES[i % 4] for i in range(train)]
    labels = list(np.random.default_rng(3).permutation(truth)) if shuffled else truth
    for i, (code, label) in enumerate(zip(truth, labels, strict=True)):
        await labelled(
            app,
            doctors[i % 2].id,
            code,
            1000 + i,
            created_at=TRAIN_DAY + timedelta(minutes=i),
            patient_ref=f"T-{i}",
            label=str(label),
        )
    for i in range(32):
        await labelled(
            app, doctors[0].id, CODES[i % 4], 5000 + i, created_at=TEST_DAY, patient_ref=f"X-{i}"
        )
    made = await client.post(
        "/api/v1/admin/datasets",
        headers=admin.headers,
        json={"name": "train", "kind": "train", "source": "feedback", "date_from": "2026-02-01"},
    )
    assert made.status_code == 201, made.text
    test = await client.post(
        "/api/v1/admin/datasets",
        headers=admin.headers,
        json={"name": "test", "kind": "test", "source": "feedback", "date_to": "2026-01-01"},
    )
    assert test.status_code == 201, test.text
    assert test.json()["items"] == 32 and made.json()["items"] == train
    return int(made.json()["id"]), int(test.json()["id"])


async def start(
    client: httpx.AsyncClient, admin: Doctor, train_id: int, test_id: int, **body: Any
) -> dict[str, Any]:
    payload = {"train_dataset_id": train_id, "test_dataset_id": test_id, "recipe": RECIPE}
    response = await client.post(JOBS, headers=admin.headers, json={**payload, **body})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def read_job(client: httpx.AsyncClient, admin: Doctor, job_id: int) -> dict[str, Any]:
    response = await client.get(f"{JOBS}/{job_id}", headers=admin.headers)
    assert response.status_code == 200
    job: dict[str, Any] = response.json()
    return job


async def audit_actions(client: httpx.AsyncClient) -> list[AuditEvent]:
    async with app_of(client).state.sessionmaker() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())


# --------------------------------------------------------------------------- the loop


async def test_a_job_trains_a_better_candidate_that_passes_shadow_and_is_activated(
    loop_client: httpx.AsyncClient, admin: Doctor, parent: str
) -> None:
    client = loop_client
    train_id, test_id = await make_sets(client, admin)
    queued = await start(client, admin, train_id, test_id)
    assert queued["status"] == "queued" and queued["base_version"] == parent
    assert queued["recipe"] == RECIPE and queued["recipe_version"] == 1
    assert queued["progress"] is None and queued["candidate_version"] is None

    assert await worker_of(client).run_once() == queued["id"]
    job = await read_job(client, admin, queued["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1 and job["started_at"] and job["finished_at"]
    progress = job["progress"]
    assert progress["phase"] == "done" and progress["epochs"] == 3
    assert progress["batches_done"] == progress["steps"] * progress["epoch"]
    assert job["data"]["train"] + job["data"]["validation"] + job["data"]["calibration"] == 48
    assert job["data"]["test"] == 32
    candidate = job["candidate_version"]

    evaluation = (
        await client.get(f"{MODELS}/{candidate}/evaluation", headers=admin.headers)
    ).json()
    assert evaluation["id"] == job["evaluation_id"]
    assert evaluation["parent_version"] == parent and evaluation["images"] == 32
    assert evaluation["parent_accuracy"] <= 0.5  # it cannot tell the classes apart
    assert evaluation["accuracy"] > evaluation["parent_accuracy"]
    assert evaluation["passed"] is True, evaluation["gates"]
    names = {g["name"] for g in evaluation["gates"]}
    assert {"min_test_images_per_class", "accuracy_diff_lower_bound", "ece_max"} <= names
    assert {"recall_diff_lower_bound:glaucoma", "recall_diff_lower_bound:cataract"} <= names
    assert all(g["passed"] and g["value"] is not None for g in evaluation["gates"])
    assert (
        evaluation["accuracy_ci95"][0] <= evaluation["accuracy"] <= evaluation["accuracy_ci95"][1]
    )
    assert 0 <= evaluation["mcnemar_p"] < 0.05
    assert set(evaluation["per_class"]) == set(CODES)
    assert evaluation["temperature"] > 0 and evaluation["ece_after"] is not None

    model = (await client.get(f"{MODELS}/{candidate}", headers=admin.headers)).json()
    assert model["status"] == "staged" and model["source"] == f"training_job:{job['id']}"
    lineage = model["lineage"]
    train_set = (
        await client.get(f"/api/v1/admin/datasets/{train_id}", headers=admin.headers)
    ).json()
    test_set = (await client.get(f"/api/v1/admin/datasets/{test_id}", headers=admin.headers)).json()
    assert lineage["parent_version"] == parent
    assert lineage["train_dataset_sha256"] == train_set["sha256"]
    assert lineage["test_dataset_sha256"] == test_set["sha256"]
    assert lineage["recipe"] == RECIPE and lineage["seed"] == 11
    assert lineage["evaluation_id"] == evaluation["id"] and lineage["code_version"]
    assert model["manifest"]["temperature"] == evaluation["temperature"]
    assert model["manifest"]["referral"]["refer_at"] == evaluation["referral"]["thresholds"]
    parent_row = (await client.get(f"{MODELS}/{parent}", headers=admin.headers)).json()
    assert parent_row["lineage"] is None

    # Promotion stays human and needs shadow evidence first.
    early = await client.post(f"{MODELS}/{candidate}/activate", headers=admin.headers)
    assert early.status_code == 409
    assert early.json()["code"] == "SHADOW_INSUFFICIENT"
    shadow = await client.put(
        f"{MODELS}/{candidate}/shadow", headers=admin.headers, json={"rate": 1.0}
    )
    assert shadow.status_code == 200
    holder = app_of(client).state.models

    async def shadow_loaded() -> bool:
        return holder.shadow is not None and holder.shadow.version == candidate

    await wait_until(shadow_loaded)
    doctor = await make_doctor(app_of(client))
    for seed in range(3):
        r = await client.post(
            "/api/v1/predict",
            headers=doctor.headers,
            files={"file": ("eye.png", photo(CODES[seed], 9000 + seed), "image/png")},
        )
        assert r.status_code == 201 and r.json()["model"]["version"] == parent

    async def compared() -> bool:
        async with app_of(client).state.sessionmaker() as session:
            rows = (await session.scalars(select(ShadowPrediction))).all()
        return len(rows) >= 3

    await wait_until(compared)
    activated = await client.post(f"{MODELS}/{candidate}/activate", headers=admin.headers)
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active"
    served = await client.post(
        "/api/v1/predict",
        headers=doctor.headers,
        files={"file": ("eye.png", photo("cataract", 9100), "image/png")},
    )
    assert served.json()["model"]["version"] == candidate
    rollback = await client.post(f"{MODELS}/{parent}/activate", headers=admin.headers)
    assert rollback.status_code == 200  # the parent has no gates to pass

    events = await audit_actions(client)
    actions = [e.action for e in events]
    assert actions.count("dataset.create") == 2
    start_event = next(e for e in events if e.action == "training.start")
    assert start_event.actor_id == admin.id and start_event.target_id == str(job["id"])
    assert start_event.new is not None and start_event.new["recipe"] == RECIPE
    finish = next(e for e in events if e.action == "training.finish")
    assert finish.target_id == str(job["id"])
    assert finish.new is not None and finish.new["candidate_version"] == candidate
    register = next(e for e in events if e.action == "model.register" and e.target_id == candidate)
    assert register.actor_id == admin.id
    activations = [e for e in events if e.action == "model.activate"]
    assert [e.target_id for e in activations][-2:] == [candidate, parent]
    # The job's checkpoints are gone once it ended.
    storage = app_of(client).state.storage
    assert not await storage.exists(checkpoint_key(job["id"], progress["epoch"]))


async def test_shuffled_labels_fail_the_gates_and_cannot_be_activated(
    loop_client: httpx.AsyncClient, admin: Doctor, parent: str
) -> None:
    client = loop_client
    train_id, test_id = await make_sets(client, admin, shuffled=True)
    job = await start(client, admin, train_id, test_id)
    await worker_of(client).run_once()
    job = await read_job(client, admin, job["id"])
    assert job["status"] == "succeeded", job["error"]
    candidate = job["candidate_version"]
    evaluation = (
        await client.get(f"{MODELS}/{candidate}/evaluation", headers=admin.headers)
    ).json()
    assert evaluation["passed"] is False
    failed = [g["name"] for g in evaluation["gates"] if not g["passed"]]
    assert failed and all(g["value"] is not None for g in evaluation["gates"])
    refused = await client.post(f"{MODELS}/{candidate}/activate", headers=admin.headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "GATES_NOT_MET"
    assert all(name in refused.json()["detail"] for name in failed)
    model = (await client.get(f"{MODELS}/{candidate}", headers=admin.headers)).json()
    assert model["status"] == "staged"


# --------------------------------------------------------------------------- refusals


async def test_overlapping_sets_unknown_recipes_and_wrong_kinds_are_refused(
    loop_client: httpx.AsyncClient, admin: Doctor, parent: str
) -> None:
    client = loop_client
    app = app_of(client)
    doctor = await make_doctor(app)
    for i in range(8):
        await labelled(app, doctor.id, CODES[i % 4], i, created_at=TRAIN_DAY, patient_ref=f"P{i}")
    # The same patient again, another photograph, in the test window.
    await labelled(app, doctor.id, "normal", 99, created_at=TEST_DAY, patient_ref="P1")

    async def dataset(kind: str, **dates: str) -> int:
        body = {"name": kind, "kind": kind, "source": "feedback", **dates}
        r = await client.post("/api/v1/admin/datasets", headers=admin.headers, json=body)
        assert r.status_code == 201
        return int(r.json()["id"])

    train = await dataset("train", date_from="2026-02-01")
    same_images = await dataset("test", date_from="2026-02-01")
    same_patient = await dataset("test", date_to="2026-01-01")
    for test_id in (same_images, same_patient):
        body = {"train_dataset_id": train, "test_dataset_id": test_id, "recipe": RECIPE}
        r = await client.post(JOBS, headers=admin.headers, json=body)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "DATASET_OVERLAP"

    recipes = (await client.get("/api/v1/admin/recipes", headers=admin.headers)).json()
    assert [r["name"] for r in recipes] == [RECIPE]  # broken.yaml is left out
    assert recipes[0]["version"] == 1 and len(recipes[0]["sha256"]) == 64
    for name in ("broken", "nope"):
        body = {"train_dataset_id": train, "test_dataset_id": same_patient, "recipe": name}
        r = await client.post(JOBS, headers=admin.headers, json=body)
        assert r.status_code == 422
        assert r.json()["code"] == "UNKNOWN_RECIPE"
    swapped = {"train_dataset_id": same_patient, "test_dataset_id": train, "recipe": RECIPE}
    r = await client.post(JOBS, headers=admin.headers, json=swapped)
    assert r.status_code == 422 and r.json()["code"] == "VALIDATION_ERROR"
    missing = {"train_dataset_id": train, "test_dataset_id": 999999, "recipe": RECIPE}
    assert (await client.post(JOBS, headers=admin.headers, json=missing)).status_code == 404
    unknown = {**missing, "test_dataset_id": same_patient, "base_version": "0123456789ab"}
    assert (await client.post(JOBS, headers=admin.headers, json=unknown)).status_code == 404
    assert (await client.get(f"{JOBS}/999999", headers=admin.headers)).status_code == 404
    none = await client.get(f"{MODELS}/{parent}/evaluation", headers=admin.headers)
    assert none.status_code == 404
    doctor_call = await client.get(JOBS, headers=doctor.headers)
    assert doctor_call.status_code == 403
    async with app.state.sessionmaker() as session:
        assert (await session.scalars(select(TrainingJob))).all() == []


# --------------------------------------------------------------------------- cancel


async def test_cancel_takes_effect_within_one_batch(
    loop_client: httpx.AsyncClient, admin: Doctor, parent: str
) -> None:
    client = loop_client
    train_id, test_id = await make_sets(client, admin)
    job = await start(client, admin, train_id, test_id)
    cancelled_at: list[int] = []

    async def cancel_after_third(job_id: int, batches: int) -> None:
        if batches == 3 and not cancelled_at:
            r = await client.post(f"{JOBS}/{job_id}/cancel", headers=admin.headers)
            assert r.status_code == 200
            assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
            cancelled_at.append(batches)

    await worker_of(client, step_hook=cancel_after_third).run_once()
    done = await read_job(client, admin, job["id"])
    assert cancelled_at == [3]
    assert done["status"] == "cancelled"
    assert done["progress"]["batches_done"] == 3  # no batch started after the cancel
    assert done["candidate_version"] is None and done["finished_at"] is not None
    again = await client.post(f"{JOBS}/{job['id']}/cancel", headers=admin.headers)
    assert again.status_code == 409 and again.json()["code"] == "TRAINING_JOB_FINISHED"

    queued = await start(client, admin, train_id, test_id)
    r = await client.post(f"{JOBS}/{queued['id']}/cancel", headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await worker_of(client).run_once() is None  # nothing left to claim
    listed = await client.get(JOBS, headers=admin.headers, params={"status": "cancelled"})
    assert [j["id"] for j in listed.json()] == [queued["id"], job["id"]]
    cancels = [e for e in await audit_actions(client) if e.action == "training.cancel"]
    assert [e.target_id for e in cancels] == [str(job["id"]), str(queued["id"])]


# --------------------------------------------------------------------------- resume


def worker_process(client: httpx.AsyncClient, tmp_path: Path) -> subprocess.Popen[bytes]:
    settings = app_of(client).state.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TRAINING_", "DATABASE_"))},
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": settings.database_url,
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(settings.local_storage_dir),
        "MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "TRAINING_RECIPES_DIR": str(TEST_RECIPES),
        "TRAINING_THREADS": "1",
        "TRAINING_NICE": "0",
        "TRAINING_HEARTBEAT_SECONDS": "0.2",
        "INFERENCE_DEVICE": "cpu",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "train-worker", "--once"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_a_killed_workers_job_resumes_from_its_checkpoint_to_the_same_result(
    loop_client: httpx.AsyncClient, admin: Doctor, parent: str, tmp_path: Path
) -> None:
    client = loop_client
    train_id, test_id = await make_sets(client, admin)
    # TRAINING_THREADS=1 here and in the worker process: the same arithmetic.
    reference = await start(client, admin, train_id, test_id)
    await worker_of(client).run_once()
    expected = (await read_job(client, admin, reference["id"]))["candidate_version"]
    assert expected

    job = await start(client, admin, train_id, test_id)
    process = worker_process(client, tmp_path)
    try:

        async def checkpointed() -> bool:
            row = await read_job(client, admin, job["id"])
            assert row["status"] in ("queued", "running"), row
            return bool(row["checkpoint_epoch"])

        await wait_until(checkpointed)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed = await read_job(client, admin, job["id"])
    assert killed["status"] == "running" and killed["attempts"] == 1
    assert 1 <= killed["checkpoint_epoch"] < 3
    storage = app_of(client).state.storage
    assert await storage.exists(checkpoint_key(job["id"], killed["checkpoint_epoch"]))

    first_batch: list[int] = []

    async def note(job_id: int, batches: int) -> None:
        first_batch.append(batches)

    worker = worker_of(client, step_hook=note)

    async def taken_over() -> bool:  # once the heartbeat is TRAINING_STALE_SECONDS old
        return await worker.run_once() is not None

    await wait_until(taken_over)
    done = await read_job(client, admin, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    steps = done["progress"]["steps"]
    # Resumed after the checkpointed epoch, not from the start.
    assert first_batch[0] == killed["checkpoint_epoch"] * steps + 1
    assert done["candidate_version"] == expected
