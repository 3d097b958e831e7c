"""Logging with the request id (and user id) on every line, and the middleware that sets
them and writes one access line per request.

Development logs readable text; production (or LOG_FORMAT=json) one JSON object a line
(python-json-logger) with time, level, logger, message, request_id, user_id and, on the
access line, method, route, status and latency_ms. Paths are logged as route templates,
never with their query strings (a signed image URL carries its signature there).

One policy for every process that serves (`serve` with one or N uvicorn workers, the
`serve-nginx` supervisor and its workers, the app under tests): every logger, uvicorn's
own included, goes through one handler with one formatter, so a production process writes
nothing but JSON lines; uvicorn's access log is off (our access line replaces it); and a
filter redacts signatures, tokens, codes and bearer credentials from every message, as
defence in depth (no code of ours logs them). `configure_logging` applies the policy in a
running process; `uvicorn_log_config` is the same policy as uvicorn's `log_config`, which
uvicorn applies in its own process and again in each worker process it spawns.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit.client_ip import peer_is_trusted, resolve_client_ip, trusted_networks
from app.kit.forwarded import forwarded_origin
from app.metrics import observe_http

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# A mutable per-request holder: the auth dependency fills in the user id, the middleware
# that created it reads it back for the access line (a ContextVar set deeper down would
# not be seen up here).
request_info_var: ContextVar[dict[str, Any] | None] = ContextVar("request_info", default=None)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(user_id)s"
access_log = logging.getLogger("ocupredict.access")

_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id_var.get()
    info = request_info_var.get()
    record.user_id = info.get("user_id") if info else None
    return record


REDACTED = "[REDACTED]"
_SECRETS = (
    # query strings and form bodies: ...&signature=..., token=, code=, password=
    (
        re.compile(
            r"(?i)\b(signature|token|access_token|refresh_token|code|password)=[^&\s\"'<>#,;]*"
        ),
        rf"\1={REDACTED}",
    ),
    # JSON-ish fields: "access_token": "...", refresh_token: ...
    (
        re.compile(r"""(?i)(\b(?:access_token|refresh_token)["']?\s*:\s*["']?)[^\s"',}&]+"""),
        rf"\1{REDACTED}",
    ),
    # Authorization: Bearer ... (and a bare bearer credential anywhere)
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    # a JWT wherever it stands
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), REDACTED),
)
# uvicorn's loggers that carry its server messages (to our handler) and its access log (off).
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
UVICORN_ACCESS = "uvicorn.access"


def redact(text: str) -> str:
    """`text` with the values of signatures, tokens, codes, passwords and bearer
    credentials replaced by [REDACTED]."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record whose message (with its args) carries a secret: the message is
    rendered, redacted and stored without args. Tracebacks are redacted by the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: the handler reports it as logging does
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class _RequestContext(logging.Filter):
    """request_id and user_id on every record, also one made before the record factory
    was installed (uvicorn logs through our handler before the app exists)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
            info = request_info_var.get()
            record.user_id = info.get("user_id") if info else None
        return True


class _TextFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


class _JsonFormatter(JsonFormatter):
    def formatException(self, ei: Any) -> str:
        return redact(str(super().formatException(ei)))

    def formatStack(self, stack_info: str) -> str:
        return redact(str(super().formatStack(stack_info)))


def make_formatter(json_logs: bool) -> logging.Formatter:
    if json_logs:
        return _JsonFormatter(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            # uvicorn's ANSI-coloured copy of its message: not for a log pipeline
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    return _TextFormatter(LOG_FORMAT)


def make_handler(json_logs: bool = False) -> logging.Handler:
    """The one handler of a process: stderr, the policy's formatter, request context and
    redaction. (Also built by logging.config from `uvicorn_log_config`.)"""
    handler = logging.StreamHandler()
    handler._ocupredict = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestContext())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(make_formatter(json_logs))
    return handler


def uvicorn_log_config(level: str, json_logs: bool) -> dict[str, Any]:
    """The policy as uvicorn's `log_config` (a logging.config dict): uvicorn applies it
    before it logs anything, in its own process and in each worker process it spawns.
    Pass `access_log=False` to uvicorn with it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"ocupredict": {"()": f"{__name__}.make_handler", "json_logs": json_logs}},
        "root": {"level": level.upper(), "handlers": ["ocupredict"]},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
            UVICORN_ACCESS: {"handlers": [], "propagate": False},
        },
    }


