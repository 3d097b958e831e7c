"""Learning loop datasets: snapshots of the doctors' feedback (labels, exclusions, copies,
splits, a hash that a rebuild reproduces), the CSV export, and `ocupredict
import-labelled`."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.cli import main
from app.db.learning import DatasetItem
from app.db.models import AuditEvent, Prediction
from app.training.splits import split_of
from tests.support.factories import Doctor, add_stored_prediction, app_of, make_doctor
from tests.support.fundus import encoded, fundus, grey
from tests.support.training import labelled, photo

BASE = "/api/v1/admin/datasets"
DAY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> Doctor:
    return await make_doctor(app_of(client), role="admin", locale="en")


async def create(client: httpx.AsyncClient, admin: Doctor, **body: Any) -> httpx.Response:
    payload = {"name": "feedback", "kind": "train", "source": "feedback", **body}
    return await client.post(BASE, headers=admin.headers, json=payload)


async def items_csv(
    client: httpx.AsyncClient, admin: Doctor, dataset_id: int
) -> list[dict[str, str]]:
    response = await client.get(f"{BASE}/{dataset_id}/items.csv", headers=admin.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", BASE, {"json": {"name": "x", "kind": "train", "source": "feedback"}}),
        ("GET", BASE, {}),
        ("GET", f"{BASE}/1", {}),
        ("GET", f"{BASE}/1/items.csv", {}),
    ],
)
async def test_dataset_routes_are_for_admins(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    assert (await client.request(method, path, **kwargs)).status_code == 401
    doctor = await make_doctor(app_of(client))
    forbidden = await client.request(method, path, headers=doctor.headers, **kwargs)
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "FORBIDDEN"


async def test_feedback_snapshot_labels_exclusions_and_a_reproducible_hash(
    client: httpx.AsyncClient, admin: Doctor
) -> None:
    app = app_of(client)
    alice = await make_doctor(app)
    bob = await make_doctor(app)
    t = DAY
    confirmed = await labelled(
        app, alice.id, "normal", 1, created_at=t, patient_ref="P1", predicted="normal"
    )
    corrected = await labelled(
        app, bob.id, "glaucoma", 2, created_at=t, patient_ref="P2", predicted="normal"
    )
    # Left out: incorrect without a class, ungradable, no feedback, a second copy of an image.
    await add_stored_prediction(
        app, alice.id, photo("cataract", 3), created_at=t, verdict="incorrect"
    )
    await labelled(
        app, alice.id, "cataract", 4, created_at=t, patient_ref="P4", quality_gradable=False
    )
    await labelled(app, alice.id, "normal", 1, created_at=t, patient_ref="P1")  # same bytes
    await add_stored_prediction(app, alice.id, photo("normal", 5), created_at=t)  # no feedback
    # Created after the cut-off: not in it.
    await labelled(app, bob.id, "cataract", 6, created_at=t + timedelta(days=2), patient_ref="P6")

    cutoff = (t + timedelta(days=1)).isoformat()
    first = await create(client, admin, name="until March 2", date_to=cutoff)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["items"] == 2
    assert body["by_class"] == {"glaucoma": 1, "normal": 1}
    assert body["excluded"] == {
        "duplicate_image": 1,
        "incorrect_without_class": 1,
        "ungradable": 1,
    }
    assert body["kind"] == "train" and body["locked"] is False and body["source"] == "feedback"
    assert body["created_by"] == admin.id
    assert sum(body["by_split"].values()) == 2
    assert len(body["sha256"]) == 64

    rows = await items_csv(client, admin, body["id"])
    by_prediction = {int(r["prediction_id"]): r for r in rows}
    assert by_prediction[confirmed.id]["label"] == "normal"
    assert by_prediction[confirmed.id]["label_source"] == "confirmed"
    assert by_prediction[confirmed.id]["labelled_by"] == str(alice.id)
    assert by_prediction[corrected.id]["label"] == "glaucoma"
    assert by_prediction[corrected.id]["label_source"] == "corrected"
    assert by_prediction[corrected.id]["labelled_by"] == str(bob.id)
    assert by_prediction[corrected.id]["model_version"] == corrected.model_version
    assert by_prediction[corrected.id]["image_sha256"] == corrected.sha256
    assert by_prediction[corrected.id]["patient_ref"] == "P2"

    # A rebuild with the same cut-off gives the same hash, even after later feedback on
    # a prediction created earlier but labelled after the cut-off.
    late = await labelled(app, bob.id, "cataract", 7, created_at=t, patient_ref="P7")
    await set_labelled_at(app, late.id, t + timedelta(days=3))
    again = await create(client, admin, name="rebuild", date_to=cutoff)
    assert again.status_code == 201
    assert again.json()["sha256"] == body["sha256"]
    assert again.json()["excluded"]["labelled_after_cutoff"] == 1
    later = await create(client, admin, name="later cut-off")  # now: includes more
    assert later.json()["sha256"] != body["sha256"]
    assert later.json()["items"] == 4

    # The snapshot keeps its labels and images whatever happens to the predictions.
    change = await client.put(
        f"/api/v1/history/{corrected.id}/feedback",
        headers=bob.headers,
        json={"verdict": "incorrect", "correct_class": "cataract"},
    )
    assert change.status_code == 200
    deleted = await client.delete(f"/api/v1/history/{confirmed.id}", headers=alice.headers)
    assert deleted.status_code == 204
    rows = await items_csv(client, admin, body["id"])
    assert {r["label"] for r in rows} == {"normal", "glaucoma"}
    async with app.state.sessionmaker() as session:
        items = (
            await session.scalars(select(DatasetItem).where(DatasetItem.dataset_id == body["id"]))
        ).all()
    for item in items:
        assert (await app.state.storage.get(item.image_key)).data  # the dataset's own copy
    read = await client.get(f"{BASE}/{body['id']}", headers=admin.headers)
    assert read.json() == body

    async with app.state.sessionmaker() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.create"))
        ).all()
    assert len(events) == 3
    assert events[0].actor_id == admin.id
    assert events[0].target_type == "dataset" and events[0].target_id == str(body["id"])
    assert events[0].new is not None and events[0].new["sha256"] == body["sha256"]


async def set_labelled_at(app: Any, prediction_id: int, when: datetime) -> None:
    async with app.state.sessionmaker() as session:
        row = await session.get(Prediction, prediction_id)
        assert row is not None
        row.feedback_updated_at = when
        await session.commit()


async def test_splits_follow_the_patient_and_a_test_set_is_locked(
    client: httpx.AsyncClient, admin: Doctor
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    seed = 100
    for patient in range(12):
        for _ in range(3):
            seed += 1
            code = ["glaucoma", "normal", "cataract"][seed % 3]
            await labelled(app, doctor.id, code, seed, created_at=DAY, patient_ref=f"PT-{patient}")
    for _ in range(4):  # no patient_ref: split by image hash, flagged
        seed += 1
        await labelled(app, doctor.id, "normal", seed, created_at=DAY, patient_ref=None)
    train = (await create(client, admin)).json()
    rows = await items_csv(client, admin, train["id"])
    splits_of_patient: dict[str, set[str]] = {}
    for r in rows:
        if r["patient_ref"]:
            splits_of_patient.setdefault(r["patient_ref"], set()).add(r["split"])
            assert r["split_from_image"] == "false"
            assert (r["split"], False) == split_of("train", r["patient_ref"], r["image_sha256"])
        else:
            assert r["split_from_image"] == "true"
            assert (r["split"], True) == split_of("train", None, r["image_sha256"])
    assert all(len(s) == 1 for s in splits_of_patient.values())
    assert train["unlinked_items"] == 4
    assert set(train["by_split"]) <= {"train", "validation", "calibration"}
    assert Counter(r["split"] for r in rows) == train["by_split"]

    test = await create(client, admin, kind="test", name="locked")
    assert test.status_code == 201
    assert test.json()["locked"] is True
    assert test.json()["by_split"] == {"test": 40}
    listed = (await client.get(BASE, headers=admin.headers, params={"kind": "test"})).json()
    assert [d["id"] for d in listed] == [test.json()["id"]]


async def test_csv_cells_are_quoted_and_formulas_defused(
    client: httpx.AsyncClient, admin: Doctor
) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    await labelled(app, doctor.id, "normal", 1, created_at=DAY, patient_ref='=HYPERLINK("x")')
    await labelled(app, doctor.id, "normal", 2, created_at=DAY, patient_ref="+1-555")
    dataset = (await create(client, admin)).json()
    response = await client.get(f"{BASE}/{dataset['id']}/items.csv", headers=admin.headers)
    lines = response.text.splitlines()
    assert lines[0].startswith('"position","image_sha256"')
    assert all(line.startswith('"') for line in lines)
    refs = {r["patient_ref"] for r in csv.DictReader(io.StringIO(response.text))}
    assert refs == {'\'=HYPERLINK("x")', "'+1-555"}


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "validation"},
        {"source": "import"},
        {"name": ""},
        {"date_from": "2026-03-05", "date_to": "2026-03-01"},
        {"date_to": "2026-03-01T10:00:00"},  # no offset
        {"extra": 1},
    ],
)
async def test_bad_dataset_requests_are_422(
    client: httpx.AsyncClient, admin: Doctor, body: dict[str, Any]
) -> None:
    response = await create(client, admin, **body)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_unknown_dataset_is_404(client: httpx.AsyncClient, admin: Doctor) -> None:
    for path in (f"{BASE}/999999", f"{BASE}/999999/items.csv"):
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"
    assert (await client.get(f"{BASE}/0", headers=admin.headers)).status_code == 422


def test_import_labelled_validates_each_image_and_reports(
    tmp_path: Path,
    base_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "labelled"
    for code in ("glaucoma", "normal", "keratitis"):
        (root / code).mkdir(parents=True)
    (root / "glaucoma" / "PX-1__a.jpg").write_bytes(encoded(fundus(512, seed=1)))
    (root / "glaucoma" / "b.jpg").write_bytes(encoded(fundus(512, seed=2)))
    (root / "normal" / "copy.jpg").write_bytes(encoded(fundus(512, seed=1)))  # duplicate
    (root / "normal" / "grey.png").write_bytes(encoded(grey(512), "PNG"))  # ungradable
    (root / "normal" / "notes.txt").write_text("not an image")
    (root / "normal" / "tiny.png").write_bytes(photo("normal", 1, side=32))  # under 64 px
    (root / "keratitis" / "k.jpg").write_bytes(encoded(fundus(512, seed=3)))
    for key in ("database_url", "local_storage_dir", "model_cache_dir"):
        monkeypatch.setenv(key.upper(), str(base_settings[key]))
    monkeypatch.setenv("STORAGE_BACKEND", "local")
    monkeypatch.chdir(tmp_path)  # no .env from the checkout

    status = main(["import-labelled", str(root), "--kind", "test", "--name", "clinic A"])
    out = capsys.readouterr().out
    assert status == 3, out  # made, with rejected files
    assert "imported 2, rejected 3, duplicates 1, ungradable 1" in out
    assert "keratitis: not a class of the active model" in out
    assert "notes.txt: UNSUPPORTED_MEDIA_TYPE" in out
    assert "tiny.png: INVALID_IMAGE" in out
    assert "grey.png" in out

    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> tuple[list[DatasetItem], Any]:
        from app.db.learning import Dataset

        engine = create_async_engine(base_settings["database_url"])
        try:
            async with engine.connect() as conn:
                items = (await conn.execute(select(DatasetItem))).all()
                dataset = (await conn.execute(select(Dataset))).one()
        finally:
            await engine.dispose()
        return list(items), dataset

    items, dataset = asyncio.run(read())
    assert dataset.kind == "test" and dataset.locked and dataset.source == "import"
    assert dataset.name == "clinic A" and dataset.items == 2
    assert dataset.excluded == {"duplicate_image": 1, "invalid_image": 2, "ungradable": 1}
    by_name = {i.source_name: i for i in items}
    assert set(by_name) == {"glaucoma/PX-1__a.jpg", "glaucoma/b.jpg"}
    assert by_name["glaucoma/PX-1__a.jpg"].patient_ref == "PX-1"
    assert by_name["glaucoma/b.jpg"].patient_ref is None
    assert by_name["glaucoma/b.jpg"].split_from_image is True
    assert all(i.quality_gradable is True and i.split == "test" for i in items)
    assert all(i.label_source == "import" and i.label == "glaucoma" for i in items)

    assert (
        main(["import-labelled", str(tmp_path / "missing"), "--kind", "train", "--name", "x"]) == 1
    )
    with pytest.raises(SystemExit):
        main(["import-labelled", str(root), "--kind", "validation", "--name", "x"])
