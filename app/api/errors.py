"""One error shape for every failure: {"detail": ..., "code": "UPPER_SNAKE"}, typed per
operation in the schema.

Routes raise `AppError` (or a subclass); handlers below also reshape FastAPI's own
HTTPException and validation errors, and hide unexpected exceptions behind
500 INTERNAL_ERROR (logged with the request id, never echoed to the client).

Declaring a route's errors (the one table the schema's error codes come from)
----------------------------------------------------------------------------
List the `KnownError` classes (app/errors.py) the route can answer:

    @router.post("/login", responses=error_responses(
        InvalidCredentials, EmailNotVerified, RateLimited, ValidationFailed))

Classes are grouped by their status; each documented status gets a body schema whose
`code` is an enum of exactly those classes' codes (one shared component per set of
codes, e.g. `ErrorInvalidImageOrValidationError`), so a generated client can switch on
`error.code` with type checking. A new code is a new `KnownError` subclass in
app/errors.py (status_code, code, message), raised by the service and listed here.

A bare status is shorthand for the generic error of that status, the code the framework
itself answers with: 401 = NotAuthenticated, 403 = Forbidden, 404 = NotFound,
413 = FileTooLarge, 422 = ValidationFailed, 429 = RateLimited. Any other status must be
named by its classes (several codes share 400, 409, 415, 503). tests/test_error_codes.py
records every error response of the test suite and fails when a route answers a
(status, code) its schema does not list; e2e's schemathesis run checks the same on the
live server (response_schema_conformance).
"""

from __future__ import annotations

import functools
import logging
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, WithJsonSchema, create_model
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics
from app.api.error_i18n import localized
from app.db.retry import WriteConflict, retry_reason
from app.errors import (
    AppError,
    DatabaseUnavailable,
    FileTooLarge,
    Forbidden,
    KnownError,
    NotAuthenticated,
    NotFound,
    RateLimited,
    StorageUnavailableError,
    ValidationFailed,
)
from app.observability import request_id_var
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)

DETAIL_DESCRIPTION = "Human-readable message, or the list of validation problems for 422."


class ValidationProblem(BaseModel):
    """One problem of a 422 VALIDATION_ERROR body."""

    type: str = Field(description="The kind of problem, e.g. missing, string_too_short")
    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field")
    msg: str = Field(description="Human-readable message")


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: NotAuthenticated.code,
    403: Forbidden.code,
    404: NotFound.code,
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: FileTooLarge.code,
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: ValidationFailed.code,
    429: RateLimited.code,
    503: "SERVICE_UNAVAILABLE",
}

# A bare status in error_responses(...) means the generic error of that status.
SHORTHAND: dict[int, type[KnownError]] = {
    cls.status_code: cls
    for cls in (NotAuthenticated, Forbidden, NotFound, FileTooLarge, ValidationFailed, RateLimited)
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "Bearer (with NOT_AUTHENTICATED)",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer"},
        }
    },
}


def error_response(
    status_code: int, code: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status_code,
        content=jsonable_encoder({"detail": detail, "code": code}),
        headers=headers,
    )


def _pascal(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_"))


@functools.cache
def error_model(codes: tuple[str, ...]) -> type[BaseModel]:
    """The body schema of a response that answers exactly `codes` (sorted, unique): one
    model per set, so operations that share a set share the component."""
    code_type: Any = Literal[codes]  # runtime Literal of the given values
    schema = {"type": "string", "enum": list(codes), "description": "Stable machine code."}
    return create_model(
        "Error" + "Or".join(_pascal(code) for code in codes),
        __doc__=f"Error body whose code is {' or '.join(codes)}.",
        detail=(str | list[ValidationProblem], Field(description=DETAIL_DESCRIPTION)),
        code=(Annotated[code_type, WithJsonSchema(schema)], ...),
    )


def _error_class(error: type[KnownError] | int) -> type[KnownError]:
    if isinstance(error, int):
        if error not in SHORTHAND:
            raise TypeError(
                f"error_responses({error}): status {error} has several codes; name the "
                "KnownError classes the route raises (app/errors.py)"
            )
        return SHORTHAND[error]
    if not (isinstance(error, type) and issubclass(error, KnownError)) or error is KnownError:
        raise TypeError(f"error_responses: {error!r} is not a KnownError subclass")
    return error


def error_responses(*errors: type[KnownError] | int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries: per status, the codes of the given error classes as an enum
    (see the module docstring)."""
    by_status: dict[int, dict[str, type[KnownError]]] = {}
    for error in errors:
        cls = _error_class(error)
        by_status.setdefault(cls.status_code, {})[cls.code] = cls
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        classes = by_status[status]
        codes = tuple(sorted(classes))
        examples = {
            code: {
                "summary": classes[code].message,
                "value": {"detail": classes[code].example_detail(), "code": code},
            }
            for code in codes
        }
        entry: dict[str, Any] = {
            "model": error_model(codes),
            "description": f"{HTTPStatus(status).phrase}: "
            + "; ".join(f"{code} ({classes[code].message})" for code in codes),
            "content": {"application/json": {"examples": examples}},
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        responses[status] = entry
    return responses


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    detail = localized(request, exc.code, exc.detail)
    return error_response(exc.status_code, exc.code, detail, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # Our own 400s are AppErrors (INVALID_CODE, ...). A bare 400 HTTPException comes
        # only from FastAPI/Starlette failing to parse the body (JSON that is not UTF-8, a
        # multipart body without its boundary): a validation error like malformed JSON,
        # 422 VALIDATION_ERROR, which every route with a body declares.
        detail = exc.detail if isinstance(exc.detail, str) else "The body could not be parsed"
        problem = {"type": "body_unparsable", "loc": ["body"], "msg": detail}
        return error_response(422, ValidationFailed.code, [problem])
    code = getattr(exc, "code", None) or _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
    detail = localized(request, code, detail)
    return error_response(exc.status_code, code, detail, getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        # Drop the offending input and the pydantic context: it may hold a password or
        # megabytes of upload, and exception objects are not JSON.
        errors.append({k: v for k, v in err.items() if k in ("type", "loc", "msg")})
    return error_response(422, ValidationFailed.code, errors)


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
        localized(request, "INTERNAL_ERROR", f"Internal server error (request id {request_id})"),
        {"X-Request-ID": request_id},
    )


async def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("image store unavailable", exc_info=exc)
    metrics.IMAGE_STORE_ERRORS.inc()
    error = StorageUnavailableError()
    detail = localized(request, error.code, error.detail)
    return error_response(error.status_code, error.code, detail)


# The database cannot be reached or dropped the connection (a restart, a failover): the
# pool reconnects on a later request, so the client may retry. So does a transaction the
# database aborted transiently (deadlock or Galera certification conflict 1213, lock wait
# timeout 1205, node not ready 1047) that app.db.retry did not retry or retried in vain.
# Other database errors (a constraint, a trigger's SIGNAL) stay 500 INTERNAL_ERROR.
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
    transient = retry_reason(exc)
    if not is_connection_error(exc) and transient is None:
        return await _unexpected_error(request, exc)
    token = request_id_var.set(getattr(request.state, "request_id", "-"))
    try:
        if transient is not None:
            log.warning("database aborted the transaction (%s); answered 503", transient)
        else:
            log.warning("database unavailable: %s", type(exc).__name__)
    finally:
        request_id_var.reset(token)
    metrics.DATABASE_ERRORS.inc()
    error = DatabaseUnavailable()
    detail = localized(request, error.code, error.detail)
    return error_response(error.status_code, error.code, detail)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    for error in (*DATABASE_DOWN, WriteConflict):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
