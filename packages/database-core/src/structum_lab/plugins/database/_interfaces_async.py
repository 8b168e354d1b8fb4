"""The public interfaces of the backends; ``_interfaces_sync.py`` is generated from this file.

Only ``transaction()`` and ``health_check()`` are abstract, so an application's own database class
(a test double, an adapter) needs just those two. Rows are plain ``dict[str, Any]``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, TypeVar

from typing_extensions import Self

from ._acompat import asleep
from ._retry import DEFAULT_POLICY, RetryPolicy, check_retry_arguments, is_retryable
from ._state import logger
from ._types import PUBLIC_MODULE, AsyncTransactionFunction, MaybeRow, Params, PoolInfo, Row
from .errors import DatabaseError
from .health import HealthResult

T = TypeVar("T")

__all__ = ["AsyncConnection", "AsyncDatabaseInterface", "AsyncResult"]


class AsyncResult(ABC):
    """The outcome of one statement: rows (if any) and ``rowcount``."""

    __module__ = PUBLIC_MODULE

    @property
    @abstractmethod
    def rowcount(self) -> int:
        """Rows affected by INSERT/UPDATE/DELETE (or returned, where the driver counts them)."""

    @abstractmethod
    async def fetchone(self) -> MaybeRow:
        """Return the next row, or None when there are no more."""

    @abstractmethod
    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows (the driver's arraysize when None)."""

    @abstractmethod
    async def fetchall(self) -> list[Row]:
        """Return every remaining row."""

    async def scalar(self) -> Any:
        """Return the first column of the next row, or None when there is no row."""
        row = await self.fetchone()
        return None if row is None else next(iter(row.values()), None)

    async def __aiter__(self) -> AsyncIterator[Row]:
        while (row := await self.fetchone()) is not None:
            yield row


