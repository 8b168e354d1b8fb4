"""``PostgresDatabase``: the synchronous twin, over ``psycopg_pool.ConnectionPool``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, cast

import psycopg
from psycopg import Pipeline
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
from typing_extensions import Self

from structum_lab.plugins.database.base import SyncDatabaseBase
from structum_lab.plugins.database.interfaces import Connection, Params, Result, Row
from structum_lab.plugins.database.results import BufferedResult

from ._common import (
    IDLE,
    INERROR,
    PUBLIC_MODULE,
    ConnectMonitor,
    PostgresCommon,
    TxPlan,
    is_no_rows,
    logger,
    plan_batch,
    prepare_query,
    returned_error,
    savepoint_name,
    tx_plan,
)

__all__ = ["PostgresConnection", "PostgresDatabase", "PostgresResult"]


class _RawConnection(psycopg.Connection[DictRow]):
    """psycopg's connection, remembering when it was last given back and reporting connects."""

    _structum_idle_since: float = 0.0
    _structum_monitor: ClassVar[ConnectMonitor]

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        try:
            conn = super().connect(conninfo, **kwargs)
        except Exception as exc:
            cls._structum_monitor.failed(exc)
            raise
        cls._structum_monitor.ok()
        conn._structum_idle_since = time.monotonic()
        return conn


