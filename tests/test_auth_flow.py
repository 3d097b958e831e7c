"""Auth end to end, codes read from the mail the aiosmtpd server captured (never the DB)."""

from __future__ import annotations

from datetime import datetime

import httpx

from tests.support.auth import (
    AUTH,
    NEW_PASSWORD,
    PASSWORD,
    bearer,
    code_in,
    login,
    new_session,
    register,
    subject,
    verified_account,
)
from tests.support.mail import Mailbox, message_text


async def test_register_verify_login_refresh_me_logout(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = "ana.quispe@example.com"
    response = await register(client, email, name="  Ana Quispe ")
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) >= {"id", "email", "name", "locale", "role", "is_verified", "created_at"}
    assert user["email"] == email and user["name"] == "Ana Quispe"
    assert (user["locale"], user["role"], user["is_verified"]) == ("es", "doctor", False)
    assert datetime.fromisoformat(user["created_at"]).utcoffset() is not None
    assert user["created_at"].endswith("+00:00")

    # The code comes by email, Spanish by default, with a plain-text and an HTML part.
    [mail] = await mailbox.wait_for(email)
    assert subject(mail) == "Tu código de verificación de OcuPredict"
    types = {part.get_content_type() for part in mail.walk()}
    assert {"text/plain", "text/html"} <= types
    code = code_in(mail)
    assert "Hola Ana Quispe" in message_text(mail)

    response = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 15 * 60
    assert pair["access_token"] and pair["refresh_token"]

    response = await login(client, email)
    assert response.status_code == 200, response.text
    session = response.json()

    response = await client.post(
        f"{AUTH}/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["refresh_token"] != session["refresh_token"]
    assert rotated["access_token"] != session["access_token"]

    response = await client.get(f"{AUTH}/me", headers=bearer(rotated["access_token"]))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["id"] == user["id"] and me["is_verified"] is True
    assert me["created_at"] == user["created_at"]

    response = await client.post(f"{AUTH}/logout", json={"refresh_token": rotated["refresh_token"]})
    assert response.status_code == 204
    assert response.content == b""
    # The session is over: its refresh token and its access token stop working at once.
    response = await client.post(
        f"{AUTH}/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_TOKEN"
    response = await client.get(f"{AUTH}/me", headers=bearer(rotated["access_token"]))
    assert response.status_code == 401
    assert response.json()["code"] == "NOT_AUTHENTICATED"
    # The session made by /verify is another one and still alive.
    response = await client.get(f"{AUTH}/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 200


async def test_forgot_reset_ends_every_session(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    email = "reset.me@example.com"
    first = await verified_account(client, mailbox, email)
    second = await new_session(client, first)

    response = await client.post(f"{AUTH}/password/forgot", json={"email": email})
    assert response.status_code == 202
    reset_mail = (await mailbox.wait_for(email, 2))[1]
    assert "contraseña" in message_text(reset_mail)
    code = code_in(reset_mail)

    response = await client.post(
        f"{AUTH}/password/reset",
        json={"email": email, "code": code, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204, response.text

    for old in (first, second):
        response = await client.post(f"{AUTH}/refresh", json={"refresh_token": old.refresh})
        assert response.status_code == 401
        response = await client.get(f"{AUTH}/me", headers=bearer(old.access))
        assert response.status_code == 401
    assert (await login(client, email, PASSWORD)).status_code == 401
    response = await login(client, email, NEW_PASSWORD)
    assert response.status_code == 200
    me = await client.get(f"{AUTH}/me", headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200


async def test_change_password_keeps_only_the_current_session(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = "change.me@example.com"
    current = await verified_account(client, mailbox, email)
    other = await new_session(client, current)

    response = await client.post(
        f"{AUTH}/me/password",
        json={"current_password": "not-my-password", "new_password": NEW_PASSWORD},
        headers=bearer(current.access),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_CREDENTIALS"

    response = await client.post(
        f"{AUTH}/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(current.access),
    )
    assert response.status_code == 204, response.text

    assert (await client.get(f"{AUTH}/me", headers=bearer(current.access))).status_code == 200
    response = await client.post(f"{AUTH}/refresh", json={"refresh_token": current.refresh})
    assert response.status_code == 200
    assert (await client.get(f"{AUTH}/me", headers=bearer(other.access))).status_code == 401
    response = await client.post(f"{AUTH}/refresh", json={"refresh_token": other.refresh})
    assert response.status_code == 401

    assert (await login(client, email, PASSWORD)).status_code == 401
    assert (await login(client, email, NEW_PASSWORD)).status_code == 200


async def test_change_password_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{AUTH}/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "NOT_AUTHENTICATED"


async def test_update_me_and_locale_picks_the_template(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = "locale@example.com"
    account = await verified_account(client, mailbox, email)
    response = await client.patch(
        f"{AUTH}/me", json={"name": "Dr. Luis Soto", "locale": "en"}, headers=bearer(account.access)
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Dr. Luis Soto" and response.json()["locale"] == "en"
    response = await client.patch(f"{AUTH}/me", json={}, headers=bearer(account.access))
    assert response.status_code == 200 and response.json()["locale"] == "en"

    for bad in ({"locale": "fr"}, {"name": ""}, {"name": "x" * 101}):
        response = await client.patch(f"{AUTH}/me", json=bad, headers=bearer(account.access))
        assert response.status_code == 422, bad
        assert response.json()["code"] == "VALIDATION_ERROR"

    await client.post(f"{AUTH}/password/forgot", json={"email": email})
    mail = (await mailbox.wait_for(email, 2))[1]
    assert subject(mail) == "Your OcuPredict password reset code"
    assert "Hello Dr. Luis Soto" in message_text(mail)


async def test_register_in_english(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    response = await register(client, "en@example.com", locale="en")
    assert response.status_code == 201
    assert response.json()["locale"] == "en"
    [mail] = await mailbox.wait_for("en@example.com")
    assert subject(mail) == "Your OcuPredict verification code"
    assert "Your OcuPredict verification code is:" in message_text(mail)


async def test_register_validation(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    cases = [
        {"email": "a@example.com", "password": "short-pw1", "name": "Ana"},  # 9 characters
        {"email": "a@example.com", "password": "p" * 129, "name": "Ana"},
        {"email": "a@example.com", "password": PASSWORD, "name": "   "},
        {"email": "a@example.com", "password": PASSWORD, "name": "x" * 101},
        {"email": "a@example.com", "password": PASSWORD, "name": "Ana", "locale": "fr"},
        {"email": "not-an-email", "password": PASSWORD, "name": "Ana"},
        {"password": PASSWORD, "name": "Ana"},
    ]
    for body in cases:
        response = await register_raw(client, body)
        assert response.status_code == 422, body
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert PASSWORD not in response.text and "short-pw1" not in response.text
    assert mailbox.messages == []
    # Bounds are inclusive.
    response = await register(client, "b@example.com", password="p" * 128, name="x" * 100)
    assert response.status_code == 201, response.text


async def register_raw(client: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    return await client.post(f"{AUTH}/register", json=body)
