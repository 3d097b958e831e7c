"""app.db.retry and the write guards on the suite's database (no cluster needed; the
Galera behaviour itself is tests/test_galera.py)."""

from __future__ import annotations

import pymysql
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.retry import RetryPolicy, WriteConflict, retry_reason, retrying_transaction
from app.repositories.write_guards import ADMINS, WriteGuardRepository, rate_limit

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002)


def mysql_error(errno: int, *, invalidated: bool = False) -> OperationalError:
    return OperationalError(
        "COMMIT", {}, pymysql.err.OperationalError(errno, "x"), connection_invalidated=invalidated
    )


def count(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(f"ocupredict_{name}_total", {"reason": reason}) or 0.0


def test_which_errors_allow_the_transaction_to_run_again() -> None:
    assert retry_reason(mysql_error(1213)) == "deadlock"
    assert retry_reason(mysql_error(1205)) == "lock_wait_timeout"
    assert retry_reason(mysql_error(1047)) == "wsrep_not_ready"
    assert retry_reason(WriteConflict("moved")) == "write_conflict"
    # A dropped connection (the COMMIT may have happened), other errors: never.
    assert retry_reason(mysql_error(1213, invalidated=True)) is None
    assert retry_reason(mysql_error(2013)) is None
    duplicate = IntegrityError("INSERT", {}, pymysql.err.IntegrityError(1062, "dup"))
    assert retry_reason(duplicate) is None
    assert retry_reason(ValueError("1213")) is None


def test_the_pause_before_each_attempt_is_bounded() -> None:
    policy = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.5)
    for attempt in range(1, 12):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert min(delays) >= 0
        assert max(delays) <= min(0.5, 0.01 * 2**attempt)


async def test_a_transient_failure_runs_the_whole_work_again(db_engine: AsyncEngine) -> None:
    calls: list[int] = []

    async def work() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise mysql_error(1213)
        return "done"

    before = count("db_transaction_retries", "deadlock")
    async with AsyncSession(db_engine) as session:
        assert await retrying_transaction(session, work, name="t", policy=FAST) == "done"
    assert len(calls) == 3
    assert count("db_transaction_retries", "deadlock") == before + 2


async def test_retries_are_bounded_and_other_errors_pass_at_once(db_engine: AsyncEngine) -> None:
    calls: list[int] = []

    async def hopeless() -> None:
        calls.append(1)
        raise mysql_error(1047)

    before = count("db_transactions_abandoned", "wsrep_not_ready")
    async with AsyncSession(db_engine) as session:
        with pytest.raises(OperationalError):
            await retrying_transaction(session, hopeless, name="t", policy=FAST)
        assert len(calls) == FAST.attempts
        assert count("db_transactions_abandoned", "wsrep_not_ready") == before + 1

        async def broken() -> None:
            calls.append(1)
            raise ValueError("not a database error")

        calls.clear()
        with pytest.raises(ValueError):
            await retrying_transaction(session, broken, name="t", policy=FAST)
        assert len(calls) == 1


async def test_write_guards_move_and_refuse_a_stale_version(db_engine: AsyncEngine) -> None:
    name = rate_limit("ab" * 32)
    async with AsyncSession(db_engine) as session:
        guards = WriteGuardRepository(session)
        assert await guards.read_versions([name]) == {name: None}
        await guards.advance(name, None)  # made at version 1
        await guards.bump(name)
        await guards.bump(ADMINS)
        await session.commit()
        assert await guards.read_versions([name, ADMINS]) == {name: 2, ADMINS: 1}
        await guards.advance(name, 2)
        await session.commit()
        with pytest.raises(WriteConflict):
            await guards.advance(name, 2)  # someone moved it to 3 since 2 was read
        await session.rollback()
        with pytest.raises(WriteConflict):
            await guards.advance(name, None)  # it exists already
        await session.rollback()
        assert await guards.read_versions([name]) == {name: 3}
