"""``SQLAlchemyDatabase``: the blocking SQLAlchemy backend."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
import sqlalchemy.exc as sa_exc
from sqlalchemy.orm import Session
from typing_extensions import Self

from structum_lab.plugins.database.base import SyncDatabaseBase, logger
from structum_lab.plugins.database.errors import DatabaseClosedError
from structum_lab.plugins.database.interfaces import Connection, Params, Result
from structum_lab.plugins.database.results import BufferedResult

from ._common import (
    _RESTORE,
    SQLAlchemyResult,
    SQLAlchemyState,
    error_cause,
    savepoint_name,
)

__all__ = ["SQLAlchemyConnection", "SQLAlchemyDatabase"]

_PUBLIC_MODULE = "structum_lab.plugins.database.sqlalchemy"


class SQLAlchemyConnection(Connection):
    """A pooled SQLAlchemy connection inside a transaction.

    ``execute()`` takes ``:name`` placeholders with a mapping (or the driver's own positional
    placeholders with a sequence) and runs the statement through ``exec_driver_sql``.
    """

    __module__ = _PUBLIC_MODULE

    def __init__(self, db: SQLAlchemyDatabase, connection: sqlalchemy.Connection) -> None:
        self._db = db
        self._sa = connection
        self._result: Result | None = None
        self._closed = False

    @property
    def sqlalchemy_connection(self) -> sqlalchemy.Connection:
        """The underlying ``sqlalchemy.Connection`` (for Core constructs such as ``select()``)."""
        return self._sa

    @property
    def last_result(self) -> Result | None:
        """The result of the last ``execute()``, or None."""
        return self._result

    @property
    def closed(self) -> bool:
        """True once the connection went back to the pool."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise DatabaseClosedError(
                "this connection was already returned to the pool; check out a new one"
            )

    def execute(self, sql: str, params: Params = None) -> SQLAlchemyResult:
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
        statement, args = self._db._prepare(sql, params)
        try:
            cursor = self._sa.exec_driver_sql(statement, args)
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc) from error_cause(exc)
        result = SQLAlchemyResult(cursor)
        self._result = result
        return result

    def executemany(self, sql: str, params_seq: Iterable[Params]) -> Result:
        """Run one statement once per parameter set (batched by the driver).

        Returns:
            A result whose ``rowcount`` is the total for the batch (where the driver reports it).
        """
        self._check()
        statement, batch = self._db._prepare_many(sql, params_seq)
        if not batch:
            self._result = BufferedResult(rowcount=0)
            return self._result
        try:
            cursor = self._sa.exec_driver_sql(statement, batch)
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc) from error_cause(exc)
        result = SQLAlchemyResult(cursor)
        self._result = result
        return result

    def commit(self) -> None:
        """Commit; the next statement starts a new transaction."""
        self._check()
        try:
            self._sa.commit()
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc) from error_cause(exc)

    def rollback(self) -> None:
        """Roll back the current transaction."""
        self._check()
        try:
            self._sa.rollback()
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc) from error_cause(exc)

    def close(self) -> None:
        """Roll back anything uncommitted and give the connection back to the pool."""
        self._finish(commit=False)

    @contextmanager
    def savepoint(self, name: str | None = None) -> Iterator[Self]:
        """A SAVEPOINT: released on success; on an exception rolled back to, and re-raised.

        Args:
            name: Savepoint name; by default SQLAlchemy's ``begin_nested()`` names it.
        """
        self._check()
        if name is not None:
            with self._named_savepoint(savepoint_name(name)):
                yield self
            return
        try:
            nested = self._sa.begin_nested()
        except sa_exc.SQLAlchemyError as exc:
            raise self._db._translate(exc) from error_cause(exc)
        try:
            yield self
        except BaseException:
            if nested.is_active:
                try:
                    nested.rollback()
                except sa_exc.SQLAlchemyError as exc:  # the caller's error matters more
                    logger.warning("rollback to savepoint failed: %s", type(exc).__name__)
            raise
        if nested.is_active:
            try:
                nested.commit()
            except sa_exc.SQLAlchemyError as exc:
                raise self._db._translate(exc) from error_cause(exc)

    @contextmanager
    def _named_savepoint(self, name: str) -> Iterator[None]:
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        self.execute(f"RELEASE SAVEPOINT {name}")

    def _finish(self, *, commit: bool) -> None:
        """Commit or roll back, then return the connection to the pool, whatever happens."""
        if self._closed:
            return
        self._closed = True
        sa = self._sa
        try:
            if commit:
                try:
                    sa.commit()
                except sa_exc.SQLAlchemyError as exc:
                    raise self._db._translate(exc) from error_cause(exc)
        finally:
            try:
                sa.close()  # rolls back whatever is still open
            except Exception as exc:
                logger.warning(
                    "returning a connection to %s failed: %s", self._db.url, type(exc).__name__
                )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SQLAlchemyConnection {self._db.url!r} {state}>"


