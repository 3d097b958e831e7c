"""Write guards (0012): one version-counter row per fact that concurrent transactions
decide on, so that they conflict where the database detects conflicts, on a row write.

A locking read (SELECT ... FOR UPDATE) serialises transactions on one MariaDB, but on a
Galera cluster it locks only on its own node: two transactions on two nodes both read
"two admins left" and both demote one. Galera certifies write sets instead: of two
concurrent transactions that wrote the same row, the one ordered second fails with 1213
(at COMMIT, or earlier when the first one's replication aborts it), and
app.db.retry runs it again, now seeing the first one's result. So every transaction that
decides on a guarded fact also writes the guard's row:

- `bump(name)` first, then read with locking reads: they see everything committed
  before the bump, and whatever commits on another node meanwhile conflicts with it.
- `read_versions(names)` with the (snapshot) reads the decision rests on, later
  `advance(name, seen)`: an UPDATE ... WHERE version = :seen that finds another version
  (the guard moved since the snapshot) raises WriteConflict, a concurrent one on another
  node fails certification. The snapshot's decision is so never acted on stale.

Names: ADMINS (the last-admin rule), `rate_limit(bucket)` (stripes of the rate-limit
buckets), `one_time_code(user, purpose)` (the live code of a user).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import WriteGuard
from app.db.retry import WriteConflict
from app.repositories._util import rowcount

ADMINS = "admins"


RATE_LIMIT_STRIPES = 1024


def rate_limit(bucket: str) -> str:
    """The guard of a rate-limit bucket (a hex digest): one of a fixed set of stripes, so
    the table stays small and its rows are never deleted (a deleted and remade guard could
    come back at a version a running transaction read). Two buckets that share a stripe
    only cost a retry when they are hit at the same moment."""
    return f"rate:{int(bucket[:8], 16) % RATE_LIMIT_STRIPES}"


def one_time_code(user_id: int, purpose: str) -> str:
    return f"code:{user_id}:{purpose}"


class WriteGuardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def read_versions(self, names: Sequence[str]) -> dict[str, int | None]:
        """Each guard's version as this transaction sees it (None: not made yet)."""
        result = await self.session.execute(
            select(WriteGuard.name, WriteGuard.version).where(WriteGuard.name.in_(names))
        )
        found = {name: int(version) for name, version in result.all()}
        return {name: found.get(name) for name in names}

    async def advance(self, name: str, seen: int | None) -> None:
        """Move the guard on from version `seen` (None: it did not exist); WriteConflict
        when another transaction moved (or made) it since."""
        if seen is None:
            try:  # the transaction is rolled back as a whole by its retry
                await self.session.execute(insert(WriteGuard).values(name=name, version=1))
            except IntegrityError:
                raise WriteConflict(f"write guard {name} was made concurrently") from None
            return
        result = await self.session.execute(
            update(WriteGuard)
            .where(WriteGuard.name == name, WriteGuard.version == seen)
            .values(version=WriteGuard.version + 1)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            raise WriteConflict(f"write guard {name} moved since version {seen}")

    async def bump(self, name: str) -> None:
        """Move the guard on whatever its version (made at version 1 when missing)."""
        dialect = self.session.get_bind().dialect.name
        if dialect in ("mysql", "mariadb"):
            stmt = mysql.insert(WriteGuard).values(name=name, version=1)
            await self.session.execute(stmt.on_duplicate_key_update(version=WriteGuard.version + 1))
        elif dialect == "sqlite":
            lite = sqlite.insert(WriteGuard).values(name=name, version=1)
            await self.session.execute(
                lite.on_conflict_do_update(
                    index_elements=[WriteGuard.name], set_={"version": WriteGuard.version + 1}
                )
            )
        else:  # pragma: no cover - the two databases the service supports
            raise NotImplementedError(dialect)
