"""The new fields in history and on the dashboard: filters recommendation= and gradable=,
counts per recommendation and of ungradable photographs, nulls on older rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.factories import add_prediction, app_of, make_doctor

ROWS: list[dict[str, Any]] = [
    {"recommendation": "refer", "quality_gradable": True, "quality_score": 0.9},
    {"recommendation": "refer", "quality_gradable": True, "quality_score": 0.8},
    {"recommendation": "routine", "quality_gradable": True, "quality_score": 0.95},
    {"recommendation": "inconclusive", "quality_gradable": True, "quality_score": 0.6},
    {
        "recommendation": "retake_image",
        "quality_gradable": False,
        "quality_score": 0.1,
        "quality_reasons": ["BLURRY", "UNDEREXPOSED"],
    },
    {},  # made before the gate existed: nulls
]


async def seed(client: httpx.AsyncClient) -> tuple[dict[str, str], list[int]]:
    app = app_of(client)
    doctor, other = await make_doctor(app), await make_doctor(app)
    at = datetime(2025, 3, 14, 10, tzinfo=UTC)
    ids = []
    for fields in ROWS:
        extra = {"quality_reasons": [], **fields} if fields else {}
        ids.append((await add_prediction(app, doctor.id, created_at=at, **extra)).id)
    # Someone else's rows never count.
    await add_prediction(
        app,
        other.id,
        created_at=at,
        recommendation="refer",
        quality_gradable=False,
        quality_score=0.2,
        quality_reasons=["NO_FUNDUS"],
    )
    return doctor.headers, ids


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[int]:
    response = await client.get("/api/v1/history", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return sorted(item["id"] for item in body["items"])


async def test_history_filters_and_fields(client: httpx.AsyncClient) -> None:
    headers, ids = await seed(client)
    assert await listed(client, headers, recommendation="refer") == ids[0:2]
    assert await listed(client, headers, recommendation="retake_image") == [ids[4]]
    assert await listed(client, headers, gradable="true") == ids[0:4]
    assert await listed(client, headers, gradable="false") == [ids[4]]
    assert await listed(client, headers, gradable="false", recommendation="refer") == []
    assert await listed(client, headers) == ids
    for bad in ({"recommendation": "urgent"}, {"gradable": "maybe"}):
        response = await client.get("/api/v1/history", headers=headers, params=bad)
        assert response.status_code == 422

    old = (await client.get(f"/api/v1/history/{ids[5]}", headers=headers)).json()
    assert old["quality"] is None and old["recommendation"] is None
    bad = (await client.get(f"/api/v1/history/{ids[4]}", headers=headers)).json()
    assert bad["quality"] == {
        "gradable": False,
        "score": 0.1,
        "reasons": ["BLURRY", "UNDEREXPOSED"],
    }
    assert bad["recommendation"] == "retake_image"


async def test_dashboard_counts(client: httpx.AsyncClient, clock: Any) -> None:
    headers, _ = await seed(client)
    clock(datetime(2025, 3, 14, 20, tzinfo=UTC))
    for range_name in ("today", "all"):
        response = await client.get(
            "/api/v1/home/stats", headers=headers, params={"range": range_name, "tz": "UTC"}
        )
        assert response.status_code == 200, response.text
        mine = response.json()["mine"]
        assert mine["by_recommendation"] == {
            "refer": 2,
            "routine": 1,
            "inconclusive": 1,
            "retake_image": 1,
        }
        assert mine["ungradable"] == 1
        assert mine["total"] == 6
    clock(datetime(2025, 4, 14, 20, tzinfo=UTC))
    response = await client.get(
        "/api/v1/home/stats", headers=headers, params={"range": "week", "tz": "UTC"}
    )
    assert response.json()["mine"]["ungradable"] == 0
    assert sum(response.json()["mine"]["by_recommendation"].values()) == 0
