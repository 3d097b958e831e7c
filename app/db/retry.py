"""Run a whole transaction again when the database aborted it for a transient reason.

MariaDB answers with an error a transaction that did nothing wrong but lost a race:
1213 (a deadlock, and on a Galera cluster a certification conflict at COMMIT: another
node committed a write to the same row first), 1205 (lock wait timeout) and 1047 (a
Galera node that is not ready, e.g. rejoining the cluster). The database has rolled the
transaction back; running it again from its first read is the remedy, and
`WriteConflict` (a write guard moved since this transaction read it, see
app.repositories.write_guards) asks for the same.

    @retried("auth.login")                # on a method of a class with self.db
    async def login(self, ...): ...       # reads, writes, commits

    await retrying_transaction(session, work, name="predict.create")

Only where the transaction is safe to repeat: the work begins with nothing read yet
(everything it decides on is read again inside it), ends with its COMMIT, and does
nothing outside the database before that COMMIT that a second run would do twice (mail
is sent, objects deleted, caches told after it). A connection lost during COMMIT is
never retried (the transaction may have committed). ORM objects passed to a `@retried`
method (the request's user) are reloaded before each new attempt, since the rollback
expired them. Each retry is logged and counted in /metrics
(`ocupredict_db_transaction_retries_total{reason}`); after the last attempt the error
propagates (the API answers 503 DATABASE_UNAVAILABLE, app.api.errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S")

# MySQL/MariaDB server error numbers after which the whole transaction may run again.
RETRYABLE_ERRNOS = {
    1213: "deadlock",  # ER_LOCK_DEADLOCK; Galera's certification failure / brute-force abort
    1205: "lock_wait_timeout",  # ER_LOCK_WAIT_TIMEOUT
    1047: "wsrep_not_ready",  # ER_UNKNOWN_COM_ERROR: "WSREP has not yet prepared node..."
}


class WriteConflict(Exception):
    """A concurrent transaction changed what this one decided on: run it again."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `attempts` runs; before run n+1 a pause drawn uniformly from
    [0, min(max_delay, base_delay * 2**n)] ("full jitter", so that the transactions that
    collided do not collide again)."""

    attempts: int = 8
    base_delay: float = 0.01
    max_delay: float = 0.5

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


DEFAULT_POLICY = RetryPolicy()


def mysql_errno(exc: BaseException) -> int | None:
    """The server's error number behind a SQLAlchemy DBAPIError, if any."""
    if not isinstance(exc, DBAPIError):
        return None
    args = tuple(getattr(exc.orig, "args", ()))
    return args[0] if args and isinstance(args[0], int) else None


def retry_reason(exc: BaseException) -> str | None:
    """Why `exc` allows the whole transaction to run again, or None when it does not."""
    if isinstance(exc, WriteConflict):
        return "write_conflict"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return None  # the connection died: the outcome of the transaction is unknown
    errno = mysql_errno(exc)
    return RETRYABLE_ERRNOS.get(errno) if errno is not None else None


async def retrying_transaction(
    session: AsyncSession,
    work: Callable[[], Awaitable[T]],
    *,
    name: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    reload: Iterable[object] = (),
) -> T:
    """`await work()` (one whole transaction on `session`) until it does not fail
    transiently, at most `policy.attempts` times. `reload`: ORM objects of the session
    to refresh before each new attempt (the rollback expired them)."""
    reload = tuple(reload)
    attempt = 1
    while True:
        try:
            if attempt > 1:
                for obj in reload:
                    await session.refresh(obj)
            return await work()
        except Exception as exc:
            reason = retry_reason(exc)
            if reason is None:
                raise
            with contextlib.suppress(Exception):
                await session.rollback()
            if attempt >= policy.attempts:
                metrics.DB_TRANSACTIONS_ABANDONED.labels(reason).inc()
                log.warning("transaction %s failed %d times (%s); giving up", name, attempt, reason)
                raise
            metrics.DB_TRANSACTION_RETRIES.labels(reason).inc()
            delay = policy.delay(attempt)
            log.warning(
                "transaction %s aborted (%s: %s); retrying in %.0f ms (attempt %d of %d)",
                name,
                reason,
                _short(exc),
                delay * 1000,
                attempt + 1,
                policy.attempts,
            )
            await asyncio.sleep(delay)
            attempt += 1


Method = Callable[Concatenate[S, P], Coroutine[Any, Any, T]]


def retried(
    name: str, *, session_attr: str = "db", policy: RetryPolicy = DEFAULT_POLICY
) -> Callable[[Method[S, P, T]], Method[S, P, T]]:
    """Decorate a method that is one whole transaction on `self.<session_attr>` (see the
    module docstring for when that is safe): it runs again on a transient abort."""

    def decorate(method: Method[S, P, T]) -> Method[S, P, T]:
        @functools.wraps(method)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            session: AsyncSession = getattr(self, session_attr)
            return await retrying_transaction(
                session,
                lambda: method(self, *args, **kwargs),
                name=name,
                policy=policy,
                reload=_orm_objects(session, (*args, *kwargs.values())),
            )

        return wrapper

    return decorate


def _orm_objects(session: AsyncSession, values: Iterable[Any]) -> list[object]:
    """The persistent ORM instances of `session` among `values`."""
    found = []
    for value in values:
        state = sa_inspect(value, raiseerr=False)
        if state is not None and getattr(state, "persistent", False) and value in session:
            found.append(value)
    return found


def _short(exc: BaseException) -> str:
    errno = mysql_errno(exc)
    if errno is not None:
        return f"MySQL error {errno}"
    return type(exc).__name__