class AsyncConnection(ABC):
    """A connection checked out of a pool, inside a transaction.

    ``fetchone()``/``fetchall()``/``fetchmany()`` read the last executed statement's result, so
    ``conn.execute(...); conn.fetchone()`` works as well as ``conn.execute(...).fetchone()``.
    """

    __module__ = PUBLIC_MODULE

    # Set by the database: True for a get_connection() connection (its caller commits), and the
    # leak detector's record while the connection is watched.
    _manual = False
    _ticket: Any = None
    _deadline: Any = None  # the transaction's client-side deadline (``_deadlines.py``), if armed
    _abandoned = False  # its block was left by a cancellation: state unknown, close it

    @abstractmethod
    async def execute(self, sql: str, params: Params = None) -> AsyncResult:
        """Run one statement; ``:name`` placeholders take a mapping."""

    @abstractmethod
    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> AsyncResult:
        """Run one statement once per parameter set (batched by the driver)."""

    @property
    @abstractmethod
    def last_result(self) -> AsyncResult | None:
        """The result of the last ``execute()``, or None."""

    async def fetchone(self) -> MaybeRow:
        """``fetchone()`` on the last result."""
        return await self._last().fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """``fetchmany()`` on the last result."""
        return await self._last().fetchmany(size)

    async def fetchall(self) -> list[Row]:
        """``fetchall()`` on the last result."""
        return await self._last().fetchall()

    def _last(self) -> AsyncResult:
        result = self.last_result
        if result is None:
            raise RuntimeError("no statement has been executed on this connection yet")
        return result

    @abstractmethod
    async def commit(self) -> None:
        """Commit the current transaction (a new one starts with the next statement)."""

    @abstractmethod
    async def rollback(self) -> None:
        """Roll back the current transaction."""

    @abstractmethod
    async def close(self) -> None:
        """Give the connection back to the pool, rolling back anything uncommitted."""

    @abstractmethod
    def savepoint(self, name: str | None = None) -> AbstractAsyncContextManager[Self]:
        """A SAVEPOINT: released on success, rolled back to (and the error re-raised) on failure."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncDatabaseInterface(ABC):
    """What every database offers.

    Subclasses must implement :meth:`transaction` and :meth:`health_check`; the other methods have
    defaults that a pool-less implementation can keep.
    """

    __module__ = PUBLIC_MODULE

    @abstractmethod
    def transaction(
        self,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection inside a transaction: COMMIT on success, ROLLBACK on any exception.

        Opening a transaction while the same thread (or task) already has one open on this
        database nests as a SAVEPOINT.

        Args:
            isolation_level: e.g. ``"SERIALIZABLE"``; None keeps the database default.
            read_only: Start a READ ONLY transaction.
            timeout: Bound on the transaction, in seconds, where the backend has one.

        Returns:
            A context manager yielding the transaction's :class:`AsyncConnection`.
        """

    @abstractmethod
    async def health_check(self) -> HealthResult:
        """Probe the database; never raises for an unreachable one (it is UNHEALTHY)."""

    async def run_transaction(
        self,
        fn: AsyncTransactionFunction[Any, T],
        *,
        retries: int | None = None,
        retry_timeout: float | None = None,
        **transaction_options: Any,
    ) -> T:
        """Run ``await fn(conn)`` in a transaction, running it again after a retryable failure.

        Retried, after a jittered exponential pause: errors whose ``retryable`` is True, i.e.
        serialization failures and deadlocks (``SerializationError``, which includes
        ``LockTimeoutError``), a connection lost before COMMIT was sent
        (``DatabaseUnavailableError``) and ``PoolOverloadedError``. Never retried: any other
        error, and a connection lost during COMMIT (``CommitOutcomeUnknownError``: the
        transaction may have committed). ``fn`` may run several times, so it must not have
        effects outside the database that cannot be repeated.

        Args:
            fn: Called with the transaction's connection; its result is returned.
            retries: Retries after the first attempt (default: the database's ``retries``).
            retry_timeout: No retry starts later than this many seconds after the first attempt
                (default: the database's ``retry_timeout``).
            **transaction_options: Passed to :meth:`transaction` (``isolation_level``...).

        Returns:
            What the successful attempt of ``fn`` returned.

        Raises:
            DatabaseError: Inside another ``transaction()`` of this database in the same
                thread or task (a retry would repeat only part of the outer transaction).
                Otherwise the last error, once it is not retryable or the retries or the
                time are used up. Inside ``force_rollback()`` ``fn`` runs once, in a savepoint.
        """
        check_retry_arguments(retries, retry_timeout)
        policy: RetryPolicy = getattr(self, "retry_policy", DEFAULT_POLICY)
        limit = policy.retries if retries is None else retries
        if not self._may_retry():
            limit = 0
        deadline = time.monotonic() + (policy.timeout if retry_timeout is None else retry_timeout)
        retry = 0
        while True:
            try:
                async with self.transaction(**transaction_options) as conn:
                    return await fn(conn)
            except DatabaseError as exc:
                if retry >= limit or not is_retryable(exc):
                    raise
                retry += 1
                pause = policy.pause(retry)
                if time.monotonic() + pause > deadline:
                    raise
                logger.debug(
                    "run_transaction: retry %d of %d in %.3fs after %s: %s",
                    retry,
                    limit,
                    pause,
                    type(exc).__name__,
                    getattr(exc, "sqlstate", None) or "",
                )
                await asleep(pause)

    def _may_retry(self) -> bool:
        """Whether ``run_transaction()`` may run ``fn`` again here (it may also refuse to run).

        The backends' shared base refuses inside an outer transaction and runs once under
        ``force_rollback()``; a database without transaction nesting always may.
        """
        return True

    async def fetchone(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> MaybeRow:
        """Run one statement as a transaction of its own and return its first row (or None).

        The same as ``transaction()`` around ``conn.execute(sql, params).fetchone()``: the same
        errors, timeouts and masking. Backends run it faster where they can (one round trip on
        PostgreSQL); inside a ``transaction()`` of the same thread (or task) it joins that
        transaction under a SAVEPOINT, like a nested ``transaction()``.

        ``read_only=True`` says the statement only reads, so that a database with ``replicas``
        may send it to a replica; it does not make the statement's transaction READ ONLY.
        """
        async with self.transaction() as conn:
            return await (await conn.execute(sql, params)).fetchone()

    async def fetchall(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> list[Row]:
        """Run one statement as a transaction of its own and return every row (see fetchone)."""
        async with self.transaction() as conn:
            return await (await conn.execute(sql, params)).fetchall()

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement as a transaction of its own; return its rowcount (see fetchone)."""
        async with self.transaction() as conn:
            return (await conn.execute(sql, params)).rowcount

    async def get_connection(self) -> AsyncConnection:
        """Check out a connection; the caller must commit/rollback and ``close()`` it."""
        raise NotImplementedError(
            f"{type(self).__name__} does not hand out connections; use transaction()"
        )

    def get_pool_info(self) -> PoolInfo:
        """Pool statistics: ``checked_out``, ``available``, ``total``, ``overflow`` (+ more)."""
        return {"checked_out": 0, "available": 0, "total": 0, "overflow": 0}

    async def shutdown(self) -> None:  # noqa: B027 - a pool-less database has nothing to close
        """Close every pooled connection; later calls raise ``DatabaseClosedError``."""

    @classmethod
    def from_config(cls, namespace: str = "database", **overrides: Any) -> Self:
        """Build from the configuration namespace (``config/app/<namespace>.toml`` & co.).

        Precedence, lowest first: the file's ``[default]``, its ``[<env>]``,
        ``config/.secrets.toml``, the environment (``STRUCTUM_<NAMESPACE>__<KEY>``), then
        ``overrides``.

        Args:
            namespace: The configuration namespace (``database``, ``replica_db``...).
            **overrides: Constructor arguments the application already has; they win over files
                and environment (``from_config("database", url=settings.database_url)``). A key
                that is not a constructor parameter is an engine option, as under ``options``.

        Raises:
            ConfigurationError: No ``url`` anywhere, or an invalid or unknown value.
        """
        from .settings import load_settings  # noqa: PLC0415 - keeps import of the facade light

        aliases = getattr(cls, "config_aliases", None)
        return cls(**load_settings(cls, namespace, aliases=aliases, overrides=overrides))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
