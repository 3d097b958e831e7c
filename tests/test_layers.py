"""Layers below the API know nothing of HTTP: no status code literal, no FastAPI import.

Errors are raised where they arise as the app/errors classes, which carry their status
and code; only app/errors/ and app/api/ spell out HTTP statuses. This test reads the
source of the lower layers with `ast` and lists every integer literal 100..599 used as a
status (a `status_code=` / `status=` keyword, an assignment to or comparison with a
`status_code` / `status` name, the first argument of an error or response constructor such
as `AppError(422, ...)`) and every import of fastapi, starlette.status or http.HTTPStatus.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOWER_LAYERS = (
    "app/inference",
    "app/services",
    "app/registry",
    "app/repositories",
    "app/clinical",
    "app/storage",
    "app/legacy",
    "app/mail",
    "app/training",
)
STATUS_NAMES = {"status_code", "status", "http_status", "status_int"}
CONSTRUCTOR_SUFFIXES = ("Error", "Exception", "Rejected", "Response", "Unavailable")
ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")


def _is_status(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and 100 <= node.value <= 599


def _is_error_code(nodes: list[ast.expr]) -> bool:
    """(A list of at most one node that is) a string constant like "INVALID_IMAGE"."""
    return any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and ERROR_CODE.match(n.value)
        for n in nodes
    )


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def http_leaks(source: str, filename: str = "<source>") -> list[str]:
    """`file:line: what` for each HTTP status literal or HTTP framework import in `source`."""
    found: list[str] = []

    def leak(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastapi" or alias.name == "starlette.status":
                    leak(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if (
                module.split(".")[0] == "fastapi"
                or module == "starlette.status"
                or (module == "starlette" and "status" in names)
                or (module == "http" and "HTTPStatus" in names)
            ):
                leak(node, f"from {module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in STATUS_NAMES and _is_status(keyword.value):
                    leak(node, f"{keyword.arg}={ast.unparse(keyword.value)}")
            callee = _name(node.func) or ""
            if (
                node.args
                and _is_status(node.args[0])
                and (callee.endswith(CONSTRUCTOR_SUFFIXES) or _is_error_code(node.args[1:2]))
            ):
                leak(node, f"{callee}({ast.unparse(node.args[0])}, ...)")
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _is_status(node.value) and any(_name(t) in STATUS_NAMES for t in targets):
                leak(node, ast.unparse(node).splitlines()[0])
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_name(o) in STATUS_NAMES for o in operands) and any(
                _is_status(o) for o in operands
            ):
                leak(node, ast.unparse(node))
    return found


def test_no_http_status_or_framework_in_the_layers_below_the_api() -> None:
    sources = sorted(p for layer in LOWER_LAYERS for p in (ROOT / layer).rglob("*.py"))
    assert len(sources) > 30  # the layers are there to be read
    leaks = [
        leak
        for path in sources
        for leak in http_leaks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert leaks == []


@pytest.mark.parametrize(
    "source",
    [
        "raise AppError(422, 'INVALID_IMAGE', 'no')",
        "raise ImageRejected(415, code, detail)",
        "raise self.errors.ServiceUnavailable(503)",
        "return refuse(413, 'FILE_TOO_LARGE', detail)",
        "return JSONResponse(content, status_code=404)",
        "error = Refused(status=409)",
        "class Gone(KnownError):\n    status_code = 410",
        "status_code: int = 500",
        "if response.status == 503:\n    pass",
        "ok = 200 <= exc.status_code",
        "from fastapi import status",
        "from fastapi import BackgroundTasks",
        "from fastapi.responses import Response",
        "import fastapi",
        "from starlette import status",
        "from starlette.status import HTTP_404_NOT_FOUND",
        "import starlette.status",
        "from http import HTTPStatus",
    ],
)
def test_the_scan_finds_each_kind_of_leak(source: str) -> None:
    assert len(http_leaks(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "name = name[:255]",
        "def sweep(batch: int = 500): ...",
        "percent = round(100.0 * part / whole, 1)",
        "raise InvalidImage('The image must be at least 64x64 pixels.')",
        "code = 'E404'",
        "status = 'active'",
        "if status == 'retired':\n    pass",
        "from starlette.concurrency import run_in_threadpool",
        "from starlette.background import BackgroundTasks",
        "raise RowRejected('IMAGE_TOO_LARGE', f'{size} bytes')",
        "retry_after = 600",
        "pool = ThreadPoolExecutor(200)",
        "log.info(404, 'not an error code')",
    ],
)
def test_the_scan_leaves_other_numbers_and_imports_alone(source: str) -> None:
    assert http_leaks(source) == []


# --------------------------------------------------------------------------- module size

MAX_MODULE_LINES = 400
# One job read top to bottom (`ocupredict import-legacy`): split, it would only scatter.
WHOLE_JOBS = {"app/legacy/importer.py"}


def test_no_module_in_app_is_over_400_lines() -> None:
    too_long = {
        path.relative_to(ROOT).as_posix(): count
        for path in sorted((ROOT / "app").rglob("*.py"))
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
        and path.relative_to(ROOT).as_posix() not in WHOLE_JOBS
    }
    assert not too_long, f"split these along their seams: {too_long}"
