"""Rate limits (in the database), client IPs, and answers that do not enumerate accounts."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.base import utcnow
from app.db.models import RateLimitHit, User
from app.kit.client_ip import resolve_client_ip, trusted_networks
from tests.support.auth import AUTH, PASSWORD, login, register, verified_account
from tests.support.harness import ClientFactory
from tests.support.mail import Mailbox

INVALID_CREDENTIALS = {"detail": "Incorrect email or password", "code": "INVALID_CREDENTIALS"}


def assert_rate_limited(response: httpx.Response, window_seconds: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "RATE_LIMITED"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window_seconds


async def test_unknown_email_and_wrong_password_look_the_same(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_account(client, mailbox, "known@example.com")
    wrong_password = await login(client, "known@example.com", "not-the-password")
    unknown_email = await login(client, "unknown@example.com", "not-the-password")
    for response in (wrong_password, unknown_email):
        assert response.status_code == 401
        assert response.json() == INVALID_CREDENTIALS
    assert wrong_password.headers.keys() - {"x-request-id"} == unknown_email.headers.keys() - {
        "x-request-id"
    }


async def test_unverified_login_says_so_only_with_the_right_password(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    assert (await register(client, "pending@example.com")).status_code == 201
    response = await login(client, "pending@example.com", "not-the-password")
    assert response.status_code == 401
    assert response.json() == INVALID_CREDENTIALS
    response = await login(client, "pending@example.com", PASSWORD)
    assert response.status_code == 403
    assert response.json()["code"] == "EMAIL_NOT_VERIFIED"


async def test_forgot_and_resend_answer_the_same_for_unknown_emails(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_account(client, mailbox, "known@example.com")
    assert (await register(client, "pending@example.com")).status_code == 201
    replies = []
    for path in ("/password/forgot", "/verify/resend"):
        for email in ("known@example.com", "pending@example.com", "ghost@example.com"):
            response = await client.post(f"{AUTH}{path}", json={"email": email})
            assert response.status_code == 202
            replies.append(response.json())
    assert all(reply == replies[0] for reply in replies)
    await mailbox.wait_for("known@example.com", 2)  # verification + reset
    await mailbox.wait_for("pending@example.com", 3)  # verification + reset + resend
    assert mailbox.to("ghost@example.com") == []
    assert len(mailbox.to("known@example.com")) == 2  # a verified account gets no new code


async def test_login_failures_per_account_give_429_with_retry_after(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    account = await verified_account(client, mailbox, "locked@example.com")
    for _ in range(10):
        response = await login(client, account.email, "not-the-password")
        assert response.status_code == 401
    response = await login(client, account.email, "not-the-password")
    assert_rate_limited(response, 15 * 60)
    # Locked even with the right password (no guessing through the lock); other accounts
    # from the same IP are not.
    assert_rate_limited(await login(client, account.email, PASSWORD), 15 * 60)
    other = await verified_account(client, mailbox, "other@example.com")
    assert (await login(client, other.email)).status_code == 200


async def test_unknown_accounts_are_limited_too(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        assert (await login(client, "ghost@example.com", "guess-1234")).status_code == 401
    assert_rate_limited(await login(client, "GHOST@example.com", "guess-1234"), 15 * 60)


async def test_a_success_clears_the_account_failures(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    account = await verified_account(client, mailbox, "typo@example.com")
    for _ in range(9):
        assert (await login(client, account.email, "typo-password")).status_code == 401
    assert (await login(client, account.email)).status_code == 200
    for _ in range(9):
        assert (await login(client, account.email, "typo-password")).status_code == 401
    assert (await login(client, account.email)).status_code == 200


async def test_login_failures_per_ip(make_client: ClientFactory, mailbox: Mailbox) -> None:
    async with make_client(ip_max_failures=3, login_window_minutes=5) as client:
        for n in range(3):
            response = await login(client, f"spray{n}@example.com", "guess-1234")
            assert response.status_code == 401
        assert_rate_limited(await login(client, "spray9@example.com", "guess-1234"), 5 * 60)
        # X-Forwarded-For from an untrusted peer changes nothing.
        response = await client.post(
            f"{AUTH}/login",
            data={"username": "spray9@example.com", "password": "guess-1234"},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
        assert response.status_code == 429
        # Wrong codes count against the same per-IP budget.
        response = await client.post(
            f"{AUTH}/verify", json={"email": "spray1@example.com", "code": "123456"}
        )
        assert response.status_code == 429


async def test_forwarded_for_counts_behind_a_trusted_proxy(make_client: ClientFactory) -> None:
    async with make_client(ip_max_failures=2, trusted_proxies=["127.0.0.0/8"]) as client:

        async def attempt(client_ip: str, email: str) -> int:
            response = await client.post(
                f"{AUTH}/login",
                data={"username": email, "password": "guess-1234"},
                headers={"X-Forwarded-For": f"{client_ip}, 127.0.0.2"},
            )
            return response.status_code

        assert [await attempt("203.0.113.7", f"a{n}@example.com") for n in range(3)] == [
            401,
            401,
            429,
        ]
        assert await attempt("198.51.100.4", "b@example.com") == 401  # another client


async def test_resend_and_forgot_are_limited_per_email(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_account(client, mailbox, "known@example.com")  # 1 mail request used
    for email in ("known@example.com", "ghost@example.com"):
        for path in ("/password/forgot", "/verify/resend"):
            body = {"email": email}
            statuses = [(await client.post(f"{AUTH}{path}", json=body)).status_code]
            while statuses[-1] == 202 and len(statuses) < 10:
                statuses.append((await client.post(f"{AUTH}{path}", json=body)).status_code)
            assert statuses[-1] == 429, (email, path, statuses)
            response = await client.post(f"{AUTH}{path}", json=body)
            assert_rate_limited(response, 15 * 60)
    # Five mail requests per email per window, whatever the endpoint.
    assert len(mailbox.to("known@example.com")) == 5


async def test_mail_requests_per_ip(make_client: ClientFactory, mailbox: Mailbox) -> None:
    async with make_client(mail_requests_per_ip=3) as client:
        for n in range(3):
            response = await client.post(
                f"{AUTH}/password/forgot", json={"email": f"n{n}@example.com"}
            )
            assert response.status_code == 202
        response = await client.post(f"{AUTH}/verify/resend", json={"email": "n9@example.com"})
        assert_rate_limited(response, 15 * 60)
        response = await register(client, "n10@example.com")
        assert response.status_code == 429


async def test_limits_live_in_the_database_under_opaque_keys(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    await login(client, "ghost@example.com", "guess-1234")
    async with db_engine.connect() as conn:
        buckets = (await conn.execute(select(RateLimitHit.bucket))).scalars().all()
    assert len(buckets) == 2  # this account, this IP
    assert all(len(b) == 64 and "ghost" not in b and "127.0.0.1" not in b for b in buckets)


def test_resolve_client_ip() -> None:
    trusted = trusted_networks(("10.0.0.0/8", "192.0.2.1", "2001:db8::/32"))
    assert trusted[1] == ip_network("192.0.2.1/32")
    # Untrusted peers: the socket address, whatever the header says.
    assert resolve_client_ip("198.51.100.1", ["1.2.3.4"], trusted) == "198.51.100.1"
    assert resolve_client_ip("198.51.100.1", [], ()) == "198.51.100.1"
    # Trusted peer: the rightmost address that is not a trusted proxy.
    assert resolve_client_ip("10.1.2.3", ["6.6.6.6, 203.0.113.5, 10.9.9.9"], trusted) == (
        "203.0.113.5"
    )
    assert resolve_client_ip("192.0.2.1", ["203.0.113.5", "10.0.0.2"], trusted) == "203.0.113.5"
    assert resolve_client_ip("10.1.2.3", [], trusted) == "10.1.2.3"
    assert resolve_client_ip("10.1.2.3", ["10.0.0.9"], trusted) == "10.0.0.9"
    assert resolve_client_ip("10.1.2.3", ["garbage, 10.0.0.9"], trusted) == "10.0.0.9"
    assert resolve_client_ip("2001:db8::1", ["2001:4860::8888"], trusted) == "2001:4860::8888"
    assert resolve_client_ip("::ffff:10.0.0.1", ["203.0.113.9"], trusted) == "203.0.113.9"
    # A Unix-socket peer (nginx on this host) is the local proxy: its word counts.
    assert resolve_client_ip(None, ["203.0.113.9"], trusted) == "203.0.113.9"
    assert resolve_client_ip(None, [], trusted) == "127.0.0.1"
    assert resolve_client_ip(None, ["garbage"], ()) == "127.0.0.1"


def test_trusted_proxies_setting_is_validated() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8, 127.0.0.1").trusted_proxies == [
        "10.0.0.0/8",
        "127.0.0.1",
    ]
    with pytest.raises(ValidationError):
        Settings(trusted_proxies="proxy.internal")


async def test_account_without_a_usable_hash_cannot_log_in(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    now = utcnow()
    async with db_engine.begin() as conn:
        await conn.execute(
            insert(User).values(
                email="nohash@example.com",
                name="No Hash",
                password_hash="not-a-real-hash",
                locale="es",
                role="doctor",
                is_verified=True,
                created_at=now,
                updated_at=now,
            )
        )
    response = await login(client, "nohash@example.com", "not-a-real-hash")
    assert response.status_code == 401
    assert response.json() == INVALID_CREDENTIALS


async def test_a_refused_registration_costs_no_password_hash(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Argon2 is the expensive part of registering: a request the mail limits refuse must
    # be answered before it, or the limit would not protect the CPU.
    email = "again@example.com"
    statuses = [(await register(client, email)).status_code]
    while statuses[-1] == 201 and len(statuses) < 10:
        statuses.append((await register(client, email)).status_code)
    assert statuses[-1] == 429, statuses
    passwords = client.app.state.passwords  # type: ignore[attr-defined]
    hashed: list[str] = []

    async def counting_hash(password: str) -> str:
        hashed.append(password)
        return "never-used"

    monkeypatch.setattr(passwords, "hash", counting_hash)
    assert_rate_limited(await register(client, email), 15 * 60)
    assert hashed == []
