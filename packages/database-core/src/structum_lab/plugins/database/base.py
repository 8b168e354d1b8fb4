"""State and checks shared by every backend, sync and async (psycopg_pool's ``base.py`` role).

A backend subclasses :class:`SyncDatabaseBase` or :class:`AsyncDatabaseBase` and supplies three
hooks: ``_begin()`` (check a connection out and start a transaction), ``_end(conn, commit)``
(commit or roll back, then give the connection back, never leaking it) and ``_probe()`` (one
round trip, for health). Nesting, savepoints, the closed check, health grading, masking and error
wording live here once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from asyncio import current_task
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar, Token
from threading import get_ident
from types import TracebackType
from typing import Any, Generic, TypeVar

from .errors import (
    DatabaseClosedError,
    DatabaseUnavailableError,
    PoolTimeoutError,
    QueryError,
    error_class_for_sqlstate,
)
from .health import HealthResult, HealthStatus, HealthThresholds, evaluate_health
from .interfaces import AsyncConnection, AsyncDatabaseInterface, Connection, DatabaseInterface
from .secrets import mask_url, redact, url_password

__all__ = ["AsyncDatabaseBase", "DatabaseState", "SyncDatabaseBase", "logger"]

logger = logging.getLogger("structum_lab.plugins.database")

C = TypeVar("C", bound=Connection)
AC = TypeVar("AC", bound=AsyncConnection)


class DatabaseState:
    """Name, masked URL, closed flag, health thresholds and error wording, for both twins."""

    backend_name: str = "database"

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        health_thresholds: HealthThresholds | None = None,
    ) -> None:
        self._masked_url = mask_url(url)
        self._secrets = (url_password(str(url)),)
        self.name = name or self._masked_url
        self.health_thresholds = health_thresholds or HealthThresholds()
        self._closed = False

    @property
    def url(self) -> str:
        """The database URL with its password masked (safe to log and show)."""
        return self._masked_url

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has run."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._masked_url!r} {state}>"

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(
                f"the database {self._masked_url!r} is shut down; create a new "
                f"{type(self).__name__} to connect again"
            )

    def _pool_timeout_error(
        self,
        timeout: float,
        pool_info: dict[str, Any],
        cls: type[PoolTimeoutError] = PoolTimeoutError,
    ) -> PoolTimeoutError:
        snapshot = ", ".join(
            f"{k}={v}" for k, v in pool_info.items() if isinstance(v, (int, float))
        )
        return cls(
            f"no connection to {self._masked_url!r} became free within {timeout:g}s "
            f"(pool: {snapshot}); increase the pool size or look for connections not returned",
            pool_info=pool_info,
        )

    def _unavailable_error(self, exc: BaseException) -> DatabaseUnavailableError:
        return DatabaseUnavailableError(
            f"cannot use the database {self._masked_url!r}: {self._redact(str(exc)).strip()}"
        )

    def _query_error(
        self,
        exc: BaseException,
        sqlstate: str | None,
        cls: type[QueryError] | None = None,
    ) -> QueryError:
        # ``cls`` lets a backend pick the class when the SQLSTATE alone cannot (MySQL reports
        # lock-wait and statement timeouts as HY000/70100).
        cls = cls or error_class_for_sqlstate(sqlstate)
        code = f" [SQLSTATE {sqlstate}]" if sqlstate else ""
        return cls(f"{self._redact(str(exc)).strip()}{code}", sqlstate=sqlstate)

    def _health_ok(self, latency_ms: float, pool_info: dict[str, Any]) -> HealthResult:
        return evaluate_health(
            latency_ms,
            pool_info,
            self.health_thresholds,
            details={"backend": self.backend_name, "url": self._masked_url},
        )

    def _health_failed(self, exc: BaseException, latency_ms: float) -> HealthResult:
        reason = (
            self._redact(str(exc)).strip().splitlines()[0]
            if str(exc).strip()
            else type(exc).__name__
        )
        return HealthResult(
            HealthStatus.UNHEALTHY,
            f"database unreachable: {reason}",
            latency_ms,
            {"backend": self.backend_name, "url": self._masked_url, "error": type(exc).__name__},
        )


def _forget_active(var: ContextVar[Any], token: Token[Any], conn: Any) -> None:
    """Undo ``var.set()`` of a transaction's ``__enter__`` from another Context.

    FastAPI runs a sync generator dependency's ``__enter__`` and ``__exit__`` in two threadpool
    calls, each in its own copy of the context, and ``reset()`` refuses a token from another
    Context. The connection must still be given back, and the exiting context must not keep
    pointing at it (a later ``transaction()`` there would join a returned connection).

    The transactions' ``__exit__`` try ``var.reset(token)`` first (the common case) and come here
    only when it raised ``ValueError``.
    """
    current = var.get()
    if current is not None and current[0] is conn:
        var.set(None if token.old_value is Token.MISSING else token.old_value)


class _SyncTransaction(Generic[C]):
    """``with db.transaction() as conn``; a plain class is cheaper than a generator here.

    This is the per-transaction hot path of every sync backend (issue #3 wants the wrapper within
    5% of the raw pool), so it reads the thread id once and calls ``_begin()`` without keyword
    unpacking when there are no options.
    """

    __slots__ = ("_conn", "_db", "_options", "_savepoint", "_token")

    def __init__(self, db: SyncDatabaseBase[C], options: dict[str, Any]) -> None:
        self._db = db
        self._options = options
        self._savepoint: Any = None

    def __enter__(self) -> C:
        db = self._db
        thread = get_ident()
        outer = db._joinable(thread)
        if outer is not None:
            self._savepoint = outer.savepoint()
            return self._savepoint.__enter__()  # type: ignore[no-any-return]
        if db._closed:
            db._check_open()  # raises DatabaseClosedError
        options = self._options
        conn = db._begin(**options) if options else db._begin()
        self._conn = conn
        self._token = db._active.set((conn, thread))
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._savepoint is not None:
            self._savepoint.__exit__(exc_type, exc, tb)
            return
        db = self._db
        try:
            db._active.reset(self._token)
        except ValueError:  # exited in another Context (FastAPI): see _forget_active
            _forget_active(db._active, self._token, self._conn)
        db._end(self._conn, commit=exc_type is None)


class SyncDatabaseBase(DatabaseState, DatabaseInterface, Generic[C]):
    """Shared machinery of the synchronous backends."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._active: ContextVar[tuple[C, int] | None] = ContextVar(
            f"structum_db_active_{id(self)}", default=None
        )
        self._pinned: C | None = None

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _begin(self, **options: Any) -> C:
        """Check out a connection and begin a transaction with ``options``."""

    @abstractmethod
    def _end(self, conn: C, *, commit: bool) -> None:
        """Commit (or roll back), then return ``conn`` to the pool whatever happens."""

    @abstractmethod
    def _probe(self) -> None:
        """One round trip to the server on a pooled connection (raises when it fails)."""

    # -- shared behaviour --------------------------------------------------------------------
    def _joinable(self, thread: int | None = None) -> C | None:
        """The connection a new ``transaction()`` in thread ``thread`` (default: this one) joins."""
        if self._pinned is not None:
            return self._pinned
        active = self._active.get()
        if active is not None and active[1] == (get_ident() if thread is None else thread):
            return active[0]
        return None

    def transaction(
        self,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> _SyncTransaction[C]:
        """A connection inside a transaction: COMMIT on success, ROLLBACK on any exception.

        Args:
            isolation_level: e.g. ``"SERIALIZABLE"``, ``"REPEATABLE READ"``; None keeps the default.
            read_only: Start a READ ONLY transaction.
            timeout: Statement timeout in seconds for this transaction, where the server has one.
            **options: Backend-specific options (``pipeline=True`` on PostgreSQL).

        Returns:
            A context manager yielding the connection. Inside another ``transaction()`` of this
            database in the same thread it yields the same connection under a SAVEPOINT.
        """
        if isolation_level is not None or read_only or timeout is not None:
            options.update(isolation_level=isolation_level, read_only=read_only, timeout=timeout)
        return _SyncTransaction(self, options)

    @contextmanager
    def force_rollback(self) -> Iterator[C]:
        """Run everything inside one transaction that is rolled back at the end (for tests).

        While it is open, every ``transaction()`` on this database, from any thread, joins its
        connection as a SAVEPOINT, so nothing a test writes survives it.
        """
        self._check_open()
        if self._pinned is not None:
            raise RuntimeError("force_rollback() is already active on this database")
        conn = self._begin()
        self._pinned = conn
        try:
            yield conn
        finally:
            self._pinned = None
            self._end(conn, commit=False)

    def health_check(self) -> HealthResult:
        """Probe the database with one round trip and grade the result.

        Returns:
            HEALTHY, DEGRADED (slow or saturated pool) or UNHEALTHY (unreachable, shut down).
            Never raises for an unreachable database.
        """
        start = time.perf_counter()
        try:
            self._check_open()
            self._probe()
        except Exception as exc:
            return self._health_failed(exc, (time.perf_counter() - start) * 1000.0)
        latency = (time.perf_counter() - start) * 1000.0
        return self._health_ok(latency, self.get_pool_info())


class _AsyncTransaction(Generic[AC]):
    """``async with db.transaction() as conn`` (the async hot path; see _SyncTransaction)."""

    __slots__ = ("_conn", "_db", "_options", "_savepoint", "_token")

    def __init__(self, db: AsyncDatabaseBase[AC], options: dict[str, Any]) -> None:
        self._db = db
        self._options = options
        self._savepoint: Any = None

    async def __aenter__(self) -> AC:
        db = self._db
        task = current_task()
        outer = db._joinable(task)
        if outer is not None:
            self._savepoint = outer.savepoint()
            return await self._savepoint.__aenter__()  # type: ignore[no-any-return]
        if db._closed:
            db._check_open()  # raises DatabaseClosedError
        options = self._options
        conn = await (db._begin(**options) if options else db._begin())
        self._conn = conn
        self._token = db._active.set((conn, task))
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._savepoint is not None:
            await self._savepoint.__aexit__(exc_type, exc, tb)
            return
        db = self._db
        try:
            db._active.reset(self._token)
        except ValueError:  # exited in another Context: see _forget_active
            _forget_active(db._active, self._token, self._conn)
        await db._end(self._conn, commit=exc_type is None)


class AsyncDatabaseBase(DatabaseState, AsyncDatabaseInterface, Generic[AC]):
    """Shared machinery of the asyncio backends."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._active: ContextVar[tuple[AC, asyncio.Task[Any] | None] | None] = ContextVar(
            f"structum_db_active_{id(self)}", default=None
        )
        self._pinned: AC | None = None

    @abstractmethod
    async def _begin(self, **options: Any) -> AC:
        """Check out a connection and begin a transaction with ``options``."""

    @abstractmethod
    async def _end(self, conn: AC, *, commit: bool) -> None:
        """Commit (or roll back), then return ``conn`` to the pool whatever happens."""

    @abstractmethod
    async def _probe(self) -> None:
        """One round trip to the server on a pooled connection (raises when it fails)."""

    def _joinable(self, task: asyncio.Task[Any] | None = None) -> AC | None:
        """The connection a new ``transaction()`` in ``task`` (default: the current one) joins.

        ``task`` is the caller's ``current_task()`` when it already has it (None means the same:
        asking again inside the same task gives the same answer).
        """
        if self._pinned is not None:
            return self._pinned
        active = self._active.get()
        # A child task inherits the context but must not share the parent's connection.
        if active is not None and active[1] is (task or current_task()):
            return active[0]
        return None

    def transaction(
        self,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> _AsyncTransaction[AC]:
        """Async twin of :meth:`SyncDatabaseBase.transaction` (``async with``)."""
        if isolation_level is not None or read_only or timeout is not None:
            options.update(isolation_level=isolation_level, read_only=read_only, timeout=timeout)
        return _AsyncTransaction(self, options)

    @asynccontextmanager
    async def force_rollback(self) -> AsyncIterator[AC]:
        """Async twin of :meth:`SyncDatabaseBase.force_rollback`."""
        self._check_open()
        if self._pinned is not None:
            raise RuntimeError("force_rollback() is already active on this database")
        conn = await self._begin()
        self._pinned = conn
        try:
            yield conn
        finally:
            self._pinned = None
            await self._end(conn, commit=False)

    async def health_check(self) -> HealthResult:
        """Probe the database with one round trip and grade the result (never raises)."""
        start = time.perf_counter()
        try:
            self._check_open()
            await self._probe()
        except Exception as exc:
            return self._health_failed(exc, (time.perf_counter() - start) * 1000.0)
        latency = (time.perf_counter() - start) * 1000.0
        return self._health_ok(latency, self.get_pool_info())
