"""``AsyncSQLAlchemyDatabase``: pooled, transactional access to any SQLAlchemy database.

This file is the source of both twins: ``_sync.py`` is generated from it by
``tools/async_to_sync.py``. Every rule (URLs, pool, parameters, errors, transaction options) is in
``_base.py`` and its sibling modules; the twins only differ in waiting.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar, overload

import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.util.concurrency import greenlet_spawn
from typing_extensions import Self

from structum_lab.plugins.database._bounded import call_within
from structum_lab.plugins.database._checkouts import keep_inherited
from structum_lab.plugins.database._deadlines import GRACE
from structum_lab.plugins.database._statements import (
    check_statement,
    control_statement_error,
    ends_transaction,
    manual_only_error,
)
from structum_lab.plugins.database.base import AsyncDatabaseBase, logger
from structum_lab.plugins.database.errors import DatabaseClosedError
from structum_lab.plugins.database.interfaces import (
    AsyncConnection,
    AsyncResult,
    MaybeRow,
    Params,
    Row,
)
from structum_lab.plugins.database.params import unencodable_error
from structum_lab.plugins.database.results import AsyncBufferedResult

from ._base import SQLAlchemyState
from ._errors import error_cause
from ._events import _RESTORE
from ._results import SQLAlchemyAsyncResult
from ._transactions import savepoint_name

__all__ = ["AsyncSQLAlchemyConnection", "AsyncSQLAlchemyDatabase"]

_PUBLIC_MODULE = "structum_lab.plugins.database.sqlalchemy"
_SessionT = TypeVar("_SessionT", bound=AsyncSession)


def _ignore(result: object) -> None:
    """A late health probe's result: nobody waits for it any more."""


