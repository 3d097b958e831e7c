"""Refuse oversized upload bodies before they are read into memory or spooled to disk.

FastAPI parses a multipart form before any dependency runs, so the size cap has to sit
in front of the app: a declared Content-Length over the cap is refused at once, and a
body streamed without one is cut off as soon as it passes the cap.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.errors import FileTooLarge, too_large_message

# Multipart framing and the small form fields beside the file.
MULTIPART_OVERHEAD = 64 * 1024


class _BodyTooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing re-raises it (instead of a 400) and the
    app's HTTP error handler answers 413 FILE_TOO_LARGE."""

    def __init__(self, limit_mb: int) -> None:
        super().__init__(413, too_large_message(limit_mb))


class UploadLimitMiddleware:
    def __init__(self, app: ASGIApp, *, paths: set[str], max_file_bytes: int) -> None:
        self.app = app
        self.paths = paths
        self.limit_mb = max_file_bytes // (1024 * 1024)
        self.max_body = max_file_bytes + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._refuse(scope, receive, send)
                return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge(self.limit_mb)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = FileTooLarge(self.limit_mb)
        response = error_response(error.status_code, error.code, error.detail)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
