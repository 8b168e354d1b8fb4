"""Shared plumbing: finding a request's database, and the transactions a request has open.

A request's transactions are opened by the dependencies (``transaction()``,
``async_transaction()``) and finished by :class:`TransactionMiddleware` when the application sends
the response status, before any byte of the response reaches the client.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from weakref import WeakKeyDictionary

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from starlette.requests import HTTPConnection

from structum_lab.plugins.database import (
    AsyncDatabaseInterface,
    DatabaseInterface,
    get_database,
)

__all__ = [
    "SCOPE_KEY",
    "STATE_KEY",
    "AsyncPendingTransaction",
    "PendingTransaction",
    "RequestTransactions",
    "SyncPendingTransaction",
    "checkout_limiter",
    "is_async_database",
    "logger",
    "resolve_database",
]

logger = logging.getLogger("structum_lab.plugins.database.fastapi")

#: Key of the lifespan state (``request.state``) holding ``{name: database}``.
STATE_KEY = "structum_databases"
#: Key of the ASGI scope holding the request's :class:`RequestTransactions`.
SCOPE_KEY = "structum_lab.database.transactions"


def resolve_database(conn: HTTPConnection, name: str) -> Any:
    """The database ``name`` for this request: the app's lifespan state first, then the registry.

    Looking in the lifespan state first keeps two applications in one process (tests, mounted
    sub-applications) on their own databases even when both register the name ``default``.

    Raises:
        ConfigurationError: Neither the lifespan nor ``set_database`` provided ``name``.
    """
    state = conn.scope.get("state")
    if isinstance(state, Mapping):
        databases = state.get(STATE_KEY)
        if isinstance(databases, Mapping) and name in databases:
            return databases[name]
    return get_database(name)


def is_async_database(db: Any) -> bool:
    """True for an asyncio database (``AsyncDatabaseInterface`` or a look-alike)."""
    if isinstance(db, AsyncDatabaseInterface):
        return True
    if isinstance(db, DatabaseInterface):
        return False
    return inspect.iscoroutinefunction(getattr(db, "health_check", None))


# One limiter per database and per event loop run (a limiter belongs to the loop it was made in).
_limiters: RunVar[WeakKeyDictionary[Any, anyio.CapacityLimiter]] = RunVar("structum_db_limiters")


def _pool_capacity(db: Any) -> int:
    try:
        info = db.get_pool_info()
        capacity = int(info.get("max") or info.get("total") or 0)
    except Exception:  # a look-alike without pool statistics
        capacity = 0
    return capacity if capacity > 0 else 10


def checkout_limiter(db: Any) -> anyio.CapacityLimiter:
    """The worker-thread limiter for checking a connection out of the sync database ``db``.

    A checkout blocks while the pool is exhausted. Doing it on FastAPI's shared threadpool lets
    the waiting requests take every worker thread, and the requests that do hold a connection
    then find no thread to run their handler on: the pool deadlocks until its timeout. Waiting
    requests queue here instead, without holding a thread; at most the pool's size of threads
    wait inside the pool.
    """
    try:
        limiters = _limiters.get()
    except LookupError:
        limiters = WeakKeyDictionary()
        _limiters.set(limiters)
    try:
        limiter = limiters.get(db)
    except TypeError:  # not weak-referenceable: a fresh limiter still avoids the deadlock
        return anyio.CapacityLimiter(_pool_capacity(db))
    if limiter is None:
        limiter = anyio.CapacityLimiter(_pool_capacity(db))
        limiters[db] = limiter
    return limiter


class _RollbackRequested(Exception):
    """Handed to a transaction's ``__exit__`` to make it roll back when there is no exception."""


