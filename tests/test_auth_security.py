"""No secret in the logs; the OpenAPI contract of the auth section (Swagger's Authorize)."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

from tests.support.auth import (
    AUTH,
    NEW_PASSWORD,
    PASSWORD,
    bearer,
    login,
    new_session,
    next_code,
    register,
    verified_account,
)
from tests.support.harness import ClientFactory, free_port
from tests.support.mail import Mailbox

# Where six digits occur by chance: hex digests and object ids, UUIDs, hashes, datetimes,
# SQLAlchemy's timings (0.001716s).
_CHANCE_DIGITS = re.compile(
    r"0x[0-9a-f]+|[0-9a-f]{32,}|[0-9a-f-]{36}|\$argon2id\$[^\s']+|datetime\([^)]*\)"
    r"|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)?|\d*\.\d+"
)
THIRD_PASSWORD = "yet-another-long-passphrase"
WRONG_PASSWORD = "wrong-password-guess-42"


async def test_no_password_code_or_token_in_any_log_record(
    client: httpx.AsyncClient,
    make_client: ClientFactory,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything,
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # SQL, parameters and rows too
    secrets: set[str] = {PASSWORD, NEW_PASSWORD, THIRD_PASSWORD, WRONG_PASSWORD}
    codes: set[str] = set()

    def keep(tokens: dict[str, Any]) -> None:
        access, refresh = tokens["access_token"], tokens["refresh_token"]
        secrets.update({access, refresh, access.rsplit(".", 1)[1]})

    email = "logs@example.com"
    account = await verified_account(client, mailbox, email)
    codes.add(await next_code(mailbox, email, 1))
    keep(account.tokens)
    assert (await login(client, email, WRONG_PASSWORD)).status_code == 401
    assert (await login(client, "ghost@example.com", WRONG_PASSWORD)).status_code == 401
    await client.post(f"{AUTH}/verify", json={"email": email, "code": "000000"})

    other = await new_session(client, account)
    keep(other.tokens)
    rotated = (await client.post(f"{AUTH}/refresh", json={"refresh_token": other.refresh})).json()
    keep(rotated)
    await client.post(f"{AUTH}/refresh", json={"refresh_token": other.refresh})  # reuse
    await client.get(f"{AUTH}/me", headers=bearer(rotated["access_token"]))  # revoked
    await client.get(f"{AUTH}/me", headers=bearer(account.access + "x"))  # tampered

    await client.post(f"{AUTH}/password/forgot", json={"email": email})
    reset_code = await next_code(mailbox, email, 2)
    codes.add(reset_code)
    await client.post(
        f"{AUTH}/password/reset",
        json={"email": email, "code": reset_code, "new_password": NEW_PASSWORD},
    )
    session = (await login(client, email, NEW_PASSWORD)).json()
    keep(session)
    await client.post(
        f"{AUTH}/me/password",
        json={"current_password": WRONG_PASSWORD, "new_password": THIRD_PASSWORD},
        headers=bearer(session["access_token"]),
    )
    await client.post(
        f"{AUTH}/me/password",
        json={"current_password": NEW_PASSWORD, "new_password": THIRD_PASSWORD},
        headers=bearer(session["access_token"]),
    )
    await client.post(f"{AUTH}/logout", json={"refresh_token": session["refresh_token"]})
    await register(client, "short@example.com", password="too-short")  # 422
    secrets.add("too-short")
    # A failed delivery is logged too: still without the code.
    async with make_client(mail_port=free_port()) as broken:
        await broken.post(f"{AUTH}/verify/resend", json={"email": "pending@example.com"})
        await register(broken, "pending@example.com", password=PASSWORD)

    records = [
        r
        for r in caplog.records
        # aiosmtpd is the stand-in for the outside mail server: it logs the DATA it gets.
        if not r.name.startswith("mail.log")
    ]
    assert any(r.name.startswith("app.") for r in records)
    assert any(r.name.startswith("sqlalchemy") for r in records), "SQL logging was expected"
    for record in records:
        texts = [record.getMessage(), repr(record.args), record.exc_text or ""]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"secret in log record {record.name}: {text[:200]}"
            # Six digits also turn up by chance inside SQL parameters: strip those first.
            words = set(re.findall(r"\d+", _CHANCE_DIGITS.sub(" ", text)))
            assert not codes & words, f"code in log record {record.name}: {text[:200]}"


async def test_openapi_auth_contract(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = {
        op["operationId"]: (method, path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
    }
    expected = {
        "auth-register": ("post", "/auth/register", {"409", "422", "429"}),
        "auth-verify": ("post", "/auth/verify", {"400", "422", "429"}),
        "auth-resend_verification": ("post", "/auth/verify/resend", {"429"}),
        "auth-login": ("post", "/auth/login", {"401", "403", "429"}),
        "auth-refresh": ("post", "/auth/refresh", {"401"}),
        "auth-logout": ("post", "/auth/logout", set()),
        "auth-forgot_password": ("post", "/auth/password/forgot", {"429"}),
        "auth-reset_password": ("post", "/auth/password/reset", {"400", "429"}),
        "auth-read_me": ("get", "/auth/me", {"401"}),
        "auth-update_me": ("patch", "/auth/me", {"401", "422"}),
        "auth-change_password": ("post", "/auth/me/password", {"400", "401"}),
    }
    success = {
        "auth-register": "201",
        "auth-resend_verification": "202",
        "auth-forgot_password": "202",
        "auth-logout": "204",
        "auth-reset_password": "204",
        "auth-change_password": "204",
    }
    for op_id, (method, path, errors) in expected.items():
        assert op_id in operations, op_id
        got_method, got_path, op = operations[op_id]
        assert (got_method, got_path) == (method, f"/api/v1{path}")
        assert errors <= set(op["responses"]), (op_id, op["responses"].keys())
        assert success.get(op_id, "200") in op["responses"]
        for code in errors:
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert body["properties"]["code"]["enum"], (op_id, code)
    login_body = operations["auth-login"][2]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in login_body
    for op_id in ("auth-read_me", "auth-update_me", "auth-change_password"):
        assert operations[op_id][2]["security"] == [{"OAuth2PasswordBearer": []}]
    components = schema["components"]["schemas"]
    assert {"id", "email", "name", "locale", "role", "is_verified", "created_at"} <= set(
        components["User"]["properties"]
    )
    assert {"access_token", "refresh_token", "token_type", "expires_in"} <= set(
        components["TokenPair"]["properties"]
    )


async def test_swagger_authorize_password_flow_logs_in(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    schema = (await client.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["type"] == "oauth2"
    token_url = scheme["flows"]["password"]["tokenUrl"]
    assert token_url == "/api/v1/auth/login"

    await verified_account(client, mailbox, "swagger@example.com")
    # What Swagger UI sends: grant_type=password, username, password (and empty scope).
    response = await client.post(
        token_url,
        data={
            "grant_type": "password",
            "username": "swagger@example.com",
            "password": PASSWORD,
            "scope": "",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    me = await client.get(f"{AUTH}/me", headers=bearer(body["access_token"]))
    assert me.json()["email"] == "swagger@example.com"
