"""GET /admin/audit (filters, keyset pages stable under concurrent inserts), the CSV export
(streamed), prune-audit, and the append-only rule."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select

from app.cli import main as cli_main
from app.db.models import AuditEvent
from app.services import audit
from app.services.audit_trail import CSV_COLUMNS
from tests.support.audit import events, only
from tests.support.factories import app_of, make_doctor
from tests.support.harness import in_own_thread

AUDIT = "/api/v1/admin/audit"
ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def bulk_events(app: FastAPI, count: int, *, start: datetime = T0) -> None:
    """`count` prediction.view events, one per second from `start` (core INSERT in chunks)."""
    chunk = 10_000
    async with app.state.sessionmaker() as session:
        for first in range(0, count, chunk):
            rows = [
                {
                    "at": start + timedelta(seconds=i),
                    "actor_id": 1 + i % 7,
                    "actor_email": f"doctor{1 + i % 7}@example.com",
                    "action": "prediction.view",
                    "target_type": "prediction",
                    "target_id": str(i),
                    "ip": "10.0.0.1",
                    "request_id": f"req-{i}",
                }
                for i in range(first, min(count, first + chunk))
            ]
            await session.execute(insert(AuditEvent), rows)
        await session.commit()


async def add_event(app: FastAPI, action: str, at: datetime, **kwargs: Any) -> None:
    async with app.state.sessionmaker() as session:
        await audit.record(session, action, at=at, **kwargs)
        await session.commit()


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[int]:
    response = await client.get(AUDIT, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["items"]]


async def test_filters(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    await add_event(app, "auth.login", T0, actor=admin.id, target=("user", admin.id))
    await add_event(
        app, "prediction.view", T0 + timedelta(hours=1), actor=7, target=("prediction", 42)
    )
    await add_event(
        app,
        "prediction.feedback",
        T0 + timedelta(days=1),
        actor=7,
        target=("prediction", 42),
        old=None,
        new={"verdict": "correct"},
    )
    await add_event(app, "auth.login_failed", T0 + timedelta(days=2), actor_email="x@y.z")
    ids = [e.id for e in await events(app)]
    h = admin.headers

    assert await listed(client, h) == ids[::-1]  # newest first
    assert await listed(client, h, actor_id=7) == [ids[2], ids[1]]
    assert await listed(client, h, action="auth.login_failed") == [ids[3]]
    assert await listed(client, h, target_type="prediction", target_id="42") == [ids[2], ids[1]]
    assert await listed(client, h, target_type="user") == [ids[0]]
    assert await listed(
        client, h, date_from="2026-03-01T12:30:00Z", date_to="2026-03-02T12:00:00Z"
    ) == [ids[2], ids[1]]
    # A plain date is a whole day in tz.
    assert await listed(client, h, date_from="2026-03-02", date_to="2026-03-02", tz="UTC") == [
        ids[2]
    ]
    assert await listed(client, h, actor_id=7, action="prediction.view") == [ids[1]]
    assert await listed(client, h, actor_id=999) == []

    body = (await client.get(AUDIT, params={"action": "prediction.feedback"}, headers=h)).json()
    event = body["items"][0]
    assert event == {
        "id": ids[2],
        "at": "2026-03-02T12:00:00+00:00",
        "actor_id": 7,
        "actor_email": None,
        "action": "prediction.feedback",
        "target_type": "prediction",
        "target_id": "42",
        "ip": None,
        "request_id": None,
        "old": None,
        "new": {"verdict": "correct"},
    }
    assert body["next_cursor"] is None

    for bad in (
        {"action": "prediction.peek"},
        {"limit": 0},
        {"limit": 501},
        {"cursor": "12a"},
        {"actor_id": 0},
        {"date_from": "2026-03-02", "date_to": "2026-03-01"},
        {"date_from": "2026-03-02T10:00:00"},  # no offset
        {"target_id": "x" * 65},
    ):
        response = await client.get(AUDIT, params=bad, headers=h)
        assert response.status_code == 422, bad
        assert response.json()["code"] == "VALIDATION_ERROR"
        export = await client.get(f"{AUDIT}/export", params=bad, headers=h)
        assert export.status_code == (200 if set(bad) <= {"limit", "cursor"} else 422), bad


async def test_cursor_pages_every_event_exactly_once_while_inserting(
    client: httpx.AsyncClient,
) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    await bulk_events(app, 100_000)
    async with app.state.sessionmaker() as session:
        existing = set((await session.scalars(select(AuditEvent.id))).all())
    assert len(existing) == 100_000

    stop = asyncio.Event()
    written: list[int] = []

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            async with app.state.sessionmaker() as session:
                await audit.record(
                    session, "prediction.view", actor=admin.id, target=("prediction", i)
                )
                await session.commit()
            written.append(i)
            i += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    seen: list[int] = []
    pages = 0
    cursor = None
    try:
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor is not None:
                params["cursor"] = cursor
            response = await client.get(AUDIT, params=params, headers=admin.headers)
            assert response.status_code == 200
            body = response.json()
            seen += [e["id"] for e in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
    finally:
        stop.set()
        await task
    print(f"{pages} pages, {len(seen)} events seen, {len(written)} inserted meanwhile")
    assert len(written) > 0  # events were inserted while paging
    assert len(seen) == len(set(seen))  # nothing twice
    assert existing <= set(seen)  # everything that existed, once
    assert seen == sorted(seen, reverse=True)
    assert pages >= 200
    async with app.state.sessionmaker() as session:
        total = await session.scalar(select(func.count()).select_from(AuditEvent))
    assert total == 100_000 + len(written)


async def asgi_get(
    app: FastAPI, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], list[bytes]]:
    """GET through the ASGI interface itself, keeping each body message apart (httpx's
    ASGITransport joins them into one)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent = False
    done = asyncio.Event()
    start: dict[str, Any] = {}
    bodies: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            bodies.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, bodies


async def test_export_streams_every_event_as_csv(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    await bulk_events(app, 100_000)
    status, headers, bodies = await asgi_get(app, f"{AUDIT}/export", admin.headers)
    assert status == 200
    assert headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"].startswith('attachment; filename="audit-')
    assert "content-length" not in headers  # streamed, not built first
    # One body message per 1,000 rows (plus the header row), none of them the whole body.
    assert len(bodies) >= 101
    assert max(len(b) for b in bodies) < sum(len(b) for b in bodies) / 50
    rows = list(csv.reader(io.StringIO(b"".join(bodies).decode())))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 100_001
    ids = [int(r[0]) for r in rows[1:]]
    assert ids == sorted(ids) and len(set(ids)) == 100_000  # oldest first, each once
    assert rows[1][1:9] == [
        "2026-03-01T12:00:00+00:00",
        "1",
        "doctor1@example.com",
        "prediction.view",
        "prediction",
        "0",
        "10.0.0.1",
        "req-0",
    ]
    # The same filters as the list.
    filtered = await client.get(
        f"{AUDIT}/export",
        params={
            "actor_id": 3,
            "date_from": "2026-03-01T12:00:00Z",
            "date_to": "2026-03-01T12:01:00Z",
        },
        headers=admin.headers,
    )
    body = list(csv.reader(io.StringIO(filtered.text)))
    assert [r[6] for r in body[1:]] == [str(i) for i in range(61) if 1 + i % 7 == 3]


async def test_export_values_and_formula_cells(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    admin = await make_doctor(app, role="admin")
    await add_event(app, "auth.login_failed", T0, actor_email="=HYPERLINK(1)@x.com")
    await add_event(
        app,
        "prediction.feedback",
        T0,
        actor=admin.id,
        target=("prediction", 5),
        old={"verdict": "correct"},
        new={"verdict": "incorrect", "correct_class": "cataract"},
    )
    response = await client.get(f"{AUDIT}/export", headers=admin.headers)
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[1][3] == "'=HYPERLINK(1)@x.com"
    assert rows[2][2:4] == [str(admin.id), ""]  # an id alone names no email
    assert json.loads(rows[2][9]) == {"verdict": "correct"}
    assert json.loads(rows[2][10]) == {"correct_class": "cataract", "verdict": "incorrect"}


async def test_prune_audit_deletes_old_events_and_records_itself(
    client: httpx.AsyncClient,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = app_of(client)
    now = datetime.now(UTC)
    await bulk_events(app, 5, start=now - timedelta(days=40))
    await bulk_events(app, 3, start=now - timedelta(days=10))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert in_own_thread(lambda: cli_main(["prune-audit", "--older-than-days", "30"])) == 0
    assert "deleted 5 audit events" in capsys.readouterr().out
    rows = await events(app)
    assert [r.action for r in rows] == ["prediction.view"] * 3 + ["audit.prune"]
    prune = only(await events(app, "audit.prune"))
    assert prune.actor_id is None and prune.new is not None
    assert (prune.new["older_than_days"], prune.new["deleted"]) == (30, 5)
    # Nothing older left: a second prune deletes none, and is recorded too.
    assert in_own_thread(lambda: cli_main(["prune-audit", "--older-than-days", "30"])) == 0
    assert [r.new["deleted"] for r in await events(app, "audit.prune") if r.new] == [5, 0]
    for bad in (["prune-audit"], ["prune-audit", "--older-than-days", "0"]):
        with pytest.raises(SystemExit):
            cli_main(bad)


def test_no_code_updates_or_deletes_an_event() -> None:
    """Append-only: the only statement on audit_events besides INSERT and SELECT is the
    retention prune's DELETE, and no admin audit route is anything but a GET."""
    writes = re.compile(r"\b(update|delete)\(\s*AuditEvent\b|\b(UPDATE|DELETE FROM)\s+audit_events")
    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found += [(path.relative_to(ROOT).as_posix(), m.group(0)) for m in writes.finditer(text)]
        if path.name != "audit.py" or path.parent.name != "repositories":
            assert "session.delete(" not in text or "AuditEvent" not in text, path
    assert found == [("app/repositories/audit.py", "delete(AuditEvent")]
    from app.api.routes import admin_audit

    methods = {m for route in admin_audit.router.routes for m in getattr(route, "methods", ())}
    assert methods == {"GET"}
