"""``AsyncPostgresDatabase`` over ``psycopg_pool.AsyncConnectionPool``.

This file is the source of both twins: ``_sync.py`` is generated from it by
``tools/async_to_sync.py``. What does not wait on the network is shared in ``_base.py``,
``_queries.py`` and ``_transactions.py``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from inspect import isawaitable
from types import TracebackType
from typing import Any, ClassVar, cast

import psycopg
from psycopg import AsyncPipeline
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout, TooManyRequests
from psycopg_pool.base import AttemptWithBackoff
from typing_extensions import Self

from structum_lab.plugins.database._bounded import call_within
from structum_lab.plugins.database._deadlines import (
    GRACE,
    Deadline,
    abandon_psycopg,
    arm,
    ping_budget,
    wait_or_abandon,
)
from structum_lab.plugins.database._hooks import ConnectionHooks, ConnectionSetupError
from structum_lab.plugins.database._liveness import socket_readable
from structum_lab.plugins.database._observe import record_use, record_wait
from structum_lab.plugins.database._statements import (
    check_statement,
    control_statement_error,
    manual_only_error,
)
from structum_lab.plugins.database.base import AsyncDatabaseBase
from structum_lab.plugins.database.errors import DatabaseError
from structum_lab.plugins.database.interfaces import (
    AsyncConnection,
    AsyncResult,
    MaybeRow,
    Params,
    Row,
)
from structum_lab.plugins.database.params import unencodable_error
from structum_lab.plugins.database.results import AsyncBufferedResult
from structum_lab.plugins.database.secrets import scrub_exception

from ._base import (
    BAD,
    IDLE,
    INERROR,
    INTRANS,
    PUBLIC_MODULE,
    TUPLES_OK,
    ConnectFailed,
    ConnectMonitor,
    PostgresCommon,
    ReconnectAttempt,
    autocommit_idle,
    logger,
    queue_command,
)
from ._queries import EXECUTE_SQL, execute_entry, missing_key, plan_batch, prepare_query
from ._transactions import TxPlan, is_no_rows, returned_error, savepoint_name, tx_plan

__all__ = ["AsyncPostgresConnection", "AsyncPostgresDatabase", "AsyncPostgresResult"]

# getconn() refuses a timeout of 0; this is "only if a connection is ready now".
_NO_WAIT = 0.001


async def _close_quietly(raw: psycopg.AsyncConnection[Any]) -> None:
    """Close a probe connection that arrived after its caller gave up."""
    await raw.close()


# With the latest connect attempt failed, how long a caller waits for an idle connection.
_KNOWN_DOWN_WAIT = 0.05

_AUTOCOMMIT_STATEMENT = "a statement that commits by itself (db.execute/fetchone/fetchall)"


class _AsyncRawConnection(psycopg.AsyncConnection[DictRow]):
    """psycopg's connection, remembering when it was last given back and reporting connects.

    Its ``connect`` is where psycopg_pool opens every physical connection, so the per-connection
    hooks run here: the password callable just before connecting (the value lives in this call's
    keyword arguments only), ``configure`` just after, before the pool can hand the connection
    out. Running ``configure`` here rather than as psycopg_pool's ``configure`` argument lets a
    failing setup close its connection and be reported like a failed connect (the monitor turns
    the caller's wait into ``DatabaseUnavailableError`` naming the setup).
    """

    _structum_idle_since: float = 0.0
    _structum_taken_at: float = 0.0  # when a caller checked it out (the oldest holder's age)
    _structum_deadline: Deadline | None = None  # the client-side deadline of its transaction
    _structum_monitor: ClassVar[ConnectMonitor]
    _structum_hooks: ClassVar[ConnectionHooks]
    _structum_raws: ClassVar[weakref.WeakSet[Any]]  # every connection of the pool (for fork)
    _structum_on_failure: ClassVar[Callable[[BaseException], Any]]

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        hooks = cls._structum_hooks
        started = time.perf_counter()
        try:
            if hooks.password is not None:
                kwargs["password"] = await cls._structum_password(hooks)
            try:
                conn = await super().connect(conninfo, **kwargs)
            except Exception as exc:
                if hooks.password is not None:
                    scrub_exception(exc, (kwargs["password"],))
                raise
            finally:
                kwargs.pop("password", None)  # not kept beyond this attempt
            if hooks.configure is not None:
                await cls._structum_configure(conn, hooks)
        except Exception as exc:
            cls._structum_monitor.failed(exc)
            await cls._structum_on_failure(exc)
            raise
        cls._structum_monitor.ok(started)
        conn._structum_idle_since = time.monotonic()
        cls._structum_raws.add(conn)
        return conn

    if True:  # ASYNC: cancellation returns at once, whatever the server does
        # Closed at once when cancelled mid-statement (core ``wait_or_abandon``, as the method
        # itself: it runs on every round trip).
        wait = wait_or_abandon

    @staticmethod
    async def _structum_password(hooks: ConnectionHooks) -> str:
        assert hooks.password is not None
        try:
            value = hooks.password()
            if True:  # ASYNC: the async twin accepts a coroutine function too
                if isawaitable(value):
                    value = await value
        except Exception as exc:
            raise hooks.password_failed(exc) from exc
        return hooks.checked_password(value)

    @staticmethod
    async def _structum_configure(conn: _AsyncRawConnection, hooks: ConnectionHooks) -> None:
        assert hooks.configure is not None
        try:
            result = hooks.configure(conn)
            if True:  # ASYNC: the async twin awaits an async configure
                if isawaitable(result):
                    await result
            else:
                hooks.checked_setup_result(result)
            status = conn.pgconn.transaction_status
            if status == INTRANS:
                # The setup ran statements (SET search_path): keep their effect for the session.
                await conn.commit()
            elif status != IDLE:
                raise ConnectionSetupError(
                    f"configure left the connection {TransactionStatus(status).name}; "
                    "commit or roll back what it started"
                )
        except Exception as exc:
            await conn.close()
            raise hooks.setup_failed(exc) from exc


class _AsyncStructumPool(AsyncConnectionPool[_AsyncRawConnection]):
    """psycopg_pool's pool, reconnecting after short pauses (see ``ReconnectAttempt``).

    Its ``_add_connection`` is where every missing connection is opened and, after a failure,
    rescheduled with the attempt's next delay; the same attempt object travels with the retries.
    """

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        if attempt is None:
            attempt = ReconnectAttempt(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)


def _arm_raw(raw: _AsyncRawConnection, seconds: float) -> Deadline:
    """Arm the client-side deadline of a transaction on ``raw`` (core ``_deadlines.py``)."""
    try:
        fd: int | None = raw.pgconn.socket
    except psycopg.Error:
        fd = None  # already broken: its first statement fails anyway
    deadline = raw._structum_deadline = arm(seconds, fd=fd)
    return deadline


class AsyncPostgresResult(AsyncResult):
    """The result of one statement, read lazily from psycopg's cursor (rows are dicts).

    It keeps the cursor and the database (for error translation), not the connection: the
    connection keeps its last result, and a reference back would make a cycle per transaction
    that only the cyclic garbage collector could free. Only a result of a pipelined transaction
    refers to its connection (to wait for the pipeline), until that transaction ends.
    """

    __module__ = PUBLIC_MODULE
    __slots__ = ("_cur", "_db", "_pipelined")

    def __init__(
        self,
        cur: psycopg.AsyncCursor[DictRow],
        db: AsyncPostgresDatabase,
        pipelined: AsyncPostgresConnection | None = None,
    ) -> None:
        self._cur = cur
        self._db = db
        self._pipelined = pipelined

    @property
    def rowcount(self) -> int:
        """Rows affected (or returned).

        In a pipelined transaction the sync twin waits for the result; the async twin cannot (a
        property cannot await) and raises ``DatabaseError`` until ``await conn.sync()`` ran or the
        result was read.
        """
        cur = self._cur
        conn = self._pipelined
        if cur.pgresult is None and conn is not None and conn._pipeline is not None:
            if True:  # ASYNC: a property cannot await the pipeline
                raise DatabaseError(
                    "rowcount is not known yet in a pipelined transaction; await conn.sync() or "
                    "read the result first"
                )
            else:
                conn.sync()
        return cur.rowcount

    async def fetchone(self) -> MaybeRow:
        """Return the next row, or None when there are no more."""
        try:
            return await self._cur.fetchone()
        except psycopg.Error as exc:
            if is_no_rows(exc):  # portable: a statement without rows fetches as empty
                return None
            raise self._db._translate(exc, self._cur.connection) from exc

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows (the cursor's arraysize when None)."""
        try:
            return await self._cur.fetchmany(size or 0)
        except psycopg.Error as exc:
            if is_no_rows(exc):  # portable: a statement without rows fetches as empty
                return []
            raise self._db._translate(exc, self._cur.connection) from exc

    async def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        try:
            return await self._cur.fetchall()
        except psycopg.Error as exc:
            if is_no_rows(exc):  # portable: a statement without rows fetches as empty
                return []
            raise self._db._translate(exc, self._cur.connection) from exc

    def __repr__(self) -> str:
        return f"<AsyncPostgresResult rowcount={self._cur.rowcount}>"


class AsyncPostgresConnection(AsyncConnection):
    """A pooled psycopg connection inside a transaction (see :class:`AsyncConnection`).

    ``raw`` is the underlying ``psycopg.AsyncConnection`` for driver-specific work (``COPY``,
    ``LISTEN``); it must not be closed or kept after the transaction ends.
    """

    __module__ = PUBLIC_MODULE

    # Defaults as class attributes: one is made per transaction, and most transactions never
    # change these (an instance attribute shadows the default when one does).
    _last_result: AsyncPostgresResult | None = None
    _pipeline: AsyncPipeline | None = None
    _pipeline_cm: AbstractAsyncContextManager[AsyncPipeline] | None = None
    _autocommit = False  # this transaction switched the connection to autocommit: undo on release
    _pending: TxPlan | None = None  # a BEGIN not sent yet: it travels with the first statement
    _plan: TxPlan | None = None  # the transaction's options (None: psycopg's own BEGIN)
    # Nothing of this transaction has run yet: if the connection turns out dead at the first
    # statement, it is replaced and the statement sent again (see execute()).
    _fresh = True
    _savepoints = 0

    def __init__(self, db: AsyncPostgresDatabase, raw: _AsyncRawConnection) -> None:
        self._db = db
        self._raw: _AsyncRawConnection | None = raw
        # What every transaction reads, as instance attributes: on CPython 3.11 reading one is
        # a specialized load, while falling back to the class default is a generic lookup.
        self._pending = None
        self._pipeline = None
        self._pipeline_cm = None
        self._autocommit = False
        self._fresh = True
        self._ticket = None
        self._deadline = None
        self._abandoned = False

    @property
    def raw(self) -> psycopg.AsyncConnection[DictRow]:
        """The psycopg connection (while this connection is checked out).

        In a transaction with options, whose ``BEGIN`` waits for the first statement, the async
        twin needs ``await conn.sync()`` before ``raw`` is used first (a property cannot send
        the ``BEGIN``); the sync twin sends it here.
        """
        raw = self._raw
        if raw is None:
            raise returned_error()
        self._fresh = False  # the caller may run statements we do not see
        if self._pending is not None:
            if True:  # ASYNC: a property cannot wait for the server
                raise DatabaseError(
                    "this transaction has not begun on the server yet (its BEGIN goes with the "
                    "first statement); await conn.sync() before using conn.raw"
                )
            else:
                self.sync()
        return raw

    @property
    def pipelined(self) -> bool:
        """True inside ``transaction(pipeline=True)``."""
        return self._pipeline is not None

    @property
    def last_result(self) -> AsyncPostgresResult | None:
        """The result of the last ``execute()``."""
        return self._last_result

    async def execute(self, sql: str, params: Params = None) -> AsyncPostgresResult:
        """Run one statement.

        Args:
            sql: SQL with ``%s`` / ``%(name)s`` (psycopg), ``:name`` or ``$1`` placeholders.
            params: A mapping for named placeholders, a sequence for positional ones.

        Returns:
            The result; rows are dicts.

        Raises:
            QueryError: The server rejected the statement (``IntegrityError``,
                ``StatementTimeoutError``, ``SerializationError`` for their SQLSTATEs).
            DatabaseUnavailableError: The connection was lost.
        """
        raw = self._raw
        if raw is None:
            raise returned_error()
        if type(params) is dict and type(sql) is str:
            # The common case (``:name`` with a dict), once per statement: the statement check
            # and the conversion in one cache lookup, without a call (see ``prepare_query``).
            control, sql, pick, single = EXECUTE_SQL.get(sql) or execute_entry(sql)
            if control is not None and not self._manual:
                raise control_statement_error(control)
            if pick is not None:
                try:
                    values = pick(params)
                except KeyError as exc:
                    raise missing_key(exc, params) from None
                params = (values,) if single else values
        else:
            control = check_statement(sql, True)
            if control is not None and not self._manual:
                raise control_statement_error(control)
            sql, params = prepare_query(sql, params)
        db = self._db
        if db.echo:
            db._log_statement(sql, params)
        cur = raw.cursor()
        try:
            if self._pending is None:
                await cur.execute(sql, params)
            else:
                await self._execute_first(raw, cur, sql, params)
        except psycopg.Error as exc:
            if self._fresh and not self._manual and db._lost(exc, raw):
                # The connection was dead before anything of this transaction ran (what ran
                # with this statement was rolled back with the session): run it on a new one.
                cur = await self._again(raw, exc, sql, params)
            else:
                raise db._translate(exc, raw) from exc
        except UnicodeError as exc:  # raised before anything is sent
            raise unencodable_error(exc) from exc
        self._fresh = False
        result = self._last_result = AsyncPostgresResult(
            cur, db, None if self._pipeline is None else self
        )
        return result

    async def _again(
        self, dead: _AsyncRawConnection, exc: psycopg.Error, sql: Any, params: Any
    ) -> psycopg.AsyncCursor[DictRow]:
        """Run the first statement again, once, on a connection checked to be alive.

        Once only: a statement whose session an operator ended while it ran is not run a
        third time (its second failure reaches the caller).
        """
        db = self._db
        raw: _AsyncRawConnection | None = None
        try:
            raw = await db._replace(self, dead, exc)
            cur = raw.cursor()
            if self._pending is None:
                await cur.execute(sql, params)
            else:
                await self._execute_first(raw, cur, sql, params)
        except psycopg.Error as error:
            raise db._translate(error, raw) from error
        return cur

    async def _execute_first(
        self,
        raw: _AsyncRawConnection,
        cur: psycopg.AsyncCursor[DictRow],
        sql: Any,
        params: Any,
    ) -> None:
        """The first statement of a transaction with options, with its BEGIN: one round trip."""
        plan = self._pending
        assert plan is not None
        self._pending = None
        if params is None and isinstance(sql, str):
            # Without parameters psycopg uses the simple protocol, which takes several
            # statements (the caller's SQL may itself be several): one message, whose first
            # results (BEGIN's, SET's) are skipped.
            await cur.execute(f"{plan.begin_text};\n{sql}", prepare=False)
            for _ in plan.begin:
                cur.nextset()
        elif params is None:  # bytes or a psycopg.sql object: BEGIN on its own
            await raw.execute(plan.begin_text, prepare=False)
            await cur.execute(sql)
        else:
            # With parameters: the extended protocol, one statement per message; the pipeline
            # sends them together and waits once.
            async with raw.pipeline():
                for statement in plan.begin:
                    await cur.execute(statement, prepare=False)
                await cur.execute(sql, params)

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> AsyncResult:
        """Run one statement per parameter set (psycopg batches them in a pipeline)."""
        raw = self._raw
        if raw is None:
            raise returned_error()
        control = check_statement(sql)
        if control is not None and not self._manual:
            raise control_statement_error(control)
        self._fresh = False
        planned = plan_batch(sql, params_seq)
        if planned is None:
            return AsyncBufferedResult((), rowcount=0)
        query, batch = planned
        db = self._db
        if db.echo:
            db._log_statement(query, "(executemany)")
        cur = raw.cursor()
        try:
            if self._pending is not None:
                await self._start(raw)
            await cur.executemany(query, batch)
        except psycopg.Error as exc:
            raise db._translate(exc, raw) from exc
        except UnicodeError as exc:
            raise unencodable_error(exc) from exc
        result = self._last_result = AsyncPostgresResult(
            cur, db, None if self._pipeline is None else self
        )
        return result

    async def sync(self) -> None:
        """Send what is waiting: a pipeline's queued statements, or a ``BEGIN`` not sent yet.

        In a pipelined transaction, errors of queued statements surface here. Otherwise this
        does nothing.
        """
        raw = self._raw
        if raw is None:
            return
        self._fresh = False
        try:
            if self._pending is not None:
                await self._start(raw)
            if self._pipeline is not None:
                await self._pipeline.sync()
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    async def _start(self, raw: _AsyncRawConnection) -> None:
        """Send the pending BEGIN on its own (one round trip)."""
        plan = self._pending
        assert plan is not None
        self._pending = None
        await raw.execute(plan.begin_text, prepare=False)

    def _checked(self) -> _AsyncRawConnection:
        raw = self._raw
        if raw is None:
            raise returned_error()
        return raw

    async def commit(self) -> None:
        """Commit; the next statement starts a new transaction (``get_connection()`` only).

        Raises:
            DatabaseError: On a connection of a ``transaction()`` block, which commits itself.
            CommitOutcomeUnknownError: The connection was lost during COMMIT.
        """
        if not self._manual:
            raise manual_only_error("commit")
        raw = self._checked()
        sent = raw.pgconn.status != BAD  # not raw.closed (broken implies it), without a call
        try:
            await raw.commit()
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw, committing=sent) from exc

    async def rollback(self) -> None:
        """Roll back the current transaction (``get_connection()`` only).

        Raises:
            DatabaseError: On a connection of a ``transaction()`` block (raise an exception to
                roll it back).
        """
        if not self._manual:
            raise manual_only_error("rollback")
        raw = self._checked()
        try:
            await raw.rollback()
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    async def close(self) -> None:
        """Roll back anything uncommitted and give the connection back (idempotent)."""
        if self._raw is not None:
            await self._db._end(self, commit=False)

    async def _command(self, sql: str) -> None:
        raw = self._checked()
        self._fresh = False
        plan = self._pending
        if plan is not None:  # the transaction's BEGIN goes in the same message
            self._pending = None
            sql = f"{plan.begin_text};\n{sql}"
        try:
            await raw.execute(sql, prepare=False)
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    def savepoint(self, name: str | None = None) -> AbstractAsyncContextManager[Self]:
        """A SAVEPOINT: released on success, rolled back to (and the error re-raised) on failure.

        In a pipelined transaction the block's statements are synced before the release, so
        their errors are caught by this savepoint rather than by the final commit.
        """
        self._savepoints += 1
        return self._savepoint(savepoint_name(name, self._savepoints))

    @asynccontextmanager
    async def _savepoint(self, name: str) -> AsyncIterator[Self]:
        await self._command(f"SAVEPOINT {name}")
        try:
            yield self
            await self.sync()
        except BaseException:
            raw = self._raw
            if raw is not None and not raw.broken:
                try:
                    if self._pipeline is not None:
                        await self._pipeline.sync()
                except psycopg.Error:
                    pass  # the error being re-raised below is the one that matters
                try:
                    await raw.execute(f"ROLLBACK TO SAVEPOINT {name}", prepare=False)
                except psycopg.Error as exc:
                    logger.debug("rollback to savepoint %s failed: %s", name, exc)
            raise
        await self._command(f"RELEASE SAVEPOINT {name}")

    def __repr__(self) -> str:
        state = "returned" if self._raw is None else "checked out"
        return f"<AsyncPostgresConnection {self._db.url!r} {state}>"