class AsyncSQLAlchemyConnection(AsyncConnection):
    """A pooled SQLAlchemy connection inside a transaction.

    ``execute()`` takes ``:name`` placeholders with a mapping (or the driver's own positional
    placeholders with a sequence) and runs the statement through ``exec_driver_sql``.
    """

    __module__ = _PUBLIC_MODULE

    # Nothing of this transaction has run yet: a connection found dead at the first statement
    # is replaced and the statement run again (see execute()).
    _fresh = True
    _options: dict[str, Any] | None = None  # the transaction's options, to begin it again

    def __init__(self, db: AsyncSQLAlchemyDatabase, connection: SAAsyncConnection) -> None:
        self._db = db
        self._sa = connection
        self._result: AsyncResult | None = None
        self._closed = False
        # The oldest holder's age, for PoolTimeoutError; keyed by a number, not by this object,
        # so that a connection its caller drops can still be garbage collected (and reclaimed).
        self._held_key = key = next(db._held_keys)
        db._held[key] = time.monotonic()

    @property
    def sqlalchemy_connection(self) -> SAAsyncConnection:
        """The underlying SQLAlchemy connection (for Core constructs such as ``select()``)."""
        self._fresh = False  # the caller may run statements we do not see
        return self._sa

    @property
    def last_result(self) -> AsyncResult | None:
        """The result of the last ``execute()``, or None."""
        return self._result

    @property
    def closed(self) -> bool:
        """True once the connection went back to the pool."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise DatabaseClosedError(
                "this connection was already returned to the pool (or was checked out by the "
                "parent process before os.fork()); check out a new one"
            )

    async def execute(self, sql: str, params: Params = None) -> SQLAlchemyAsyncResult:
        """Run one statement.

        Args:
            sql: SQL with ``:name`` placeholders (colons in literals and ``::`` casts are left
                alone).
            params: A mapping for ``:name``; a sequence for the driver's own placeholders.

        Returns:
            The result; also kept for ``conn.fetchone()``.

        Raises:
            QueryError: The server rejected the statement (``IntegrityError``,
                ``StatementTimeoutError``, ``SerializationError`` for their SQLSTATEs).
            DatabaseUnavailableError: The connection was lost.
        """
        self._check()
        db = self._db
        control = check_statement(sql, db._multi_statement)
        if control is not None and not self._manual:
            raise control_statement_error(control)
        statement, args = db._prepare(sql, params)
        try:
            try:
                cursor = await self._sa.exec_driver_sql(statement, args)
            except sa_exc.DBAPIError as exc:
                deadline = self._deadline
                if not (exc.connection_invalidated and self._fresh and not self._manual) or (
                    deadline is not None and deadline.fired
                ):
                    raise  # (our own deadline broke it: the server is slow, not gone)
                # The connection was dead before anything of this transaction ran (what ran
                # with this statement was rolled back with the session): run it on a new one.
                cursor = await self._again(exc, statement, args)
            if control is not None and ends_transaction(control):
                # The server's transaction ended under SQLAlchemy: end SQLAlchemy's too, so the
                # next statement begins a new one (SQLite would otherwise autocommit from here).
                await self._sa.rollback()
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc, deadline=self._deadline) from error_cause(exc)
        except UnicodeError as exc:  # raised before anything is sent
            raise unencodable_error(exc) from exc
        self._fresh = False
        result = SQLAlchemyAsyncResult(cursor)
        self._result = result
        return result

    async def _again(self, exc: sa_exc.DBAPIError, statement: Any, args: Any) -> Any:
        """Run the first statement again, once, on a new connection (see ``execute()``).

        SQLAlchemy invalidated the whole pool on the disconnect, so the new connection is a
        fresh one. Once only: a statement whose session an operator ended while it ran is not
        run a third time (its second failure reaches the caller).
        """
        db = self._db
        logger.info(
            "replacing a dead pooled connection of %s: %s", db._masked_url, type(exc).__name__
        )
        self._fresh = False
        await db._discard(self._sa)
        self._sa = await db._open(self._options)
        old = self._deadline
        if old is not None and not old.cancel():
            # The transaction's deadline now watches the new connection, for the time left.
            self._deadline = db._arm(self, max(old.when - GRACE - time.monotonic(), 0.0))
            self._deadline.seconds = old.seconds
        return await self._sa.exec_driver_sql(statement, args)

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> AsyncResult:
        """Run one statement once per parameter set (batched by the driver).

        Returns:
            A result whose ``rowcount`` is the total for the batch (where the driver reports it).
        """
        self._check()
        self._fresh = False
        control = check_statement(sql)
        if control is not None and not self._manual:
            raise control_statement_error(control)
        statement, batch = self._db._prepare_many(sql, params_seq)
        if not batch:
            self._result = AsyncBufferedResult(rowcount=0)
            return self._result
        try:
            cursor = await self._sa.exec_driver_sql(statement, batch)
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc, deadline=self._deadline) from error_cause(exc)
        except UnicodeError as exc:
            raise unencodable_error(exc) from exc
        result = SQLAlchemyAsyncResult(cursor)
        self._result = result
        return result

    async def commit(self) -> None:
        """Commit; the next statement starts a new transaction (``get_connection()`` only).

        Raises:
            DatabaseError: On a connection of a ``transaction()`` block, which commits itself.
            CommitOutcomeUnknownError: The connection was lost during COMMIT.
        """
        if not self._manual:
            raise manual_only_error("commit")
        self._check()
        self._fresh = False
        sent = not self._sa.invalidated
        try:
            await self._sa.commit()
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(
                exc, committing=sent, deadline=self._deadline
            ) from error_cause(exc)

    async def rollback(self) -> None:
        """Roll back the current transaction (``get_connection()`` only).

        Raises:
            DatabaseError: On a connection of a ``transaction()`` block (raise an exception to
                roll it back).
        """
        if not self._manual:
            raise manual_only_error("rollback")
        self._check()
        try:
            await self._sa.rollback()
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc, deadline=self._deadline) from error_cause(exc)

    async def close(self) -> None:
        """Roll back anything uncommitted and give the connection back to the pool."""
        await self._finish(commit=False)

    @asynccontextmanager
    async def savepoint(self, name: str | None = None) -> AsyncIterator[Self]:
        """A SAVEPOINT: released on success; on an exception rolled back to, and re-raised.

        Args:
            name: Savepoint name; by default SQLAlchemy's ``begin_nested()`` names it.
        """
        self._check()
        self._fresh = False
        if name is not None:
            async with self._named_savepoint(savepoint_name(name)):
                yield self
            return
        try:
            nested = await self._sa.begin_nested()
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc, deadline=self._deadline) from error_cause(exc)
        try:
            yield self
        except BaseException:
            if nested.is_active:
                try:
                    await nested.rollback()
                except sa_exc.SQLAlchemyError as exc:  # the caller's error matters more
                    logger.warning("rollback to savepoint failed: %s", type(exc).__name__)
            raise
        if nested.is_active:
            try:
                await nested.commit()
            except sa_exc.SQLAlchemyError as exc:
                raise self._db._translate(exc, deadline=self._deadline) from error_cause(exc)

    @asynccontextmanager
    async def _named_savepoint(self, name: str) -> AsyncIterator[None]:
        await self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        await self.execute(f"RELEASE SAVEPOINT {name}")

    async def _finish(self, *, commit: bool) -> None:
        """Commit or roll back, then return the connection to the pool, whatever happens."""
        if self._closed:
            return
        self._closed = True
        ticket = self._ticket
        if ticket is not None:
            ticket.checkin(self)
        sa = self._sa
        db = self._db
        db._held.pop(self._held_key, None)
        deadline = self._deadline
        try:
            if self._abandoned or (deadline is not None and deadline.fired):
                # Cancelled mid-transaction (state unknown) or out of time (socket shut down):
                # closed without a ROLLBACK on the wire; the server rolls back, the pool
                # replaces the connection.
                await sa.invalidate()
                if commit and deadline is not None and deadline.cancel():
                    raise db._deadline_error(deadline.seconds)
            elif commit:
                sent = not sa.invalidated
                try:
                    await sa.commit()
                except sa_exc.SQLAlchemyError as exc:
                    raise db._translate(exc, committing=sent, deadline=deadline) from error_cause(
                        exc
                    )
        finally:
            if deadline is not None and deadline.cancel() and not sa.invalidated:
                await sa.invalidate()  # the deadline fired during COMMIT: never reused
            try:
                if self._db._closed:
                    # Shut down meanwhile: close it for real rather than park it in the
                    # disposed pool, where it would only be dropped unclosed by the GC.
                    await sa.invalidate()
                await sa.close()  # rolls back whatever is still open
            except Exception as exc:
                logger.warning(
                    "returning a connection to %s failed: %s", self._db.url, type(exc).__name__
                )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncSQLAlchemyConnection {self._db.url!r} {state}>"


class AsyncSQLAlchemyDatabase(SQLAlchemyState, AsyncDatabaseBase[AsyncSQLAlchemyConnection]):
    """Pooled, transactional access to any SQLAlchemy database.

    Example::

        db = AsyncSQLAlchemyDatabase("postgresql://app:secret@localhost/app", pool_size=10)
        async with db.transaction() as conn:
            result = await conn.execute("SELECT * FROM users WHERE id = :id", {"id": 1})
            user = await result.fetchone()
        await db.shutdown()

    One URL serves both twins; see ``SQLAlchemyState.__init__`` for the constructor arguments.
    """

    __module__ = _PUBLIC_MODULE
    if True:  # ASYNC: the sync twin keeps SQLAlchemyState's False
        _is_async = True

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (for Core and ORM use beyond this API)."""
        engine: AsyncEngine = self._engine_any
        return engine

    async def _connect(self, *, begin: bool = True) -> SAAsyncConnection:
        """Check a connection out and (by default) begin its transaction.

        The transaction is begun now, not by the first statement, so an ORM session bound to
        the connection joins it (SQLAlchemy's ``join_transaction_mode``) instead of committing
        on its own. ``begin()`` sends nothing: the driver starts the transaction with the first
        statement, as it did before.
        """
        self._enter_checkout()
        try:
            if True:  # ASYNC: check out and begin in one greenlet
                # ``_engine_any`` rather than the typed ``engine`` property: one call fewer per
                # transaction on the hot path.
                sync = await greenlet_spawn(self._checkout_sync, begin)
                return SAAsyncConnection(self._engine_any, sync)
            else:
                return self._checkout_sync(begin)
        except Exception as exc:
            raise self._translate(exc, connecting=True) from error_cause(exc)
        finally:
            self._exit_checkout()

    async def _begin(self, **options: Any) -> AsyncSQLAlchemyConnection:
        if not options:
            return AsyncSQLAlchemyConnection(self, await self._connect())
        self._check_options(options)
        conn = AsyncSQLAlchemyConnection(self, await self._open(options))
        conn._options = options
        return conn

    async def _open(self, options: dict[str, Any] | None) -> SAAsyncConnection:
        """A connection with its transaction begun with ``options`` (checked by the caller).

        Setting the options up sends statements on some databases: a connection found dead
        there is replaced, as at a transaction's first statement.
        """
        if not options:
            return await self._connect()
        attempts = 2  # a connection found dead here is replaced once
        while True:
            sa = await self._connect(begin=False)
            try:
                setup = self._setup_for(options)
                if setup.execution_options:
                    await sa.execution_options(**setup.execution_options)
                    if "postgresql_readonly" in setup.execution_options:
                        self._readonly_back_to_default(sa)
                if setup.restore:
                    sa.info[_RESTORE] = setup.restore
                await sa.begin()
                for statement in setup.statements:
                    await sa.exec_driver_sql(statement)
            except BaseException as exc:
                attempts -= 1
                if (
                    isinstance(exc, sa_exc.DBAPIError)
                    and exc.connection_invalidated
                    and attempts > 0
                ):
                    await self._discard(sa)
                    continue
                await sa.close()
                if isinstance(exc, sa_exc.ArgumentError):
                    raise ValueError(self._redact(str(exc))) from exc
                if isinstance(exc, sa_exc.SQLAlchemyError):
                    raise self._translate(exc) from error_cause(exc)
                raise
            return sa

    async def _discard(self, sa: SAAsyncConnection) -> None:
        """Give back a connection whose session is dead (SQLAlchemy invalidated it)."""
        try:
            await sa.close()
        except Exception as exc:
            logger.debug("closing a dead connection of %s: %s", self._masked_url, exc)

    async def _end(self, conn: AsyncSQLAlchemyConnection, *, commit: bool) -> None:
        await conn._finish(commit=commit)

    def _arm(self, conn: AsyncSQLAlchemyConnection, seconds: float) -> Any:
        if True:  # ASYNC: the pooled connection is under the sync connection
            pooled: Any = conn._sa.sync_connection.connection  # type: ignore[union-attr]
        else:
            pooled = conn._sa.connection
        return self._arm_socket(pooled.dbapi_connection, seconds)

    async def _probe(self) -> float | None:
        """An idle pooled connection, else a short-lived one (see ``health_check()``)."""
        deadline = time.monotonic() + self.health_timeout
        if True:  # ASYNC
            # Checkout, ping and return in ONE greenlet: every awaited driver call inside is a
            # single switch to this task and back (see ``_probe_pooled``).
            taken = await greenlet_spawn(self._probe_pooled)
        else:
            taken = self._probe_pooled()
        if taken is not None:
            return taken
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            if True:  # ASYNC: cancelling the connect abandons it cleanly
                return await asyncio.wait_for(greenlet_spawn(self._probe_alone), remaining)
            else:
                # The connect waits on the driver's own timeout: on a thread, abandoned at the
                # deadline (it closes what it opened).
                gave_up = threading.Event()
                try:
                    return call_within(partial(self._probe_alone, gave_up), remaining, _ignore)
                finally:
                    gave_up.set()
        except TimeoutError as exc:
            raise self._probe_timeout_error() from exc

    async def _single(self, sql: str, params: Params, fetch: int) -> Any:
        if self._closed:
            self._check_open()  # raises DatabaseClosedError
        if True:  # ASYNC: checkout, statement and return in one greenlet
            return await greenlet_spawn(self._single_sync, sql, params, fetch)
        else:
            return self._single_sync(sql, params, fetch)

    async def fetchone(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> MaybeRow:
        """Run one statement and return its first row (or None).

        With ``read_only=True`` (the statement only reads) a database with ``replicas`` may
        run it on a replica.

        On PostgreSQL (psycopg) the statement runs alone on a connection in autocommit, so the
        server makes it a transaction of its own: one round trip. On other databases it runs as
        a ``transaction()`` of its own. Inside a ``transaction()`` of the same thread (or task)
        it joins that transaction under a SAVEPOINT instead.

        Raises:
            QueryError: The server rejected the statement (and its subclasses, as for
                ``conn.execute()``).
            PoolTimeoutError: No connection became free within ``pool_timeout``.
            DatabaseUnavailableError: The database cannot be reached
                (``CommitOutcomeUnknownError`` when the connection was lost while an autocommit
                statement was in flight).
        """
        if self._router is not None:
            return await self._routed_single(sql, params, 1, read_only)
        if not self._single_autocommit or self._joinable() is not None:
            return await super().fetchone(sql, params)
        return await self._single(sql, params, 1)

    async def fetchall(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> list[Row]:
        """Run one statement and return every row (see :meth:`fetchone`)."""
        if self._router is not None:
            return await self._routed_single(sql, params, 2, read_only)  # type: ignore[no-any-return]
        if not self._single_autocommit or self._joinable() is not None:
            return await super().fetchall(sql, params)
        return await self._single(sql, params, 2)  # type: ignore[no-any-return]

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement and return its rowcount (see :meth:`fetchone`)."""
        if self._router is not None:
            return await self._routed_single(sql, params, 0, False)  # type: ignore[no-any-return]
        if not self._single_autocommit or self._joinable() is not None:
            return await super().execute(sql, params)
        return await self._single(sql, params, 0)  # type: ignore[no-any-return]

    async def _unrouted_single(self, sql: Any, params: Any, fetch: int) -> Any:
        if self._single_autocommit and self._joinable() is None:
            return await self._single(sql, params, fetch)
        return await super()._unrouted_single(sql, params, fetch)

    def _reclaimer(self, conn: AsyncSQLAlchemyConnection) -> Callable[[], Any]:
        return partial(self._reclaim, conn._sa, conn._held_key)

    async def _reclaim(self, sa: SAAsyncConnection, held_key: int) -> None:
        """Roll back and return a dropped ``get_connection()`` connection (see core)."""
        self._held.pop(held_key, None)
        await sa.close()

    def _disown(self, conn: Any) -> None:
        # Inherited across fork: closing it would roll back on the parent's connection.
        conn._closed = True
        keep_inherited(conn._sa)

    @overload
    def get_session(
        self, session_class: None = None, *, read_only: bool = False, **session_kwargs: Any
    ) -> AsyncSession: ...

    @overload
    def get_session(
        self, session_class: type[_SessionT], *, read_only: bool = False, **session_kwargs: Any
    ) -> _SessionT: ...

    def get_session(
        self,
        session_class: type[AsyncSession] | None = None,
        *,
        read_only: bool = False,
        **session_kwargs: Any,
    ) -> AsyncSession:
        """An ORM session; inside a ``transaction()`` of this database it joins that transaction.

        Opened by the thread (or task) that is inside ``db.transaction()`` (or anywhere while
        ``force_rollback()`` is active), the session works on the transaction's connection and
        its ``commit()`` only releases a SAVEPOINT: the ``transaction()`` block decides whether
        anything is committed. Elsewhere it is bound to the engine and commits on its own.

        Use it as a context manager: it closes at the end, rolling back anything not committed
        (so an exception inside the block leaves nothing written).

        Args:
            session_class: The class to build, an ``AsyncSession`` subclass such as SQLModel's
                (``sqlmodel.ext.asyncio.session.AsyncSession``); by default the constructor's
                (or configuration's) ``session_class``, else SQLAlchemy's ``AsyncSession``.
            read_only: The session only reads: with ``replicas`` it is bound to a usable
                replica (chosen now; the primary when none is).
            **session_kwargs: Session arguments (``expire_on_commit=False``...).

        Raises:
            DatabaseClosedError: After :meth:`shutdown`.
            ConfigurationError: ``session_class`` is not an ``AsyncSession`` subclass.
            TypeError: ``bind`` was passed (the session is always bound to this database).
        """
        self._check_open()
        return self._session_on(
            self._joinable(), session_class, session_kwargs, read_only=read_only
        )

    def _session_on(
        self,
        conn: AsyncSQLAlchemyConnection | None,
        session_class: type[AsyncSession] | None,
        session_kwargs: dict[str, Any],
        *,
        read_only: bool = False,
    ) -> AsyncSession:
        """A session joining ``conn``'s transaction (under a SAVEPOINT), or on the engine.

        Shared by :meth:`get_session` and the FastAPI dependencies, whose request transaction
        was entered by another thread or task than the one building the session.
        """
        if session_class is not None:
            cls: type[AsyncSession] = self._checked_session_class(session_class)
        else:
            cls = self._session_class or AsyncSession
        if "bind" in session_kwargs or "binds" in session_kwargs:
            raise TypeError(
                "get_session() binds the session to this database's engine; do not pass bind/binds "
                "(use another database object for another engine)"
            )
        if conn is not None:
            session_kwargs.setdefault("join_transaction_mode", "create_savepoint")
            return cls(bind=conn.sqlalchemy_connection, **session_kwargs)
        router = self._router
        if router is not None:
            if read_only:
                replica = router.pick_watched()
                if replica is not None:
                    return cls(bind=replica.engine, **session_kwargs)
            else:
                # Read-your-writes: what this session commits, later reads of this thread (or
                # task) see (the stamp is taken now and again when the session commits).
                router.wrote()
                session = cls(bind=self.engine, **session_kwargs)
                event.listen(_sync_session(session), "after_commit", _stamper(router))
                return session
        return cls(bind=self.engine, **session_kwargs)

    async def shutdown(self) -> None:
        """Close every pooled connection; later calls raise ``DatabaseClosedError``."""
        if self._closed:
            return
        self._closed = True
        await self._shutdown_replicas()
        self._report_unreturned(self.get_pool_info()["checked_out"])
        await self.engine.dispose()


def _sync_session(session: Any) -> Any:
    """The ``Session`` that events are listened on (an ``AsyncSession`` wraps one)."""
    return getattr(session, "sync_session", session)


def _stamper(router: Any) -> Callable[[Any], None]:
    def stamp(session: Any) -> None:
        router.wrote()

    return stamp
