"""The committed OpenAPI snapshot (docs/openapi.json) is the app's schema, and the schema
keeps the conventions the generated TypeScript client relies on.

The client in clients/typescript is generated from the snapshot, so a change to a route or
a schema that is not followed by `make openapi` fails here first.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from app.config import Settings
from app.main import create_app
from tests.support.harness import ROOT

SNAPSHOT = ROOT / "docs" / "openapi.json"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
ERROR_REF_PREFIX = "#/components/schemas/"


def app_schema() -> dict[str, Any]:
    """The schema as `make openapi` writes it: default settings, JSON round trip."""
    settings = Settings(_env_file=None, api_prefix="/api/v1")  # type: ignore[call-arg]
    return json.loads(json.dumps(create_app(settings).openapi()))


def differences(expected: Any, actual: Any, path: str = "") -> Iterator[str]:
    """JSON pointers where two documents differ, with a short description."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected.keys() | actual.keys(), key=str):
            where = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in actual:
                yield f"{where}: only in the snapshot"
            elif key not in expected:
                yield f"{where}: only in the app"
            else:
                yield from differences(expected[key], actual[key], where)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (a, b) in enumerate(zip(expected, actual, strict=True)):
            yield from differences(a, b, f"{path}/{index}")
    elif expected != actual:
        before, after = json.dumps(expected)[:80], json.dumps(actual)[:80]
        yield f"{path or '/'}: snapshot {before} != app {after}"


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return app_schema()


def test_snapshot_matches_the_app(schema: dict[str, Any]) -> None:
    assert SNAPSHOT.exists(), "docs/openapi.json is missing: run `make openapi` and commit it"
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    diff = list(differences(snapshot, schema))
    assert not diff, (
        "docs/openapi.json differs from the app's OpenAPI schema; run `make openapi` and "
        "commit docs/openapi.json (the TypeScript client is generated from it):\n  "
        + "\n  ".join(diff[:25])
        + (f"\n  ... and {len(diff) - 25} more" if len(diff) > 25 else "")
    )


def test_snapshot_is_written_deterministically() -> None:
    """`make openapi` output: sorted keys, two-space indent, trailing newline."""
    text = SNAPSHOT.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n", (
        "docs/openapi.json was not written by `make openapi`; run it"
    )


def test_a_changed_response_field_is_caught(schema: dict[str, Any]) -> None:
    """The comparison above does notice a renamed response field (the drift it guards)."""
    changed = copy.deepcopy(schema)
    user = changed["components"]["schemas"]["User"]
    user["properties"]["mail"] = user["properties"].pop("email")
    diff = list(differences(schema, changed))
    assert "/components/schemas/User/properties/email: only in the snapshot" in diff
    assert "/components/schemas/User/properties/mail: only in the app" in diff


def test_operation_ids_are_tag_dash_function(schema: dict[str, Any]) -> None:
    seen = set()
    for method, path, operation in operations(schema):
        op_id = operation.get("operationId", "")
        tags = operation.get("tags", [])
        assert len(tags) == 1, f"{method} {path}: exactly one tag, got {tags}"
        assert re.fullmatch(rf"{tags[0]}-[a-z][a-z0-9_]*", op_id), (
            f"{method} {path}: operation id {op_id!r} is not '{tags[0]}-<function>'"
        )
        assert op_id not in seen, f"duplicate operation id {op_id}"
        seen.add(op_id)
        assert operation.get("summary"), f"{op_id}: no summary"


def _error_codes(schema: dict[str, Any], response: dict[str, Any]) -> list[str] | None:
    """The code enum of an error response's body, or None when it has none."""
    ref = response.get("content", {}).get("application/json", {}).get("schema", {})
    name = str(ref.get("$ref", "")).removeprefix(ERROR_REF_PREFIX)
    component = schema["components"]["schemas"].get(name, {})
    if not name.startswith("Error") or set(component.get("required", [])) != {"detail", "code"}:
        return None
    enum = component["properties"]["code"].get("enum")
    return list(enum) if enum else None


def test_every_error_response_has_its_code_enum(schema: dict[str, Any]) -> None:
    """4xx/5xx answers are declared with a {"detail", "code"} body whose code is an enum
    of that operation's codes (error_responses), so a generated client can switch on them;
    health-ready's 503 is its Ready body by design."""
    problems = []
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            if operation["operationId"] == "health-ready" and status == "503":
                continue
            codes = _error_codes(schema, response)
            if not codes:
                problems.append(f"{method} {path} {status}: {response.get('content')}")
            elif codes != sorted(set(codes)) or not all(re.fullmatch(r"[A-Z_]+", c) for c in codes):
                problems.append(f"{method} {path} {status}: codes {codes}")
    assert not problems, "error responses without a code enum:\n" + "\n".join(problems)