class AsyncPostgresDatabase(PostgresCommon, AsyncDatabaseBase[AsyncPostgresConnection]):
    """PostgreSQL through psycopg 3 and ``psycopg_pool.AsyncConnectionPool``.

    Rows are dicts; parameters may be psycopg's ``%s`` / ``%(name)s``, the portable ``:name`` with
    a mapping, or ``$1`` with a sequence. ``transaction()`` accepts ``isolation_level``,
    ``read_only``, ``timeout`` (seconds, ``SET LOCAL statement_timeout``) and ``pipeline=True``.

    Args:
        url: ``postgresql://user:password@host:port/db`` (also ``postgres://``,
            ``postgresql+psycopg://`` or a libpq ``key=value`` string).
        pool_size: The pool's normal size; the maximum when ``max_size`` is not given.
        min_size: Connections kept open even when idle (never more than the maximum).
        max_size: Hard maximum; defaults to ``pool_size + max_overflow``.
        max_overflow: SQLAlchemy-style extra connections above ``pool_size``.
        timeout: Seconds to wait for a free connection (config key ``pool_timeout`` too).
        max_lifetime: Seconds after which a connection is replaced (``pool_recycle``; <= 0: never).
        max_idle: Seconds an unused connection above ``min_size`` is kept.
        check_idle_seconds: Connections idle longer than this (by default: all) are checked
            before use without a round trip: a server that hung up left the socket readable,
            and only such a connection is pinged (and replaced if dead). A connection found dead
            at a transaction's first statement is replaced and the statement run again.
        pool_pre_ping: False turns the check before use off (the first-statement replacement
            stays).
        prepare_threshold: Executions of a statement before psycopg prepares it server-side
            (None: never).
        pgbouncer: Preset for PgBouncer in transaction mode: no server-side prepared statements.
        application_name: Shown in ``pg_stat_activity``, unless the URL sets one (None: unset).
        statement_timeout: Default per-statement limit in seconds for every connection.
        connect_args: Extra psycopg/libpq connection parameters (``sslmode``...).
        echo: Log every statement at DEBUG on ``structum_lab.plugins.database.postgres``.
        open: Start connecting now (True) or on first use (False; e.g. before a fork). The async
            twin always opens on first use or on ``open()``: an asyncio pool must open inside
            the running event loop.
        pool_use_lifo: Accepted so a database.toml written for SQLAlchemy works; psycopg_pool
            shrinks idle connections itself and ignores it.
        name: Name in logs, health details and the psycopg pool (default: the masked URL).
        health_thresholds: When a reachable database counts as DEGRADED.
        health_timeout: Seconds ``health_check()`` may take (3 by default). It never queues
            behind the pool: with no connection free it connects on its own, within this time.
        transaction_timeout: Default ``timeout`` of every ``transaction()`` and of the
            single-statement calls, in seconds (None: no limit). It only adds the client-side
            deadline (a statement timeout on the server is ``statement_timeout``): a transaction
            still running shortly after it has its connection closed and raises
            ``StatementTimeoutError``.
        connect_timeout: Seconds a new connection may take (5 by default; libpq counts whole
            seconds, 2 at least; None: libpq's default, no limit). A ``connect_timeout`` in the
            URL or ``connect_args`` wins.
        max_waiting: Most callers that may wait for a connection (psycopg_pool's own limit);
            one more fails at once with ``PoolOverloadedError`` (0: no limit).
        retries: ``run_transaction()``'s default number of retries.
        retry_backoff: Upper bound of its first pause in seconds (doubling each retry)...
        retry_max_backoff: ... up to this; each pause is random below the bound.
        retry_timeout: Seconds after which ``run_transaction()`` starts no more retries.
        configure: Called with each new psycopg connection before the pool hands it out
            (type adapters, ``SET search_path``, ``SET ROLE``), or its import path
            (``"myapp.db:setup"``); the async twin awaits a coroutine function. Statements it
            runs are committed. If it raises, the connection is closed and callers get
            ``DatabaseUnavailableError`` saying the setup failed.
        password: The password (instead of one in the URL), or a callable returning it for each
            new connection (rotating tokens; the async twin also awaits a coroutine function).
            The value is used for that connect only and masked in errors.
        replicas: URLs of streaming replicas (same settings as this database). Reads
            (``transaction(read_only=True)``, ``fetchone/fetchall(..., read_only=True)``) go
            to one whose lag is within ``max_replica_lag``, else here; see "Scaling out".
        max_replica_lag: Seconds a replica may be behind and still serve reads.
        replica_check_interval: Seconds between two background lag measurements.
        leak_detection_threshold: Seconds a connection may stay checked out before one
            WARNING with the stack that took it is logged (None: off; see the README).
        slow_transaction_threshold: Seconds after which a ``transaction()`` logs one WARNING
            with its duration, its statements (masked, without parameter values) and where it
            was opened (None: off; see the README).
    """

    __module__ = PUBLIC_MODULE
    if True:  # ASYNC: the sync twin keeps PostgresCommon's False
        _is_async = True

    _pool: AsyncConnectionPool[_AsyncRawConnection]
    _raw_class: type[_AsyncRawConnection]

    def _create_pool(self, *, open_now: bool) -> AsyncConnectionPool[_AsyncRawConnection]:
        raw_class = cast(
            "type[_AsyncRawConnection]",
            type(
                "AsyncPostgresRawConnection",
                (_AsyncRawConnection,),
                {
                    "_structum_monitor": self._monitor,
                    "_structum_hooks": self._hooks,
                    "_structum_raws": self._raws,
                    "_structum_on_failure": self._connect_failed,
                },
            ),
        )
        self._raw_class = raw_class
        if True:  # ASYNC: psycopg_pool deprecates opening an async pool in its constructor
            return _AsyncStructumPool(**self._pool_arguments(raw_class), open=False)
        else:
            pool: AsyncConnectionPool[_AsyncRawConnection] = _AsyncStructumPool(
                **self._pool_arguments(raw_class), open=open_now
            )
            self._pool_open = open_now
            return pool

    async def open(self) -> None:
        """Open the pool now (otherwise the first transaction does)."""
        self._check_open()
        if not self._pool_open:
            await self._pool.open()
            self._pool_open = True

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- checkout and return -----------------------------------------------------------------
    async def _checkout(self, check: bool = False) -> _AsyncRawConnection:
        """A pooled connection, checked before use (see below); ``check``: whatever the options.

        A statement in autocommit cannot be run again once sent, and a pipeline may report a
        dead connection only at COMMIT, so ``_single()`` and pipelined transactions always ask
        for the check: the only way to know that a connection is dead before sending.
        """
        if not self._pool_open:
            await self.open()
        pool = self._pool
        try:
            # An idle connection, or someone holds one and will give it back: wait in line (the
            # common case, straight to the pool); otherwise only a new connection can serve (see
            # _getconn_connecting).
            raw = await (pool.getconn() if pool._pool or self._out else self._getconn_connecting())
        except PoolTimeout as exc:
            error, cause = self._acquire_error(exc)
            raise error from cause
        except ConnectFailed as exc:
            raise self._connect_failed_error(self.timeout, exc.cause) from exc.cause
        except TooManyRequests as exc:
            raise self._overloaded_error(self.get_pool_info()) from exc
        except PoolClosed as exc:
            raise self._closed_pool_error() from exc
        # Check a connection idle past the window (by default: every one) without a round trip:
        # a server that hung up on it left its socket readable (see _liveness). Only such a
        # connection is pinged (and replaced when dead). One that dies after this check is
        # replaced at the transaction's first statement (AsyncPostgresConnection.execute).
        now = time.monotonic()  # one clock read: the idle window and the holder's age
        if self.pool_pre_ping or check:
            idle_since = raw._structum_idle_since
            if (
                not check
                and idle_since > self._suspect_before  # none found dead since it was last used
                and now - idle_since <= self.check_idle_seconds
            ):
                pass  # used moments ago: trusted
            elif raw.pgconn.status == BAD or socket_readable(raw.pgconn.socket):
                raw = await self._validated(raw)
        raw._structum_taken_at = now
        self._out.add(raw)
        return raw

    async def _getconn_connecting(self, end: float | None = None) -> _AsyncRawConnection:
        """Wait for a connection while nobody holds one: the pool is connecting (or cannot).

        An idle connection comes at once. Otherwise only a new connection can serve, which
        takes at most ``connect_timeout``: waiting the whole pool timeout (the old behaviour)
        would only delay the same answer, ``DatabaseUnavailableError`` naming the last connect
        error. While the latest connect attempt has failed (the server is known to be down),
        a caller fails at once; it still asks the pool, so the pool keeps trying to reconnect.
        """
        pool = self._pool
        start = time.monotonic()
        if end is None:
            end = start + self.timeout
        failure = self._monitor.last_error
        wait = _KNOWN_DOWN_WAIT if failure is not None else self._connect_wait
        try:
            return await pool.getconn(timeout=max(min(wait, end - start), 0.001))
        except ConnectFailed as exc:
            error = self._connect_failed_error(time.monotonic() - start, exc.cause)
            raise error from exc.cause
        except PoolTimeout:
            if not self._out:
                failure = self._monitor.last_error or failure
                error = self._connect_failed_error(time.monotonic() - start, failure)
                raise error from failure
            left = end - time.monotonic()
            if left <= 0:
                raise
        # Connections were handed out meanwhile: wait for one like everybody else.
        return await pool.getconn(timeout=left)

    async def _validated(self, raw: _AsyncRawConnection) -> _AsyncRawConnection:
        """Ping ``raw``; replace it (within the pool timeout) while the ones we get are dead.

        A replacement is pinged only when its own socket says the server spoke out of turn.
        """
        deadline = time.monotonic() + self.timeout
        suspect = True
        while True:
            try:
                if not suspect:
                    return raw
                await raw.set_autocommit(True)
                try:
                    await raw.execute("")
                finally:
                    await raw.set_autocommit(False)
                return raw
            except psycopg.Error as exc:
                logger.info("discarding a dead pooled connection of %s: %s", self.url, exc)
                self._mark_suspect()
                await raw.close()
                await self._pool.putconn(raw)  # the pool drops it and opens a replacement
            except BaseException:
                # Cancelled (or interrupted) mid-ping: the connection's state is unknown, but it
                # must still go back to the pool, which replaces it.
                await raw.close()
                await self._pool.putconn(raw)
                raise
            try:
                if self._out:
                    raw = await self._pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
                else:
                    raw = await self._getconn_connecting(deadline)
            except PoolTimeout as exc:
                error, cause = self._acquire_error(exc)
                raise error from cause
            except ConnectFailed as exc:
                raise self._connect_failed_error(self.timeout, exc.cause) from exc.cause
            except TooManyRequests as exc:
                raise self._overloaded_error(self.get_pool_info()) from exc
            except PoolClosed as exc:
                raise self._closed_pool_error() from exc
            suspect = raw.pgconn.status == BAD or socket_readable(raw.pgconn.socket)

    async def _connect_failed(self, exc: BaseException) -> None:
        """Tell the pool's waiting callers now that connecting failed, if nobody holds a connection.

        They get ``DatabaseUnavailableError`` at once instead of at their timeout. Runs in the
        pool's worker; psycopg_pool fails its waiters the same way when it closes.
        """
        if self._out:
            return  # a holder will give its connection back: keep waiting
        pool = self._pool
        async with pool._lock:
            waiting = list(pool._waiting)
            pool._waiting.clear()
        for client in waiting:
            await client.fail(ConnectFailed(exc))

    async def _release(self, raw: _AsyncRawConnection, autocommit: bool) -> None:
        """Give ``raw`` back to the pool, in manual-commit mode again if it was switched."""
        try:
            self._out.remove(raw)
        except KeyError:
            return  # checked out by the parent process before a fork: never ours to give back
        if autocommit:
            # Idle again (rolled back otherwise); anything still open is rolled back by the
            # pool, and a broken connection is discarded by it.
            autocommit_idle(raw, False)
        raw._structum_idle_since = time.monotonic()
        await self._pool.putconn(raw)

    # -- AsyncDatabaseBase hooks ------------------------------------------------------------
    async def _begin(self, **options: Any) -> AsyncPostgresConnection:
        if not options:
            # ``_checkout()`` inlined for the plain transaction(), the hot path (no check asked
            # for): keep the two in step.
            if not self._pool_open:
                await self.open()
            pool = self._pool
            try:
                raw = await (
                    pool.getconn() if pool._pool or self._out else self._getconn_connecting()
                )
            except PoolTimeout as exc:
                error, cause = self._acquire_error(exc)
                raise error from cause
            except ConnectFailed as exc:
                raise self._connect_failed_error(self.timeout, exc.cause) from exc.cause
            except TooManyRequests as exc:
                raise self._overloaded_error(self.get_pool_info()) from exc
            except PoolClosed as exc:
                raise self._closed_pool_error() from exc
            now = time.monotonic()
            if self.pool_pre_ping:
                idle_since = raw._structum_idle_since
                if (
                    idle_since > self._suspect_before
                    and now - idle_since <= self.check_idle_seconds
                ):
                    pass  # used moments ago: trusted
                elif raw.pgconn.status == BAD or socket_readable(raw.pgconn.socket):
                    raw = await self._validated(raw)
            raw._structum_taken_at = now
            self._out.add(raw)
            return AsyncPostgresConnection(self, raw)
        plan = tx_plan(options)
        # A pipeline does not wait for its statements, so a dead connection may only show at
        # COMMIT, too late to replace it: its connection is always checked first.
        raw = await self._checkout(plan.pipeline)
        conn = AsyncPostgresConnection(self, raw)
        conn._plan = plan
        try:
            await self._setup(conn, raw, plan)
        except psycopg.Error as exc:
            if not self._lost(exc, raw):
                await self._end(conn, commit=False)
                raise self._translate(exc, raw) from exc
            # A pipeline sends its BEGIN now: a connection found dead is replaced (once).
            try:
                await self._replace(conn, raw, exc)
            except psycopg.Error as error:
                current = conn._raw
                await self._end(conn, commit=False)
                raise self._translate(error, current) from error
            except BaseException:
                await self._end(conn, commit=False)
                raise
        except BaseException:
            await self._end(conn, commit=False)
            raise
        return conn

    @staticmethod
    async def _setup(conn: AsyncPostgresConnection, raw: _AsyncRawConnection, plan: TxPlan) -> None:
        """Prepare ``raw`` for a transaction with options (nothing is sent but a pipeline's)."""
        # The backend sends its own BEGIN (with the options), so that it can travel with the
        # first statement: psycopg would send its own BEGIN in a round trip of its own.
        autocommit_idle(raw, True)  # fresh from the pool: idle
        conn._autocommit = True
        if plan.pipeline:
            cm = raw.pipeline()
            conn._pipeline = await cm.__aenter__()
            conn._pipeline_cm = cm
            for statement in plan.begin:
                queue_command(raw, statement)
        else:
            conn._pending = plan

    async def _replace(
        self, conn: AsyncPostgresConnection, raw: _AsyncRawConnection, exc: BaseException
    ) -> _AsyncRawConnection:
        """Swap ``conn``'s dead connection for another before anything of it ran.

        The dead one is closed and given back (the pool drops it and opens another). The new
        one is checked before use whatever the options (a dead server leaves every pooled
        connection dead: the check skips them) and set up as ``_begin()`` did; the caller runs
        its statement again.
        """
        logger.info("replacing a dead pooled connection of %s: %s", self.url, exc)
        self._mark_suspect()
        conn._fresh = False
        conn._pending = None
        cm = conn._pipeline_cm
        conn._pipeline = conn._pipeline_cm = None
        conn._raw = None
        if cm is not None:  # leave the dead connection's pipeline (it can only fail)
            try:
                await cm.__aexit__(None, None, None)
            except psycopg.Error as error:
                logger.debug("leaving the pipeline of a dead connection: %s", error)
        await raw.close()
        self._out.discard(raw)
        await self._pool.putconn(raw)
        raw._structum_deadline = None
        new = await self._checkout(True)
        conn._raw = new
        old = conn._deadline
        if old is not None and not old.cancel():
            # The transaction's deadline now watches the new connection, for the time left.
            left = max(old.when - GRACE - time.monotonic(), 0.0)
            deadline = conn._deadline = new._structum_deadline = arm(left, fd=new.pgconn.socket)
            deadline.seconds = old.seconds
        plan = conn._plan
        if plan is not None:
            await self._setup(conn, new, plan)
        return new

    async def _end(self, conn: AsyncPostgresConnection, *, commit: bool) -> None:
        raw = conn._raw
        if raw is None:
            return  # already given back (close() inside the block)
        conn._raw = None
        ticket = conn._ticket
        if ticket is not None:
            ticket.checkin(conn)
        deadline = conn._deadline
        try:
            if conn._abandoned or (deadline is not None and deadline.fired):
                # Out of time (the socket is already shut down) or cancelled mid-transaction
                # (state unknown): close it without waiting for the server; the pool replaces
                # it, and the server rolls back what was not committed.
                await raw.close()
                if commit and deadline is not None and deadline.cancel():
                    raise self._deadline_error(deadline.seconds)
            elif conn._pipeline_cm is not None:
                await self._end_pipeline(conn, raw, commit=commit)
            elif commit:
                pgconn = raw.pgconn
                if pgconn.transaction_status == INERROR:
                    await self._rollback_quietly(raw)
                    raise self._aborted_error()
                sent = pgconn.status != BAD  # not raw.closed, without a call
                try:
                    await raw.commit()
                except psycopg.Error as exc:
                    await self._rollback_quietly(raw)
                    raise self._translate(exc, raw, committing=sent) from exc
            else:
                await self._rollback_quietly(raw)
        finally:
            if deadline is not None:
                raw._structum_deadline = None
                if deadline.cancel() and not raw.closed:
                    await raw.close()  # the deadline fired during COMMIT: never reused
            if conn._autocommit:
                await self._release(raw, True)
            else:  # ``_release()`` inlined: the common case, once per transaction
                raw._structum_idle_since = time.monotonic()
                try:
                    self._out.remove(raw)
                except KeyError:
                    return  # checked out by the parent process before a fork (see _release)
                await self._pool.putconn(raw)

    async def _end_pipeline(
        self, conn: AsyncPostgresConnection, raw: _AsyncRawConnection, *, commit: bool
    ) -> None:
        cm = conn._pipeline_cm
        assert cm is not None
        conn._pipeline_cm = conn._pipeline = None
        last = conn._last_result
        if last is not None:
            last._pipelined = None  # no reference cycle outlives the transaction
        error: psycopg.Error | None = None
        sent = commit and raw.pgconn.status != BAD
        # COMMIT (or ROLLBACK) is queued behind the statements and leaves with the pipeline's
        # final Sync: with the queued BEGIN, the whole transaction is one round trip (psycopg's
        # commit() would sync, and leaving the pipeline would then sync once more).
        try:
            # Through a cursor, not queue_command(): a queued command's result is not checked, so
            # under load the pipeline's first error (a read-only INSERT's 25006, say) could be
            # reported as the aborted COMMIT's instead.
            await raw.cursor().execute(b"COMMIT" if commit else b"ROLLBACK", prepare=False)
        except psycopg.Error as exc:
            error = exc
        try:
            # Sync; raises the first error of a queued statement
            await cm.__aexit__(None, None, None)
        except psycopg.Error as exc:
            # The statement's own error (a 40001...) says more than "pipeline aborted".
            if error is None or isinstance(error, psycopg.errors.PipelineAborted):
                error = exc
        if raw.pgconn.transaction_status != IDLE:
            await self._rollback_quietly(raw)
        if commit and error is not None:
            # A connection lost anywhere in this round trip may have lost it after the COMMIT.
            raise self._translate(error, raw, committing=sent) from error

    @staticmethod
    async def _rollback_quietly(raw: _AsyncRawConnection) -> None:
        # A failing rollback must not mask the exception already on its way out; a connection
        # still left in a transaction is rolled back (or dropped) by the pool on putconn().
        try:
            await raw.rollback()
        except psycopg.Error as exc:
            logger.debug("rollback failed: %s", exc)

    def _arm(self, conn: AsyncPostgresConnection, seconds: float) -> Deadline | None:
        raw = conn._raw
        return None if raw is None else _arm_raw(raw, seconds)

    async def _probe(self) -> float | None:
        """A pooled connection free at once, else a short-lived one (see ``health_check()``)."""
        deadline = time.monotonic() + self.health_timeout
        if not self._pool_open:
            await self.open()
        raw = await self._idle_connection()
        if raw is not None:
            # A server process that stopped answering must not hold the probe: past half its
            # time the watchdog shuts the socket down, and a connection of its own decides.
            try:
                fd: int | None = raw.pgconn.socket
            except psycopg.Error:
                fd = None
            guard = arm(ping_budget(self.health_timeout), fd=fd)
            try:
                return await self._ping(raw)
            except psycopg.Error as exc:
                # Dead while idle: the probe goes on with a connection of its own, which says
                # whether the server answers.
                logger.info("discarding a dead pooled connection of %s: %s", self.url, exc)
                self._mark_suspect()
                if guard.fired:
                    abandon_psycopg(raw.pgconn)  # closing would wait for the silent server
                else:
                    await raw.close()
            finally:
                guard.cancel()
                await self._pool.putconn(raw)
        return await self._probe_alone(deadline)

    async def _idle_connection(self) -> _AsyncRawConnection | None:
        """A pooled connection if one is idle now; never queues behind waiting callers."""
        pool = self._pool
        if not pool.get_stats().get("pool_available"):
            return None
        try:
            return await pool.getconn(timeout=_NO_WAIT)
        except (PoolTimeout, TooManyRequests):
            return None  # taken meanwhile
        except PoolClosed as exc:
            raise self._closed_pool_error() from exc

    @staticmethod
    async def _ping(raw: _AsyncRawConnection) -> float:
        """One empty statement outside any transaction; its round trip in seconds."""
        await raw.set_autocommit(True)  # no round trip on an idle connection
        try:
            start = time.perf_counter()
            await raw.execute("")
            taken = time.perf_counter() - start
        finally:
            if not raw.closed:
                await raw.set_autocommit(False)
        raw._structum_idle_since = time.monotonic()
        return taken

    async def _probe_alone(self, deadline: float) -> float:
        """Connect like the pool does (hooks, password), ping, close: all before ``deadline``."""
        conninfo, kwargs = self._probe_connect_arguments(deadline)
        remaining = deadline - time.monotonic()
        try:
            if True:  # ASYNC: cancelling a connect attempt abandons it cleanly
                raw = await asyncio.wait_for(
                    self._raw_class.connect(conninfo, **kwargs), max(remaining, 0.001)
                )
            else:
                raw = call_within(
                    partial(self._raw_class.connect, conninfo, **kwargs),
                    remaining,
                    _close_quietly,
                )
        except TimeoutError as exc:
            raise self._probe_timeout_error() from exc
        except psycopg.Error as exc:
            raise self._unavailable_error(exc) from exc
        try:
            return await self._ping(raw)
        except psycopg.Error as exc:
            raise self._unavailable_error(exc) from exc
        finally:
            await raw.close()

    async def _single(self, sql: Any, params: Any, fetch: int) -> Any:
        """One statement on an autocommit connection: an implicit transaction, one round trip.

        ``fetch``: 0 the rowcount, 1 the first row, 2 every row.
        """
        if self._closed:
            self._check_open()
        # Outside a transaction: a COMMIT here would be harmless, but not a NUL.
        check_statement(sql, True)
        sql, params = prepare_query(sql, params)
        if self.echo:
            self._log_statement(sql, params)
        if self._observed:  # pool metrics: this checkout's wait and use times
            started = time.perf_counter()
            raw = await self._checkout(True)
            started = record_wait(self, started)
        else:
            started = 0.0
            raw = await self._checkout(True)
        sent: bool | str = False
        deadline = None
        if self.transaction_timeout is not None:
            deadline = _arm_raw(raw, self.transaction_timeout)
        try:
            autocommit_idle(raw, True)  # fresh from the pool: idle
            cur = raw.cursor()
            # In autocommit the statement is its own COMMIT: lost in flight, it may have run.
            sent = _AUTOCOMMIT_STATEMENT
            await cur.execute(sql, params)
            if fetch == 0:
                return cur.rowcount
            result = cur.pgresult
            if result is None or result.status != TUPLES_OK:
                return None if fetch == 1 else []  # portable: no rows fetch as empty
            return await (cur.fetchone() if fetch == 1 else cur.fetchall())
        except psycopg.Error as exc:
            raise self._translate(exc, raw, committing=sent) from exc
        finally:
            if deadline is not None:
                raw._structum_deadline = None
                if deadline.cancel():
                    await raw.close()
            if raw.pgconn.transaction_status != IDLE:  # the statement was a BEGIN
                await self._rollback_quietly(raw)
            await self._release(raw, True)
            if started:
                record_use(self._metric_attrs, time.perf_counter() - started)

    # -- public API --------------------------------------------------------------------------
    async def fetchone(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> MaybeRow:
        """Run one statement and return its first row (or None), in one round trip.

        The statement runs on a connection in autocommit mode, so PostgreSQL makes it a
        transaction of its own; inside a ``transaction()`` of the same thread (or task) it joins
        that transaction under a SAVEPOINT instead. With ``read_only=True`` (the statement only
        reads) a database with ``replicas`` may run it on a replica.

        Raises:
            QueryError: The server rejected the statement (and its subclasses, as for
                ``conn.execute()``).
            PoolTimeoutError: No connection became free within ``timeout``.
            DatabaseUnavailableError: The database cannot be reached.
        """
        if self._router is not None:
            return await self._routed_single(sql, params, 1, read_only)
        if self._joinable() is not None:
            return await super().fetchone(sql, params)
        return await self._single(sql, params, 1)

    async def fetchall(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> list[Row]:
        """Run one statement and return every row, in one round trip (see :meth:`fetchone`)."""
        if self._router is not None:
            return await self._routed_single(sql, params, 2, read_only)  # type: ignore[no-any-return]
        if self._joinable() is not None:
            return await super().fetchall(sql, params)
        return await self._single(sql, params, 2)  # type: ignore[no-any-return]

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement and return its rowcount, in one round trip (see :meth:`fetchone`)."""
        if self._router is not None:
            return await self._routed_single(sql, params, 0, False)  # type: ignore[no-any-return]
        if self._joinable() is not None:
            return await super().execute(sql, params)
        return await self._single(sql, params, 0)  # type: ignore[no-any-return]

    async def _unrouted_single(self, sql: Any, params: Any, fetch: int) -> Any:
        if self._joinable() is None:
            return await self._single(sql, params, fetch)
        return await super()._unrouted_single(sql, params, fetch)

    def _reclaimer(self, conn: AsyncPostgresConnection) -> Callable[[], Any] | None:
        raw = conn._raw
        return None if raw is None else partial(self._reclaim, raw)

    async def _reclaim(self, raw: _AsyncRawConnection) -> None:
        """Roll back and return a dropped ``get_connection()`` connection (see core)."""
        await self._end(AsyncPostgresConnection(self, raw), commit=False)

    def _disown(self, conn: Any) -> None:
        conn._raw = None  # inherited across fork: using or closing it here must do nothing

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Close the pool: idle connections now, checked-out ones when they come back.

        Args:
            timeout: Seconds to wait for the pool's workers to stop.
        """
        if self._closed:
            return
        self._closed = True
        await self._shutdown_replicas()
        self._report_unreturned(len(self._out))
        await self._pool.close(timeout=timeout)
