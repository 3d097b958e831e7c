"""Access tokens (JWT) and refresh-token families; CurrentUser and AdminUser."""

from __future__ import annotations

import base64
import io
import json
import sys
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.deps import AdminUser, CurrentUser
from app.api.errors import error_responses
from app.cli import main as cli_main
from app.db.base import utcnow
from app.db.models import RefreshToken, User
from app.errors import Forbidden, NotAuthenticated
from tests.support.auth import (
    AUTH,
    PASSWORD,
    Account,
    bearer,
    login,
    new_session,
    verified_account,
)
from tests.support.harness import TEST_JWT_SECRET, ClientFactory, in_own_thread
from tests.support.mail import Mailbox

NOT_AUTHENTICATED = {"detail": "Not authenticated", "code": "NOT_AUTHENTICATED"}


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def forge(claims: dict[str, Any], key: str = TEST_JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


async def assert_rejected(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(f"{AUTH}/me", headers=bearer(token))
    assert response.status_code == 401, token
    assert response.json() == NOT_AUTHENTICATED
    assert response.headers["www-authenticate"] == "Bearer"


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{AUTH}/refresh", json={"refresh_token": token})


async def test_access_token_claims(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    account = await verified_account(client, mailbox, "claims@example.com")
    header = jwt.get_unverified_header(account.access)
    assert header["alg"] == "HS256"
    claims = claims_of(account.access)
    assert {"sub", "exp", "iat", "iss", "aud", "jti", "sid"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert (claims["iss"], claims["aud"]) == ("ocupredict", "ocupredict-api")
    other = await new_session(client, account)
    assert claims_of(other.access)["jti"] != claims["jti"]
    assert claims_of(other.access)["sid"] != claims["sid"]


async def test_missing_or_malformed_authorization(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{AUTH}/me")
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response.headers["www-authenticate"] == "Bearer"
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "Bearer abc"):
        response = await client.get(f"{AUTH}/me", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json() == NOT_AUTHENTICATED


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # the HS512 forgery below
async def test_expired_tampered_and_alg_none_tokens(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    account = await verified_account(client, mailbox, "jwt@example.com")
    claims = claims_of(account.access)
    assert (await client.get(f"{AUTH}/me", headers=bearer(account.access))).status_code == 200
    # The same claims re-signed by us are fine, so each rejection below is for its reason.
    assert (await client.get(f"{AUTH}/me", headers=bearer(forge(claims)))).status_code == 200

    now = int(utcnow().timestamp())
    await assert_rejected(client, forge({**claims, "iat": now - 3600, "exp": now - 60}))

    # Tampered: another user id in the payload, the original signature.
    head, payload, signature = account.access.split(".")
    evil = {**claims, "sub": str(int(claims["sub"]) + 1)}
    evil_payload = base64.urlsafe_b64encode(json.dumps(evil).encode()).rstrip(b"=").decode()
    await assert_rejected(client, f"{head}.{evil_payload}.{signature}")
    await assert_rejected(client, f"{head}.{payload}.{signature[:-4]}AAAA")

    # alg=none (unsigned), and a token signed with another key.
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
    assert jwt.get_unverified_header(unsigned)["alg"] == "none"
    await assert_rejected(client, unsigned)
    await assert_rejected(client, forge(claims, key="another-secret-0123456789abcdef012345"))
    # HS512 with the right key: the algorithm is pinned, not read from the header.
    await assert_rejected(client, forge(claims, algorithm="HS512"))

    # Wrong issuer or audience, or a required claim missing.
    await assert_rejected(client, forge({**claims, "iss": "someone-else"}))
    await assert_rejected(client, forge({**claims, "aud": "another-api"}))
    for claim in ("sub", "exp", "iat", "jti", "sid"):
        await assert_rejected(client, forge({k: v for k, v in claims.items() if k != claim}))
    await assert_rejected(client, forge({**claims, "sub": "not-a-number"}))


async def test_refresh_rotates_and_spent_token_reuse_kills_the_family(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    victim = await verified_account(client, mailbox, "family@example.com")
    bystander = await new_session(client, victim)  # another device, another family

    first = await refresh(client, victim.refresh)
    assert first.status_code == 200
    second = await refresh(client, first.json()["refresh_token"])
    assert second.status_code == 200
    latest = second.json()

    # Someone replays the token spent two rotations ago.
    response = await refresh(client, victim.refresh)
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_TOKEN"
    # The whole family is gone: the latest refresh token and its access token too.
    assert (await refresh(client, latest["refresh_token"])).status_code == 401
    await assert_rejected(client, latest["access_token"])
    # The other family is untouched.
    assert (await client.get(f"{AUTH}/me", headers=bearer(bystander.access))).status_code == 200
    assert (await refresh(client, bystander.refresh)).status_code == 200


async def test_bad_and_expired_refresh_tokens(
    client: httpx.AsyncClient, mailbox: Mailbox, db_engine: AsyncEngine
) -> None:
    account = await verified_account(client, mailbox, "expiry@example.com")
    for bad in ("garbage", account.access):
        response = await refresh(client, bad)
        assert response.status_code == 401
        assert response.json() == {
            "detail": "The refresh token is invalid, expired or spent",
            "code": "INVALID_TOKEN",
        }
    assert (await client.post(f"{AUTH}/refresh", json={})).status_code == 422

    async with db_engine.begin() as conn:
        expires_at = (await conn.execute(select(RefreshToken.expires_at))).scalar_one()
        assert timedelta(days=29) < expires_at - utcnow() <= timedelta(days=30)
        await conn.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await refresh(client, account.refresh)).status_code == 401


async def test_logout_is_idempotent_and_ends_only_its_session(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    account = await verified_account(client, mailbox, "logout@example.com")
    other = await new_session(client, account)
    for _ in range(2):
        response = await client.post(f"{AUTH}/logout", json={"refresh_token": account.refresh})
        assert response.status_code == 204
    response = await client.post(f"{AUTH}/logout", json={"refresh_token": "unknown-token"})
    assert response.status_code == 204
    await assert_rejected(client, account.access)
    assert (await client.get(f"{AUTH}/me", headers=bearer(other.access))).status_code == 200


async def test_create_admin_cli_and_admin_dependency(
    make_client: ClientFactory,
    mailbox: Mailbox,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    argv = ["create-admin", "Root@Example.com", "--name", "Root", "--password-stdin"]
    assert in_own_thread(lambda: cli_main(argv)) == 0
    assert "root@example.com" in capsys.readouterr().out
    # Again: the verified account exists.
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert in_own_thread(lambda: cli_main(argv)) == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert (
        in_own_thread(
            lambda: cli_main(["create-admin", "x@example.com", "--name", "X", "--password-stdin"])
        )
        == 2
    )

    async with make_client() as client:
        router = APIRouter()

        @router.get("/admin-only", responses=error_responses(NotAuthenticated, Forbidden))
        async def admin_only(user: AdminUser) -> dict[str, str]:
            return {"email": user.email}

        @router.get("/anyone", responses=error_responses(NotAuthenticated))
        async def anyone(user: CurrentUser) -> dict[str, str]:
            return {"role": user.role}

        client.app.include_router(router, prefix="/api/v1")  # type: ignore[attr-defined]

        response = await login(client, "ROOT@example.com")
        assert response.status_code == 200, response.text
        admin = Account("root@example.com", PASSWORD, response.json())
        me = await client.get(f"{AUTH}/me", headers=bearer(admin.access))
        assert me.json()["role"] == "admin" and me.json()["is_verified"] is True
        response = await client.get("/api/v1/admin-only", headers=bearer(admin.access))
        assert response.json() == {"email": "root@example.com"}

        doctor = await verified_account(client, mailbox, "doctor@example.com")
        response = await client.get("/api/v1/admin-only", headers=bearer(doctor.access))
        assert response.status_code == 403
        assert response.json()["code"] == "FORBIDDEN"
        response = await client.get("/api/v1/anyone", headers=bearer(doctor.access))
        assert response.json() == {"role": "doctor"}
        assert (await client.get("/api/v1/admin-only")).status_code == 401


async def test_password_rehashed_when_parameters_change(
    make_client: ClientFactory, mailbox: Mailbox, db_engine: AsyncEngine
) -> None:
    async def stored_hash() -> str:
        async with db_engine.connect() as conn:
            return str((await conn.execute(select(User.password_hash))).scalar_one())

    async with make_client(password_hash_time_cost=1) as client:
        await verified_account(client, mailbox, "rehash@example.com")
    old = await stored_hash()
    assert ",t=1," in old
    async with make_client(password_hash_time_cost=2) as client:
        assert (await login(client, "rehash@example.com")).status_code == 200
        new = await stored_hash()
        assert ",t=2," in new and new != old
        assert (await login(client, "rehash@example.com")).status_code == 200
        assert await stored_hash() == new  # no needless rehash