def configure_logging(level: str, json_logs: bool = False) -> None:
    """Applies the policy in this process (idempotent; other handlers on the root logger,
    such as pytest's, are left alone). Every record carries `request_id`."""
    logging.setLogRecordFactory(_record_with_request_id)
    logging.captureWarnings(True)  # warnings.warn() through the handler, not bare stderr
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_ocupredict", False)]
    if not ours:
        root.addHandler(make_handler(json_logs))
    for handler in ours:
        handler.setFormatter(make_formatter(json_logs))
    root.setLevel(level.upper())
    # uvicorn's defaults (its own text handlers) when it was started some other way.
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    access = logging.getLogger(UVICORN_ACCESS)
    access.handlers.clear()
    access.propagate = False


def set_user_id(user_id: int) -> None:
    info = request_info_var.get()
    if info is not None:
        info["user_id"] = user_id


class RequestIdMiddleware:
    """Takes a well-formed X-Request-ID from the client (or nginx) or makes one; echoes
    it back; logs one access line and counts the request in the metrics."""

    def __init__(self, app: ASGIApp, *, process: int = 0) -> None:
        self.app = app
        self.process = str(process)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        info_token = request_info_var.set({})
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method, route = scope.get("method", ""), route_template(scope)
            observe_http(method, route, status, self.process, seconds)
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "latency_ms": round(seconds * 1000, 2),
                },
            )
            request_info_var.reset(info_token)
            request_id_var.reset(token)


# The client address as the service saw it (TRUSTED_PROXIES applied), for the audit trail,
# the rate limits, /metrics and the logs: resolved once per request, here.
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)


class ClientIpMiddleware:
    """What a trusted proxy says about the client, applied once per request:

    - the client IP (app.kit.client_ip: the socket peer, or the client a trusted proxy
      names; a Unix-socket peer is the local proxy) into `client_ip_var` and the
      request's state (`client_ip`), which the rate limits, /metrics, the logs and the
      audit trail all read;
    - from a trusted peer only, the scheme and host the client used (X-Forwarded-Proto,
      X-Forwarded-Host, Forwarded: app.kit.forwarded) become the request's, so every
      absolute URL the API returns (image_url, ...) is the one the client can reach:
      https behind a TLS-terminating proxy.
    """

    def __init__(self, app: ASGIApp, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.app = app
        self.trusted = trusted_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = client[0] if client else None
        headers: dict[bytes, list[str]] = {}
        for name, value in scope.get("headers", []):
            if name in _PROXY_HEADERS:
                headers.setdefault(name, []).append(value.decode("latin-1"))
        ip = resolve_client_ip(peer, headers.get(b"x-forwarded-for", []), self.trusted)
        scope.setdefault("state", {})["client_ip"] = ip
        if peer_is_trusted(peer, self.trusted) and (
            b"x-forwarded-proto" in headers
            or b"x-forwarded-host" in headers
            or b"forwarded" in headers
        ):
            _apply_origin(scope, headers)
        token = client_ip_var.set(ip)
        try:
            await self.app(scope, receive, send)
        finally:
            client_ip_var.reset(token)


_PROXY_HEADERS = frozenset(
    (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")
)


def _apply_origin(scope: Scope, headers: dict[bytes, list[str]]) -> None:
    origin = forwarded_origin(
        headers.get(b"x-forwarded-proto", []),
        headers.get(b"x-forwarded-host", []),
        headers.get(b"forwarded", []),
    )
    if origin.scheme is not None:
        scope["scheme"] = origin.scheme
    if origin.host is not None:
        host = origin.host.encode("latin-1")
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"]
        scope["headers"].append((b"host", host))


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request (after it ran):
    /api/v1/history/{prediction_id}, never the raw path (unbounded label values, query
    strings); requests no route matched share one name."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"
