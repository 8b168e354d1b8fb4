"""Errors raised by every Structum Database backend.

The hierarchy::

    DatabaseError
     ├── ConfigurationError          (also structum_lab.config.ConfigError)
     ├── DatabaseUnavailableError    cannot connect, or the connection was lost
     ├── DatabaseClosedError         the database was shut down
     ├── PoolTimeoutError            no connection became free within the timeout
     └── QueryError                  the server refused a statement (carries the SQLSTATE)
          ├── IntegrityError         23xxx: unique, foreign key, not null, check
          ├── StatementTimeoutError  57014: statement_timeout / lock_timeout hit
          └── SerializationError     40001, 40P01: retry the whole transaction

The driver's own exception is always kept as ``__cause__``. No message ever contains a password:
backends build messages from masked URLs and run driver text through
:func:`~structum_lab.plugins.database.secrets.redact`.
"""

from __future__ import annotations

from typing import Any

from structum_lab.config import ConfigError

__all__ = [
    "ConfigurationError",
    "DatabaseClosedError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "IntegrityError",
    "PoolTimeoutError",
    "QueryError",
    "SerializationError",
    "StatementTimeoutError",
    "error_class_for_sqlstate",
]

_PUBLIC_MODULE = "structum_lab.plugins.database"


class DatabaseError(Exception):
    """Base class of every error raised by Structum Database."""

    __module__ = _PUBLIC_MODULE


class ConfigurationError(DatabaseError, ConfigError):
    """The configuration is missing a key, has an invalid value, or cannot be read."""

    __module__ = _PUBLIC_MODULE

    def __init__(
        self,
        message: str,
        *,
        namespace: str | None = None,
        key: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.namespace = namespace
        self.key = key
        self.source = source
        self.line = line


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached, refused the login, or dropped the connection."""

    __module__ = _PUBLIC_MODULE


class DatabaseClosedError(DatabaseError):
    """The database object was shut down; create a new one to connect again."""

    __module__ = _PUBLIC_MODULE


class PoolTimeoutError(DatabaseError):
    """No pooled connection became available within the timeout.

    The message carries a snapshot of the pool (``checked_out``, ``total``, ``max``, ``waiting``) so
    that an exhausted pool can be told apart from a database that is down.
    """

    __module__ = _PUBLIC_MODULE

    def __init__(self, message: str, *, pool_info: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.pool_info: dict[str, Any] = dict(pool_info or {})


class QueryError(DatabaseError):
    """The server rejected a statement; ``sqlstate`` holds its SQLSTATE code when known."""

    __module__ = _PUBLIC_MODULE

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class IntegrityError(QueryError):
    """A constraint was violated (SQLSTATE class 23)."""

    __module__ = _PUBLIC_MODULE


class StatementTimeoutError(QueryError):
    """A statement was cancelled by a timeout (SQLSTATE 57014)."""

    __module__ = _PUBLIC_MODULE


class SerializationError(QueryError):
    """A serialization failure or deadlock (SQLSTATE 40001, 40P01): retry the transaction."""

    __module__ = _PUBLIC_MODULE

    retryable = True


def error_class_for_sqlstate(sqlstate: str | None) -> type[QueryError]:
    """Return the error class that stands for an SQLSTATE code.

    Args:
        sqlstate: Five-character SQLSTATE, or None when the driver did not report one.

    Returns:
        The most specific :class:`QueryError` subclass.
    """
    if not sqlstate:
        return QueryError
    if sqlstate in ("40001", "40P01"):
        return SerializationError
    if sqlstate == "57014":
        return StatementTimeoutError
    if sqlstate.startswith("23"):
        return IntegrityError
    return QueryError
