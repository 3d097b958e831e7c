"""Per-version metrics from the doctors' feedback, against a confusion matrix computed by
hand; the daily rollup (kept by triggers) and the raw edges of a date range agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.db.models import ModelVersion
from app.inference.manifest import DEFAULT_MANIFEST
from app.registry.performance import compute, wilson_interval
from app.repositories.model_versions import Group, confidence_bin
from tests.support.factories import Doctor, add_prediction, app_of, make_doctor

VERSION = "aaaaaaaaaaaa"
OTHER = "bbbbbbbbbbbb"
URL = f"/api/v1/admin/models/{VERSION}/metrics"


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


# (predicted, top probability, verdict, correct class, created at)
ROWS: list[tuple[str, float, str | None, str | None, datetime]] = [
    ("glaucoma", 0.95, "correct", None, at(1, 10)),  # 1
    ("glaucoma", 0.85, "correct", None, at(1, 10)),  # 2
    ("glaucoma", 0.65, "incorrect", "normal", at(1, 10)),  # 3
    ("normal", 0.75, "correct", None, at(1, 10)),  # 4
    ("normal", 0.55, "incorrect", "cataract", at(2, 8)),  # 5
    ("normal", 0.45, "incorrect", None, at(2, 18)),  # 6: class not given
    ("cataract", 0.92, "correct", None, at(3, 12)),  # 7
    ("cataract", 0.35, "incorrect", "glaucoma", at(3, 12)),  # 8
    ("diabetic_retinopathy", 0.88, "correct", None, at(3, 12)),  # 9
    ("diabetic_retinopathy", 0.62, "incorrect", "normal", at(3, 12)),  # 10
    ("normal", 0.80, None, None, at(4, 9)),  # 11
    ("glaucoma", 0.99, None, None, at(5, 9)),  # 12
]


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> Doctor:
    return await make_doctor(app_of(client), role="admin")


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> tuple[Doctor, list[int]]:
    app = app_of(client)
    async with app.state.sessionmaker() as session:
        for version in (VERSION, OTHER):
            session.add(
                ModelVersion(
                    version=version,
                    sha256=version * 5 + "abcd",
                    source="upload",
                    storage_key=None,
                    manifest=DEFAULT_MANIFEST.model_dump(mode="json"),
                    demo=False,
                    status="staged",
                    shadow_rate=0.0,
                    created_at=at(1, 0),
                    created_by=None,
                    activated_at=None,
                )
            )
        await session.commit()
    doctor = await make_doctor(app)
    ids = []
    for predicted, probability, verdict, correct_class, created in ROWS:
        row = await add_prediction(
            app,
            doctor.id,
            created_at=created,
            predicted_class=predicted,
            probability=probability,
            verdict=verdict,
            correct_class=correct_class,
            model_version=VERSION,
        )
        ids.append(row.id)
    # Another version's row on the same day: never counted for VERSION.
    await add_prediction(
        app,
        doctor.id,
        created_at=at(3, 12),
        predicted_class="glaucoma",
        probability=0.9,
        verdict="correct",
        model_version=OTHER,
    )
    return doctor, ids


def cells(body: dict[str, Any]) -> dict[tuple[str, str | None], int]:
    return {(c["predicted"], c["confirmed"]): c["count"] for c in body["confusion"]}


async def test_metrics_match_the_hand_computed_confusion_matrix(
    client: httpx.AsyncClient, admin: Doctor, seeded: tuple[Doctor, list[int]]
) -> None:
    response = await client.get(URL, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == VERSION
    assert body["predictions"] == 12
    assert body["with_feedback"] == 10
    assert body["correct"] == 5
    assert body["accuracy"] == pytest.approx(0.5)
    assert body["accuracy_ci95"] == pytest.approx([0.236594, 0.763406], abs=1e-6)
    assert cells(body) == {
        ("glaucoma", "glaucoma"): 2,
        ("glaucoma", "normal"): 1,
        ("normal", "normal"): 1,
        ("normal", "cataract"): 1,
        ("normal", None): 1,
        ("cataract", "cataract"): 1,
        ("cataract", "glaucoma"): 1,
        ("diabetic_retinopathy", "diabetic_retinopathy"): 1,
        ("diabetic_retinopathy", "normal"): 1,
    }
    assert body["per_class"] == {
        "glaucoma": {
            "precision": pytest.approx(2 / 3),
            "recall": pytest.approx(2 / 3),
            "support": 3,
        },
        "diabetic_retinopathy": {"precision": 0.5, "recall": 1.0, "support": 1},
        "normal": {"precision": pytest.approx(1 / 3), "recall": pytest.approx(1 / 3), "support": 3},
        "cataract": {"precision": 0.5, "recall": 0.5, "support": 2},
    }
    # Bins: 9 {.95 ok, .92 ok}, 8 {.85 ok, .88 ok}, 7 {.75 ok}, 6 {.65 x, .62 x},
    # 5 {.55 x}, 4 {.45 x}, 3 {.35 x}: 0.2*.065 + 0.2*.135 + 0.1*.25 + 0.2*.635 + .055
    # + .045 + .035 = 0.327
    assert body["ece"] == pytest.approx(0.327, abs=1e-6)  # MySQL FLOAT is single precision
    # The reliability diagram: those bins (lowest first), each with its count, mean top
    # probability and share confirmed; its weighted gaps add up to the ECE.
    bins = [
        (b["low"], b["high"], b["count"], b["confidence"], b["accuracy"])
        for b in body["reliability"]
    ]
    assert bins == [
        (pytest.approx(0.3), pytest.approx(0.4), 1, pytest.approx(0.35, abs=1e-6), 0.0),
        (pytest.approx(0.4), pytest.approx(0.5), 1, pytest.approx(0.45, abs=1e-6), 0.0),
        (pytest.approx(0.5), pytest.approx(0.6), 1, pytest.approx(0.55, abs=1e-6), 0.0),
        (pytest.approx(0.6), pytest.approx(0.7), 2, pytest.approx(0.635, abs=1e-6), 0.0),
        (pytest.approx(0.7), pytest.approx(0.8), 1, pytest.approx(0.75, abs=1e-6), 1.0),
        (pytest.approx(0.8), pytest.approx(0.9), 2, pytest.approx(0.865, abs=1e-6), 1.0),
        (pytest.approx(0.9), pytest.approx(1.0), 2, pytest.approx(0.935, abs=1e-6), 1.0),
    ]
    weighted = sum(n / 10 * abs(acc - conf) for _, _, n, conf, acc in bins)
    assert weighted == pytest.approx(body["ece"], abs=1e-6)
    assert body["shadow"] is None


async def test_a_date_range_adds_whole_days_and_partial_edges(
    client: httpx.AsyncClient, admin: Doctor, seeded: tuple[Doctor, list[int]]
) -> None:
    # From noon of day 2 (row 6 in, row 5 out), all of day 3 (rows 7-10, from the
    # rollup), to 10:00 of day 4 (row 11 in).
    params = {"date_from": "2026-03-02T12:00:00Z", "date_to": "2026-03-04T10:00:00Z"}
    body = (await client.get(URL, headers=admin.headers, params=params)).json()
    assert body["predictions"] == 6
    assert body["with_feedback"] == 5
    assert body["correct"] == 2
    assert cells(body) == {
        ("normal", None): 1,
        ("cataract", "cataract"): 1,
        ("cataract", "glaucoma"): 1,
        ("diabetic_retinopathy", "diabetic_retinopathy"): 1,
        ("diabetic_retinopathy", "normal"): 1,
    }
    assert body["range"]["start"].startswith("2026-03-02T12:00:00")
    # Plain dates in a time zone: 2026-03-03 in Lima is 05:00Z on the 3rd to 05:00Z on
    # the 4th: rows 7-10 (12:00Z on the 3rd) only.
    lima = {"date_from": "2026-03-03", "date_to": "2026-03-03", "tz": "America/Lima"}
    body = (await client.get(URL, headers=admin.headers, params=lima)).json()
    assert body["predictions"] == 4
    only_day_1 = {"date_from": "2026-03-01", "date_to": "2026-03-01", "tz": "UTC"}
    body = (await client.get(URL, headers=admin.headers, params=only_day_1)).json()
    assert (body["predictions"], body["correct"]) == (4, 3)
    empty = {"date_from": "2027-01-01", "tz": "UTC"}
    body = (await client.get(URL, headers=admin.headers, params=empty)).json()
    assert (body["predictions"], body["accuracy"], body["accuracy_ci95"], body["ece"]) == (
        0,
        None,
        None,
        None,
    )


async def test_feedback_changes_and_deletes_reach_the_metrics(
    client: httpx.AsyncClient, admin: Doctor, seeded: tuple[Doctor, list[int]]
) -> None:
    doctor, ids = seeded
    put = await client.put(
        f"/api/v1/history/{ids[11]}/feedback", headers=doctor.headers, json={"verdict": "correct"}
    )
    assert put.status_code == 200
    changed = await client.put(
        f"/api/v1/history/{ids[2]}/feedback", headers=doctor.headers, json={"verdict": "correct"}
    )
    assert changed.status_code == 200
    assert (
        await client.delete(f"/api/v1/history/{ids[10]}", headers=doctor.headers)
    ).status_code == 204
    body = (await client.get(URL, headers=admin.headers)).json()
    assert (body["predictions"], body["with_feedback"], body["correct"]) == (11, 11, 7)
    assert cells(body)[("glaucoma", "glaucoma")] == 4
    assert ("glaucoma", "normal") not in cells(body)


async def test_metrics_errors(
    client: httpx.AsyncClient, admin: Doctor, seeded: tuple[Doctor, list[int]]
) -> None:
    missing = await client.get("/api/v1/admin/models/cccccccccccc/metrics", headers=admin.headers)
    assert missing.status_code == 404
    reversed_range = {"date_from": "2026-03-05", "date_to": "2026-03-01"}
    bad = await client.get(URL, headers=admin.headers, params=reversed_range)
    assert bad.status_code == 422
    not_a_version = await client.get("/api/v1/admin/models/XYZ/metrics", headers=admin.headers)
    assert not_a_version.status_code == 422


def test_wilson_interval_and_bins() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 10)  # type: ignore[misc]
    assert high == pytest.approx(1.0)
    assert low == pytest.approx(0.722467, abs=1e-6)
    low, high = wilson_interval(0, 4)  # type: ignore[misc]
    assert (low, high) == (0.0, pytest.approx(0.489891, abs=1e-6))
    assert [confidence_bin(p) for p in (0.0, 0.0999, 0.1, 0.5, 0.8999, 0.9, 1.0)] == [
        0,
        0,
        1,
        5,
        8,
        9,
        9,
    ]


def test_groups_from_rollup_and_edges_add_up() -> None:
    parts = [
        Group("normal", "correct", None, 7, 2, 1.5),
        Group("normal", "correct", None, 7, 1, 0.75),
        Group("normal", None, None, 7, 0, 0.0),
    ]
    merged = compute(parts, ["normal"])
    assert (merged.predictions, merged.correct) == (3, 3)
    assert merged.ece == pytest.approx(1 - 0.75)
    assert [(b.low, b.count, b.confidence, b.accuracy) for b in merged.reliability] == [
        (0.7, 3, 0.75, 1.0)
    ]
    assert compute([Group("normal", None, None, 3, 4, 1.4)], ["normal"]).reliability == ()
