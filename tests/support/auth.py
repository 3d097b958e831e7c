"""Helpers shared by the auth tests (and by any test that needs a logged-in user).

The test apps use a cheap Argon2 cost (tests/conftest.py base_settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import httpx

from tests.support.mail import Mailbox, message_text

AUTH = "/api/v1/auth"
PASSWORD = "correct-horse-battery"
NEW_PASSWORD = "tr0ub4dor-and-3-more"
_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def code_in(message: Message) -> str:
    """The 6-digit code of a captured email (the same in the text and the HTML part)."""
    codes = set(_CODE.findall(message_text(message)))
    assert len(codes) == 1, f"expected one code in the mail, found {codes}"
    return str(codes.pop())


async def next_code(mailbox: Mailbox, email: str, count: int) -> str:
    """The code of the `count`-th email sent to `email`."""
    messages = await mailbox.wait_for(email, count)
    return code_in(messages[count - 1])


def subject(message: Message) -> str:
    return str(make_header(decode_header(str(message["Subject"]))))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    email: str
    password: str
    tokens: dict[str, Any]

    @property
    def access(self) -> str:
        return str(self.tokens["access_token"])

    @property
    def refresh(self) -> str:
        return str(self.tokens["refresh_token"])


async def register(
    client: httpx.AsyncClient,
    email: str,
    password: str = PASSWORD,
    name: str = "Ana Quispe",
    locale: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"email": email, "password": password, "name": name}
    if locale is not None:
        body["locale"] = locale
    return await client.post(f"{AUTH}/register", json=body)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(f"{AUTH}/login", data={"username": email, "password": password})


async def verified_account(
    client: httpx.AsyncClient,
    mailbox: Mailbox,
    email: str,
    password: str = PASSWORD,
    locale: str | None = None,
) -> Account:
    """Register, read the code from the captured email, verify: a logged-in account."""
    sent_before = len(mailbox.to(email))
    response = await register(client, email, password, locale=locale)
    assert response.status_code == 201, response.text
    code = await next_code(mailbox, email, sent_before + 1)
    response = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
    assert response.status_code == 200, response.text
    return Account(email=email, password=password, tokens=response.json())


async def new_session(client: httpx.AsyncClient, account: Account) -> Account:
    response = await login(client, account.email, account.password)
    assert response.status_code == 200, response.text
    return Account(email=account.email, password=account.password, tokens=response.json())