class PendingTransaction(ABC):
    """A transaction a request opened and that must be committed or rolled back exactly once.

    ORM sessions opened on its connection (:func:`session`, ``DbSession``) are settled first:
    committed (which flushes them and releases their SAVEPOINT) before the transaction commits,
    closed (rolling back their SAVEPOINT) before it rolls back.
    """

    __slots__ = ("connection", "done", "name", "sessions")

    def __init__(self, name: str, connection: Any = None) -> None:
        self.name = name
        self.connection = connection
        self.done = False
        # (commit, close) of each ORM session on this transaction's connection: plain callables
        # for a sync transaction, coroutine functions for an async one (see ``_call``).
        self.sessions: list[tuple[Callable[[], Any], Callable[[], Any]]] = []

    def add_session(self, commit: Callable[[], Any], close: Callable[[], Any]) -> None:
        """Settle an ORM session (its ``commit`` and ``close``) with this transaction."""
        self.sessions.append((commit, close))

    async def finish(self, *, commit: bool, exc: BaseException | None = None) -> None:
        """Commit (``commit=True``) or roll back; a second call does nothing.

        Runs shielded from cancellation: a client that disconnects must not leave a connection
        checked out or a transaction half-finished.

        Raises:
            DatabaseError: The commit failed (the transaction is rolled back and the connection
                returned by the backend); this includes the flush of an ORM session.
        """
        if self.done:
            return
        self.done = True
        with anyio.CancelScope(shield=True):
            failed: BaseException | None = None
            if commit:
                try:
                    for commit_session, _ in self.sessions:
                        await self._call(commit_session)
                except BaseException as error:
                    failed = error
                    commit, exc = False, error
            for _, close_session in self.sessions:
                try:
                    await self._call(close_session)
                except Exception:
                    logger.warning(
                        "closing an ORM session of the request transaction on database %r failed",
                        self.name,
                        exc_info=True,
                    )
            if commit:
                exc_info: tuple[Any, Any, Any] = (None, None, None)
            else:
                exc = exc if isinstance(exc, BaseException) else _RollbackRequested()
                exc_info = (type(exc), exc, exc.__traceback__)
            try:
                await self._exit(*exc_info)
            except _RollbackRequested:
                pass  # a savepoint context manager re-raises the exception we handed it
            except BaseException as error:
                if failed is None:
                    raise
                if error is not failed:
                    logger.warning(
                        "rollback of the request transaction on database %r failed",
                        self.name,
                        exc_info=True,
                    )
            if failed is not None:
                raise failed

    @abstractmethod
    async def _call(self, fn: Callable[[], Any]) -> None:
        """Run one session step where this transaction's connection may be used."""

    @abstractmethod
    async def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SyncPendingTransaction(PendingTransaction):
    """A sync ``db.transaction()`` entered in a worker thread, in a context of its own.

    ``__enter__`` and ``__exit__`` run in different worker threads; running both inside the same
    ``contextvars.Context`` keeps the transaction's bookkeeping consistent.
    """

    __slots__ = ("_cm", "_ctx")

    def __init__(
        self, name: str, cm: Any, ctx: contextvars.Context, connection: Any = None
    ) -> None:
        super().__init__(name, connection)
        self._cm = cm
        self._ctx = ctx

    async def _call(self, fn: Callable[[], Any]) -> None:
        # Blocking I/O: on a worker thread, with a limiter of its own (see ``_exit``).
        await anyio.to_thread.run_sync(self._ctx.run, fn, limiter=anyio.CapacityLimiter(1))

    async def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A limiter of its own: finishing must never wait behind requests that are waiting for
        # the very connection this call gives back.
        await anyio.to_thread.run_sync(
            self._ctx.run,
            self._cm.__exit__,
            exc_type,
            exc,
            tb,
            limiter=anyio.CapacityLimiter(1),
        )


class AsyncPendingTransaction(PendingTransaction):
    """An ``async with db.transaction()`` entered by the request's dependency."""

    __slots__ = ("_cm",)

    def __init__(self, name: str, cm: Any, connection: Any = None) -> None:
        super().__init__(name, connection)
        self._cm = cm

    async def _call(self, fn: Callable[[], Any]) -> None:
        await fn()

    async def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._cm.__aexit__(exc_type, exc, tb)


class RequestTransactions:
    """The transactions one request opened, finished together when the response starts."""

    __slots__ = ("pending", "response_started")

    def __init__(self) -> None:
        self.pending: list[PendingTransaction] = []
        self.response_started = False

    def add(self, pending: PendingTransaction) -> None:
        """Track a transaction the request just opened."""
        self.pending.append(pending)

    def holding(self, connection: Any) -> PendingTransaction | None:
        """The open transaction whose connection is ``connection`` (None when there is none)."""
        for pending in self.pending:
            if pending.connection is connection and not pending.done:
                return pending
        return None

    async def commit_all(self) -> None:
        """Commit every open transaction in the order they were opened.

        Transactions on different databases are not atomic together: when one commit fails the
        ones not yet committed are rolled back, the ones already committed stay.

        Raises:
            DatabaseError: The first commit that failed.
        """
        for index, pending in enumerate(self.pending):
            try:
                await pending.finish(commit=True)
            except BaseException as exc:
                for rest in self.pending[index + 1 :]:
                    await self._rollback(rest, exc)
                raise

    async def rollback_all(self, exc: BaseException | None = None) -> None:
        """Roll back every transaction still open; failures are logged, never raised."""
        for pending in self.pending:
            await self._rollback(pending, exc)

    @staticmethod
    async def _rollback(pending: PendingTransaction, exc: BaseException | None) -> None:
        try:
            await pending.finish(commit=False, exc=exc)
        except Exception:
            # The backend has returned (or discarded) the connection already; the request is
            # failing for another reason, which must be the one that surfaces.
            logger.warning(
                "rollback of the request transaction on database %r failed",
                pending.name,
                exc_info=True,
            )
