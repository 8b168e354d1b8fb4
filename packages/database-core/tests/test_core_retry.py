"""run_transaction()'s policy, and its default on the interfaces for an application's own class."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from structum_lab.plugins.database import (
    AsyncDatabaseInterface,
    CommitOutcomeUnknownError,
    ConfigurationError,
    DatabaseError,
    DatabaseInterface,
    DatabaseUnavailableError,
    HealthResult,
    HealthStatus,
    IntegrityError,
    LockTimeoutError,
    PoolOverloadedError,
    PoolTimeoutError,
    QueryError,
    SerializationError,
    StatementTimeoutError,
)
from structum_lab.plugins.database._retry import RetryPolicy, is_retryable
from structum_lab.plugins.database.errors import error_class_for_sqlstate


def test_retryable_errors() -> None:
    assert is_retryable(SerializationError("x", sqlstate="40001"))
    assert is_retryable(LockTimeoutError("x", sqlstate="55P03"))
    assert is_retryable(DatabaseUnavailableError("lost before COMMIT"))
    assert is_retryable(PoolOverloadedError("too many waiting"))
    for error in (
        CommitOutcomeUnknownError("lost during COMMIT"),
        PoolTimeoutError("waited the whole timeout"),
        IntegrityError("dup", sqlstate="23505"),
        StatementTimeoutError("slow", sqlstate="57014"),
        QueryError("syntax", sqlstate="42601"),
        DatabaseError("misuse"),
        ValueError("not ours"),
    ):
        assert not is_retryable(error), error


def test_class_placement() -> None:
    assert issubclass(CommitOutcomeUnknownError, DatabaseUnavailableError)
    assert issubclass(PoolOverloadedError, PoolTimeoutError)
    # a lock timeout is contention (retry) and still the timeout it was before
    assert issubclass(LockTimeoutError, SerializationError)
    assert issubclass(LockTimeoutError, StatementTimeoutError)
    assert error_class_for_sqlstate("55P03") is LockTimeoutError
    for cls in (CommitOutcomeUnknownError, PoolOverloadedError, LockTimeoutError):
        assert cls.__module__ == "structum_lab.plugins.database"


def test_pauses_are_jittered_and_bounded() -> None:
    policy = RetryPolicy(retries=5, backoff=0.01, max_backoff=0.05, timeout=1.0)
    for retry, bound in ((1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (60, 0.05), (500, 0.05)):
        pauses = {policy.pause(retry) for _ in range(50)}
        assert all(0.0 <= p <= bound for p in pauses)
        assert len(pauses) > 1  # jittered: callers that failed together do not retry together


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retries", -1),
        ("retries", 1.5),
        ("retries", True),
        ("backoff", -0.1),
        ("max_backoff", float("nan")),
        ("timeout", 0),
        ("timeout", "soon"),
    ],
)
def test_policy_rejects_bad_values(key: str, value: Any) -> None:
    options: dict[str, Any] = {"retries": 3, "backoff": 0.1, "max_backoff": 1.0, "timeout": 5.0}
    options[key] = value
    with pytest.raises(ConfigurationError, match="must be"):
        RetryPolicy.checked("Owner", **options)


class _Flaky(DatabaseInterface):
    """An application's own database: a transaction() and health_check(), nothing else."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.log: list[str] = []

    @contextmanager  # yields a list, not a Connection: all run_transaction() needs
    def transaction(self, **options: Any) -> Iterator[list[str]]:  # type: ignore[override]
        self.log.append(f"begin {options}")
        yield self.log
        if self.failures:
            self.log.append("rollback")
            raise self.failures.pop(0)
        self.log.append("commit")

    def health_check(self) -> HealthResult:
        return HealthResult(HealthStatus.HEALTHY, "ok", 0.1)


class _AsyncFlaky(AsyncDatabaseInterface):
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.log: list[str] = []

    @asynccontextmanager
    async def transaction(self, **options: Any) -> AsyncIterator[list[str]]:  # type: ignore[override]
        self.log.append(f"begin {options}")
        yield self.log
        if self.failures:
            self.log.append("rollback")
            raise self.failures.pop(0)
        self.log.append("commit")

    async def health_check(self) -> HealthResult:
        return HealthResult(HealthStatus.HEALTHY, "ok", 0.1)


def test_an_applications_own_database_gets_run_transaction() -> None:
    db = _Flaky([SerializationError("conflict", sqlstate="40001")])
    assert db.run_transaction(len, isolation_level="SERIALIZABLE") == 3
    assert db.log == [
        "begin {'isolation_level': 'SERIALIZABLE'}",
        "rollback",
        "begin {'isolation_level': 'SERIALIZABLE'}",
        "commit",
    ]
    unknown = _Flaky([CommitOutcomeUnknownError("lost during COMMIT")])
    with pytest.raises(CommitOutcomeUnknownError):
        unknown.run_transaction(lambda log: None)
    assert unknown.log.count("rollback") == 1


async def test_an_applications_own_async_database_gets_run_transaction() -> None:
    db = _AsyncFlaky([DatabaseUnavailableError("lost"), PoolOverloadedError("busy")])

    async def fn(log: list[str]) -> str:
        return "done"

    assert await db.run_transaction(fn) == "done"
    assert db.log.count("begin {}") == 3
    with pytest.raises(ValueError, match="retries must be"):
        await db.run_transaction(fn, retries=-1)
    with pytest.raises(ValueError, match="retry_timeout must be"):
        await db.run_transaction(fn, retry_timeout=0)
