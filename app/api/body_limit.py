"""Refuse oversized request bodies before they are read into memory or spooled to disk.

FastAPI parses a body (a multipart form, JSON) before any dependency runs, so the cap has
to sit in front of the app: a declared Content-Length over the cap is refused at once,
and a body streamed without one is cut off as soon as it passes the cap. Uploads have
their own caps (MAX_UPLOAD_MB for a photograph, MODEL_MAX_UPLOAD_MB for weights) and
answer 413 FILE_TOO_LARGE; every other body is capped at MAX_BODY_KB and answers 413
PAYLOAD_TOO_LARGE, so `ocupredict serve` without nginx in front is safe too.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.errors import FileTooLarge, KnownError, PayloadTooLarge

# Multipart framing and the small form fields beside the file.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class BodyLimit:
    max_bytes: int
    error: KnownError


class BodyTooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing re-raises it (instead of a 400); the
    app's HTTP error handler answers it with its error's code."""

    def __init__(self, error: KnownError) -> None:
        super().__init__(error.status_code, error.detail)
        self.code = error.code


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, uploads_mb: dict[str, int], max_kb: int) -> None:
        """`uploads_mb`: upload path -> its file cap in MB; every other path: `max_kb`."""
        self.app = app
        self.uploads = {
            path: BodyLimit(mb * 1024 * 1024 + MULTIPART_OVERHEAD, FileTooLarge(mb))
            for path, mb in uploads_mb.items()
        }
        self.default = BodyLimit(max_kb * 1024, PayloadTooLarge(max_kb))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get(scope["path"], self.default)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit.max_bytes:
                await self._refuse(limit.error, scope, receive, send)
                return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    raise BodyTooLarge(limit.error)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, error: KnownError, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(error.status_code, error.code, error.detail)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