def test_login_documents_its_codes(schema: dict[str, Any]) -> None:
    responses = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]
    codes = {status: _error_codes(schema, r) for status, r in responses.items() if status >= "4"}
    assert codes == {
        "401": ["INVALID_CREDENTIALS"],
        "403": ["ACCOUNT_DISABLED", "EMAIL_NOT_VERIFIED"],
        "413": ["PAYLOAD_TOO_LARGE"],
        "422": ["VALIDATION_ERROR"],
        "429": ["RATE_LIMITED"],
        "503": ["DATABASE_UNAVAILABLE"],
    }
    predict = schema["paths"]["/api/v1/predict"]["post"]["responses"]
    assert _error_codes(schema, predict["422"]) == [
        "IDEMPOTENCY_KEY_REUSED",
        "INVALID_IMAGE",
        "VALIDATION_ERROR",
    ]
    assert _error_codes(schema, predict["503"]) == [
        "DATABASE_UNAVAILABLE",
        "MODEL_UNAVAILABLE",
        "SHUTTING_DOWN",
        "STORAGE_UNAVAILABLE",
    ]


def test_routes_declare_the_errors_they_can_answer(schema: dict[str, Any]) -> None:
    """What the framework itself answers: 401 NOT_AUTHENTICATED on a bearer-secured
    operation, 422 VALIDATION_ERROR on one that takes input; and 503
    DATABASE_UNAVAILABLE (a dropped connection, a transaction the database aborted that
    the retries could not save) on every operation that uses the database: all but the
    health checks."""
    problems = []
    for method, path, operation in operations(schema):
        responses = operation["responses"]
        if "/health/" not in path and "DATABASE_UNAVAILABLE" not in (
            _error_codes(schema, responses.get("503", {})) or []
        ):
            problems.append(f"{method} {path}: uses the database but no 503 DATABASE_UNAVAILABLE")
        if operation.get("security") and "NOT_AUTHENTICATED" not in (
            _error_codes(schema, responses.get("401", {})) or []
        ):
            problems.append(f"{method} {path}: bearer-secured but no 401 NOT_AUTHENTICATED")
        takes_input = operation.get("parameters") or operation.get("requestBody")
        if takes_input and "VALIDATION_ERROR" not in (
            _error_codes(schema, responses.get("422", {})) or []
        ):
            problems.append(f"{method} {path}: takes input but no 422 VALIDATION_ERROR")
    assert not problems, "\n".join(problems)


def test_no_generic_error_body(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in schema["components"]["schemas"], (
        "some route still documents FastAPI's default 422 body instead of error_responses"
    )
    assert "ErrorBody" not in schema["components"]["schemas"]


def _walk(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{where}/{index}")


def test_every_file_field_is_also_format_binary(schema: dict[str, Any]) -> None:
    """3.1's contentMediaType and 3.0's format: binary on every file field (app/api/
    openapi.py), for the generators that know only the latter; checked on the snapshot."""
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    for document in (schema, snapshot):
        files = [(w, n) for w, n in _walk(document) if "contentMediaType" in n]
        assert files, "no file field found"
        missing = [w for w, n in files if n.get("format") != "binary"]
        assert not missing, f"file fields without format: binary: {missing}"
        upload = document["components"]["schemas"]["Body_predict-create"]["properties"]["file"]
        assert upload["format"] == "binary" and upload["type"] == "string"


def test_the_schema_is_valid_openapi_3_1(schema: dict[str, Any]) -> None:
    """openapi-spec-validator (the structural check; Redocly's rules run in make e2e)."""
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    assert schema["openapi"].startswith("3.1")
    validate(schema)
    broken = copy.deepcopy(schema)
    broken["paths"]["/api/v1/auth/login"]["post"]["responses"]["401"].pop("description")
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_response_models_are_described(schema: dict[str, Any]) -> None:
    """A front-end developer reads these in the generated types and in /docs."""
    undocumented = []
    for name, component in schema["components"]["schemas"].items():
        if name.startswith("Body_") or name == "ValidationError":
            continue  # FastAPI's generated form bodies / pydantic's validation item
        if not component.get("description"):
            undocumented.append(name)
    assert not undocumented, f"schemas without a description: {', '.join(sorted(undocumented))}"
