"""Pool events: idle-only pre-ping, session restore on return, SQLite transactions, checkouts."""

from __future__ import annotations

import inspect
import time
from collections import deque
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.pool.base import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import await_only

from structum_lab.plugins.database._hooks import ConnectionHooks, ConnectionSetupError
from structum_lab.plugins.database._liveness import socket_readable
from structum_lab.plugins.database._observe import connection_created
from structum_lab.plugins.database.base import logger
from structum_lab.plugins.database.errors import (
    DatabaseUnavailableError,
)
from structum_lab.plugins.database.secrets import scrub_exception

__all__ = [
    "_LAST_CHECKIN",
    "_RESTORE",
    "install_connection_hooks",
    "install_create_timing",
    "looks_dead",
    "ping_ok",
    "socket_fd",
]


_LAST_CHECKIN = "structum_last_checkin"
_RESTORE = "structum_restore"
_CONNECT_STARTED = "structum_connect_started"


def _install_idle_ping(engine: Engine, idle_seconds: float, masked_url: str) -> None:
    """Check a pooled connection on checkout without a round trip; ping only a suspect one.

    SQLAlchemy's own ``pool_pre_ping`` costs a round trip on every checkout. A server that ended
    an idle session left its socket readable (or closed): that is checked locally (one system
    call, see ``_liveness``), and only such a connection is pinged. A failed ping raises
    ``DisconnectionError``, on which the pool discards the connection and hands out a new one;
    the caller sees nothing. A connection that dies after this check is replaced at the
    transaction's first statement (``AsyncSQLAlchemyConnection.execute``). ``idle_seconds``:
    connections used more recently are trusted (0: every checkout is checked).
    """
    dialect = engine.dialect
    monotonic = time.monotonic

    def ping_if_suspect(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        last = record.info.get(_LAST_CHECKIN)
        if last is None:
            return  # a connection opened just now needs no test
        idle = monotonic() - last
        if (idle_seconds and idle <= idle_seconds) or looks_dead(dbapi_connection) is False:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            logger.info(
                "pooled connection to %s failed its ping after %.1fs idle; replacing it: %s",
                masked_url,
                idle,
                type(exc).__name__,
            )
            raise sa_exc.DisconnectionError("pooled connection failed its ping") from exc
        if not alive:
            raise sa_exc.DisconnectionError("pooled connection failed its ping")

    def mark_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_CHECKIN] = monotonic()

    event.listen(engine, "checkout", ping_if_suspect)
    event.listen(engine, "checkin", mark_checkin)


def looks_dead(dbapi_connection: Any) -> bool | None:
    """True when the server has closed or written to this idle connection (no round trip).

    psycopg and PyMySQL: the socket is readable (see ``_liveness``). aiomysql reads its socket
    on the event loop whenever it runs, so there the stream reader holds what arrived (or its
    end). None when it cannot tell (no socket: SQLite, whose "ping" is local anyway).
    """
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    if getattr(driver, "closed", False) is True or getattr(driver, "open", True) is False:
        return True
    reader = getattr(driver, "_reader", None)
    if reader is not None and getattr(driver, "_writer", None) is not None:
        return bool(reader.at_eof() or getattr(reader, "_eof", False) or reader._buffer)
    if hasattr(driver, "_sock") and driver._sock is None:
        return True  # PyMySQL after the connection was closed
    fd = socket_fd(dbapi_connection)
    return None if fd is None else socket_readable(fd)


def _restore_session(
    dbapi_connection: Any, record: ConnectionPoolEntry, reset_state: PoolResetState
) -> None:
    # Undo per-transaction session settings (MySQL statement timeout, SQLite query_only) before
    # the connection is reused. If this fails the pool invalidates the connection.
    statements = record.info.pop(_RESTORE, None)
    if not statements or dbapi_connection is None or not reset_state.asyncio_safe:
        return
    cursor = dbapi_connection.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