class SQLAlchemyDatabase(SQLAlchemyState, SyncDatabaseBase[SQLAlchemyConnection]):
    """Pooled, transactional access to any SQLAlchemy database (blocking).

    Example::

        db = SQLAlchemyDatabase("postgresql://app:secret@localhost/app", pool_size=10)
        with db.transaction() as conn:
            user = conn.execute("SELECT * FROM users WHERE id = :id", {"id": 1}).fetchone()
        db.shutdown()

    See ``SQLAlchemyState.__init__`` for the constructor arguments.
    """

    __module__ = _PUBLIC_MODULE
    _is_async = False

    @property
    def engine(self) -> sqlalchemy.Engine:
        """The SQLAlchemy ``Engine`` (for Core and ORM use beyond this API)."""
        return self._sync_engine

    # -- hooks of SyncDatabaseBase -------------------------------------------------------------
    def _connect(self) -> sqlalchemy.Connection:
        self._acquiring.append(None)
        try:
            return self._sync_engine.connect()
        except Exception as exc:
            raise self._translate(exc, connecting=True) from error_cause(exc)
        finally:
            self._acquiring.pop()

    def _begin(self, **options: Any) -> SQLAlchemyConnection:
        if not options:
            return SQLAlchemyConnection(self, self._connect())
        self._check_options(options)
        sa = self._connect()
        try:
            setup = self._setup_for(options)
            if setup.execution_options:
                sa.execution_options(**setup.execution_options)
            if setup.restore:
                sa.info[_RESTORE] = setup.restore
            for statement in setup.statements:
                sa.exec_driver_sql(statement)
        except BaseException as exc:
            sa.close()
            if isinstance(exc, sa_exc.ArgumentError):
                raise ValueError(self._redact(str(exc))) from exc
            if isinstance(exc, sa_exc.SQLAlchemyError):
                raise self._translate(exc) from error_cause(exc)
            raise
        return SQLAlchemyConnection(self, sa)

    def _end(self, conn: SQLAlchemyConnection, *, commit: bool) -> None:
        conn._finish(commit=commit)

    def _probe(self) -> None:
        self._probe_pooled()

    # -- public API ---------------------------------------------------------------------------
    def get_connection(self) -> SQLAlchemyConnection:
        """Check out a connection in a transaction; ``commit()``/``rollback()``, then ``close()``.

        Raises:
            DatabaseClosedError: After :meth:`shutdown`.
            PoolTimeoutError: No connection became free within ``pool_timeout``.
            DatabaseUnavailableError: The database cannot be reached.
        """
        self._check_open()
        return self._begin()

    def get_session(self, **options: Any) -> Session:
        """An ORM ``Session`` bound to this database's engine.

        Use it as a context manager: it closes at the end, rolling back anything not committed
        (so an exception inside the block leaves nothing written).

        Args:
            **options: ``sqlalchemy.orm.Session`` arguments (``expire_on_commit=False``...).
        """
        self._check_open()
        return Session(bind=self._sync_engine, **options)

    def shutdown(self) -> None:
        """Close every pooled connection; later calls raise ``DatabaseClosedError``."""
        if self._closed:
            return
        self._closed = True
        leaked = self.get_pool_info()["checked_out"]
        if leaked:
            logger.warning("%s shut down with %d connection(s) still checked out", self.url, leaked)
        self._sync_engine.dispose()
