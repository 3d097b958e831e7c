"""Mail delivery (SMTP down, resend), pending registrations, email case, mail backends."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from app.config import ConfigError, Settings
from app.mail import ConsoleMailer, render_code_mail
from tests.support.auth import (
    AUTH,
    NEW_PASSWORD,
    PASSWORD,
    code_in,
    login,
    next_code,
    register,
    verified_account,
)
from tests.support.harness import ClientFactory, free_port
from tests.support.mail import Mailbox, message_text


async def test_smtp_down_at_registration_then_resend_delivers(
    make_client: ClientFactory,
    client: httpx.AsyncClient,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    email = "smtp.down@example.com"
    caplog.set_level(logging.INFO)
    async with make_client(mail_port=free_port()) as broken:  # nothing listens there
        response = await broken.post(
            f"{AUTH}/register",
            json={"email": email, "password": PASSWORD, "name": "Ana"},
            headers={"X-Request-ID": "reg-smtp-down"},
        )
        assert response.status_code == 201, response.text
        assert response.headers["x-request-id"] == "reg-smtp-down"
        # Resend through the broken server also answers 202 (and fails the same way).
        response = await broken.post(f"{AUTH}/verify/resend", json={"email": email})
        assert response.status_code == 202

    failures = [r for r in caplog.records if r.name == "app.services.notify"]
    assert failures and all(r.levelno == logging.ERROR for r in failures)
    assert failures[0].request_id == "reg-smtp-down"  # type: ignore[attr-defined]
    for record in failures:
        assert not re.search(r"\d{6}", record.getMessage())  # no code in the log
    assert mailbox.to(email) == []

    # The account survived: the right password gets 403, not 401.
    assert (await login(client, email)).status_code == 403
    # With the mail server back (the normal app), resend delivers a working code.
    response = await client.post(f"{AUTH}/verify/resend", json={"email": email})
    assert response.status_code == 202
    code = await next_code(mailbox, email, 1)
    response = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
    assert response.status_code == 200, response.text


async def test_duplicate_verified_email_is_409(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    await verified_account(client, mailbox, "taken@example.com")
    response = await register(client, "taken@example.com", password=NEW_PASSWORD, name="Mallory")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "An account with this email already exists",
        "code": "EMAIL_TAKEN",
    }
    assert len(mailbox.to("taken@example.com")) == 1  # no new code for an attacker
    assert (await login(client, "taken@example.com", NEW_PASSWORD)).status_code == 401
    assert (await login(client, "taken@example.com")).status_code == 200


async def test_registering_a_pending_email_again_sends_a_code_and_changes_nothing(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    """A repeat registration of an unverified address only sends a new code: the pending
    account keeps its first password, name and language (issue 26, finding 2), and the
    answer echoes the second request, as for a new account."""
    email = "again@example.com"
    first = await register(client, email, name="First Try")
    first_code = await next_code(mailbox, email, 1)
    second = await register(client, email, password=NEW_PASSWORD, name="Second Try", locale="en")
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["name"] == "Second Try" and second.json()["locale"] == "en"
    mail = (await mailbox.wait_for(email, 2))[1]
    second_code = code_in(mail)
    assert "Hola First Try" in message_text(mail) or "First Try" in message_text(mail)
    if first_code != second_code:
        response = await client.post(f"{AUTH}/verify", json={"email": email, "code": first_code})
        assert response.status_code == 400
    response = await client.post(f"{AUTH}/verify", json={"email": email, "code": second_code})
    assert response.status_code == 200
    assert response.json()["access_token"]
    assert (await login(client, email, NEW_PASSWORD)).status_code == 401
    assert (await login(client, email, PASSWORD)).status_code == 200


async def test_emails_differing_only_in_case_are_one_account(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    response = await register(client, "Mixed.Case@Example.COM")
    assert response.status_code == 201
    assert response.json()["email"] == "mixed.case@example.com"
    code = await next_code(mailbox, "mixed.case@example.com", 1)
    response = await client.post(
        f"{AUTH}/verify", json={"email": "MIXED.case@example.com", "code": code}
    )
    assert response.status_code == 200, response.text

    response = await register(client, "mixed.CASE@EXAMPLE.com")
    assert response.status_code == 409
    assert response.json()["code"] == "EMAIL_TAKEN"
    assert (await login(client, "MIXED.CASE@EXAMPLE.COM")).status_code == 200

    response = await client.post(
        f"{AUTH}/password/forgot", json={"email": "Mixed.Case@example.com"}
    )
    assert response.status_code == 202
    code = await next_code(mailbox, "mixed.case@example.com", 2)
    response = await client.post(
        f"{AUTH}/password/reset",
        json={"email": "mixed.case@EXAMPLE.com", "code": code, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    assert (await login(client, "Mixed.Case@Example.COM", NEW_PASSWORD)).status_code == 200


async def test_console_mailer_logs_the_code_in_development(
    make_client: ClientFactory, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.mail.console")
    async with make_client(mail_backend="console") as client:
        assert (await register(client, "console@example.com")).status_code == 201
        [record] = [r for r in caplog.records if r.name == "app.mail.console"]
        match = re.search(r"verificación de OcuPredict es: (\d{6})", record.getMessage())
        assert match
        response = await client.post(
            f"{AUTH}/verify", json={"email": "console@example.com", "code": match.group(1)}
        )
        assert response.status_code == 200
    assert mailbox.messages == []


def test_console_mailer_refuses_production() -> None:
    with pytest.raises(ConfigError):
        ConsoleMailer(Settings(environment="production"))
    with pytest.raises(ConfigError, match="MAIL_BACKEND"):
        Settings(
            environment="production",
            jwt_secret_key="x" * 40,
            model_source="/models/real.pth",
            mail_backend="console",
        ).check_production()


@pytest.mark.parametrize("locale", ["es", "en", "pt"])
@pytest.mark.parametrize("purpose", ["verify", "reset"])
def test_templates_have_text_and_html_in_each_locale(locale: str, purpose: str) -> None:
    message = render_code_mail(
        to="a@example.com",
        name="<b>Ana</b> & co",
        locale=locale,
        purpose=purpose,  # type: ignore[arg-type]
        code="042917",
        ttl_minutes=15,
    )
    assert "042917" in message.text and "042917" in message.html
    assert "15" in message.text
    assert "&lt;b&gt;Ana&lt;/b&gt; &amp; co" in message.html  # escaped in HTML
    assert "<b>Ana</b> & co" in message.text
    expected_lang = "en" if locale == "en" else "es"  # unknown locales fall back to Spanish
    assert f'<html lang="{expected_lang}">' in message.html
    assert "042917" not in repr(message)
