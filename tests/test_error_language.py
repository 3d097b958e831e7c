"""Error details in the caller's language (API.md, third wave): Accept-Language (es, en),
else the authenticated caller's locale, else English; the code never changes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.api.error_i18n import SPANISH_BY_CODE, from_accept_language
from tests.support.factories import app_of, make_doctor

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def all_schema_codes() -> set[str]:
    """Every code an error body of the committed schema can carry."""
    schemas = json.loads(SCHEMA.read_text("utf-8"))["components"]["schemas"]
    codes: set[str] = set()
    for name, schema in schemas.items():
        if name.startswith("Error"):
            codes.update(schema["properties"]["code"].get("enum", []))
    assert codes, "no error codes found in docs/openapi.json"
    return codes


ME = "/api/v1/auth/me"
MISSING = "/api/v1/history/999999"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("es", "es"),
        ("es-PE,es;q=0.9,en;q=0.8", "es"),
        ("en-US,en;q=0.9,es;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,es;q=0.5,en;q=0.4", "es"),
        ("en;q=0.2, es;q=0.7", "es"),
        ("es;q=0, en", "en"),
        ("fr, de", None),
        ("", None),
        ("es;q=abc", None),
        (";;,,", None),
    ],
)
def test_accept_language_negotiation(header: str, expected: str | None) -> None:
    assert from_accept_language(header) == expected


def test_every_schema_code_has_a_spanish_message() -> None:
    missing = sorted(all_schema_codes() - set(SPANISH_BY_CODE))
    assert missing == []


async def test_anonymous_errors_follow_accept_language_else_english(
    client: httpx.AsyncClient,
) -> None:
    english = await client.get(ME)
    assert english.json() == {"detail": "Not authenticated", "code": "NOT_AUTHENTICATED"}
    spanish = await client.get(ME, headers={"Accept-Language": "es-PE,es;q=0.9"})
    assert spanish.status_code == 401
    assert spanish.json() == {"detail": "No autenticado", "code": "NOT_AUTHENTICATED"}
    unsupported = await client.get(ME, headers={"Accept-Language": "fr"})
    assert unsupported.json()["detail"] == "Not authenticated"
    # The router's own 404 and a login failure too.
    response = await client.get("/api/v1/nowhere", headers={"Accept-Language": "es"})
    assert response.json() == {"detail": "No encontrado", "code": "NOT_FOUND"}
    response = await client.post(
        "/api/v1/auth/login",
        data={"username": "nobody@example.com", "password": "whatever-123"},
        headers={"Accept-Language": "es"},
    )
    assert response.json() == {
        "detail": "Correo o contraseña incorrectos",
        "code": "INVALID_CREDENTIALS",
    }


async def test_authenticated_errors_fall_back_to_the_users_locale(
    client: httpx.AsyncClient,
) -> None:
    app = app_of(client)
    spanish_doctor = await make_doctor(app, locale="es")
    english_doctor = await make_doctor(app, locale="en")

    response = await client.get(MISSING, headers=spanish_doctor.headers)
    assert response.json() == {"detail": "Predicción no encontrada", "code": "NOT_FOUND"}
    response = await client.get(MISSING, headers=english_doctor.headers)
    assert response.json() == {"detail": "Prediction not found", "code": "NOT_FOUND"}
    # Accept-Language wins over the locale, both ways.
    response = await client.get(
        MISSING, headers={**spanish_doctor.headers, "Accept-Language": "en"}
    )
    assert response.json()["detail"] == "Prediction not found"
    response = await client.get(
        MISSING, headers={**english_doctor.headers, "Accept-Language": "es"}
    )
    assert response.json()["detail"] == "Predicción no encontrada"
    # The locale of one request does not stick to the next anonymous one.
    assert (await client.get(ME)).json()["detail"] == "Not authenticated"
    # Validation problem lists stay as they are (structured, for programs).
    response = await client.get(
        "/api/v1/history?page=0", headers={**spanish_doctor.headers, "Accept-Language": "es"}
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert response.json()["code"] == "VALIDATION_ERROR"
