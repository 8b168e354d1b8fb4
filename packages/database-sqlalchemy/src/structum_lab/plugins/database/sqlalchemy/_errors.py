"""Error classes and translation: driver errors to the core hierarchy (SQLSTATE, MySQL numbers)."""

from __future__ import annotations

import sys

import sqlalchemy.exc as sa_exc

from structum_lab.plugins.database.errors import (
    IntegrityError,
    LockTimeoutError,
    QueryError,
    StatementTimeoutError,
)
from structum_lab.plugins.database.errors import PoolOverloadedError as _CorePoolOverloadedError
from structum_lab.plugins.database.errors import PoolTimeoutError as _CorePoolTimeoutError

__all__ = [
    "MYSQL_ERRORS",
    "PoolOverloadedError",
    "PoolTimeoutError",
    "classify_error",
    "error_cause",
]

_PUBLIC_MODULE = "structum_lab.plugins.database.sqlalchemy"


class PoolTimeoutError(_CorePoolTimeoutError, sa_exc.TimeoutError):
    """No pooled connection became free within ``pool_timeout``.

    It is both the core :class:`~structum_lab.plugins.database.PoolTimeoutError` and SQLAlchemy's
    ``sqlalchemy.exc.TimeoutError``, so ``except sqlalchemy.exc.TimeoutError`` keeps working.
    """

    __module__ = _PUBLIC_MODULE

    def __str__(self) -> str:
        # SQLAlchemyError.__str__ would append its own "background on this error" link.
        return str(self.args[0]) if self.args else ""


class PoolOverloadedError(_CorePoolOverloadedError, PoolTimeoutError):
    """``max_waiting`` callers already wait for a connection; this one failed without waiting.

    The core :class:`~structum_lab.plugins.database.PoolOverloadedError`, and like every pool
    timeout of this backend also a ``sqlalchemy.exc.TimeoutError``.
    """

    __module__ = _PUBLIC_MODULE


_E = type[QueryError] | None
# MySQL/MariaDB error numbers -> (the server's SQLSTATE, class when the SQLSTATE cannot tell).
# PyMySQL and aiomysql drop the SQLSTATE of the error packet, hence the table.
MYSQL_ERRORS: dict[int, tuple[str, _E]] = {
    1022: ("23000", None),  # duplicate key
    1048: ("23000", None),  # column cannot be null
    1062: ("23000", None),  # duplicate entry
    1169: ("23000", None),  # unique constraint
    1216: ("23000", None),  # foreign key: no referenced row
    1217: ("23000", None),  # foreign key: row is referenced
    1451: ("23000", None),
    1452: ("23000", None),
    1557: ("23000", None),
    1586: ("23000", None),
    4025: ("23000", None),  # MariaDB CHECK constraint failed
    3819: ("HY000", IntegrityError),  # MySQL CHECK constraint violated
    1213: ("40001", None),  # deadlock: retry the transaction
    1205: ("HY000", LockTimeoutError),  # lock wait timeout: contention, retry the transaction
    3024: ("HY000", StatementTimeoutError),  # MySQL max_execution_time exceeded
    1969: ("70100", StatementTimeoutError),  # MariaDB max_statement_time exceeded
    1317: ("70100", StatementTimeoutError),  # query interrupted
    1064: ("42000", None),  # syntax error
    1149: ("42000", None),
    1054: ("42S22", None),  # unknown column
    1146: ("42S02", None),  # no such table
    1050: ("42S01", None),  # table exists
    1792: ("25006", None),  # write in a READ ONLY transaction
    1406: ("22001", None),  # data too long
    1264: ("22003", None),  # out of range
    1365: ("22012", None),  # division by zero
    # connection lost or refused: the connection is unusable
    1053: ("08S01", None),
    1927: ("08S01", None),
    2002: ("08001", None),
    2003: ("08001", None),
    2006: ("08S01", None),
    2013: ("08S01", None),
    2055: ("08S01", None),
    4031: ("08S01", None),
}
# PostgreSQL states that mean the connection is gone rather than the statement was wrong.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03"})


def _sqlite_error(orig: BaseException) -> tuple[str | None, _E]:
    # SQLite has no SQLSTATE; report the standard class codes so portable code can branch on
    # ``sqlstate[:2]`` ("23" constraint, "42" syntax/unknown object).
    name = str(getattr(orig, "sqlite_errorname", "") or "")
    text = str(orig).lower()
    sqlite3 = sys.modules["sqlite3"]
    if isinstance(orig, sqlite3.IntegrityError) or name.startswith("SQLITE_CONSTRAINT"):
        return "23000", None
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in text:
        return None, LockTimeoutError  # busy_timeout expired waiting for a lock
    if name == "SQLITE_INTERRUPT" or text == "interrupted":
        return "57014", None
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return "25006", None
    if isinstance(orig, sqlite3.OperationalError) and (
        name == "SQLITE_ERROR" or "syntax error" in text or text.startswith("no such")
    ):
        return "42000", None
    return None, None


def classify_error(orig: BaseException) -> tuple[str | None, _E]:
    """Return ``(sqlstate, error class or None)`` for a DBAPI exception.

    psycopg (and PyMySQL >= 1.2) report the SQLSTATE; MySQL error numbers refine it (a lock wait
    timeout is HY000 but a LockTimeoutError) or stand in for it on older drivers and for
    client-side errors; SQLite error codes are mapped. A None class means "choose by SQLSTATE".
    """
    reported = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    sqlstate = reported if isinstance(reported, str) and reported else None
    module = type(orig).__module__
    if module.startswith(("pymysql", "aiomysql", "MySQLdb", "mysql.connector", "mariadb")):
        errno = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
        if errno is not None and errno in MYSQL_ERRORS:
            known, cls = MYSQL_ERRORS[errno]
            return sqlstate or known, cls
        return sqlstate, None
    if sqlstate:
        return sqlstate, None
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(orig, sqlite3.Error):
        return _sqlite_error(orig)
    return None, None


def error_cause(exc: BaseException) -> BaseException:
    """The driver's exception behind a SQLAlchemy one (kept as ``__cause__``)."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc
