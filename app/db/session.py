"""Engine and session factory, built once per process in the lifespan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from app.config import Settings


def make_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    kwargs: dict[str, Any] = {"echo": settings.database_echo}
    if url.get_backend_name() == "sqlite":
        _ensure_sqlite_dir(url)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # A server may drop idle connections (wait_timeout, restarts): test each checkout.
        # (SQLite is a local file with nothing to drop; there a ping costs thread hops.)
        kwargs.update(pool_pre_ping=True, pool_recycle=1800)
    if url.database not in (None, "", ":memory:"):
        # A pool as large as the usual concurrency: a connection beyond pool_size is opened
        # and closed per checkout, which for aiosqlite also means a new thread each time.
        kwargs.update(pool_size=10, max_overflow=20)
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


SessionFactory = async_sessionmaker[AsyncSession]


async def ping(session: AsyncSession) -> None:
    """A round trip to the database (readiness); raises when it cannot be reached."""
    await session.execute(text("SELECT 1"))


def make_sessionmaker(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _ensure_sqlite_dir(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
