"""The web app's session mode: the refresh token in an HttpOnly cookie, never in a body.

auth-login and auth-verify with `?session=cookie` set the refresh token as the cookie
`ocupredict_refresh` (HttpOnly, Secure, SameSite=Strict, Path={API_PREFIX}/auth, Max-Age =
the refresh lifetime) and answer `refresh_token: null`, so no script on the page ever sees
it. auth-refresh and auth-logout take the token from that cookie when their body carries
none. A browser sends the cookie by itself, so every request that uses it must also prove
it comes from the web app (cross-site request forgery):

- the header `X-OcuPredict-Client: web`, which a cross-origin page cannot send without a
  CORS preflight that this service never grants for it; and
- when the browser names the request's origin (`Origin`, or `Sec-Fetch-Site`), that
  origin is the service's own.

Anything else is 403 CSRF_REJECTED. Bearer clients (body tokens) are unchanged.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders

from app.config import Settings
from app.errors import CsrfRejected

REFRESH_COOKIE = "ocupredict_refresh"
CLIENT_HEADER = "X-OcuPredict-Client"
CLIENT_WEB = "web"
SessionMode = Literal["cookie"]


def cookie_path(settings: Settings) -> str:
    return f"{settings.api_prefix.rstrip('/')}/auth"


def set_refresh_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        token,
        max_age=settings.refresh_token_days * 24 * 3600,
        path=cookie_path(settings),
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_refresh_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        REFRESH_COOKIE,
        path=cookie_path(settings),
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clearing_headers(settings: Settings) -> dict[str, str]:
    """The Set-Cookie header that removes the cookie, for an error response."""
    response = Response()
    clear_refresh_cookie(response, settings)
    headers = MutableHeaders(raw=response.raw_headers)
    return {"Set-Cookie": headers["set-cookie"]}


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by browsers on same-origin GET/HEAD, nor by non-browsers
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def refresh_cookie(request: Request) -> str | None:
    """The cookie's token when the request may use it; 403 CSRF_REJECTED when it carries
    the cookie without the web app's proof of origin."""
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        return None
    if request.headers.get(CLIENT_HEADER) != CLIENT_WEB or not _same_origin(request):
        raise CsrfRejected()
    return token
