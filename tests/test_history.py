"""GET /history: filters, sort keys and orders, pagination bounds, validation, isolation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.db.models import Prediction
from tests.support.factories import Doctor, add_prediction, app_of, make_doctor

URL = "/api/v1/history"
LIMA = ZoneInfo("America/Lima")  # UTC-5 all year (no DST)
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


async def ids(client: httpx.AsyncClient, doctor: Doctor, **params: Any) -> list[int]:
    response = await client.get(URL, params=params, headers=doctor.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def page(client: httpx.AsyncClient, doctor: Doctor, **params: Any) -> dict[str, Any]:
    response = await client.get(URL, params=params, headers=doctor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- basics


async def test_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "NOT_AUTHENTICATED"


async def test_empty_list(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(app_of(client))
    assert await page(client, doctor) == {
        "items": [],
        "total": 0,
        "total_is_estimate": False,
        "page": 1,
        "page_size": 20,
    }


async def test_summary_shape_has_no_url_and_no_bytes(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app, locale="en")
    row = await add_prediction(
        app,
        doctor.id,
        predicted_class="diabetic_retinopathy",
        filename="fundus.png",
        content_type="image/png",
        patient_ref="P-1",
        created_at=T0,
    )
    body = await page(client, doctor)
    assert body["total"] == 1
    (item,) = body["items"]
    assert item["id"] == row.id
    assert "image_url" not in item and "image_url_expires_at" not in item
    assert all("base64" not in key for key in item) and "data" not in item["image"]
    assert item["image"]["filename"] == "fundus.png"
    assert item["image"]["content_type"] == "image/png"
    assert item["result"] == {
        "class_code": "diabetic_retinopathy",
        "label": "Diabetic retinopathy",
        "probability": pytest.approx(0.7),
    }
    assert [p["class_code"] for p in item["probabilities"]] == [
        "glaucoma",
        "diabetic_retinopathy",
        "normal",
        "cataract",
    ]
    assert item["created_at"] == "2025-03-10T12:00:00Z"
    assert item["feedback"] is None


async def test_labels_follow_locale(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app, locale="es")
    await add_prediction(app, doctor.id, predicted_class="cataract")
    (item,) = (await page(client, doctor))["items"]
    assert item["result"]["label"] == "Catarata"


async def test_unknown_class_code_is_its_own_label(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    old_codes = ["glaucoma", "keratoconus"]
    await add_prediction(
        app,
        doctor.id,
        predicted_class="keratoconus",
        class_codes=old_codes,
        probabilities=[0.2, 0.8],
    )
    (item,) = (await page(client, doctor))["items"]
    assert item["result"]["label"] == "keratoconus"


async def test_list_never_shows_other_users_rows(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    b = await make_doctor(app)
    mine = [(await add_prediction(app, a.id, filename=f"a{i}.jpg")).id for i in range(3)]
    for i in range(4):
        await add_prediction(app, b.id, filename=f"b{i}.jpg", patient_ref="shared")
    assert sorted(await ids(client, a, page_size=100)) == sorted(mine)
    assert (await page(client, a))["total"] == 3
    # Not through filters either.
    assert await ids(client, a, q="b") == []
    assert await ids(client, a, patient_ref="shared") == []
    assert (await page(client, b))["total"] == 4


# --------------------------------------------------------------------------- pagination


async def test_pages_and_past_the_end(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    rows = [
        await add_prediction(app, doctor.id, created_at=T0 + timedelta(minutes=i)) for i in range(5)
    ]
    newest_first = [r.id for r in reversed(rows)]
    assert await ids(client, doctor, page_size=2, page=1) == newest_first[0:2]
    assert await ids(client, doctor, page_size=2, page=2) == newest_first[2:4]
    assert await ids(client, doctor, page_size=2, page=3) == newest_first[4:5]
    past = await page(client, doctor, page_size=2, page=4)
    assert past == {
        "items": [],
        "total": 5,
        "total_is_estimate": False,
        "page": 4,
        "page_size": 2,
    }
    far = await page(client, doctor, page_size=100, page=1000)
    assert far["items"] == [] and far["total"] == 5
    default = await page(client, doctor)
    assert default["page"] == 1 and default["page_size"] == 20 and len(default["items"]) == 5


async def test_total_is_exact_up_to_the_count_limit_then_a_lower_bound(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(history_count_limit=4) as client:
        app = app_of(client)
        doctor = await make_doctor(app)
        other = await make_doctor(app)
        for i in range(7):
            await add_prediction(
                app,
                doctor.id,
                predicted_class="glaucoma" if i < 4 else "normal",
                created_at=T0 + timedelta(minutes=i),
            )
        for _ in range(6):  # another doctor's rows never count
            await add_prediction(app, other.id, predicted_class="normal")

        exact = await page(client, doctor, predicted_class="glaucoma")  # 4: at the limit
        assert (exact["total"], exact["total_is_estimate"]) == (4, False)
        few = await page(client, doctor, predicted_class="normal")
        assert (few["total"], few["total_is_estimate"]) == (3, False)

        first = await page(client, doctor, page_size=2)  # 7 match: more than 4
        assert (first["total"], first["total_is_estimate"]) == (5, True)  # limit + 1
        assert len(first["items"]) == 2
        deep = await page(client, doctor, page_size=3, page=2)  # records up to here: 6
        assert (deep["total"], deep["total_is_estimate"]) == (6, True)
        last = await page(client, doctor, page_size=3, page=3)
        assert (last["total"], last["total_is_estimate"], len(last["items"])) == (7, True, 1)
        past = await page(client, doctor, page_size=3, page=9)
        assert (past["items"], past["total"], past["total_is_estimate"]) == ([], 5, True)


async def test_page_size_bounds(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(app_of(client))
    for params in ({"page_size": 0}, {"page_size": 101}, {"page": 0}, {"page": -1}):
        response = await client.get(URL, params=params, headers=doctor.headers)
        assert response.status_code == 422, params
        assert response.json()["code"] == "VALIDATION_ERROR"
    for size in (1, 100):
        assert (await page(client, doctor, page_size=size))["page_size"] == size


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "probability"},
        {"sort": "user_id"},
        {"order": "up"},
        {"feedback": "maybe"},
        {"predicted_class": "Not A Code"},
        {"tz": "Mars/Olympus"},
        {"tz": "America"},
        {"date_from": "yesterday"},
        {"date_from": "2025-02-30"},
        {"date_to": "2025-03-10T10:00:00"},  # a datetime needs an offset
        {"q": "x" * 256},
        {"patient_ref": "p" * 65},
    ],
)
async def test_invalid_query_is_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    doctor = await make_doctor(app_of(client))
    response = await client.get(URL, params=params, headers=doctor.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"


# --------------------------------------------------------------------------- sorting


@pytest.fixture
async def sortable(client: httpx.AsyncClient) -> tuple[Doctor, list[Prediction]]:
    """Rows with ties on every key, inserted out of order, so id tie-breaks show."""
    app = app_of(client)
    doctor = await make_doctor(app)
    specs = [
        # (minutes after T0, class, verdict, filename)
        (5, "normal", "correct", "delta.jpg"),
        (1, "glaucoma", None, "alpha.jpg"),
        (5, "cataract", "incorrect", "Charlie.jpg"),
        (3, "normal", None, "bravo.jpg"),
        (2, "glaucoma", "correct", "alpha.jpg"),
        (4, "diabetic_retinopathy", "incorrect", "echo.png"),
        (0, "cataract", None, "Bravo2.jpg"),
    ]
    rows = [
        await add_prediction(
            app,
            doctor.id,
            created_at=T0 + timedelta(minutes=m),
            predicted_class=cls,
            verdict=verdict,
            filename=name,
        )
        for m, cls, verdict, name in specs
    ]
    return doctor, rows


SORT_KEYS: dict[str, Callable[[Prediction], Any]] = {
    "created_at": lambda r: r.created_at,
    "predicted_class": lambda r: r.predicted_class,
    # No feedback first (ascending), then correct, then incorrect.
    "feedback": lambda r: (r.feedback_verdict is not None, r.feedback_verdict or ""),
    "filename": lambda r: r.original_filename.lower(),
    "id": lambda r: 0,
}


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("sort", list(SORT_KEYS))
async def test_sort_keys_and_orders_with_id_tiebreak(
    client: httpx.AsyncClient,
    sortable: tuple[Doctor, list[Prediction]],
    sort: str,
    order: str,
) -> None:
    doctor, rows = sortable
    key = SORT_KEYS[sort]
    expected = [r.id for r in sorted(rows, key=lambda r: (key(r), r.id), reverse=order == "desc")]
    assert await ids(client, doctor, sort=sort, order=order) == expected
    # Paging through the same order gives the same sequence (stable across pages).
    paged: list[int] = []
    for number in range(1, 5):
        paged += await ids(client, doctor, sort=sort, order=order, page_size=2, page=number)
    assert paged == expected


async def test_default_order_per_sort_key(
    client: httpx.AsyncClient, sortable: tuple[Doctor, list[Prediction]]
) -> None:
    doctor, _ = sortable
    assert await ids(client, doctor) == await ids(client, doctor, sort="created_at", order="desc")
    assert await ids(client, doctor, sort="id") == await ids(
        client, doctor, sort="id", order="desc"
    )
    for sort in ("predicted_class", "feedback", "filename"):
        assert await ids(client, doctor, sort=sort) == await ids(
            client, doctor, sort=sort, order="asc"
        )


# --------------------------------------------------------------------------- filters


async def test_filter_predicted_class_and_feedback(
    client: httpx.AsyncClient, sortable: tuple[Doctor, list[Prediction]]
) -> None:
    doctor, rows = sortable

    def expect(pred: Callable[[Prediction], bool]) -> list[int]:
        chosen = [r for r in rows if pred(r)]
        return [r.id for r in sorted(chosen, key=lambda r: (r.created_at, r.id), reverse=True)]

    assert await ids(client, doctor, predicted_class="glaucoma") == expect(
        lambda r: r.predicted_class == "glaucoma"
    )
    assert await ids(client, doctor, predicted_class="keratoconus") == []
    assert await ids(client, doctor, feedback="correct") == expect(
        lambda r: r.feedback_verdict == "correct"
    )
    assert await ids(client, doctor, feedback="incorrect") == expect(
        lambda r: r.feedback_verdict == "incorrect"
    )
    assert await ids(client, doctor, feedback="none") == expect(
        lambda r: r.feedback_verdict is None
    )
    # Filters compose, with sorting and totals.
    body = await page(client, doctor, predicted_class="cataract", feedback="none", sort="id")
    assert body["total"] == 1
    assert [i["id"] for i in body["items"]] == expect(
        lambda r: r.predicted_class == "cataract" and r.feedback_verdict is None
    )
    body = await page(client, doctor, predicted_class="normal", page_size=1, page=2)
    assert body["total"] == 2 and len(body["items"]) == 1


async def test_filter_q_matches_filename_or_patient_ref(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    a = await add_prediction(app, doctor.id, filename="Retina_Left.JPG", patient_ref="H-100")
    b = await add_prediction(app, doctor.id, filename="other.png", patient_ref="retina-clinic")
    c = await add_prediction(app, doctor.id, filename="x.jpg", patient_ref=None)
    assert set(await ids(client, doctor, q="retina")) == {a.id, b.id}  # case-insensitive
    assert await ids(client, doctor, q="h-10") == [a.id]
    assert await ids(client, doctor, q="x.j") == [c.id]
    assert await ids(client, doctor, q="nothing") == []
    assert len(await ids(client, doctor, q="")) == 3  # empty: no filter


async def test_q_treats_like_wildcards_literally(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    pct = await add_prediction(app, doctor.id, filename="100%_sure.jpg")
    plain = await add_prediction(app, doctor.id, filename="100x-sure.jpg")
    under = await add_prediction(app, doctor.id, filename="a_b.jpg")
    axb = await add_prediction(app, doctor.id, filename="axb.jpg")
    slash = await add_prediction(app, doctor.id, filename="a/b.jpg")
    backslash = await add_prediction(app, doctor.id, filename="c\\d.jpg")
    cxd = await add_prediction(app, doctor.id, filename="cd.jpg")
    assert await ids(client, doctor, q="%") == [pct.id]
    assert await ids(client, doctor, q="100%") == [pct.id]
    assert await ids(client, doctor, q="%_") == [pct.id]
    assert set(await ids(client, doctor, q="_")) == {pct.id, under.id}
    assert await ids(client, doctor, q="a_b") == [under.id]
    assert await ids(client, doctor, q="a/b") == [slash.id]
    assert await ids(client, doctor, q="\\") == [backslash.id]
    assert await ids(client, doctor, q="c\\d") == [backslash.id]
    assert plain.id not in await ids(client, doctor, q="0%")
    assert axb.id not in await ids(client, doctor, q="a_b")
    assert cxd.id not in await ids(client, doctor, q="c\\d")


async def test_filter_patient_ref_exact(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    a = await add_prediction(app, doctor.id, patient_ref="P-1")
    await add_prediction(app, doctor.id, patient_ref="P-10")
    await add_prediction(app, doctor.id, patient_ref=None)
    assert await ids(client, doctor, patient_ref="P-1") == [a.id]
    assert await ids(client, doctor, patient_ref="P") == []


@pytest.fixture
async def around_midnight(client: httpx.AsyncClient) -> tuple[Doctor, dict[str, int]]:
    """Rows at the edges of 2025-03-10 in Lima (UTC-5)."""
    app = app_of(client)
    doctor = await make_doctor(app)
    local = {
        "before": datetime(2025, 3, 9, 23, 59, 59, tzinfo=LIMA),
        "start": datetime(2025, 3, 10, 0, 0, 0, tzinfo=LIMA),
        "late": datetime(2025, 3, 10, 23, 30, 0, tzinfo=LIMA),  # 2025-03-11 04:30 UTC
        "last": datetime(2025, 3, 10, 23, 59, 59, tzinfo=LIMA),
        "next": datetime(2025, 3, 11, 0, 0, 0, tzinfo=LIMA),
    }
    made = {k: (await add_prediction(app, doctor.id, created_at=v)).id for k, v in local.items()}
    return doctor, made


async def test_plain_dates_cover_whole_local_days(
    client: httpx.AsyncClient, around_midnight: tuple[Doctor, dict[str, int]]
) -> None:
    doctor, made = around_midnight
    day = {"date_from": "2025-03-10", "date_to": "2025-03-10", "tz": "America/Lima"}
    assert set(await ids(client, doctor, **day)) == {made["start"], made["late"], made["last"]}
    # DEFAULT_TIMEZONE is America/Lima.
    assert set(await ids(client, doctor, date_from="2025-03-10", date_to="2025-03-10")) == {
        made["start"],
        made["late"],
        made["last"],
    }
    # The same dates read in UTC are other instants.
    utc_day = {"date_from": "2025-03-10", "date_to": "2025-03-10", "tz": "UTC"}
    assert set(await ids(client, doctor, **utc_day)) == {made["before"], made["start"]}
    assert set(await ids(client, doctor, date_from="2025-03-11")) == {made["next"]}
    assert set(await ids(client, doctor, date_to="2025-03-09")) == {made["before"]}


async def test_datetime_bounds_are_inclusive_instants(
    client: httpx.AsyncClient, around_midnight: tuple[Doctor, dict[str, int]]
) -> None:
    doctor, made = around_midnight
    # 23:30 Lima written in UTC and with its own offset: the same instant.
    for late in ("2025-03-11T04:30:00Z", "2025-03-10T23:30:00-05:00", "2025-03-11T04:30:00+00:00"):
        assert made["late"] in await ids(client, doctor, date_from=late, date_to=late)
        assert set(await ids(client, doctor, date_from=late, date_to=late)) == {made["late"]}
    assert set(await ids(client, doctor, date_to="2025-03-11T04:29:59Z")) == {
        made["before"],
        made["start"],
    }
    assert set(await ids(client, doctor, date_from="2025-03-11T04:30:01Z")) == {
        made["last"],
        made["next"],
    }
    # A date and a datetime mix.
    assert set(
        await ids(client, doctor, date_from="2025-03-10", date_to="2025-03-10T23:30:00-05:00")
    ) == {made["start"], made["late"]}


async def test_date_from_after_date_to_is_422(
    client: httpx.AsyncClient, around_midnight: tuple[Doctor, dict[str, int]]
) -> None:
    doctor, _ = around_midnight
    response = await client.get(
        URL, params={"date_from": "2025-03-11", "date_to": "2025-03-10"}, headers=doctor.headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
