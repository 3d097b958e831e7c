"""The service on a 3-node MariaDB Galera cluster with writers on two different nodes.

The cluster (app/deploy/galera.py: Debian's mariadbd + galera-4 on loopback) starts once
for the module; the schema is migrated once through node 0. Two apps run in this process,
app A on node 0 and app B on node 1, like two replicas behind a load balancer: on Galera
a locking read holds only on its own node, so every rule that decides on what others
wrote (the last admin, rate limits, refresh-token reuse, one-time codes) must hold through
certification conflicts (1213) and the retries of app.db.retry.

Run with `make test-galera`; skipped where galera-4 or mariadbd is absent or without root.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.config import Config
from prometheus_client import REGISTRY
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command
from app.db.models import User
from app.db.retry import DEFAULT_POLICY
from app.deploy.galera import GaleraCluster
from app.deploy.galera_node import missing_requirements
from tests.support.auth import AUTH, PASSWORD, bearer, login, next_code, register
from tests.support.factories import add_prediction, app_of, make_doctor
from tests.support.harness import ClientFactory, in_own_thread
from tests.support.mail import Mailbox

pytestmark = [
    pytest.mark.galera,
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

DB = "ocupredict_galera"
USERS = "/api/v1/admin/users"
_emails = itertools.count(1)


def email(label: str) -> str:
    return f"{label}{next(_emails)}@example.com"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster() -> Iterator[GaleraCluster]:
    with GaleraCluster(nodes=3) as galera:
        yield galera


@pytest.fixture(scope="module")
def galera_urls(
    cluster: GaleraCluster, alembic_config_factory: Callable[[str], Config]
) -> list[str]:
    """The database on every node's URL; migrated once, through node 0 (DDL replicates)."""
    cluster.query(0, f"CREATE DATABASE {DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    urls = [cluster.url(i, DB) for i in range(len(cluster.nodes))]
    cfg = alembic_config_factory(urls[0])
    in_own_thread(lambda: command.upgrade(cfg, "head"))
    return urls


LIMITS = {"login_max_failures": 5, "ip_max_failures": 1000}


@pytest.fixture(scope="module")
async def apps(
    make_client: ClientFactory, galera_urls: list[str], smtp_server: Mailbox
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """App A writes through node 0, app B through node 1."""
    async with (
        make_client(database_url=galera_urls[0], **LIMITS) as a,
        make_client(database_url=galera_urls[1], **LIMITS) as b,
    ):
        yield a, b


def rows(cluster: GaleraCluster, node: int, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    return cluster.query(node, sql.replace("{db}", DB), args)


def on_every_node(cluster: GaleraCluster, sql: str, args: Any = None) -> list[Any]:
    """The same query's answer from each node (reads are causal: wsrep_sync_wait)."""
    return [rows(cluster, i, sql, args) for i in range(len(cluster.nodes))]


def retries(reason: str) -> float:
    value = REGISTRY.get_sample_value("ocupredict_db_transaction_retries_total", {"reason": reason})
    return value or 0.0


async def user_with_password(app_client: httpx.AsyncClient, address: str, role: str) -> User:
    app = app_of(app_client)
    now = datetime.now(UTC)
    async with app.state.sessionmaker() as session:
        user = User(
            email=address,
            name="Galera",
            password_hash=await app.state.passwords.hash(PASSWORD),
            role=role,
            is_verified=True,
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        await session.commit()
        return user


# --------------------------------------------------------------------------- the cluster


def test_every_node_is_synced_in_one_cluster(cluster: GaleraCluster) -> None:
    states = [cluster.status(i) for i in range(3)]
    assert [(s.cluster_size, s.state, s.primary) for s in states] == [(3, "Synced", True)] * 3
    assert cluster.start_seconds is not None
    print(f"galera: 3-node cluster started in {cluster.start_seconds:.1f} s")


def test_a_certification_conflict_is_error_1213(cluster: GaleraCluster) -> None:
    """The behaviour the service's retries rest on: two transactions on two nodes update
    one row; the second to commit fails with 1213, although each node saw no lock."""
    import pymysql

    cluster.query(0, "CREATE DATABASE IF NOT EXISTS scratch")
    cluster.query(0, "CREATE TABLE IF NOT EXISTS scratch.conflict (id INT PRIMARY KEY, v INT)")
    cluster.query(0, "REPLACE INTO scratch.conflict VALUES (1, 0)")
    first, second = cluster.connect(0, "scratch"), cluster.connect(1, "scratch")
    with contextlib.closing(first), contextlib.closing(second):
        for conn, value in ((first, 1), (second, 2)):
            conn.begin()
            conn.cursor().execute("UPDATE conflict SET v = %s WHERE id = 1", (value,))
        first.commit()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            second.cursor().execute("SELECT 1")  # aborted by node 0's write, or at COMMIT
            second.commit()
        assert caught.value.args[0] == 1213
    assert on_every_node(cluster, "SELECT v FROM scratch.conflict") == [[(1,)]] * 3


# --------------------------------------------------------------------------- the rules


async def test_two_concurrent_revokes_of_the_last_two_admins_on_two_nodes(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], cluster: GaleraCluster
) -> None:
    """Admin 1 on node 0 and admin 2 on node 1 demote (or disable) each other at the same
    moment: exactly one succeeds, the other gets 409 LAST_ADMIN, one admin is left."""
    a, b = apps
    for round_ in range(4):
        rows(cluster, 0, "UPDATE {db}.users SET role = 'doctor' WHERE role = 'admin'")
        one = await make_doctor(app_of(a), email=email("admin"), role="admin")
        two = await make_doctor(app_of(b), email=email("admin"), role="admin")
        if round_ % 2 == 0:
            calls = [
                a.put(f"{USERS}/{two.id}/role", json={"role": "doctor"}, headers=one.headers),
                b.put(f"{USERS}/{one.id}/role", json={"role": "doctor"}, headers=two.headers),
            ]
        else:
            calls = [
                a.post(f"{USERS}/{two.id}/disable", headers=one.headers),
                b.post(f"{USERS}/{one.id}/disable", headers=two.headers),
            ]
        answers = await asyncio.gather(*calls)
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        assert [r.json()["code"] for r in answers if r.status_code == 409] == ["LAST_ADMIN"]
        left = "SELECT COUNT(*) FROM {db}.users WHERE role = 'admin' AND is_active"
        assert on_every_node(cluster, left) == [[(1,)]] * 3


async def test_a_spent_refresh_token_replayed_on_the_other_node_is_reuse(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], cluster: GaleraCluster
) -> None:
    a, b = apps
    await user_with_password(a, address := email("family"), "doctor")
    tokens = (await login(a, address)).json()
    rotated = await a.post(f"{AUTH}/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    # The spent token, presented right away to the other node.
    replay = await b.post(f"{AUTH}/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["code"] == "INVALID_TOKEN"
    # Reuse detected: the whole family is revoked, on both nodes.
    latest = rotated.json()
    for client in (a, b):
        again = await client.post(
            f"{AUTH}/refresh", json={"refresh_token": latest["refresh_token"]}
        )
        assert again.status_code == 401
        assert (
            await client.get(f"{AUTH}/me", headers=bearer(latest["access_token"]))
        ).status_code == 401
    reuse = (
        "SELECT COUNT(*) FROM {db}.audit_events"
        " WHERE action = 'auth.refresh_reuse' AND actor_email = %s"
    )
    assert on_every_node(cluster, reuse, (address,)) == [[(1,)]] * 3


async def test_one_refresh_token_rotated_on_two_nodes_at_once(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], cluster: GaleraCluster
) -> None:
    """The same token at the same moment on both nodes: one rotation wins, the other is a
    replay of a spent token, so the family (the winner's new token included) ends."""
    a, b = apps
    for _ in range(3):
        await user_with_password(a, address := email("race"), "doctor")
        token = (await login(a, address)).json()["refresh_token"]
        answers = await asyncio.gather(
            *(c.post(f"{AUTH}/refresh", json={"refresh_token": token}) for c in (a, b))
        )
        assert sorted(r.status_code for r in answers) == [200, 401], [r.text for r in answers]
        winner = next(r.json() for r in answers if r.status_code == 200)
        again = await b.post(f"{AUTH}/refresh", json={"refresh_token": winner["refresh_token"]})
        assert again.status_code == 401
        live = (
            "SELECT COUNT(*) FROM {db}.refresh_tokens t JOIN {db}.users u ON u.id = t.user_id"
            " WHERE u.email = %s AND t.revoked_at IS NULL"
        )
        assert on_every_node(cluster, live, (address,)) == [[(0,)]] * 3


async def test_wrong_passwords_on_two_nodes_hit_the_limit_at_the_same_count(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """12 parallel logins with a wrong password, alternating between the nodes: exactly
    LOGIN_MAX_FAILURES are answered 401 (a password was checked), the rest 429, as with
    the same 12 on one node."""
    a, b = apps
    limit = LIMITS["login_max_failures"]

    async def storm(clients: list[httpx.AsyncClient]) -> list[int]:
        await user_with_password(a, address := email("storm"), "doctor")
        answers = await asyncio.gather(
            *(login(clients[i % len(clients)], address, "wrong-password-1") for i in range(12))
        )
        # And the right password is refused too now: the account is locked for the window.
        assert (await login(clients[-1], address)).status_code == 429
        return sorted(r.status_code for r in answers)

    two_nodes = await storm([a, b])
    one_node = await storm([a])
    assert two_nodes == one_node == [401] * limit + [429] * (12 - limit)


async def test_a_one_time_code_redeemed_on_two_nodes_at_once_works_once(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], mailbox: Mailbox
) -> None:
    a, b = apps
    address = email("code")
    assert (await register(a, address)).status_code == 201
    code = await next_code(mailbox, address, 1)
    answers = await asyncio.gather(
        *(c.post(f"{AUTH}/verify", json={"email": address, "code": code}) for c in (a, b))
    )
    assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
    assert [r.json()["code"] for r in answers if r.status_code == 400] == ["INVALID_CODE"]


async def test_codes_asked_for_on_two_nodes_at_once_leave_one_live_code(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], mailbox: Mailbox, cluster: GaleraCluster
) -> None:
    """Four password-reset mails asked for at once through both nodes, for an account
    without a reset code yet (nothing for the issues to delete, so no common row but
    what they write to decide: the code's and the mail limit's write guards, and the
    user row their codes reference): one code is live afterwards, and exactly one of the
    four mailed codes resets the password."""
    a, b = apps
    await user_with_password(a, address := email("forgot"), "doctor")
    answers = await asyncio.gather(
        *(c.post(f"{AUTH}/password/forgot", json={"email": address}) for c in (a, b, a, b))
    )
    assert [r.status_code for r in answers] == [202] * 4
    live = (
        "SELECT COUNT(*) FROM {db}.one_time_codes c JOIN {db}.users u ON u.id = c.user_id"
        " WHERE u.email = %s AND c.purpose = 'reset' AND c.used_at IS NULL"
    )
    assert on_every_node(cluster, live, (address,)) == [[(1,)]] * 3
    codes = [await next_code(mailbox, address, n) for n in range(1, 5)]
    results = []
    for n, code in enumerate(codes):
        body = {"email": address, "code": code, "new_password": f"a-new-password-{n}"}
        results.append((await (a, b)[n % 2].post(f"{AUTH}/password/reset", json=body)).status_code)
    assert sorted(results) == [204, 400, 400, 400], results


# --------------------------------------------------------------------------- retries


def _engine(client: httpx.AsyncClient) -> AsyncEngine:
    engine: AsyncEngine = app_of(client).state.sessionmaker.kw["bind"]
    return engine


async def test_a_forced_certification_conflict_is_retried_and_answers_200(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient],
    cluster: GaleraCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """App A's feedback transaction has updated the prediction's row on node 0 when
    another writer commits an update of the same row on node 1: Galera aborts A's
    transaction (1213); the service runs it again and answers 200 with A's feedback."""
    a, _ = apps
    doctor = await make_doctor(app_of(a), email=email("feedback"))
    prediction = await add_prediction(app_of(a), doctor.id)
    armed = [True]

    def meanwhile_on_node_1(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if armed[0] and statement.lstrip().upper().startswith("UPDATE PREDICTIONS"):
            armed[0] = False
            rows(
                cluster,
                1,
                "UPDATE {db}.predictions SET feedback_comment = 'node 1' WHERE id = %s",
                (prediction.id,),
            )

    engine = _engine(a).sync_engine
    before = retries("deadlock")
    event.listen(engine, "after_cursor_execute", meanwhile_on_node_1)
    try:
        with caplog.at_level("WARNING", logger="app.db.retry"):
            answer = await a.put(
                f"/api/v1/history/{prediction.id}/feedback",
                json={"verdict": "incorrect", "correct_class": "glaucoma", "comment": "node 0"},
                headers=doctor.headers,
            )
    finally:
        event.remove(engine, "after_cursor_execute", meanwhile_on_node_1)
    assert not armed[0], "the conflicting write never ran"
    assert answer.status_code == 200, answer.text
    assert answer.json()["feedback"]["comment"] == "node 0"
    assert retries("deadlock") == before + 1
    assert any("history.set_feedback aborted (deadlock" in r.getMessage() for r in caplog.records)
    comment = "SELECT feedback_comment FROM {db}.predictions WHERE id = %s"
    assert on_every_node(cluster, comment, (prediction.id,)) == [[("node 0",)]] * 3
    events = (
        "SELECT COUNT(*) FROM {db}.audit_events"
        " WHERE action = 'prediction.feedback' AND target_id = %s"
    )
    assert on_every_node(cluster, events, (str(prediction.id),)) == [[(1,)]] * 3


async def test_concurrent_feedback_on_one_prediction_through_two_nodes_is_never_500(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], cluster: GaleraCluster
) -> None:
    a, b = apps
    doctor = await make_doctor(app_of(a), email=email("both"))
    prediction = await add_prediction(app_of(a), doctor.id)
    url = f"/api/v1/history/{prediction.id}/feedback"
    for round_ in range(5):
        answers = await asyncio.gather(
            *(
                c.put(
                    url,
                    json={"verdict": "correct", "comment": f"{name} {round_}"},
                    headers=doctor.headers,
                )
                for c, name in ((a, "a"), (b, "b"))
            )
        )
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    final = on_every_node(
        cluster, "SELECT feedback_comment FROM {db}.predictions WHERE id = %s", (prediction.id,)
    )
    assert final[0] == final[1] == final[2] and final[0][0][0] in ("a 4", "b 4")


def jpeg() -> bytes:
    import io

    from tests.support.fundus import fundus

    buffer = io.BytesIO()
    fundus(256).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _stored_objects(*clients: httpx.AsyncClient) -> set[str]:
    roots = {Path(app_of(c).state.settings.local_storage_dir) for c in clients}
    return {
        str(p) for root in roots for p in root.rglob("*") if p.is_file() and "/." not in str(p)
    }


async def test_the_same_idempotency_key_on_two_nodes_makes_one_prediction(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], cluster: GaleraCluster
) -> None:
    """A retried upload whose two tries race through two processes on two nodes: the
    claim's unique index conflicts at certification, the loser reads the winner's
    prediction. One row on every node, one stored object, one id."""
    a, b = apps
    doctor = await make_doctor(app_of(a), email=email("idem"))
    data = jpeg()
    before = _stored_objects(a, b)
    for round_ in range(3):
        answers = await asyncio.gather(
            *(
                c.post(
                    "/api/v1/predict",
                    files={"file": ("eye.jpg", data, "image/jpeg")},
                    headers={**doctor.headers, "Idempotency-Key": f"galera-retry-{round_}"},
                )
                for c in (a, b)
            )
        )
        assert sorted(r.status_code for r in answers) == [200, 201], [r.text for r in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
    counts = on_every_node(
        cluster, "SELECT COUNT(*) FROM {db}.predictions WHERE user_id = %s", (doctor.id,)
    )
    assert counts == [[(3,)]] * 3
    assert len(_stored_objects(a, b) - before) == 3


async def test_transient_errors_that_escape_are_503_not_500(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], cluster: GaleraCluster
) -> None:
    """Each attempt to record an upload conflicts (node 1 updates the uploader's row while
    node 0 inserts the prediction that references it): after the last retry the answer
    is 503 DATABASE_UNAVAILABLE, not a 500, and neither a row nor the object is left."""
    a, _ = apps
    doctor = await make_doctor(app_of(a), email=email("hopeless"))
    attempts = [0]

    def always(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO PREDICTIONS"):
            attempts[0] += 1
            sql = "UPDATE {db}.users SET name = LEFT(UUID(), 8) WHERE id = %s"
            rows(cluster, 1, sql, (doctor.id,))
            # A causal read on node 0 returns once node 0 has applied that update: its
            # applier needed the row this transaction's foreign-key check holds, so it
            # aborted this transaction (1213). Without the wait, a commit that beat the
            # applier passed certification (a child's reference to its parent does not
            # conflict with an update of the parent's other columns): CI saw the 8th
            # attempt succeed once.
            rows(cluster, 0, "SELECT name FROM {db}.users WHERE id = %s", (doctor.id,))

    engine = _engine(a).sync_engine
    abandoned = "ocupredict_db_transactions_abandoned_total"
    before = REGISTRY.get_sample_value(abandoned, {"reason": "deadlock"}) or 0.0
    started = time.time()
    event.listen(engine, "after_cursor_execute", always)
    try:
        answer = await a.post(
            "/api/v1/predict",
            headers=doctor.headers,
            files={"file": ("eye.jpg", jpeg(), "image/jpeg")},
        )
    finally:
        event.remove(engine, "after_cursor_execute", always)
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "DATABASE_UNAVAILABLE"
    assert attempts[0] == DEFAULT_POLICY.attempts
    assert REGISTRY.get_sample_value(abandoned, {"reason": "deadlock"}) == before + 1
    mine = "SELECT COUNT(*) FROM {db}.predictions WHERE user_id = %s"
    assert on_every_node(cluster, mine, (doctor.id,)) == [[(0,)]] * 3
    store = Path(app_of(a).state.settings.local_storage_dir)
    assert not [p for p in store.rglob("*") if p.is_file() and p.stat().st_mtime > started]


# --------------------------------------------------------------------------- kill, rejoin, stop


async def test_a_killed_node_rejoins_and_the_cluster_stops_leaving_nothing(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], cluster: GaleraCluster
) -> None:
    a, b = apps
    doctor = await make_doctor(app_of(a), email=email("survivor"))
    predictions = [(await add_prediction(app_of(a), doctor.id)).id for _ in range(4)]
    cluster.kill(2)
    assert cluster.nodes[2].proc is not None and cluster.nodes[2].proc.poll() is not None
    # Both writers go on through the service while node 2 is down (the cluster first
    # evicts it; a transaction caught in that view change is aborted and retried).
    for n, (client, prediction) in enumerate(zip((a, b, a, b), predictions, strict=True)):
        answer = await client.put(
            f"/api/v1/history/{prediction}/feedback",
            json={"verdict": "correct", "comment": f"while node 2 was down {n}"},
            headers=doctor.headers,
        )
        assert answer.status_code == 200, answer.text
    took = await asyncio.to_thread(cluster.restart, 2)
    print(f"galera: node 2 SIGKILLed and rejoined in {took:.1f} s")
    assert [cluster.status(i).synced for i in range(3)] == [True] * 3
    found = rows(
        cluster,
        2,
        "SELECT feedback_comment FROM {db}.predictions WHERE user_id = %s ORDER BY id",
        (doctor.id,),
    )
    assert [r[0] for r in found] == [f"while node 2 was down {n}" for n in range(4)]
    log = cluster.nodes[2].error_log.read_text(errors="replace")
    assert "IST received" in log  # rejoined by incremental transfer, not a full copy

    ports = [p for n in cluster.nodes for p in (n.port, n.gcomm_port, n.ist_port)]
    pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
    cluster.stop()
    assert cluster.stop_seconds is not None
    print(f"galera: cluster stopped in {cluster.stop_seconds:.1f} s")
    assert all(n.proc is not None and n.proc.poll() is not None for n in cluster.nodes)
    assert not cluster.base_dir.exists()
    for pid in pids:
        assert not _running(pid)
    for port in ports:
        assert not _listening(port), port


def _running(pid: int) -> bool:
    from app.deploy.harness import pid_alive

    return pid_alive(pid)


def _listening(port: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return False
        time.sleep(0.1)
    return True
