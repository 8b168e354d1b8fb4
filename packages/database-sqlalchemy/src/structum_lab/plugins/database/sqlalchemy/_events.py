"""Pool events: idle-only pre-ping, session restore on return, SQLite transactions, checkouts."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.pool.base import ConnectionPoolEntry, PoolProxiedConnection

from structum_lab.plugins.database.base import logger
from structum_lab.plugins.database.errors import (
    DatabaseUnavailableError,
)

__all__ = ["_LAST_CHECKIN", "_RESTORE", "ping_ok"]


_LAST_CHECKIN = "structum_last_checkin"
_RESTORE = "structum_restore"


def _install_idle_ping(engine: Engine, idle_seconds: float, masked_url: str) -> None:
    """Validate a pooled connection on checkout only when it sat idle longer than the window.

    SQLAlchemy's own ``pool_pre_ping`` costs a round trip on every checkout; like HikariCP we
    trust a connection used moments ago. A failed ping raises ``DisconnectionError``, on which the
    pool discards the connection and hands out a new one; the caller sees nothing.
    """
    dialect = engine.dialect
    monotonic = time.monotonic

    def ping_if_idle(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        last = record.info.get(_LAST_CHECKIN)
        if last is None:
            return  # a connection opened just now needs no test
        idle = monotonic() - last
        if idle <= idle_seconds:
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

    event.listen(engine, "checkout", ping_if_idle)
    event.listen(engine, "checkin", mark_checkin)


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


def ping_ok(dialect: Any, dbapi_connection: Any) -> None:
    """Ping through the dialect (one round trip, no transaction); raise if the server is gone."""
    if dbapi_connection is None or not dialect.do_ping(dbapi_connection):
        raise DatabaseUnavailableError("the server did not answer the ping")
