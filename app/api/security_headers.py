"""Security headers on every response, from one place.

- `X-Content-Type-Options: nosniff` everywhere.
- `Cache-Control: no-store` on every API response that sets no policy of its own: tokens
  (RFC 6749 section 5.1) and patient data must not stay in a shared clinic computer's
  cache. The image route sets its own short, private policy (bounded by the signed URL's
  lifetime); nothing under the API is cached otherwise.
- /docs and /redoc: a Content-Security-Policy that allows only this origin (Swagger UI
  and ReDoc are served from the package, fastapi-offline), `frame-ancestors 'none'` and
  `X-Frame-Options: DENY` (no clickjacking through a framed console).
- The web app (every other path: web/dist): a Content-Security-Policy of its own (scripts
  only from this origin, images also from the S3 store's presigned https URLs) and
  `frame-ancestors 'none'`.
- `Strict-Transport-Security` when the request came over TLS.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Swagger UI and ReDoc boot from one inline script each; ReDoc runs a worker from a blob.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# MUI (emotion) injects its styles at run time: inline styles, never inline scripts.
WEB_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob: https:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        api_prefix: str,
        docs_paths: tuple[str, ...],
        other_paths: tuple[str, ...] = ("/openapi.json", "/metrics"),
    ) -> None:
        self.app = app
        self.api_prefix = api_prefix.rstrip("/") + "/"
        self.docs_paths = docs_paths
        self.not_web = (*docs_paths, *other_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_api = path.startswith(self.api_prefix)
        is_docs = path in self.docs_paths
        is_web = not is_api and not path.startswith(self.not_web)
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if is_api and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                if is_docs:
                    headers["Content-Security-Policy"] = DOCS_CSP
                    headers["X-Frame-Options"] = "DENY"
                    headers["Cache-Control"] = "no-store"
                if is_web:
                    headers["Content-Security-Policy"] = WEB_CSP
                    headers["X-Frame-Options"] = "DENY"
                if tls:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
