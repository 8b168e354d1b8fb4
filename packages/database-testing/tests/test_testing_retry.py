"""run_transaction() and max_waiting on the mocks: the retry loop's rules, fault by fault."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from structum_lab.config import DictConfigProvider, set_config_provider
from structum_lab.plugins.database import (
    CommitOutcomeUnknownError,
    DatabaseError,
    DatabaseUnavailableError,
    IntegrityError,
    LockTimeoutError,
    PoolOverloadedError,
    SerializationError,
)
from structum_lab.plugins.database._retry import RetryPolicy
from structum_lab.plugins.database.testing import AsyncMockDatabase, MockDatabase, isolated


def _fast(**options: Any) -> MockDatabase:
    return MockDatabase(retry_backoff=0.0, **options)


def _counting(db: MockDatabase, calls: list[int]) -> Any:
    def fn(conn: Any) -> str:
        calls.append(1)
        conn.execute("UPDATE accounts SET balance = balance - 1")
        return "ok"

    return fn


@pytest.mark.parametrize(
    "fault",
    [
        "serialization",
        "unavailable",  # lost before COMMIT was sent: the server rolled it back
        LockTimeoutError("lock wait timeout exceeded", sqlstate="HY000"),
        SerializationError("deadlock detected", sqlstate="40P01"),
    ],
)
def test_retryable_statement_errors_are_retried(fault: Any) -> None:
    db = _fast()
    calls: list[int] = []
    db.fail_next(2, error=fault)
    assert db.run_transaction(_counting(db, calls)) == "ok"
    assert len(calls) == 3
    assert [tx.status for tx in db.transactions] == ["rolled_back", "rolled_back", "committed"]


def test_serialization_failure_at_commit_is_retried() -> None:
    db = _fast()
    calls: list[int] = []
    db.fail_commit(error="serialization")
    db.run_transaction(_counting(db, calls))
    assert len(calls) == 2
    assert [tx.status for tx in db.transactions] == ["rolled_back", "committed"]


def test_commit_outcome_unknown_is_never_retried() -> None:
    db = _fast()
    calls: list[int] = []
    db.fail_commit()
    with pytest.raises(CommitOutcomeUnknownError, match="may or may not"):
        db.run_transaction(_counting(db, calls))
    assert len(calls) == 1
    # the mock's answer to "did it commit?" is the hard one: yes
    assert [tx.status for tx in db.transactions] == ["committed"]
    assert db.get_pool_info()["checked_out"] == 0


def test_overloaded_pool_is_retried() -> None:
    db = _fast()
    calls: list[int] = []
    db.overload_pool(3)
    db.run_transaction(_counting(db, calls))
    assert len(calls) == 1  # fn never ran while no connection was handed out


def test_other_errors_are_not_retried() -> None:
    db = _fast()
    calls: list[int] = []
    db.fail_next(error="integrity")
    with pytest.raises(IntegrityError):
        db.run_transaction(_counting(db, calls))
    db.exhaust_pool()  # a plain PoolTimeoutError already waited its whole timeout
    with pytest.raises(DatabaseError, match="became free"):
        db.run_transaction(_counting(db, calls))

    def raises(conn: Any) -> None:
        calls.append(1)
        raise KeyError("app bug")

    with pytest.raises(KeyError):
        db.run_transaction(raises)
    assert len(calls) == 2


def test_retries_are_bounded_by_count() -> None:
    db = _fast(retries=3)
    calls: list[int] = []
    db.fail_next(10, error="serialization")
    with pytest.raises(SerializationError):
        db.run_transaction(_counting(db, calls))
    assert len(calls) == 4
    calls.clear()
    with pytest.raises(SerializationError):
        db.run_transaction(_counting(db, calls), retries=1)
    assert len(calls) == 2
    calls.clear()
    db.script.reset()
    db.fail_next(error="serialization")
    with pytest.raises(SerializationError):
        db.run_transaction(_counting(db, calls), retries=0)
    assert len(calls) == 1


class _LongPauses(RetryPolicy):
    def pause(self, retry: int) -> float:
        return 3600.0


def test_retries_are_bounded_by_time() -> None:
    # The first pause would end after the 1 s bound, so no retry starts: the error is raised.
    db = _fast()
    db.retry_policy = _LongPauses(retries=5, timeout=1.0)
    calls: list[int] = []
    db.fail_next(error="serialization")
    with pytest.raises(SerializationError):
        db.run_transaction(_counting(db, calls))
    assert len(calls) == 1
    db.fail_next(error="serialization")
    with pytest.raises(SerializationError):
        db.run_transaction(_counting(db, calls), retry_timeout=2.0)
    assert len(calls) == 2


def test_refuses_inside_an_outer_transaction_and_runs_once_under_force_rollback() -> None:
    db = _fast()
    calls: list[int] = []
    with db.transaction(), pytest.raises(DatabaseError, match="inside a transaction"):
        db.run_transaction(_counting(db, calls))
    assert calls == []
    # another thread is not inside this thread's transaction
    with db.transaction():
        done: list[Any] = []
        worker = threading.Thread(
            target=lambda: done.append(db.run_transaction(_counting(db, calls)))
        )
        worker.start()
        worker.join(30)
        assert done == ["ok"]
    # test isolation (force_rollback): fn runs once, in a savepoint of the rolled-back transaction
    with isolated(db):
        db.fail_next(error="serialization")
        with pytest.raises(SerializationError):
            db.run_transaction(_counting(db, calls))
        assert db.run_transaction(_counting(db, calls)) == "ok"
    assert len(calls) == 3


def test_bad_arguments() -> None:
    db = _fast()
    with pytest.raises(ValueError, match="retries must be"):
        db.run_transaction(lambda conn: None, retries=-1)
    with pytest.raises(ValueError, match="retry_timeout must be"):
        db.run_transaction(lambda conn: None, retry_timeout=-1)
    with pytest.raises(DatabaseError, match="max_waiting must be"):
        MockDatabase(max_waiting=-1)
    with pytest.raises(DatabaseError, match="retries must be"):
        MockDatabase(retries=-2)


def test_max_waiting() -> None:
    db = MockDatabase(pool_size=1, pool_timeout=30.0, max_waiting=1)
    held = db.get_connection()
    entered = threading.Event()

    def wait_for_it() -> None:
        with db.transaction():
            entered.set()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    for _ in range(6000):  # no-hang guard: 30 s
        if db.get_pool_info()["waiting"] == 1:
            break
        time.sleep(0.005)
    with pytest.raises(PoolOverloadedError, match="max_waiting=1") as info, db.transaction():
        pass
    assert info.value.retryable
    held.close()
    waiter.join(30)
    assert entered.is_set()
    stats = db.get_pool_info()
    assert (stats["checked_out"], stats["waiting"]) == (0, 0)


async def test_async_run_transaction_retries_and_refuses() -> None:
    db = AsyncMockDatabase(retry_backoff=0.0)
    calls: list[int] = []

    async def fn(conn: Any) -> int:
        calls.append(1)
        await conn.execute("UPDATE t SET x = 1")
        return len(calls)

    db.fail_next(2, error="unavailable")
    assert await db.run_transaction(fn) == 3
    db.fail_commit()
    with pytest.raises(CommitOutcomeUnknownError):
        await db.run_transaction(fn)
    assert len(calls) == 4
    async with db.transaction():
        with pytest.raises(DatabaseError, match="inside a transaction"):
            await db.run_transaction(fn)
    assert isinstance(CommitOutcomeUnknownError("x"), DatabaseUnavailableError)


def test_settable_from_configuration() -> None:
    settings = {
        "url": "mock://",
        "max_waiting": "3",  # environment variables arrive as text
        "retries": "4",
        "retry_backoff": 0.5,
        "retry_max_backoff": "2",
        "retry_timeout": 20,
    }
    set_config_provider(DictConfigProvider({"database": settings}))
    try:
        db = MockDatabase.from_config()
    finally:
        set_config_provider(None)
    assert db.max_waiting == 3
    assert db.retry_policy == RetryPolicy(retries=4, backoff=0.5, max_backoff=2.0, timeout=20.0)
