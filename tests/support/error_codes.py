"""Every error the test suite's requests get back, checked against the app's schema.

`ErrorRecorder` wraps the ASGI app of every test client (tests/conftest.py): for each
response with a 4xx/5xx status to a request for one of the schema's operations, it records the
operation, the status and the body's `code`. `undeclared(records)` lists those whose
(status, code) the operation's schema does not document: the status must be one of the
operation's responses and, where that response's body has a `code` enum (every error
response made by `error_responses(...)`), the code must be in it.

500 INTERNAL_ERROR is the one error no route declares (an unexpected failure).
tests/test_error_codes.py runs the check after every other test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNDECLARED_BY_DESIGN = {(500, "INTERNAL_ERROR")}


@dataclass(frozen=True)
class Answered:
    method: str
    path: str  # the route's path template, as in the schema
    status: int
    code: str | None
    schema_id: int  # which app's schema (apps differ by settings, e.g. API_PREFIX)


RECORDS: list[Answered] = []
SCHEMAS: dict[int, dict[str, Any]] = {}


def operation_path(schema: dict[str, Any], method: str, path: str) -> str | None:
    """The schema path template of the operation a request went to (the one with the most
    literal segments when several match), or None (no operation: unknown path or method)."""
    best: tuple[int, str] | None = None
    for template, item in schema["paths"].items():
        if method.lower() not in item:
            continue
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            literal = sum(1 for part in template.split("/") if not part.startswith("{"))
            if best is None or literal > best[0]:
                best = (literal, template)
    return best[1] if best else None


class ErrorRecorder:
    """ASGI wrapper that records the error responses of `app` into RECORDS."""

    def __init__(self, asgi: ASGIApp, app: FastAPI) -> None:
        self.asgi = asgi
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.asgi(scope, receive, send)
            return
        status = 0
        body = bytearray()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.asgi(scope, receive, recording_send)
        finally:
            if status >= 400:
                self._record(scope, status, bytes(body))

    def _record(self, scope: Scope, status: int, body: bytes) -> None:
        schema = SCHEMAS.setdefault(id(self.app), self.app.openapi())
        path = operation_path(schema, scope["method"], scope["path"])
        if path is None:
            return  # no operation (unknown path, wrong method): nothing to check
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        code = parsed.get("code") if isinstance(parsed, dict) else None
        RECORDS.append(Answered(scope["method"], path, status, code, id(self.app)))


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return dict(schema["components"]["schemas"][ref.rsplit("/", 1)[1]])
    return node


def declared_codes(schema: dict[str, Any], method: str, path: str, status: int) -> Any:
    """None when the operation does not document `status`; the set of codes its body
    allows; or ... (Ellipsis) when that response has no code enum."""
    operation = schema["paths"].get(path, {}).get(method.lower())
    if operation is None or str(status) not in operation["responses"]:
        return None
    response = operation["responses"][str(status)]
    body = response.get("content", {}).get("application/json", {}).get("schema", {})
    code = _resolve(schema, body).get("properties", {}).get("code", {})
    return set(code["enum"]) if "enum" in code else ...


def undeclared(records: list[Answered], schemas: dict[int, dict[str, Any]]) -> list[str]:
    problems = set()
    for r in records:
        if (r.status, r.code) in UNDECLARED_BY_DESIGN:
            continue
        codes = declared_codes(schemas[r.schema_id], r.method, r.path, r.status)
        where = f"{r.method} {r.path}: {r.status} {r.code}"
        if codes is None:
            problems.add(f"{where}: status {r.status} not documented")
        elif codes is not ... and r.code not in codes:
            problems.add(f"{where}: code not in the documented {sorted(codes)}")
    return sorted(problems)
