"""What an outside probe found (issue 26), one test per finding; each failed before its fix.

Findings 1 (a DICOM that lies about its size) and 3 (signed URLs in the access log) have
their tests beside the code they exercise (tests/test_dicom.py, tests/test_logging.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import event, insert

from app.db.base import utcnow
from app.db.models import AuditEvent
from app.services.auth import AuthService
from tests.support.auth import (
    AUTH,
    NEW_PASSWORD,
    PASSWORD,
    bearer,
    login,
    next_code,
    register,
    verified_account,
)
from tests.support.factories import add_stored_prediction, app_of, make_doctor
from tests.support.harness import ClientFactory
from tests.support.mail import Mailbox, message_text

API = "/api/v1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # stored bytes only; never decoded here


# --------------------------------------------------------------------------- 2


async def test_re_registering_a_pending_email_cannot_take_the_account_over(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = "victim@example.com"
    assert (await register(client, email, PASSWORD, name="Victim")).status_code == 201
    attacker = await register(client, email, "attacker-password-2", name="Mallory")
    assert attacker.status_code == 201  # the same answer: nothing tells the address is pending
    assert attacker.json()["name"] == "Mallory"  # nor whose it is
    code = await next_code(mailbox, email, 2)  # the victim uses the newest code in the inbox
    verified = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
    assert verified.status_code == 200, verified.text

    assert (await login(client, email, "attacker-password-2")).status_code == 401
    victim = await login(client, email, PASSWORD)
    assert victim.status_code == 200
    me = await client.get(f"{AUTH}/me", headers=bearer(victim.json()["access_token"]))
    assert me.json()["name"] == "Victim"


# --------------------------------------------------------------------------- 4


async def test_the_registry_reads_only_its_bucket_and_prefix_and_echoes_no_content(
    make_client: ClientFactory, s3_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    secret = "aws_secret_access_key = AKIA-VERY-SECRET"
    s3_client.put_object(Bucket=s3_bucket, Key="models/x.pth", Body=b"not weights")
    s3_client.put_object(Bucket=s3_bucket, Key="models/x.json", Body=secret.encode())
    s3_client.put_object(Bucket=s3_bucket, Key="config.json", Body=secret.encode())
    async with make_client(s3_endpoint_url=s3_endpoint, aws_s3_bucket=s3_bucket) as client:
        admin = await make_doctor(app_of(client), role="admin")
        for source in (
            "s3://otherbucket/models/x.pth",
            f"s3://{s3_bucket}/config.json",  # outside MODEL_SOURCE_PREFIX
            f"s3://{s3_bucket}/models/../config.json",
            f"s3://{s3_bucket}/models//x.pth",
            f"s3://{s3_bucket}/models/./x.pth",
        ):
            response = await client.post(
                f"{API}/admin/models", headers=admin.headers, json={"source": source}
            )
            assert response.status_code == 422, (source, response.text)
            assert response.json()["code"] == "INVALID_MODEL"
            assert "SECRET" not in response.text
        # Inside the prefix, a manifest that is not one: refused without its content.
        response = await client.post(
            f"{API}/admin/models",
            headers=admin.headers,
            json={"source": f"s3://{s3_bucket}/models/x.pth"},
        )
        assert response.status_code == 422 and response.json()["code"] == "INVALID_MODEL"
        assert "SECRET" not in response.text and "aws_secret" not in response.text


# --------------------------------------------------------------------------- 5


async def test_tokens_and_patient_data_are_never_cached_and_docs_cannot_be_framed(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    account = await verified_account(client, mailbox, "headers@example.com")
    app = app_of(client)
    me = await client.get(f"{AUTH}/me", headers=bearer(account.access))
    user_id = me.json()["id"]
    row = await add_stored_prediction(app, user_id, PNG)
    auth = bearer(account.access)
    responses = {
        "login": await login(client, account.email),
        "refresh": await client.post(f"{AUTH}/refresh", json={"refresh_token": account.refresh}),
        "me": me,
        "history": await client.get(f"{API}/history", headers=auth),
        "record": await client.get(f"{API}/history/{row.id}", headers=auth),
        "home": await client.get(f"{API}/home/stats", headers=auth),
        "not found": await client.get(f"{API}/history/999999", headers=auth),
    }
    for name, response in responses.items():
        assert response.headers.get("cache-control") == "no-store", name
        assert response.headers.get("x-content-type-options") == "nosniff", name
    image = await client.get(f"{API}/history/{row.id}/image", headers=auth)
    assert image.headers["cache-control"].startswith("private, max-age=")
    assert int(image.headers["cache-control"].rsplit("=", 1)[1]) <= 900

    for path in ("/docs", "/redoc"):
        docs = await client.get(path)
        assert docs.status_code == 200
        policy = docs.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert docs.headers["x-frame-options"] == "DENY"
    assert '"persistAuthorization": true' not in (await client.get("/docs")).text
    # No TLS here: no HSTS (it would pin a plain-HTTP development host).
    assert "strict-transport-security" not in responses["login"].headers


async def test_hsts_when_the_request_came_over_tls(make_client: ClientFactory) -> None:
    async with make_client() as plain:
        transport = httpx.ASGITransport(app=app_of(plain))
        async with httpx.AsyncClient(transport=transport, base_url="https://ocu.test") as tls:
            response = await tls.get(f"{API}/health/live")
    assert response.headers["strict-transport-security"].startswith("max-age=")


# --------------------------------------------------------------------------- 6


async def test_csv_export_quotes_every_cell_and_defuses_formulas(
    client: httpx.AsyncClient,
) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    async with app.state.sessionmaker() as session:
        await session.execute(
            insert(AuditEvent),
            [
                {
                    "at": utcnow(),
                    "action": "auth.login_failed",
                    "actor_email": "a;=cmd|' /C calc'!A0",
                    "request_id": "=1+2",
                    "target_id": '"=HYPERLINK(1)',
                    "ip": "10.0.0.1",
                }
            ],
        )
        await session.commit()
    response = await client.get(f"{API}/admin/audit/export", headers=admin.headers)
    assert response.status_code == 200
    lines = response.text.splitlines()
    for line in lines:
        assert line.startswith('"') and line.endswith('"'), line  # every field quoted
    assert "\"a;=cmd|' /C calc'!A0\"" in lines[1]  # one cell, whatever the separator
    row = next(csv.reader(io.StringIO(lines[1])))
    assert row[8] == "'=1+2"  # request ids are filtered too
    assert row[6] == "'\"=HYPERLINK(1)"  # a formula after a quote


# --------------------------------------------------------------------------- 7


async def test_forgot_and_resend_do_the_same_work_for_known_and_unknown_emails(
    client: httpx.AsyncClient, mailbox: Mailbox, monkeypatch: Any
) -> None:
    """The request path (every SQL statement it runs) is the same whether or not the
    address has an account; the lookup and the code happen after the answer is sent."""
    await verified_account(client, mailbox, "known@example.com")
    await register(client, "pending@example.com")
    deferred: list[tuple[str, str]] = []

    async def record(self: AuthService, email: str, purpose: str, eligible: Any) -> None:
        deferred.append((email, purpose))

    monkeypatch.setattr(AuthService, "_issue_code", record)
    engine = app_of(client).state.sessionmaker.kw["bind"].sync_engine
    statements: list[str] = []

    def capture(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        paths: dict[str, list[str]] = {}
        for route, emails in (
            ("/password/forgot", ("known@example.com", "nobody@example.com")),
            ("/verify/resend", ("pending@example.com", "nobody2@example.com")),
        ):
            for email in emails:
                statements.clear()
                response = await client.post(f"{AUTH}{route}", json={"email": email})
                assert response.status_code == 202, response.text
                paths[email] = list(statements)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    # The rate limits' write guards (app/repositories/write_guards.py) are made on first
    # use, per hashed bucket: an INSERT for one address may be an UPDATE for another.
    # Every other statement is the same, in the same order.
    def work(email: str) -> list[str]:
        return [s for s in paths[email] if "write_guards" not in s]

    assert work("known@example.com") == work("nobody@example.com")
    assert work("pending@example.com") == work("nobody2@example.com")
    assert not any("users" in s for s in paths["known@example.com"])  # no lookup on the path
    assert [e for e, _ in deferred] == [
        "known@example.com",
        "nobody@example.com",
        "pending@example.com",
        "nobody2@example.com",
    ]


async def test_the_deferred_code_still_reaches_a_known_address_only(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_account(client, mailbox, "real@example.com")
    before = len(mailbox.to("real@example.com"))
    for email in ("real@example.com", "ghost@example.com"):
        response = await client.post(f"{AUTH}/password/forgot", json={"email": email})
        assert response.status_code == 202
    code = await next_code(mailbox, "real@example.com", before + 1)
    reset = await client.post(
        f"{AUTH}/password/reset",
        json={"email": "real@example.com", "code": code, "new_password": NEW_PASSWORD},
    )
    assert reset.status_code in (200, 204), reset.text
    assert mailbox.to("ghost@example.com") == []


# --------------------------------------------------------------------------- 8


async def test_a_large_json_body_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    declared = await client.post(
        f"{AUTH}/refresh",
        content=b'{"refresh_token": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert declared.status_code == 413
    assert declared.json()["code"] == "PAYLOAD_TOO_LARGE"

    sent = 0
    chunks = 200  # 200 x 64 KB = 12.5 MB, streamed without a Content-Length

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"refresh_token": "'
        for _ in range(chunks):
            sent += 1
            yield b"x" * 65536

    streamed = await client.post(
        f"{AUTH}/refresh", content=body(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert sent < chunks / 5  # cut off after about 1 MB, not read to the end


# --------------------------------------------------------------------------- 9


async def test_extreme_dates_and_cursors_are_422_not_500(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    version = "0123456789ab"  # no such version: the query is refused before the lookup
    extremes = (
        {"date_to": "9999-12-31"},
        {"date_from": "0001-01-01T00:00:00+14:00"},
        {"date_from": "0001-01-01", "tz": "Pacific/Kiritimati"},
        {"date_to": "9999-12-31T23:59:59-12:00"},
    )
    for path in (
        f"{API}/history",
        f"{API}/admin/audit",
        f"{API}/admin/audit/export",
        f"{API}/admin/models/{version}/metrics",
    ):
        for params in extremes:
            response = await client.get(path, params=params, headers=admin.headers)
            assert response.status_code == 422, (path, params, response.text)
            assert response.json()["code"] == "VALIDATION_ERROR"
    for cursor in ("9223372036854775808", "9999999999999999999"):
        for path in (f"{API}/admin/audit", f"{AUTH}/me/activity"):
            response = await client.get(path, params={"cursor": cursor}, headers=admin.headers)
            assert response.status_code == 422, (path, response.text)
    # The largest id is still a cursor.
    edge = await client.get(
        f"{API}/admin/audit", params={"cursor": "9223372036854775807"}, headers=admin.headers
    )
    assert edge.status_code == 200


# --------------------------------------------------------------------------- 10


async def test_a_signed_url_dies_with_a_disable_or_a_password_change(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    account = await verified_account(client, mailbox, "signed@example.com")
    auth = bearer(account.access)
    user_id = (await client.get(f"{AUTH}/me", headers=auth)).json()["id"]
    row = await add_stored_prediction(app, user_id, PNG)

    async def signed_url() -> str:
        return str((await client.get(f"{API}/history/{row.id}", headers=auth)).json()["image_url"])

    # A password change ends the URLs issued before it.
    url = await signed_url()
    assert (await client.get(url)).status_code == 200
    changed = await client.post(
        f"{AUTH}/me/password",
        headers=auth,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code in (200, 204), changed.text
    assert (await client.get(url)).status_code == 404
    account = await verified_or_login(client, account.email, NEW_PASSWORD)
    auth = bearer(account)
    # A disabled owner's URLs stop working at once.
    url = await signed_url()
    assert (await client.get(url)).status_code == 200
    disabled = await client.post(f"{API}/admin/users/{user_id}/disable", headers=admin.headers)
    assert disabled.status_code == 200, disabled.text
    assert (await client.get(url)).status_code == 404


async def verified_or_login(client: httpx.AsyncClient, email: str, password: str) -> str:
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_names_and_filenames_lose_control_bidi_and_zero_width_characters(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    response = await register(
        client, "bidi@example.com", name="Ana\nBcc: x@evil.test\u202e\u200bQuispe"
    )
    assert response.status_code == 201, response.text
    body = message_text(mailbox.to("bidi@example.com")[-1])
    assert "\u202e" not in body and "\u200b" not in body
    assert "Ana Bcc: x@evil.test" in body and "Ana\nBcc" not in body
    only_invisible = await register(client, "ghost2@example.com", name="\u200b\u202e")
    assert only_invisible.status_code == 422
