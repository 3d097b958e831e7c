"""The web app's cookie session mode (API.md, third wave): the refresh token only in an
HttpOnly, Secure, SameSite=Strict cookie scoped to the auth path; refresh and logout take it
from the cookie with the web app's header; CSRF refusals; bearer clients unchanged."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx

from tests.support.auth import AUTH, PASSWORD, bearer, next_code, register
from tests.support.mail import Mailbox

WEB = {"X-OcuPredict-Client": "web"}
COOKIE = "ocupredict_refresh"


def set_cookie(response: httpx.Response) -> SimpleCookie:
    """The response's Set-Cookie for the refresh cookie (exactly one)."""
    headers = [v for v in response.headers.get_list("set-cookie") if v.startswith(COOKIE + "=")]
    assert len(headers) == 1, response.headers
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers[0])
    return jar


def cookie_value(response: httpx.Response) -> str:
    return set_cookie(response)[COOKIE].value


def with_cookie(token: str, **headers: str) -> dict[str, str]:
    # The cookie is Secure: httpx keeps it out of its jar on http://testserver, so the
    # tests send it as a browser would over https.
    return {"Cookie": f"{COOKIE}={token}", **headers}


async def cookie_login(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(
        f"{AUTH}/login?session=cookie", data={"username": email, "password": PASSWORD}
    )


async def verified_in_cookie_mode(
    client: httpx.AsyncClient, mailbox: Mailbox, email: str
) -> httpx.Response:
    assert (await register(client, email)).status_code == 201
    code = await next_code(mailbox, email, 1)
    response = await client.post(
        f"{AUTH}/verify", params={"session": "cookie"}, json={"email": email, "code": code}
    )
    assert response.status_code == 200, response.text
    return response


async def test_verify_and_login_in_cookie_mode_set_the_cookie_and_no_body_token(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    verified = await verified_in_cookie_mode(client, mailbox, "cookie@example.com")
    body = verified.json()
    assert body["refresh_token"] is None
    assert (await client.get(f"{AUTH}/me", headers=bearer(body["access_token"]))).status_code == 200
    morsel = set_cookie(verified)[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/api/v1/auth"
    assert int(morsel["max-age"]) == 30 * 24 * 3600
    assert len(morsel.value) >= 32
    assert morsel.value not in verified.text

    login = await cookie_login(client, "cookie@example.com")
    assert login.status_code == 200
    assert login.json()["refresh_token"] is None
    assert cookie_value(login) not in (morsel.value, "")

    # Bearer mode is unchanged: the token in the body, no cookie.
    plain = await client.post(
        f"{AUTH}/login", data={"username": "cookie@example.com", "password": PASSWORD}
    )
    assert plain.status_code == 200
    assert isinstance(plain.json()["refresh_token"], str)
    assert "set-cookie" not in plain.headers


async def test_refresh_with_the_cookie_rotates_it(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    first = cookie_value(await verified_in_cookie_mode(client, mailbox, "rotate@example.com"))
    refreshed = await client.post(f"{AUTH}/refresh", headers=with_cookie(first, **WEB))
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] is None
    second = cookie_value(refreshed)
    assert second != first
    me = await client.get(f"{AUTH}/me", headers=bearer(refreshed.json()["access_token"]))
    assert me.json()["email"] == "rotate@example.com"

    # The spent cookie again: refused, the cookie cleared, and the family revoked.
    reused = await client.post(f"{AUTH}/refresh", headers=with_cookie(first, **WEB))
    assert reused.status_code == 401
    assert reused.json()["code"] == "INVALID_TOKEN"
    assert set_cookie(reused)[COOKIE].value == ""
    assert int(set_cookie(reused)[COOKIE]["max-age"]) == 0
    after = await client.post(f"{AUTH}/refresh", headers=with_cookie(second, **WEB))
    assert after.status_code == 401


async def test_cookie_without_the_web_header_or_from_another_origin_is_refused(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    token = cookie_value(await verified_in_cookie_mode(client, mailbox, "csrf@example.com"))
    cases = [
        with_cookie(token),  # no header: a form post from another site
        with_cookie(token, **{"X-OcuPredict-Client": "other"}),
        with_cookie(token, **WEB, Origin="https://evil.example"),
        with_cookie(token, **WEB, **{"Sec-Fetch-Site": "cross-site"}),
        with_cookie(token, **WEB, **{"Sec-Fetch-Site": "same-site"}),
    ]
    for headers in cases:
        for path in ("refresh", "logout"):
            response = await client.post(f"{AUTH}/{path}", headers=headers)
            assert response.status_code == 403, (path, headers)
            assert response.json()["code"] == "CSRF_REJECTED"
    # None of those spent the token: the web app's own request still works.
    same_origin = with_cookie(token, **WEB, Origin="http://testserver")
    same_origin["Sec-Fetch-Site"] = "same-origin"
    response = await client.post(f"{AUTH}/refresh", headers=same_origin)
    assert response.status_code == 200, response.text


async def test_expired_or_unknown_cookie_is_refused_and_cleared(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    response = await client.post(f"{AUTH}/refresh", headers=with_cookie("not-a-token", **WEB))
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_TOKEN"
    assert set_cookie(response)[COOKIE].value == ""
    # Neither a body nor a cookie.
    response = await client.post(f"{AUTH}/refresh", headers=WEB)
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_TOKEN"
    # An empty JSON body is still a malformed body, not a cookie request.
    response = await client.post(f"{AUTH}/refresh", json={})
    assert response.status_code == 422

    # Expired: the token's row has lapsed.
    from datetime import timedelta

    from sqlalchemy import update

    from app.db.base import utcnow
    from app.db.models import RefreshToken
    from tests.support.factories import app_of

    token = cookie_value(await verified_in_cookie_mode(client, mailbox, "lapsed@example.com"))
    async with app_of(client).state.sessionmaker() as session:
        await session.execute(
            update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    response = await client.post(f"{AUTH}/refresh", headers=with_cookie(token, **WEB))
    assert response.status_code == 401
    assert set_cookie(response)[COOKIE].value == ""


async def test_logout_with_the_cookie_clears_it_and_ends_the_session(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    verified = await verified_in_cookie_mode(client, mailbox, "bye@example.com")
    token, access = cookie_value(verified), verified.json()["access_token"]
    response = await client.post(f"{AUTH}/logout", headers=with_cookie(token, **WEB))
    assert response.status_code == 204
    cleared = set_cookie(response)[COOKIE]
    assert cleared.value == "" and int(cleared["max-age"]) == 0
    assert cleared["path"] == "/api/v1/auth"
    refused = await client.post(f"{AUTH}/refresh", headers=with_cookie(token, **WEB))
    assert refused.status_code == 401
    assert (await client.get(f"{AUTH}/me", headers=bearer(access))).status_code == 401
    # Logging out without any token is harmless (and clears a cookie the browser may keep).
    response = await client.post(f"{AUTH}/logout", headers=WEB)
    assert response.status_code == 204


async def test_unknown_session_mode_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{AUTH}/login?session=jar", data={"username": "x@example.com", "password": PASSWORD}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
