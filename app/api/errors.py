"""One error shape for every failure: {"detail": ..., "code": "UPPER_SNAKE"}.

Routes raise `AppError` (or a subclass); handlers below also reshape FastAPI's own
HTTPException and validation errors, and hide unexpected exceptions behind
500 INTERNAL_ERROR (logged with the request id, never echoed to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics
from app.errors import AppError
from app.observability import request_id_var
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Body of every error response."""

    detail: str | list[dict[str, Any]] = Field(
        description="Human-readable message, or the list of validation problems for 422."
    )
    code: str = Field(description="Stable machine code.", examples=["NOT_FOUND"])


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "NOT_AUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "FILE_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def error_response(
    status_code: int, code: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status_code,
        content=jsonable_encoder({"detail": detail, "code": code}),
        headers=headers,
    )


# What each status means here, and a typical body (the route's description names its codes).
_ERROR_DOCS: dict[int, tuple[str, Any, str]] = {
    400: (
        "The request was understood but refused",
        "The code is wrong, expired or already used",
        "INVALID_CODE",
    ),
    401: (
        "Missing, expired or invalid bearer token (or credentials)",
        "Not authenticated",
        "NOT_AUTHENTICATED",
    ),
    403: ("Not allowed", "Verify the email address first", "EMAIL_NOT_VERIFIED"),
    404: ("Not found (also another user's resource)", "Not found", "NOT_FOUND"),
    409: (
        "Conflict with the current state",
        "A verified account with this email exists",
        "EMAIL_TAKEN",
    ),
    413: ("The upload is too large", "The file is larger than 15 MB", "FILE_TOO_LARGE"),
    415: ("Not a JPEG or PNG", "Only JPEG and PNG images are accepted", "UNSUPPORTED_MEDIA_TYPE"),
    422: (
        "The request does not validate",
        [{"type": "missing", "loc": ["body", "email"], "msg": "Field required"}],
        "VALIDATION_ERROR",
    ),
    429: (
        "Too many requests; see Retry-After",
        "Too many requests; try again later",
        "RATE_LIMITED",
    ),
    503: (
        "A dependency is unavailable; try again",
        "The image store is unavailable; try again",
        "STORAGE_UNAVAILABLE",
    ),
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries so the generated client knows each route's error shape."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorBody}
        if code in _ERROR_DOCS:
            description, detail, machine_code = _ERROR_DOCS[code]
            entry["description"] = description
            entry["content"] = {
                "application/json": {"example": {"detail": detail, "code": machine_code}}
            }
        responses[code] = entry
    return responses


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.code, exc.detail, exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # Our own 400s are AppErrors (INVALID_CODE, ...). A bare 400 HTTPException comes
        # only from FastAPI/Starlette failing to parse the body (JSON that is not UTF-8, a
        # multipart body without its boundary): a validation error like malformed JSON,
        # 422 VALIDATION_ERROR, which every route with a body declares.
        detail = exc.detail if isinstance(exc.detail, str) else "The body could not be parsed"
        problem = {"type": "body_unparsable", "loc": ["body"], "msg": detail}
        return error_response(422, "VALIDATION_ERROR", [problem])
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
    return error_response(exc.status_code, code, detail, getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        # Drop the offending input and the pydantic context: it may hold a password or
        # megabytes of upload, and exception objects are not JSON.
        errors.append({k: v for k, v in err.items() if k in ("type", "loc", "msg")})
    return error_response(422, "VALIDATION_ERROR", errors)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    # This handler runs outside the request-id middleware: restore the id for the log.
    token = request_id_var.set(request_id)
    try:
        log.error("unhandled error", exc_info=exc)
    finally:
        request_id_var.reset(token)
    return error_response(
        500,
        "INTERNAL_ERROR",
        f"Internal server error (request id {request_id})",
        {"X-Request-ID": request_id},
    )


async def _storage_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("image store unavailable", exc_info=exc)
    metrics.IMAGE_STORE_ERRORS.inc()
    return error_response(503, "STORAGE_UNAVAILABLE", "The image store is unavailable; try again")


# The database cannot be reached or dropped the connection (a restart, a failover): the
# pool reconnects on a later request, so the client may retry. Other database errors (a
# constraint, a trigger's SIGNAL) stay 500 INTERNAL_ERROR.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)
# MySQL/MariaDB client and server codes that mean "no usable connection": can't connect
# (2002, 2003), gone away / lost (2006, 2013), out of sync (2014), server shutting down
# (1053), connection killed (1927), reads/writes that failed on the socket (2026, 2055).
_CONNECTION_ERRNOS = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2014, 2026, 2055})


def is_connection_error(exc: Exception) -> bool:
    if isinstance(exc, PoolTimeout | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] in _CONNECTION_ERRNOS


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not is_connection_error(exc):
        return await _unexpected_error(request, exc)
    token = request_id_var.set(getattr(request.state, "request_id", "-"))
    try:
        log.warning("database unavailable: %s", type(exc).__name__)
    finally:
        request_id_var.reset(token)
    metrics.DATABASE_ERRORS.inc()
    return error_response(503, "DATABASE_UNAVAILABLE", "The database is unavailable; try again")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    for error in DATABASE_DOWN:
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
