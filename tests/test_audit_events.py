"""The audit trail: each recorded action writes exactly one event with the right actor,
target and values; a failed or rejected change writes none (a failed login writes its
failure event)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.models import AuditEvent
from app.services import audit
from tests.support.audit import events, only, user_id
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
from tests.support.factories import add_prediction, add_stored_prediction, app_of, make_doctor
from tests.support.harness import ClientFactory
from tests.support.mail import Mailbox

HISTORY = "/api/v1/history"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
RID = {"X-Request-ID": "audit-test-1"}


def no_secret_in(rows: list[AuditEvent], *secrets: str) -> None:
    for row in rows:
        text = json.dumps(
            [row.actor_email, row.target_id, row.old, row.new, row.request_id], default=str
        )
        for secret in secrets:
            assert secret not in text, (row.action, secret)


# --------------------------------------------------------------------------- auth


async def test_login_success_and_failures(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    app = app_of(client)
    email = "login.audit@example.com"
    await verified_account(client, mailbox, email)
    uid = await user_id(app, email)

    response = await client.post(
        f"{AUTH}/login", data={"username": email.upper(), "password": PASSWORD}, headers=RID
    )
    assert response.status_code == 200
    event = only(await events(app, "auth.login"))
    assert (event.actor_id, event.actor_email) == (uid, email)
    assert (event.target_type, event.target_id) == ("user", str(uid))
    assert event.ip == "127.0.0.1" and event.request_id == "audit-test-1"
    assert event.old is None and set(event.new or {}) == {"session"}

    # Wrong password: the failure event names the attempted email and the account.
    assert (await login(client, email, "wrong-password-1")).status_code == 401
    failed = only(await events(app, "auth.login_failed"))
    assert failed.actor_id is None and failed.actor_email == email
    assert (failed.target_type, failed.target_id) == ("user", str(uid))
    assert failed.new == {"reason": "invalid_credentials"}
    # Unknown email: no account to name.
    assert (await login(client, "Nobody@Example.com", "whatever-123")).status_code == 401
    rows = await events(app, "auth.login_failed")
    assert len(rows) == 2
    assert (rows[1].actor_email, rows[1].target_type, rows[1].target_id) == (
        "nobody@example.com",
        None,
        None,
    )
    assert len(await events(app, "auth.login")) == 1  # the failures logged nobody in
    no_secret_in(await events(app), PASSWORD, "wrong-password-1", "whatever-123")


async def test_login_unverified_is_a_failure_event(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    app = app_of(client)
    assert (await register(client, "pending.audit@example.com")).status_code == 201
    response = await login(client, "pending.audit@example.com")
    assert response.status_code == 403 and response.json()["code"] == "EMAIL_NOT_VERIFIED"
    failed = only(await events(app, "auth.login_failed"))
    assert failed.new == {"reason": "email_not_verified"}
    assert await events(app, "auth.login") == []


async def test_rate_limited_login_is_a_failure_event(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    limit = app.state.settings.login_max_failures
    for _ in range(limit):
        assert (await login(client, "flood@example.com", "wrong-password-1")).status_code == 401
    response = await login(client, "flood@example.com", "wrong-password-1")
    assert response.status_code == 429
    rows = await events(app, "auth.login_failed")
    assert [r.new for r in rows] == [{"reason": "invalid_credentials"}] * limit + [
        {"reason": "rate_limited"}
    ]


async def test_verify_event_and_wrong_code(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    app = app_of(client)
    email = "verify.audit@example.com"
    assert (await register(client, email)).status_code == 201
    code = await next_code(mailbox, email, 1)
    wrong = "000000" if code != "000000" else "111111"
    bad = await client.post(f"{AUTH}/verify", json={"email": email, "code": wrong})
    assert bad.status_code == 400
    assert await events(app) == []
    ok = await client.post(f"{AUTH}/verify", json={"email": email, "code": code})
    assert ok.status_code == 200
    event = only(await events(app))
    uid = await user_id(app, email)
    assert (event.action, event.actor_id, event.target_id) == ("auth.verify", uid, str(uid))
    no_secret_in([event], code, ok.json()["access_token"], ok.json()["refresh_token"])


async def test_logout_event(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    app = app_of(client)
    account = await verified_account(client, mailbox, "logout.audit@example.com")
    uid = await user_id(app, account.email)
    response = await client.post(f"{AUTH}/logout", json={"refresh_token": account.refresh})
    assert response.status_code == 204
    event = only(await events(app, "auth.logout"))
    assert (event.actor_id, event.target_id) == (uid, str(uid))
    # Logging out again, or with a token that is no token, changes nothing: no event.
    await client.post(f"{AUTH}/logout", json={"refresh_token": account.refresh})
    await client.post(f"{AUTH}/logout", json={"refresh_token": "not-a-token"})
    assert len(await events(app, "auth.logout")) == 1
    no_secret_in(await events(app), account.refresh)


async def test_refresh_reuse_event(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    app = app_of(client)
    account = await verified_account(client, mailbox, "reuse.audit@example.com")
    uid = await user_id(app, account.email)
    first = await client.post(f"{AUTH}/refresh", json={"refresh_token": account.refresh})
    assert first.status_code == 200
    assert await events(app, "auth.refresh_reuse") == []  # a normal rotation is no event
    replay = await client.post(f"{AUTH}/refresh", json={"refresh_token": account.refresh})
    assert replay.status_code == 401
    event = only(await events(app, "auth.refresh_reuse"))
    assert (event.actor_id, event.target_id) == (uid, str(uid))
    assert event.new is not None and event.new["revoked"] == 1
    # An unknown token is no reuse.
    await client.post(f"{AUTH}/refresh", json={"refresh_token": "unknown-token"})
    assert len(await events(app, "auth.refresh_reuse")) == 1


async def test_password_change_event(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    app = app_of(client)
    account = await verified_account(client, mailbox, "change.audit@example.com")
    uid = await user_id(app, account.email)
    url = f"{AUTH}/me/password"
    wrong = await client.post(
        url,
        json={"current_password": "not-my-password", "new_password": NEW_PASSWORD},
        headers=bearer(account.access),
    )
    assert wrong.status_code == 400
    invalid = await client.post(
        url,
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(account.access),
    )
    assert invalid.status_code == 422
    assert await events(app, "auth.password_change") == []
    ok = await client.post(
        url,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(account.access),
    )
    assert ok.status_code == 204
    event = only(await events(app, "auth.password_change"))
    assert (event.actor_id, event.target_id) == (uid, str(uid))
    no_secret_in(await events(app), PASSWORD, NEW_PASSWORD, "not-my-password")


async def test_password_reset_event(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    app = app_of(client)
    account = await verified_account(client, mailbox, "reset.audit@example.com")
    uid = await user_id(app, account.email)
    assert (
        await client.post(f"{AUTH}/password/forgot", json={"email": account.email})
    ).status_code == 202
    code = await next_code(mailbox, account.email, 2)
    wrong = "000000" if code != "000000" else "111111"
    body = {"email": account.email, "code": wrong, "new_password": NEW_PASSWORD}
    assert (await client.post(f"{AUTH}/password/reset", json=body)).status_code == 400
    assert await events(app, "auth.password_reset") == []
    body["code"] = code
    assert (await client.post(f"{AUTH}/password/reset", json=body)).status_code == 204
    event = only(await events(app, "auth.password_reset"))
    assert (event.actor_id, event.target_id) == (uid, str(uid))
    no_secret_in(await events(app), code, NEW_PASSWORD)


# --------------------------------------------------------------------------- predictions


async def test_view_event(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    b = await make_doctor(app)
    row = await add_prediction(app, a.id)
    assert (await client.get(f"{HISTORY}/{row.id}", headers=b.headers)).status_code == 404
    assert (await client.get(f"{HISTORY}/{row.id + 99}", headers=a.headers)).status_code == 404
    assert (await client.get(f"{HISTORY}/0", headers=a.headers)).status_code == 422
    assert await events(app) == []
    response = await client.get(f"{HISTORY}/{row.id}", headers={**a.headers, **RID})
    assert response.status_code == 200
    event = only(await events(app))
    assert (event.action, event.actor_id, event.actor_email) == ("prediction.view", a.id, a.email)
    assert (event.target_type, event.target_id) == ("prediction", str(row.id))
    assert event.request_id == "audit-test-1"
    # The list is no view of a record.
    assert (await client.get(HISTORY, headers=a.headers)).status_code == 200
    assert len(await events(app)) == 1


async def test_image_view_events(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    b = await make_doctor(app)
    row = await add_stored_prediction(app, a.id, PNG)
    url = f"{HISTORY}/{row.id}/image"
    assert (await client.get(url, headers=b.headers)).status_code == 404
    assert (await client.get(url + "?expires=1&signature=forged")).status_code == 404
    assert await events(app, "prediction.image_view") == []
    assert (await client.get(url, headers=a.headers)).status_code == 200
    event = only(await events(app, "prediction.image_view"))
    assert (event.actor_id, event.target_id, event.new) == (a.id, str(row.id), {"via": "token"})
    image_url = (await client.get(f"{HISTORY}/{row.id}", headers=a.headers)).json()["image_url"]
    assert (await client.get(image_url)).status_code == 200
    rows = await events(app, "prediction.image_view")
    assert len(rows) == 2
    assert (rows[1].actor_id, rows[1].new) == (a.id, {"via": "signed_url"})
    no_secret_in(rows, image_url.split("signature=")[1])


async def test_feedback_events_old_and_new(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    b = await make_doctor(app)
    row = await add_prediction(app, a.id, predicted_class="glaucoma")
    url = f"{HISTORY}/{row.id}/feedback"
    rejected = [
        (b.headers, {"verdict": "correct"}, 404),
        (a.headers, {"verdict": "maybe"}, 422),
        (a.headers, {"verdict": "incorrect", "correct_class": "glaucoma"}, 422),
        (a.headers, {"verdict": "incorrect", "correct_class": "no_such_class"}, 422),
    ]
    for headers, body, status in rejected:
        assert (await client.put(url, json=body, headers=headers)).status_code == status, body
    assert await events(app) == []

    assert (
        await client.put(url, json={"verdict": "correct"}, headers=a.headers)
    ).status_code == 200
    first = only(await events(app, "prediction.feedback"))
    assert (first.actor_id, first.target_id) == (a.id, str(row.id))
    assert first.old is None
    assert first.new == {"verdict": "correct", "correct_class": None, "comment": None}
    body = {"verdict": "incorrect", "correct_class": "cataract", "comment": "  lens opacity "}
    assert (await client.put(url, json=body, headers=a.headers)).status_code == 200
    rows = await events(app, "prediction.feedback")
    assert len(rows) == 2
    assert rows[1].old == first.new
    assert rows[1].new == {
        "verdict": "incorrect",
        "correct_class": "cataract",
        "comment": "lens opacity",
    }


async def test_delete_event(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    b = await make_doctor(app)
    row = await add_stored_prediction(app, a.id, PNG, patient_ref="HC-0042", filename="od.png")
    assert (await client.delete(f"{HISTORY}/{row.id}", headers=b.headers)).status_code == 404
    assert await events(app) == []
    assert (await client.delete(f"{HISTORY}/{row.id}", headers=a.headers)).status_code == 204
    event = only(await events(app))
    assert (event.action, event.actor_id, event.target_id) == (
        "prediction.delete",
        a.id,
        str(row.id),
    )
    assert event.old == {
        "patient_ref": "HC-0042",
        "filename": "od.png",
        "predicted_class": "normal",
        "sha256": row.sha256,
    }
    assert (await client.delete(f"{HISTORY}/{row.id}", headers=a.headers)).status_code == 404
    assert len(await events(app)) == 1


# --------------------------------------------------------------------------- the record call


async def test_record_refuses_secrets_and_unknown_actions(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    async with app.state.sessionmaker() as session:
        with pytest.raises(ValueError, match="unknown audit action"):
            await audit.record(session, "prediction.peek")
        bad: list[dict[str, Any]] = [
            {"password": "x"},
            {"nested": {"refresh_token": "x"}},
            {"items": [{"Code": "123456"}]},
        ]
        for value in bad:
            with pytest.raises(ValueError, match="must not hold"):
                await audit.record(session, "user.role", new=value)
        await session.commit()
    assert await events(app) == []


async def test_rolled_back_change_leaves_no_event(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    a = await make_doctor(app)
    async with app.state.sessionmaker() as session:
        await audit.record(session, "prediction.view", actor=a.id, target=("prediction", 1))
        await session.rollback()
    assert await events(app) == []
    async with app.state.sessionmaker() as session:
        await audit.record(session, "prediction.view", actor=a.id, target=("prediction", 1))
        await session.commit()
    event = only(await events(app))
    assert (event.actor_id, event.actor_email, event.ip) == (a.id, None, None)


async def test_event_ip_follows_trusted_proxies(make_client: ClientFactory) -> None:
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    for trusted, expected in (([], "127.0.0.1"), (["127.0.0.1/32"], "203.0.113.9")):
        async with make_client(trusted_proxies=trusted) as client:
            app = app_of(client)
            doctor = await make_doctor(app)
            row = await add_prediction(app, doctor.id)
            response = await client.get(f"{HISTORY}/{row.id}", headers={**doctor.headers, **spoof})
            assert response.status_code == 200
            event = (await events(app, "prediction.view"))[-1]
            assert event.ip == expected, trusted


async def test_view_events_are_batched_and_flushed_on_shutdown(
    make_client: ClientFactory,
) -> None:
    async with make_client() as client:
        app = app_of(client)
        doctor = await make_doctor(app)
        rows = [await add_prediction(app, doctor.id) for _ in range(3)]
        for row in rows:
            assert (
                await client.get(f"{HISTORY}/{row.id}", headers=doctor.headers)
            ).status_code == 200
        with pytest.raises(ValueError, match="is a change"):
            app.state.view_log.add("prediction.feedback", actor=doctor.id, target=("x", 1))
        # Queued (the writer runs every 0.25 s); closing the app writes them at the latest.
    async with make_client() as client, app_of(client).state.sessionmaker() as session:
        targets = (await session.scalars(select(AuditEvent.target_id))).all()
    assert sorted(targets) == sorted(str(row.id) for row in rows)