def _install_sqlite_transactions(engine: Engine) -> None:
    """Make the sqlite3 driver transactional: BEGIN on every transaction, SAVEPOINT inside it.

    The driver's legacy mode opens transactions only before DML, so SELECTs are not repeatable
    and SAVEPOINT escapes the transaction (SQLAlchemy docs, "Transactions with SQLite").
    """

    def driver_autocommit(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None

    def emit_begin(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN")

    event.listen(engine, "connect", driver_autocommit)
    event.listen(engine, "begin", emit_begin)


class _CheckoutCounter:
    """Counts checked-out connections for pools that do not (NullPool, StaticPool, ...)."""

    __slots__ = ("_out",)

    def __init__(self, engine: Engine) -> None:
        self._out: deque[None] = deque()  # append/pop are atomic: no lock on the hot path
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *args: Any) -> None:
        self._out.append(None)

    def _checkin(self, *args: Any) -> None:
        if self._out:
            self._out.pop()

    @property
    def value(self) -> int:
        return len(self._out)

    def reset(self) -> None:
        """Forget every checkout (in a forked child: they belong to the parent)."""
        self._out = deque()


def ping_ok(dialect: Any, dbapi_connection: Any) -> None:
    """Ping through the dialect (one round trip, no transaction); raise if the server is gone."""
    if dbapi_connection is None or not dialect.do_ping(dbapi_connection):
        raise DatabaseUnavailableError("the server did not answer the ping")


def _result(value: Any, is_async: bool) -> Any:
    """``value``, awaited when it is an awaitable on an async engine.

    The pool events of an async engine run inside SQLAlchemy's greenlet (the one ``await
    engine.connect()`` started), so ``await_only`` suspends them on the caller's event loop; on a
    sync engine an awaitable is an error (``ConnectionHooks`` says what to do).
    """
    if is_async and inspect.isawaitable(value):
        return await_only(value)
    return value


def install_connection_hooks(
    engine: Engine, hooks: ConnectionHooks, *, is_async: bool, password_key: str
) -> None:
    """Run the password callable and ``configure`` for every new physical connection.

    ``do_connect`` fetches the password and connects with a private copy of the connect
    parameters (SQLAlchemy's own dict is shared by every connect and would keep the value);
    ``connect`` runs ``configure`` on the driver connection: for async engines the driver's own
    async connection (``psycopg.AsyncConnection``, ``aiosqlite.Connection``...), whose
    coroutines are awaited. What ``configure`` started is committed; if it raises, the
    connection is closed (SQLAlchemy's pool would leave it to the garbage collector) and the
    error reaches the caller as ``DatabaseUnavailableError``.
    """
    password = hooks.password
    configure = hooks.configure
    if password is not None:

        def do_connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
            try:
                value = hooks.checked_password(_result(password(), is_async))
            except ConnectionSetupError:
                raise
            except Exception as exc:
                raise hooks.password_failed(exc) from exc
            params = dict(cparams)
            params[password_key] = value
            try:
                return dialect.connect(*cargs, **params)
            except Exception as exc:
                scrub_exception(exc, (value,))
                raise

        event.listen(engine, "do_connect", do_connect)
    if configure is not None:

        def run_configure(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
            try:
                result = configure(driver if is_async else dbapi_connection)
                if is_async:
                    _result(result, True)
                else:
                    hooks.checked_setup_result(result)
                dbapi_connection.commit()
            except Exception as exc:
                try:
                    dbapi_connection.close()
                except Exception as close_exc:
                    logger.debug("closing a connection whose setup failed: %s", close_exc)
                raise hooks.setup_failed(exc) from exc

        event.listen(engine, "connect", run_configure)


def install_create_timing(engine: Engine, metric_attrs: dict[str, Any]) -> None:
    """Time each new physical connection for ``db.client.connection.create_time``.

    From the first ``do_connect`` handler (before the password callable's) to the last
    ``connect`` handler (after ``configure``): call it after :func:`install_connection_hooks`.
    Nothing runs per checkout.
    """

    def started(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
        record.info[_CONNECT_STARTED] = time.perf_counter()

    def done(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        begun = record.info.pop(_CONNECT_STARTED, None)
        if begun is not None:
            connection_created(metric_attrs, begun)

    event.listen(engine, "do_connect", started, insert=True)
    event.listen(engine, "connect", done)


def socket_fd(dbapi_connection: Any) -> int | None:
    """The socket descriptor under a DBAPI connection, where the driver shows it (else None).

    psycopg has ``fileno()``, PyMySQL a ``_sock``, aiomysql a stream writer; SQLAlchemy's asyncio
    adapters wrap the driver's connection (``driver_connection``). SQLite has no socket.
    """
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    try:
        fileno = getattr(driver, "fileno", None)
        if callable(fileno):
            return int(fileno())
        sock = getattr(driver, "_sock", None)
        if sock is None and getattr(driver, "_writer", None) is not None:
            sock = driver._writer.get_extra_info("socket")
        return None if sock is None else int(sock.fileno())
    except Exception:  # closed, or not a socket after all
        return None
