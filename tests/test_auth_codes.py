"""One-time codes: wrong, expired, reused, exhausted, superseded, per purpose, never in clear."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.base import utcnow
from app.db.models import OneTimeCode, RefreshToken, User
from app.security import sha256_hex
from tests.support.auth import (
    AUTH,
    NEW_PASSWORD,
    PASSWORD,
    login,
    next_code,
    register,
    verified_account,
)
from tests.support.mail import Mailbox

INVALID_CODE = {"detail": "The code is wrong, expired or already used", "code": "INVALID_CODE"}


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def verify(client: httpx.AsyncClient, email: str, code: str) -> httpx.Response:
    return await client.post(f"{AUTH}/verify", json={"email": email, "code": code})


async def pending(client: httpx.AsyncClient, mailbox: Mailbox, email: str) -> str:
    assert (await register(client, email)).status_code == 201
    return await next_code(mailbox, email, 1)


async def test_wrong_code_then_right_code(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    email = "wrong@example.com"
    code = await pending(client, mailbox, email)
    response = await verify(client, email, wrong(code))
    assert response.status_code == 400
    assert response.json() == INVALID_CODE
    assert (await login(client, email)).status_code == 403  # still unverified
    # A wrong try costs one attempt, not the code; pasted spaces are ignored.
    response = await verify(client, email, f"{code[:3]} {code[3:]}")
    assert response.status_code == 200, response.text


async def test_expired_code(
    client: httpx.AsyncClient, mailbox: Mailbox, db_engine: AsyncEngine
) -> None:
    email = "expired@example.com"
    code = await pending(client, mailbox, email)
    async with db_engine.begin() as conn:
        await conn.execute(update(OneTimeCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = await verify(client, email, code)
    assert response.status_code == 400
    assert response.json() == INVALID_CODE


async def test_code_lasts_fifteen_minutes(
    client: httpx.AsyncClient, mailbox: Mailbox, db_engine: AsyncEngine
) -> None:
    before = utcnow()
    await pending(client, mailbox, "ttl@example.com")
    async with db_engine.connect() as conn:
        expires_at = (await conn.execute(select(OneTimeCode.expires_at))).scalar_one()
    assert timedelta(minutes=14) < expires_at - before <= timedelta(minutes=15, seconds=1)


async def test_reused_code(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    email = "reuse@example.com"
    code = await pending(client, mailbox, email)
    assert (await verify(client, email, code)).status_code == 200
    response = await verify(client, email, code)
    assert response.status_code == 400
    assert response.json() == INVALID_CODE


async def test_sixth_attempt_fails_even_with_the_right_code(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = "sixth@example.com"
    code = await pending(client, mailbox, email)
    for _ in range(5):
        response = await verify(client, email, wrong(code))
        assert response.json() == INVALID_CODE
    response = await verify(client, email, code)
    assert response.status_code == 400
    assert response.json() == INVALID_CODE
    # A new code starts over.
    assert (await client.post(f"{AUTH}/verify/resend", json={"email": email})).status_code == 202
    fresh = await next_code(mailbox, email, 2)
    assert (await verify(client, email, fresh)).status_code == 200


async def test_fifth_attempt_can_still_succeed(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    email = "fifth@example.com"
    code = await pending(client, mailbox, email)
    for _ in range(4):
        assert (await verify(client, email, wrong(code))).status_code == 400
    assert (await verify(client, email, code)).status_code == 200


async def test_new_code_invalidates_the_older_one(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = "older@example.com"
    first = await pending(client, mailbox, email)
    assert (await client.post(f"{AUTH}/verify/resend", json={"email": email})).status_code == 202
    second = await next_code(mailbox, email, 2)
    if first != second:  # one chance in a million they coincide
        assert (await verify(client, email, first)).json() == INVALID_CODE
    assert (await verify(client, email, second)).status_code == 200


async def test_unknown_email_gets_the_same_invalid_code(client: httpx.AsyncClient) -> None:
    response = await verify(client, "nobody@example.com", "123456")
    assert response.status_code == 400
    assert response.json() == INVALID_CODE
    response = await client.post(
        f"{AUTH}/password/reset",
        json={"email": "nobody@example.com", "code": "123456", "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert response.json() == INVALID_CODE


async def test_malformed_code_is_just_wrong(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    email = "malformed@example.com"
    await pending(client, mailbox, email)
    for bad in ("12345", "abcdef", "1234567"):
        assert (await verify(client, email, bad)).json() == INVALID_CODE


async def test_codes_are_bound_to_their_purpose(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = "purpose@example.com"
    account = await verified_account(client, mailbox, email)
    await client.post(f"{AUTH}/password/forgot", json={"email": email})
    reset_code = await next_code(mailbox, email, 2)
    # A reset code does not verify, and a verify code does not reset.
    assert (await verify(client, email, reset_code)).json() == INVALID_CODE
    other = await verified_account(client, mailbox, "other@example.com")
    assert other.email != account.email
    response = await client.post(
        f"{AUTH}/password/reset",
        json={"email": "other@example.com", "code": reset_code, "new_password": NEW_PASSWORD},
    )
    assert response.json() == INVALID_CODE  # and not another user's either
    response = await client.post(
        f"{AUTH}/password/reset",
        json={"email": email, "code": reset_code, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204


async def test_reset_code_wrong_expired_reused(
    client: httpx.AsyncClient, mailbox: Mailbox, db_engine: AsyncEngine
) -> None:
    email = "reset.codes@example.com"
    await verified_account(client, mailbox, email)
    await client.post(f"{AUTH}/password/forgot", json={"email": email})
    code = await next_code(mailbox, email, 2)

    async def reset(code: str) -> httpx.Response:
        return await client.post(
            f"{AUTH}/password/reset",
            json={"email": email, "code": code, "new_password": NEW_PASSWORD},
        )

    assert (await reset(wrong(code))).json() == INVALID_CODE
    assert (await reset(code)).status_code == 204
    assert (await reset(code)).json() == INVALID_CODE

    await client.post(f"{AUTH}/password/forgot", json={"email": email})
    code = await next_code(mailbox, email, 3)
    async with db_engine.begin() as conn:
        await conn.execute(update(OneTimeCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await reset(code)).json() == INVALID_CODE


async def test_nothing_secret_is_stored_in_clear(
    client: httpx.AsyncClient, mailbox: Mailbox, db_engine: AsyncEngine
) -> None:
    email = "stored@example.com"
    account = await verified_account(client, mailbox, email)
    code = await next_code(mailbox, email, 1)
    async with db_engine.connect() as conn:
        user = (await conn.execute(select(User))).one()
        codes = (await conn.execute(select(OneTimeCode.code_hash))).scalars().all()
        tokens = (await conn.execute(select(RefreshToken.token_hash))).scalars().all()
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert codes and all(code not in h and len(h) == 64 for h in codes)
    assert sha256_hex(account.refresh) in tokens
    assert account.refresh not in tokens