class PostgresResult(Result):
    """The result of one statement, read lazily from psycopg's cursor (rows are dicts)."""

    __module__ = PUBLIC_MODULE
    __slots__ = ("_conn", "_cur")

    def __init__(self, cur: psycopg.Cursor[DictRow], conn: PostgresConnection) -> None:
        self._cur = cur
        self._conn = conn

    @property
    def rowcount(self) -> int:
        """Rows affected (or returned); in a pipelined transaction this waits for the result."""
        cur = self._cur
        if cur.pgresult is None and self._conn._pipeline is not None:
            self._conn.sync()
        return cur.rowcount

    def fetchone(self) -> Row | None:
        """Return the next row, or None when there are no more."""
        try:
            return self._cur.fetchone()
        except psycopg.Error as exc:
            if is_no_rows(exc):  # portable: a statement without rows fetches as empty
                return None
            raise self._conn._db._translate(exc, self._cur.connection) from exc

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows (the cursor's arraysize when None)."""
        try:
            return self._cur.fetchmany(size or 0)
        except psycopg.Error as exc:
            if is_no_rows(exc):  # portable: a statement without rows fetches as empty
                return []
            raise self._conn._db._translate(exc, self._cur.connection) from exc

    def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        try:
            return self._cur.fetchall()
        except psycopg.Error as exc:
            if is_no_rows(exc):  # portable: a statement without rows fetches as empty
                return []
            raise self._conn._db._translate(exc, self._cur.connection) from exc

    def __repr__(self) -> str:
        return f"<PostgresResult rowcount={self._cur.rowcount}>"


class PostgresConnection(Connection):
    """A pooled psycopg connection inside a transaction (see :class:`Connection`).

    ``raw`` is the underlying ``psycopg.Connection`` for driver-specific work (``COPY``,
    ``LISTEN``); it must not be closed or kept after the transaction ends.
    """

    __module__ = PUBLIC_MODULE

    # Defaults as class attributes: one is made per transaction, and most transactions never
    # change these (an instance attribute shadows the default when one does).
    _last_result: PostgresResult | None = None
    _pipeline: Pipeline | None = None
    _pipeline_cm: AbstractContextManager[Pipeline] | None = None
    _restore = False  # the transaction changed session settings: reset them on release
    _begin_sql = b"BEGIN"  # re-issued after commit()/rollback() in a pipeline
    _savepoints = 0

    def __init__(self, db: PostgresDatabase, raw: _RawConnection) -> None:
        self._db = db
        self._raw: _RawConnection | None = raw

    @property
    def raw(self) -> psycopg.Connection[DictRow]:
        """The psycopg connection (while this connection is checked out)."""
        if self._raw is None:
            raise returned_error()
        return self._raw

    @property
    def pipelined(self) -> bool:
        """True inside ``transaction(pipeline=True)``."""
        return self._pipeline is not None

    @property
    def last_result(self) -> PostgresResult | None:
        """The result of the last ``execute()``."""
        return self._last_result

    def execute(self, sql: str, params: Params = None) -> PostgresResult:
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
        sql, params = prepare_query(sql, params)
        db = self._db
        if db.echo:
            db._log_statement(sql, params)
        cur = raw.cursor()
        try:
            cur.execute(sql, params)
        except psycopg.Error as exc:
            raise db._translate(exc, raw) from exc
        result = self._last_result = PostgresResult(cur, self)
        return result

    def executemany(self, sql: str, params_seq: Iterable[Params]) -> Result:
        """Run one statement per parameter set (psycopg batches them in a pipeline)."""
        raw = self._raw
        if raw is None:
            raise returned_error()
        planned = plan_batch(sql, params_seq)
        if planned is None:
            return BufferedResult((), rowcount=0)
        query, batch = planned
        db = self._db
        if db.echo:
            db._log_statement(query, "(executemany)")
        cur = raw.cursor()
        try:
            cur.executemany(query, batch)
        except psycopg.Error as exc:
            raise db._translate(exc, raw) from exc
        result = self._last_result = PostgresResult(cur, self)
        return result

    def sync(self) -> None:
        """In a pipelined transaction, send what is queued and wait for every result.

        Errors of queued statements surface here. Outside a pipeline this does nothing.
        """
        if self._pipeline is None or self._raw is None:
            return
        try:
            self._pipeline.sync()
        except psycopg.Error as exc:
            raise self._db._translate(exc, self._raw) from exc

    def commit(self) -> None:
        """Commit; the next statement starts a new transaction."""
        raw = self.raw
        try:
            raw.commit()
            if self._pipeline is not None:  # pipelined: the connection is in autocommit mode
                raw.cursor().execute(self._begin_sql, prepare=False)
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    def rollback(self) -> None:
        """Roll back the current transaction."""
        raw = self.raw
        try:
            raw.rollback()
            if self._pipeline is not None:
                raw.cursor().execute(self._begin_sql, prepare=False)
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    def close(self) -> None:
        """Roll back anything uncommitted and give the connection back (idempotent)."""
        if self._raw is not None:
            self._db._end(self, commit=False)

    def _command(self, sql: str) -> None:
        raw = self.raw
        try:
            raw.execute(sql, prepare=False)
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    def savepoint(self, name: str | None = None) -> AbstractContextManager[Self]:
        """A SAVEPOINT: released on success, rolled back to (and the error re-raised) on failure.

        In a pipelined transaction the block's statements are synced before the release, so
        their errors are caught by this savepoint rather than by the final commit.
        """
        self._savepoints += 1
        return self._savepoint(savepoint_name(name, self._savepoints))

    @contextmanager
    def _savepoint(self, name: str) -> Iterator[Self]:
        self._command(f"SAVEPOINT {name}")
        try:
            yield self
            self.sync()
        except BaseException:
            raw = self._raw
            if raw is not None and not raw.broken:
                try:
                    if self._pipeline is not None:
                        self._pipeline.sync()
                except psycopg.Error:
                    pass  # the error being re-raised below is the one that matters
                try:
                    raw.execute(f"ROLLBACK TO SAVEPOINT {name}", prepare=False)
                except psycopg.Error as exc:
                    logger.debug("rollback to savepoint %s failed: %s", name, exc)
            raise
        self._command(f"RELEASE SAVEPOINT {name}")

    def __repr__(self) -> str:
        state = "returned" if self._raw is None else "checked out"
        return f"<PostgresConnection {self._db.url!r} {state}>"


class PostgresDatabase(PostgresCommon, SyncDatabaseBase[PostgresConnection]):
    """PostgreSQL through psycopg 3 and ``psycopg_pool.ConnectionPool``.

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
        check_idle_seconds: Connections idle longer than this are validated (one empty query)
            before use; more recently used ones are trusted.
        pool_pre_ping: False turns validation off entirely.
        prepare_threshold: Executions of a statement before psycopg prepares it server-side
            (None: never).
        pgbouncer: Preset for PgBouncer in transaction mode: no server-side prepared statements.
        application_name: Shown in ``pg_stat_activity``, unless the URL sets one (None: unset).
        statement_timeout: Default per-statement limit in seconds for every connection.
        connect_args: Extra psycopg/libpq connection parameters (``sslmode``, ``connect_timeout``).
        echo: Log every statement at DEBUG on ``structum_lab.plugins.database.postgres``.
        open: Start connecting now (True) or on first use (False; e.g. before a fork).
        pool_use_lifo: Accepted so a database.toml written for SQLAlchemy works; psycopg_pool
            shrinks idle connections itself and ignores it.
        name: Name in logs, health details and the psycopg pool (default: the masked URL).
        health_thresholds: When a reachable database counts as DEGRADED.
    """

    __module__ = PUBLIC_MODULE

    _pool: ConnectionPool[_RawConnection]

    def _create_pool(self, *, open_now: bool) -> ConnectionPool[_RawConnection]:
        raw_class = cast(
            "type[_RawConnection]",
            type("PostgresRawConnection", (_RawConnection,), {"_structum_monitor": self._monitor}),
        )
        pool: ConnectionPool[_RawConnection] = ConnectionPool(
            **self._pool_arguments(raw_class), open=open_now
        )
        self._pool_open = open_now
        return pool

    def open(self) -> None:
        """Open the pool now (otherwise the first transaction does)."""
        self._check_open()
        if not self._pool_open:
            self._pool.open()
            self._pool_open = True

    # -- checkout and return -----------------------------------------------------------------
    def _checkout(self) -> _RawConnection:
        if not self._pool_open:
            self.open()
        pool = self._pool
        try:
            raw = pool.getconn()
        except PoolTimeout as exc:
            error, cause = self._acquire_error(exc)
            raise error from cause
        except PoolClosed as exc:
            raise self._closed_pool_error() from exc
        if self._stale(raw):
            raw = self._validated(raw)
        self._out.add(raw)
        return raw

    def _validated(self, raw: _RawConnection) -> _RawConnection:
        """Ping ``raw``; replace it (within the pool timeout) while the ones we get are dead."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                raw.autocommit = True
                try:
                    raw.execute("")
                finally:
                    raw.autocommit = False
                return raw
            except psycopg.Error as exc:
                logger.info("discarding a dead pooled connection of %s: %s", self.url, exc)
                self._mark_suspect()
                raw.close()
                self._pool.putconn(raw)  # the pool drops it and opens a replacement
            except BaseException:
                # Cancelled (or interrupted) mid-ping: the connection's state is unknown, but it
                # must still go back to the pool, which replaces it.
                raw.close()
                self._pool.putconn(raw)
                raise
            try:
                raw = self._pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            except PoolTimeout as exc:
                error, cause = self._acquire_error(exc)
                raise error from cause
            except PoolClosed as exc:
                raise self._closed_pool_error() from exc

    def _release(self, conn: PostgresConnection, raw: _RawConnection) -> None:
        try:
            if conn._restore:
                raw.autocommit = False
                raw.isolation_level = None
                raw.read_only = None
        except Exception as exc:
            # A connection whose settings cannot be reset must not serve anyone else.
            logger.info("closing a connection that could not be reset: %s", exc)
            raw.close()
        raw._structum_idle_since = time.monotonic()
        self._out.discard(raw)
        self._pool.putconn(raw)

    # -- SyncDatabaseBase hooks --------------------------------------------------------------
    def _begin(self, **options: Any) -> PostgresConnection:
        plan = tx_plan(options) if options else None
        raw = self._checkout()
        conn = PostgresConnection(self, raw)
        if plan is not None:
            try:
                self._apply(conn, raw, plan)
            except BaseException:
                self._end(conn, commit=False)
                raise
        return conn

    def _apply(self, conn: PostgresConnection, raw: _RawConnection, plan: TxPlan) -> None:
        conn._restore = True
        if plan.pipeline:
            # psycopg waits for the result of its own implicit BEGIN in a pipeline; our explicit
            # BEGIN on an autocommit connection is queued like any other statement instead.
            raw.autocommit = True
            cm = raw.pipeline()
            conn._pipeline = cm.__enter__()
            conn._pipeline_cm = cm
            conn._begin_sql = plan.begin_sql
            raw.cursor().execute(plan.begin_sql, prepare=False)
        else:
            if plan.isolation is not None:
                raw.isolation_level = plan.isolation
            if plan.read_only:
                raw.read_only = True
        if plan.timeout_sql is not None:
            conn._command(plan.timeout_sql)

    def _end(self, conn: PostgresConnection, *, commit: bool) -> None:
        raw = conn._raw
        if raw is None:
            return  # already given back (close() inside the block)
        conn._raw = None
        try:
            if conn._pipeline_cm is not None:
                self._end_pipeline(conn, raw, commit=commit)
            elif commit:
                if raw.pgconn.transaction_status == INERROR:
                    self._rollback_quietly(raw)
                    raise self._aborted_error()
                try:
                    raw.commit()
                except psycopg.Error as exc:
                    self._rollback_quietly(raw)
                    raise self._translate(exc, raw) from exc
            else:
                self._rollback_quietly(raw)
        finally:
            self._release(conn, raw)

    def _end_pipeline(self, conn: PostgresConnection, raw: _RawConnection, *, commit: bool) -> None:
        cm = conn._pipeline_cm
        assert cm is not None
        conn._pipeline_cm = conn._pipeline = None
        error: psycopg.Error | None = None
        # COMMIT (or ROLLBACK) is queued behind the statements and leaves with the pipeline's
        # final Sync: with the queued BEGIN, the whole transaction is one round trip (psycopg's
        # commit() would sync, and leaving the pipeline would then sync once more).
        try:
            raw.cursor().execute(b"COMMIT" if commit else b"ROLLBACK", prepare=False)
        except psycopg.Error as exc:
            error = exc
        try:
            cm.__exit__(None, None, None)  # Sync; raises the first error of a queued statement
        except psycopg.Error as exc:
            error = error or exc
        if raw.pgconn.transaction_status != IDLE:
            self._rollback_quietly(raw)
        if commit and error is not None:
            raise self._translate(error, raw) from error

    @staticmethod
    def _rollback_quietly(raw: _RawConnection) -> None:
        # A failing rollback must not mask the exception already on its way out; a connection
        # still left in a transaction is rolled back (or dropped) by the pool on putconn().
        try:
            raw.rollback()
        except psycopg.Error as exc:
            logger.debug("rollback failed: %s", exc)

    def _probe(self) -> None:
        raw = self._checkout()
        try:
            raw.autocommit = True
            try:
                raw.execute("SELECT 1")
            finally:
                raw.autocommit = False
        except psycopg.Error as exc:
            raise self._translate(exc, raw) from exc
        finally:
            raw._structum_idle_since = time.monotonic()
            self._out.discard(raw)
            self._pool.putconn(raw)

    # -- public API --------------------------------------------------------------------------
    def get_connection(self) -> PostgresConnection:
        """Check out a connection; the caller must ``commit()``/``rollback()`` and ``close()`` it.

        Raises:
            PoolTimeoutError: No connection became free within ``timeout``.
            DatabaseUnavailableError: The database cannot be reached.
            DatabaseClosedError: After ``shutdown()``.
        """
        self._check_open()
        return self._begin()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close the pool: idle connections now, checked-out ones when they come back.

        Args:
            timeout: Seconds to wait for the pool's worker threads to stop.
        """
        if self._closed:
            return
        self._closed = True
        self._pool.close(timeout=timeout)
