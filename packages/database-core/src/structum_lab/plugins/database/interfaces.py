"""The public interfaces every backend implements, sync and async.

Only :meth:`DatabaseInterface.transaction` and :meth:`DatabaseInterface.health_check` are abstract,
so an application's own database class (a test double, an adapter) needs just those two. Rows are
plain ``dict[str, Any]``: ``row["username"]``, JSON-ready.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, TypeAlias

from typing_extensions import Self

from .health import HealthResult

__all__ = [
    "AsyncConnection",
    "AsyncDatabaseInterface",
    "AsyncResult",
    "Connection",
    "DatabaseInterface",
    "Params",
    "Result",
    "Row",
]

Row: TypeAlias = dict[str, Any]
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None

_PUBLIC = "structum_lab.plugins.database"


class Result(ABC):
    """The outcome of one statement: rows (if any) and ``rowcount``."""

    __module__ = _PUBLIC

    @property
    @abstractmethod
    def rowcount(self) -> int:
        """Rows affected by INSERT/UPDATE/DELETE (or returned, where the driver counts them)."""

    @abstractmethod
    def fetchone(self) -> Row | None:
        """Return the next row, or None when there are no more."""

    @abstractmethod
    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows (the driver's arraysize when None)."""

    @abstractmethod
    def fetchall(self) -> list[Row]:
        """Return every remaining row."""

    def scalar(self) -> Any:
        """Return the first column of the next row, or None when there is no row."""
        row = self.fetchone()
        return None if row is None else next(iter(row.values()), None)

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row


class AsyncResult(ABC):
    """Async twin of :class:`Result`."""

    __module__ = _PUBLIC

    @property
    @abstractmethod
    def rowcount(self) -> int:
        """Rows affected by INSERT/UPDATE/DELETE (or returned, where the driver counts them)."""

    @abstractmethod
    async def fetchone(self) -> Row | None:
        """Return the next row, or None when there are no more."""

    @abstractmethod
    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows."""

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


class Connection(ABC):
    """A connection checked out of a pool, inside a transaction.

    ``fetchone()``/``fetchall()``/``fetchmany()`` read the last executed statement's result, so
    ``conn.execute(...); conn.fetchone()`` works as well as ``conn.execute(...).fetchone()``.
    """

    __module__ = _PUBLIC

    @abstractmethod
    def execute(self, sql: str, params: Params = None) -> Result:
        """Run one statement; ``:name`` placeholders take a mapping."""

    @abstractmethod
    def executemany(self, sql: str, params_seq: Iterable[Params]) -> Result:
        """Run one statement once per parameter set (batched by the driver)."""

    @property
    @abstractmethod
    def last_result(self) -> Result | None:
        """The result of the last ``execute()``, or None."""

    def fetchone(self) -> Row | None:
        """``fetchone()`` on the last result."""
        return self._last().fetchone()

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """``fetchmany()`` on the last result."""
        return self._last().fetchmany(size)

    def fetchall(self) -> list[Row]:
        """``fetchall()`` on the last result."""
        return self._last().fetchall()

    def _last(self) -> Result:
        result = self.last_result
        if result is None:
            raise RuntimeError("no statement has been executed on this connection yet")
        return result

    @abstractmethod
    def commit(self) -> None:
        """Commit the current transaction (a new one starts with the next statement)."""

    @abstractmethod
    def rollback(self) -> None:
        """Roll back the current transaction."""

    @abstractmethod
    def close(self) -> None:
        """Give the connection back to the pool, rolling back anything uncommitted."""

    @abstractmethod
    def savepoint(self, name: str | None = None) -> AbstractContextManager[Self]:
        """A SAVEPOINT: released on success, rolled back to (and the error re-raised) on failure."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncConnection(ABC):
    """Async twin of :class:`Connection`."""

    __module__ = _PUBLIC

    @abstractmethod
    async def execute(self, sql: str, params: Params = None) -> AsyncResult:
        """Run one statement; ``:name`` placeholders take a mapping."""

    @abstractmethod
    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> AsyncResult:
        """Run one statement once per parameter set."""

    @property
    @abstractmethod
    def last_result(self) -> AsyncResult | None:
        """The result of the last ``execute()``, or None."""

    async def fetchone(self) -> Row | None:
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
        """Commit the current transaction."""

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


class DatabaseInterface(ABC):
    """What every synchronous database offers.

    Subclasses must implement :meth:`transaction` and :meth:`health_check`; the other methods have
    defaults that a pool-less implementation can keep.
    """

    __module__ = _PUBLIC

    @abstractmethod
    def transaction(self, *args: Any, **kwargs: Any) -> AbstractContextManager[Any]:
        """A connection inside a transaction: COMMIT on success, ROLLBACK on any exception.

        Backends accept ``isolation_level``, ``read_only`` and ``timeout`` keywords. Opening a
        transaction while the same thread already has one open on this database nests as a
        SAVEPOINT.
        """

    @abstractmethod
    def health_check(self) -> HealthResult:
        """Probe the database; never raises for an unreachable one (it is UNHEALTHY)."""

    def get_connection(self) -> Connection:
        """Check out a connection; the caller must commit/rollback and ``close()`` it."""
        raise NotImplementedError(
            f"{type(self).__name__} does not hand out connections; use transaction()"
        )

    def get_pool_info(self) -> dict[str, Any]:
        """Pool statistics: ``checked_out``, ``available``, ``total``, ``overflow`` (+ more)."""
        return {"checked_out": 0, "available": 0, "total": 0, "overflow": 0}

    def shutdown(self) -> None:  # noqa: B027 - a pool-less database has nothing to close
        """Close every pooled connection; later calls raise ``DatabaseClosedError``."""

    @classmethod
    def from_config(cls, namespace: str = "database") -> Self:
        """Build from the configuration namespace (``config/app/<namespace>.toml`` & co.).

        Raises:
            ConfigurationError: The namespace lacks ``url`` or has an invalid value.
        """
        from .settings import load_settings  # noqa: PLC0415 - keeps import of the facade light

        return cls(**load_settings(cls, namespace, aliases=getattr(cls, "config_aliases", None)))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


class AsyncDatabaseInterface(ABC):
    """What every asyncio database offers (the async twin of :class:`DatabaseInterface`)."""

    __module__ = _PUBLIC

    @abstractmethod
    def transaction(self, *args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        """A connection inside a transaction: COMMIT on success, ROLLBACK on any exception."""

    @abstractmethod
    async def health_check(self) -> HealthResult:
        """Probe the database; never raises for an unreachable one (it is UNHEALTHY)."""

    async def get_connection(self) -> AsyncConnection:
        """Check out a connection; the caller must commit/rollback and ``await conn.close()``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not hand out connections; use transaction()"
        )

    def get_pool_info(self) -> dict[str, Any]:
        """Pool statistics: ``checked_out``, ``available``, ``total``, ``overflow`` (+ more)."""
        return {"checked_out": 0, "available": 0, "total": 0, "overflow": 0}

    async def shutdown(self) -> None:  # noqa: B027 - a pool-less database has nothing to close
        """Close every pooled connection."""

    @classmethod
    def from_config(cls, namespace: str = "database") -> Self:
        """Build from the configuration namespace (``config/app/<namespace>.toml`` & co.).

        Raises:
            ConfigurationError: The namespace lacks ``url`` or has an invalid value.
        """
        from .settings import load_settings  # noqa: PLC0415

        return cls(**load_settings(cls, namespace, aliases=getattr(cls, "config_aliases", None)))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
