"""Admin user management: roles on admin routes, list/read, disable/enable, role, the last
admin (also under two concurrent revokes), and a doctor's own activity."""

from __future__ import annotations

import asyncio
import re

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from app.db.models import User
from tests.support.audit import events, only, user_id
from tests.support.auth import AUTH, bearer, login, new_session, verified_account
from tests.support.factories import app_of, make_doctor
from tests.support.mail import Mailbox

ADMIN = "/api/v1/admin"
USERS = f"{ADMIN}/users"


def admin_operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every admin route of the app (whoever added it), path parameters filled in."""
    operations = []
    for path, item in app.openapi()["paths"].items():
        if path.startswith(ADMIN):
            filled = re.sub(r"\{[^}]+\}", "1", path)
            operations += [(method.upper(), filled) for method in sorted(item)]
    return operations


async def test_admin_routes_need_the_admin_role(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    admin = await make_doctor(app, role="admin")
    operations = admin_operations(app)
    paths = {path for _, path in operations}
    assert {USERS, f"{USERS}/1", f"{ADMIN}/audit", f"{ADMIN}/audit/export"} <= paths
    for method, path in operations:
        anonymous = await client.request(method, path, json={})
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["code"] == "NOT_AUTHENTICATED"
        forbidden = await client.request(method, path, json={}, headers=doctor.headers)
        assert forbidden.status_code == 403, (method, path, forbidden.text)
        assert forbidden.json()["code"] == "FORBIDDEN"
    assert (await client.get(USERS, headers=admin.headers)).status_code == 200
    assert await events(app) == []  # refused calls record nothing


async def test_list_and_read_users(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin", email="root@clinic.example")
    ana = await make_doctor(app, email="ana.quispe@clinic.example", name="Ana Quispe")
    luis = await make_doctor(app, email="luis@other.example", name="Luis Mamani")
    response = await client.get(USERS, headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 3 and (body["page"], body["page_size"]) == (1, 20)
    assert [u["id"] for u in body["items"]] == [admin.id, ana.id, luis.id]
    first = body["items"][1]
    assert first["email"] == "ana.quispe@clinic.example"
    assert (first["is_active"], first["last_login_at"], first["role"]) == (True, None, "doctor")
    assert "password_hash" not in first

    async def ids(**params: object) -> tuple[list[int], int]:
        r = await client.get(USERS, params=params, headers=admin.headers)
        assert r.status_code == 200, r.text
        return [u["id"] for u in r.json()["items"]], r.json()["total"]

    assert await ids(q="QUISPE") == ([ana.id], 1)  # name, any case
    assert await ids(q="clinic.example") == ([admin.id, ana.id], 2)  # email
    assert await ids(q="%") == ([], 0)  # literal, not a wildcard
    assert await ids(page_size=2, page=2) == ([luis.id], 3)
    for bad in ({"page": 0}, {"page_size": 101}, {"q": "x" * 255}):
        assert (await client.get(USERS, params=bad, headers=admin.headers)).status_code == 422

    detail = await client.get(f"{USERS}/{luis.id}", headers=admin.headers)
    assert detail.status_code == 200 and detail.json()["name"] == "Luis Mamani"
    missing = await client.get(f"{USERS}/{luis.id + 1000}", headers=admin.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert (await client.get(f"{USERS}/0", headers=admin.headers)).status_code == 422


async def test_disable_locks_the_user_out_at_once(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    account = await verified_account(client, mailbox, "leaving@example.com")
    second = await new_session(client, account)
    uid = await user_id(app, account.email)
    assert (await client.get(f"{AUTH}/me", headers=bearer(account.access))).status_code == 200

    response = await client.post(f"{USERS}/{uid}/disable", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert response.json()["last_login_at"] is not None
    event = only(await events(app, "user.disable"))
    assert (event.actor_id, event.actor_email) == (admin.id, admin.email)
    assert (event.target_type, event.target_id) == ("user", str(uid))
    assert (event.old, event.new) == ({"is_active": True}, {"is_active": False})

    # Both sessions' access tokens (not expired) stop working, and so do their refreshes.
    for session in (account, second):
        me = await client.get(f"{AUTH}/me", headers=bearer(session.access))
        assert me.status_code == 401 and me.json()["code"] == "NOT_AUTHENTICATED"
        refresh = await client.post(f"{AUTH}/refresh", json={"refresh_token": session.refresh})
        assert refresh.status_code == 401 and refresh.json()["code"] == "INVALID_TOKEN"
    # The disabled answer only with the right password; a wrong one is the usual 401.
    wrong = await login(client, account.email, "not-the-password")
    assert wrong.status_code == 401 and wrong.json()["code"] == "INVALID_CREDENTIALS"
    right = await login(client, account.email)
    assert right.status_code == 403 and right.json()["code"] == "ACCOUNT_DISABLED"
    reasons = [e.new for e in await events(app, "auth.login_failed")]
    assert reasons == [{"reason": "invalid_credentials"}, {"reason": "account_disabled"}]

    # Disabling again changes nothing and records nothing.
    again = await client.post(f"{USERS}/{uid}/disable", headers=admin.headers)
    assert again.status_code == 200 and again.json()["is_active"] is False
    assert len(await events(app, "user.disable")) == 1
    missing = await client.post(f"{USERS}/{uid + 1000}/disable", headers=admin.headers)
    assert missing.status_code == 404
    assert len(await events(app, "user.disable")) == 1

    enabled = await client.post(f"{USERS}/{uid}/enable", headers=admin.headers)
    assert enabled.status_code == 200 and enabled.json()["is_active"] is True
    event = only(await events(app, "user.enable"))
    assert (event.actor_id, event.old, event.new) == (
        admin.id,
        {"is_active": False},
        {"is_active": True},
    )
    # The old sessions stay ended; a new login works.
    assert (await client.get(f"{AUTH}/me", headers=bearer(account.access))).status_code == 401
    assert (await login(client, account.email)).status_code == 200


async def test_grant_and_revoke_admin(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    doctor = await make_doctor(app)
    assert (await client.get(USERS, headers=doctor.headers)).status_code == 403
    for bad in ({"role": "root"}, {}, {"role": "admin", "extra": 1}):
        r = await client.put(f"{USERS}/{doctor.id}/role", json=bad, headers=admin.headers)
        assert r.status_code == 422, bad
    r = await client.put(
        f"{USERS}/{doctor.id + 1000}/role", json={"role": "admin"}, headers=admin.headers
    )
    assert r.status_code == 404
    assert await events(app) == []

    granted = await client.put(
        f"{USERS}/{doctor.id}/role", json={"role": "admin"}, headers=admin.headers
    )
    assert granted.status_code == 200 and granted.json()["role"] == "admin"
    event = only(await events(app, "user.role"))
    assert (event.actor_id, event.target_id, event.old, event.new) == (
        admin.id,
        str(doctor.id),
        {"role": "doctor"},
        {"role": "admin"},
    )
    # The same access token now reaches admin routes (the role is read per request).
    assert (await client.get(USERS, headers=doctor.headers)).status_code == 200
    revoked = await client.put(
        f"{USERS}/{doctor.id}/role", json={"role": "doctor"}, headers=admin.headers
    )
    assert revoked.status_code == 200
    assert (await client.get(USERS, headers=doctor.headers)).status_code == 403
    assert len(await events(app, "user.role")) == 2


async def test_the_last_admin_stays(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    off = await make_doctor(app, role="admin")
    # A disabled admin is no active admin: it does not count.
    assert (
        await client.post(f"{USERS}/{off.id}/disable", headers=admin.headers)
    ).status_code == 200
    before = len(await events(app))
    for method, url, body in [
        ("PUT", f"{USERS}/{admin.id}/role", {"role": "doctor"}),
        ("POST", f"{USERS}/{admin.id}/disable", None),
    ]:
        r = await client.request(method, url, json=body, headers=admin.headers)
        assert r.status_code == 409, url
        assert r.json()["code"] == "LAST_ADMIN"
    assert len(await events(app)) == before
    me = await client.get(f"{USERS}/{admin.id}", headers=admin.headers)
    assert (me.json()["role"], me.json()["is_active"]) == ("admin", True)
    # Demoting the disabled admin is fine: it removes no active admin.
    r = await client.put(f"{USERS}/{off.id}/role", json={"role": "doctor"}, headers=admin.headers)
    assert r.status_code == 200


async def active_admins(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(User.role == "admin", User.is_active.is_(True))
        )
        return int(count or 0)


async def test_two_concurrent_revokes_one_succeeds(client: httpx.AsyncClient) -> None:
    """Two admins revoke each other at the same moment (and, in other rounds, one disables
    the other while being demoted): exactly one succeeds, one admin is left."""
    app = app_of(client)
    for round_ in range(6):
        a = await make_doctor(app, role="admin")
        b = await make_doctor(app, role="admin")
        if round_ % 2 == 0:
            calls = [
                client.put(f"{USERS}/{b.id}/role", json={"role": "doctor"}, headers=a.headers),
                client.put(f"{USERS}/{a.id}/role", json={"role": "doctor"}, headers=b.headers),
            ]
        else:
            calls = [
                client.post(f"{USERS}/{b.id}/disable", headers=a.headers),
                client.put(f"{USERS}/{a.id}/role", json={"role": "doctor"}, headers=b.headers),
            ]
        responses = await asyncio.gather(*calls)
        # The loser is refused either by the guard (409 LAST_ADMIN: both were admins when
        # they asked) or, when the winner committed before the loser's request was
        # authorised, as the doctor it has become (403 FORBIDDEN).
        refused = [r for r in responses if r.status_code != 200]
        assert len(refused) == 1, [r.text for r in responses]
        assert (refused[0].status_code, refused[0].json()["code"]) in (
            (409, "LAST_ADMIN"),
            (403, "FORBIDDEN"),
        )
        assert await active_admins(app) == 1
        # The loser leaves no event.
        changes = [e for e in await events(app) if e.action in ("user.role", "user.disable")]
        assert len(changes) == round_ + 1
        # Next round starts from two fresh admins: retire the survivor.
        async with app.state.sessionmaker() as session:
            for user in (await session.scalars(select(User).where(User.role == "admin"))).all():
                user.role = "doctor"
            await session.commit()


async def test_my_activity_shows_only_my_security_events(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    app = app_of(client)
    mine = await verified_account(client, mailbox, "me.activity@example.com")
    other = await verified_account(client, mailbox, "other.activity@example.com")
    me = await user_id(app, mine.email)
    await login(client, mine.email, "wrong-password-1")  # someone tries my account
    await new_session(client, mine)
    await new_session(client, other)
    await login(client, other.email, "wrong-password-1")
    await login(client, "nobody@example.com", "wrong-password-1")
    doctor = await make_doctor(app)  # with a prediction view, which is no security event
    assert (await client.get("/api/v1/history/1", headers=doctor.headers)).status_code == 404

    url = f"{AUTH}/me/activity"
    assert (await client.get(url)).status_code == 401
    response = await client.get(url, headers=bearer(mine.access))
    assert response.status_code == 200
    body = response.json()
    assert [e["action"] for e in body["items"]] == [
        "auth.login",
        "auth.login_failed",
        "auth.verify",
    ]
    assert body["next_cursor"] is None
    assert {e["target_id"] for e in body["items"]} == {str(me)}
    assert body["items"][1]["actor_email"] == mine.email and body["items"][1]["actor_id"] is None
    assert all(e["ip"] == "127.0.0.1" for e in body["items"])

    # Keyset pages of one.
    seen = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(url, params=params, headers=bearer(mine.access))).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in body["items"]]
    for bad in ({"limit": 0}, {"limit": 501}, {"cursor": "abc"}, {"cursor": "-1"}):
        r = await client.get(url, params=bad, headers=bearer(mine.access))
        assert r.status_code == 422, bad
