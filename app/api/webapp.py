"""The doctors' web app (web/, built to WEB_DIST_DIR) served by the app itself.

Every GET or HEAD outside API_PREFIX, /docs, /redoc, /openapi.json and /metrics that no
route answers gets a file of the build, or the app's index.html (the app's own routes,
e.g. /history/12, are client-side). Hashed assets (/assets/...) are cached for a year;
index.html is revalidated each time, so a new build is picked up at once. This hooks the
router's not-found handler, so every route, and every 404/405 of the API, stays as it was.
serve-nginx serves the same folder from nginx (app/deploy/nginx.conf.template).
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
BUILD_HINT = (
    "the web app is not built (no %s): run `make web` (needs Node >= 20 and npm) to serve "
    "it at /; the API works without it"
)


def web_dist(directory: Path) -> Path | None:
    """The build folder when it holds a built app, else None."""
    directory = directory.resolve()
    return directory if (directory / "index.html").is_file() else None


def reserved_prefixes(api_prefix: str) -> tuple[str, ...]:
    return (api_prefix.rstrip("/") + "/", "/docs", "/redoc", "/openapi.json", "/metrics")


def _is_reserved(path: str, prefixes: tuple[str, ...]) -> bool:
    return path == prefixes[0].rstrip("/") or any(path.startswith(p) for p in prefixes)


class WebAppFallback:
    """The router's `default`: a built file, or index.html, else the original not-found."""

    def __init__(self, root: Path, api_prefix: str, not_found: ASGIApp) -> None:
        self.root = root
        self.prefixes = reserved_prefixes(api_prefix)
        self.not_found = not_found

    def _file(self, path: str) -> Path | None:
        relative = path.lstrip("/")
        if not relative or "\x00" in relative:
            return None
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("GET", "HEAD")
            or _is_reserved(path, self.prefixes)
        ):
            await self.not_found(scope, receive, send)
            return
        found = self._file(path)
        if found is not None:
            hashed = path.startswith("/assets/")
            headers = {"Cache-Control": IMMUTABLE if hashed else REVALIDATE}
            response = _file_response(found, headers, scope)
        elif "." in path.rsplit("/", 1)[-1]:
            # A missing file (a stale asset name): the API's 404, not the app's page.
            await self.not_found(scope, receive, send)
            return
        else:
            index = self.root / "index.html"
            response = _file_response(index, {"Cache-Control": REVALIDATE}, scope)
        await response(scope, receive, send)


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"accept-encoding" and b"gzip" in value.lower():
            return True
    return False


def _file_response(path: Path, headers: dict[str, str], scope: Scope) -> FileResponse:
    """The file, or the build's precompressed file.gz beside it for a client that takes
    gzip (the build writes one for each text file)."""
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type in ("text/javascript", "application/javascript"):
        media_type = "text/javascript"
    compressed = path.with_name(path.name + ".gz")
    if compressed.is_file():
        headers = {**headers, "Vary": "Accept-Encoding"}
        if _accepts_gzip(scope):
            headers["Content-Encoding"] = "gzip"
            return FileResponse(compressed, headers=headers, media_type=media_type)
    return FileResponse(path, headers=headers, media_type=media_type)


def install_web_app(app: FastAPI, directory: Path, api_prefix: str) -> bool:
    """Serve the build at /; False (and a log line saying how to build it) without one."""
    root = web_dist(directory)
    if root is None:
        log.info(BUILD_HINT, directory / "index.html")
        return False
    app.router.default = WebAppFallback(root, api_prefix, app.router.not_found)
    return True
