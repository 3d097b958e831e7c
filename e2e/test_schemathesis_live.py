"""Schema fuzzing of the live server with schemathesis: every operation of /openapi.json.

Run by `e2e/run.py` (so by `make e2e`), which starts the server and sets OCUPREDICT_URL and
OCUPREDICT_MAIL_DIR; not part of `make test` (pytest's testpaths is tests/).

- Every operation, positive and negative data, the examples, coverage and fuzzing phases;
  up to SCHEMATHESIS_MAX_EXAMPLES (default 50) fuzzed cases per operation, on top of the
  coverage phase's boundary cases. Seed SCHEMATHESIS_SEED (default fixed: a run repeats).
- Checks: not_a_server_error, status_code_conformance (only declared statuses),
  content_type_conformance, response_schema_conformance. Nothing is excluded.
- Authenticated: a user registered and verified through the API (code read from the
  captured mail); its bearer token goes with every request.
- The users and audit admin operations run again with an administrator's token (made by
  e2e/run.py with `ocupredict create-admin`), their {id} pinned to a doctor registered for
  the purpose, so that the 200 paths of disable / enable / role are fuzzed too.
- The model registry's admin operations run with that administrator's token too: with
  generated versions and with the active version.
- The history operations run twice: once with generated ids (mostly 404), once with the
  id of a real prediction of that user, so the 200 paths (detail, image, feedback, ...)
  are fuzzed too; DELETE gets its own prediction.

The cases run per operation are printed at the end (and written to
$OCUPREDICT_SCREENSHOT_DIR/../schemathesis-cases.json when that is set).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

BASE_URL = os.environ.get("OCUPREDICT_URL", "").rstrip("/")
MAIL_DIR = os.environ.get("OCUPREDICT_MAIL_DIR", "")
if not BASE_URL or not MAIL_DIR:
    pytest.fail(
        "OCUPREDICT_URL / OCUPREDICT_MAIL_DIR are not set: run `make e2e` "
        "(or `.venv/bin/python e2e/run.py --only schemathesis`)",
        pytrace=False,
    )
API = f"{BASE_URL}/api/v1"
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "50"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20260415"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CASES: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}


# --------------------------------------------------------------------------- a real user


def _code_for(email: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(Path(MAIL_DIR).glob("*.json")):
            mail = json.loads(path.read_text(encoding="utf-8"))
            if email in mail["to"]:
                codes = set(re.findall(r"(?<!\d)\d{6}(?!\d)", mail["text"]))
                assert len(codes) == 1, codes
                return codes.pop()
        time.sleep(0.1)
    raise AssertionError(f"no mail for {email} in {MAIL_DIR}")


def _expect(response: requests.Response, status: int) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.url}: {response.status_code} {response.text}"
    )
    return response.json() if response.content else None


def _jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (150, 60, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _prepare() -> tuple[dict[str, str], int, int]:
    email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": "fuzz-Password-0123", "name": "Dr. Fuzz"}
    _expect(requests.post(f"{API}/auth/register", json=body, timeout=30), 201)
    verify = {"email": email, "code": _code_for(email)}
    tokens = _expect(requests.post(f"{API}/auth/verify", json=verify, timeout=30), 200)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    ids = []
    for ref in ("FUZZ-1", "FUZZ-2"):
        files = {"file": ("fuzz.jpg", _jpeg(), "image/jpeg")}
        response = requests.post(
            f"{API}/predict", files=files, data={"patient_ref": ref}, headers=headers, timeout=60
        )
        ids.append(_expect(response, 201)["id"])
    return headers, ids[0], ids[1]


AUTH_HEADERS, PREDICTION_ID, DELETABLE_ID = _prepare()


def _prepare_admin() -> tuple[dict[str, str], int, str]:
    """The administrator e2e/run.py created, a doctor of its own to administer (the
    admin run's {id}), so that disabling or demoting someone never hits the fuzz user,
    and the active model version (a real {version} for the model registry routes)."""
    form = {
        "username": os.environ["OCUPREDICT_ADMIN_EMAIL"],
        "password": os.environ["OCUPREDICT_ADMIN_PASSWORD"],
    }
    tokens = _expect(requests.post(f"{API}/auth/login", data=form, timeout=30), 200)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    email = f"managed-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": "managed-Password-0123", "name": "Dr. Managed"}
    managed = _expect(requests.post(f"{API}/auth/register", json=body, timeout=30), 201)
    models = _expect(requests.get(f"{API}/admin/models", headers=headers, timeout=30), 200)
    active = next(m["version"] for m in models if m["status"] == "active")
    return headers, int(managed["id"]), active


ADMIN_HEADERS, MANAGED_USER_ID, ACTIVE_VERSION = _prepare_admin()


# --------------------------------------------------------------------------- schemas


def _config(headers: dict[str, str] = AUTH_HEADERS, **extra: Any) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": BASE_URL,
            "headers": headers,
            "request-timeout": 60,
            # No example database: a run depends on the seed only, and writes nothing here.
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            **extra,
        }
    )


schema = schemathesis.openapi.from_url(f"{BASE_URL}/openapi.json", config=_config())
pinned = (
    schemathesis.openapi.from_url(
        f"{BASE_URL}/openapi.json", config=_config(parameters={"id": PREDICTION_ID})
    )
    .include(path_regex=r"/history/\{id\}")
    .exclude(method="DELETE")
)
pinned_delete = schemathesis.openapi.from_url(
    f"{BASE_URL}/openapi.json", config=_config(parameters={"id": DELETABLE_ID})
).include(path_regex=r"/history/\{id\}$", method="DELETE")

# The users and audit routes again with the admin's token (the generic run sees their 403).
as_admin = schemathesis.openapi.from_url(
    f"{BASE_URL}/openapi.json",
    config=_config(headers=ADMIN_HEADERS, parameters={"id": MANAGED_USER_ID}),
).include(path_regex=r"/admin/(users|audit)")


# The model registry as an administrator (the generic run above sends the doctor's token:
# 403 there): once with generated versions (mostly 404), once with the active version.
admin = schemathesis.openapi.from_url(
    f"{BASE_URL}/openapi.json", config=_config(headers=ADMIN_HEADERS)
).include(path_regex=r"/admin/models")
admin_pinned = schemathesis.openapi.from_url(
    f"{BASE_URL}/openapi.json",
    config=_config(headers=ADMIN_HEADERS, parameters={"version": ACTIVE_VERSION}),
).include(path_regex=r"/admin/models/\{version\}")


def _run(case: schemathesis.Case, label: str) -> None:
    response = case.call_and_validate(checks=CHECKS, allow_redirects=False)
    CASES[label] += 1
    STATUSES.setdefault(label, Counter())[response.status_code] += 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    width = max((len(k) for k in CASES), default=10)
    print(f"\nschemathesis cases per operation (max-examples {MAX_EXAMPLES}, seed {SEED}):")
    for label in sorted(CASES):
        statuses = ", ".join(f"{s}x{n}" for s, n in sorted(STATUSES[label].items()))
        print(f"  {label:<{width}} {CASES[label]:>5}   {statuses}")
    print(f"  {'total':<{width}} {sum(CASES.values()):>5} over {len(CASES)} operation runs")
    out = os.environ.get("OCUPREDICT_SCREENSHOT_DIR")
    if out:
        path = Path(out).parent / "schemathesis-cases.json"
        data = {k: {"cases": CASES[k], "statuses": dict(STATUSES[k])} for k in sorted(CASES)}
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")


# Defined in this order on purpose (pytest keeps it): the pinned runs first, while the
# predictions exist; the generic run's DELETE may remove them afterwards.


@pinned.parametrize()
def test_operation_on_own_prediction(case: schemathesis.Case) -> None:
    _run(case, f"{case.operation.label} [own id]")


@pinned_delete.parametrize()
def test_delete_own_prediction(case: schemathesis.Case) -> None:
    _run(case, f"{case.operation.label} [own id]")


@admin_pinned.parametrize()
def test_admin_operation_on_the_active_version(case: schemathesis.Case) -> None:
    _run(case, f"{case.operation.label} [admin, active version]")


@admin.parametrize()
def test_model_registry_operation(case: schemathesis.Case) -> None:
    # Before the users/audit run below, which may disable or demote accounts.
    _run(case, f"{case.operation.label} [admin]")


@as_admin.parametrize()
def test_admin_operation(case: schemathesis.Case) -> None:
    _run(case, f"{case.operation.label} [admin]")


@schema.parametrize()
def test_operation(case: schemathesis.Case) -> None:
    _run(case, case.operation.label)


# --------------------------------------------------------------------------- chosen extremes

# Cases a fuzzer reaches only by luck: dates at the ends of the calendar (a +14:00 offset
# on year 1, the last day of year 9999), a cursor beyond the id range, and a body far over
# MAX_BODY_KB. Each must be an answer the schema declares (422, 413), never a 500.
EXTREME_DATES = (
    {"date_to": "9999-12-31"},
    {"date_from": "0001-01-01T00:00:00+14:00"},
    {"date_from": "0001-01-01", "tz": "Pacific/Kiritimati"},
    {"date_to": "9999-12-31T23:59:59-12:00"},
)
EXTREME_CASES: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
    *(("/api/v1/history", "GET", AUTH_HEADERS, {"query": q}) for q in EXTREME_DATES),
    *(("/api/v1/admin/audit", "GET", ADMIN_HEADERS, {"query": q}) for q in EXTREME_DATES),
    *(("/api/v1/admin/audit/export", "GET", ADMIN_HEADERS, {"query": q}) for q in EXTREME_DATES),
    *(
        ("/api/v1/admin/models/{version}/metrics", "GET", ADMIN_HEADERS, {"query": q})
        for q in EXTREME_DATES
    ),
    ("/api/v1/admin/audit", "GET", ADMIN_HEADERS, {"query": {"cursor": "9223372036854775808"}}),
    ("/api/v1/auth/me/activity", "GET", AUTH_HEADERS, {"query": {"cursor": "9" * 19}}),
    (
        "/api/v1/auth/refresh",
        "POST",
        {},
        {"body": {"refresh_token": "x" * (2 * 1024 * 1024)}, "media_type": "application/json"},
    ),
    (
        "/api/v1/auth/register",
        "POST",
        {},
        {"body": {"email": "big@example.com", "password": "p" * 3_000_000, "name": "Big"}},
    ),
]


@pytest.mark.parametrize(
    ("path", "method", "headers", "parts"),
    EXTREME_CASES,
    ids=[
        f"{m} {p} {sorted(parts.get('query', {}).items()) or 'large body'}"
        for p, m, _, parts in EXTREME_CASES
    ],
)
def test_chosen_extremes(
    path: str, method: str, headers: dict[str, str], parts: dict[str, Any]
) -> None:
    case = schema[path][method].Case(
        path_parameters={"version": ACTIVE_VERSION} if "{version}" in path else None, **parts
    )
    response = case.call_and_validate(checks=CHECKS, headers=headers, allow_redirects=False)
    label = f"{method} {path} [extreme]"
    CASES[label] += 1
    STATUSES.setdefault(label, Counter())[response.status_code] += 1
    assert response.status_code in (413, 422), response.text[:300]
