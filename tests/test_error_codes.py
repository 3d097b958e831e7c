"""Every error code a route answers is in that operation's schema.

The schema's per-operation code enums come from the routes' `error_responses(...)`
declarations; tests/support/error_codes.py records every error response the whole suite gets
back (each test client wraps the app in ErrorRecorder), and the last test below checks
each (operation, status, code) against the app's own schema. The tests before it show
that the check does catch an undeclared code, and give it records of its own when this
file runs alone.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from app.api.errors import SHORTHAND, error_model, error_responses
from app.errors import (
    EmailNotVerified,
    InvalidCode,
    InvalidCredentials,
    KnownError,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from tests.support.error_codes import RECORDS, SCHEMAS, Answered, declared_codes, undeclared
from tests.support.factories import app_of, make_doctor

API = "/api/v1"


def _login_schema(*errors: type[KnownError] | int) -> dict[int, dict[str, object]]:
    router = APIRouter()

    @router.post("/login", responses=error_responses(*errors))
    async def login() -> None: ...

    app = FastAPI()
    app.include_router(router)
    return {0: app.openapi()}


def test_an_undeclared_code_is_caught() -> None:
    schemas = _login_schema(InvalidCredentials, ValidationFailed)
    seen = [
        Answered("POST", "/login", 401, "INVALID_CREDENTIALS", 0),
        Answered("POST", "/login", 422, "VALIDATION_ERROR", 0),
    ]
    assert undeclared(seen, schemas) == []
    wrong_code = Answered("POST", "/login", 401, "NOT_AUTHENTICATED", 0)
    wrong_status = Answered("POST", "/login", 403, "EMAIL_NOT_VERIFIED", 0)
    assert undeclared([*seen, wrong_code, wrong_status], schemas) == [
        "POST /login: 401 NOT_AUTHENTICATED: code not in the documented ['INVALID_CREDENTIALS']",
        "POST /login: 403 EMAIL_NOT_VERIFIED: status 403 not documented",
    ]
    crash = Answered("POST", "/login", 500, "INTERNAL_ERROR", 0)
    assert undeclared([crash], schemas) == []


def test_codes_of_one_status_become_one_enum() -> None:
    schema = _login_schema(InvalidCredentials, EmailNotVerified, RateLimited, ValidationFailed)[0]
    assert declared_codes(schema, "POST", "/login", 401) == {"INVALID_CREDENTIALS"}
    assert declared_codes(schema, "POST", "/login", 403) == {"EMAIL_NOT_VERIFIED"}
    assert declared_codes(schema, "POST", "/login", 429) == {"RATE_LIMITED"}
    assert declared_codes(schema, "POST", "/login", 400) is None
    both = _login_schema(InvalidCode, NotFound, 404, ValidationFailed)[0]
    assert declared_codes(both, "POST", "/login", 404) == {"NOT_FOUND"}
    component = both["components"]["schemas"]["ErrorInvalidCode"]
    assert component["properties"]["code"]["enum"] == ["INVALID_CODE"]
    assert error_model(("INVALID_CODE",)) is error_model(("INVALID_CODE",))


def test_a_bare_status_means_its_generic_code_only() -> None:
    assert {status: cls.code for status, cls in SHORTHAND.items()} == {
        401: "NOT_AUTHENTICATED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        413: "FILE_TOO_LARGE",
        422: "VALIDATION_ERROR",
        429: "RATE_LIMITED",
    }
    for ambiguous in (400, 409, 415, 503):
        with pytest.raises(TypeError, match="name the KnownError classes"):
            error_responses(ambiguous)
    with pytest.raises(TypeError, match="not a KnownError subclass"):
        error_responses(KnownError)


async def test_a_few_errors_of_the_real_app_are_recorded(client: httpx.AsyncClient) -> None:
    before = len(RECORDS)
    form = {"username": "nobody@example.com", "password": "wrong-password-1"}
    assert (await client.post(f"{API}/auth/login", data=form)).status_code == 401
    doctor = await make_doctor(app_of(client))
    missing = await client.get(f"{API}/history/999", headers=doctor.headers)
    assert missing.status_code == 404
    answered = {(r.path, r.status, r.code) for r in RECORDS[before:]}
    assert answered == {
        (f"{API}/auth/login", 401, "INVALID_CREDENTIALS"),
        (f"{API}/history/{{id}}", 404, "NOT_FOUND"),
    }


def test_every_error_answered_is_declared() -> None:
    """Runs after every other test of the session (tests/conftest.py orders it last)."""
    assert RECORDS, "no error response was recorded"
    problems = undeclared(RECORDS, SCHEMAS)
    operations = {(r.method, r.path, r.status, r.code) for r in RECORDS}
    assert not problems, (
        f"{len(problems)} error responses (of {len(operations)} distinct ones recorded) "
        "are not in their operation's schema; declare them with error_responses(...):\n  "
        + "\n  ".join(problems)
    )
