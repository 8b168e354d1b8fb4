"""Errors raised by every Structum Database backend.

The hierarchy::

    DatabaseError
     ├── ConfigurationError            (also structum_lab.config.ConfigError)
     ├── DatabaseUnavailableError  [R] cannot connect, or the connection was lost before COMMIT
     │    └── CommitOutcomeUnknownError  the connection was lost during COMMIT: never retried
     ├── DatabaseClosedError           the database was shut down
     ├── PoolTimeoutError              no connection became free within the timeout
     │    └── PoolOverloadedError  [R] ``max_waiting`` callers already wait: failed at once
     └── QueryError                    the server refused a statement (carries the SQLSTATE)
          ├── IntegrityError           23xxx: unique, foreign key, not null, check
          ├── StatementTimeoutError    57014: statement_timeout hit
          │    └── LockTimeoutError [R] 55P03, MySQL 1205, SQLite busy: also a SerializationError
          └── SerializationError   [R] 40001, 40P01, MySQL 1213 deadlock: retry the transaction

``[R]``: ``retryable`` is True. Running the whole transaction again is safe and may succeed, which
is what ``run_transaction()`` does; every other error has ``retryable = False``.

The driver's own exception is always kept as ``__cause__``. No message ever contains a password:
backends build messages from masked URLs and run driver text through
:func:`~structum_lab.plugins.database.secrets.redact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from structum_lab.config import ConfigError

__all__ = [
    "CommitOutcomeUnknownError",
    "ConfigurationError",
    "DatabaseClosedError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "IntegrityError",
    "LockTimeoutError",
    "PoolOverloadedError",
    "PoolTimeoutError",
    "QueryError",
    "SerializationError",
    "StatementTimeoutError",
    "error_class_for_sqlstate",
]

_PUBLIC_MODULE = "structum_lab.plugins.database"


class DatabaseError(Exception):
    """Base class of every error raised by Structum Database.

    ``retryable`` tells whether running the whole transaction again is safe and may succeed
    (``run_transaction()`` retries exactly those errors).
    """

    __module__ = _PUBLIC_MODULE

    retryable: bool = False


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
    """The database cannot be reached, refused the login, or dropped the connection.

    Retryable: the connection was lost before COMMIT was sent, so the transaction was rolled back
    by the server. A connection lost during COMMIT raises :class:`CommitOutcomeUnknownError`.
    """

    __module__ = _PUBLIC_MODULE

    retryable = True


class CommitOutcomeUnknownError(DatabaseUnavailableError):
    """The connection was lost while COMMIT was in flight: it may or may not have committed.

    Never retried automatically (running the transaction again could apply it twice). Check the
    data (or make the transaction idempotent, e.g. with a unique request id) before retrying.
    """

    __module__ = _PUBLIC_MODULE

    retryable = False


class DatabaseClosedError(DatabaseError):
    """The database object was shut down; create a new one to connect again."""

    __module__ = _PUBLIC_MODULE


class PoolTimeoutError(DatabaseError):
    """No pooled connection became available within the timeout.

    The message carries a snapshot of the pool (``checked_out``, ``total``, ``max``, ``waiting``) so
    that an exhausted pool can be told apart from a database that is down.
    """

    __module__ = _PUBLIC_MODULE

    def __init__(self, message: str, *, pool_info: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.pool_info: dict[str, Any] = dict(pool_info or {})


class PoolOverloadedError(PoolTimeoutError):
    """``max_waiting`` callers were already waiting for a connection: this one failed at once.

    A :class:`PoolTimeoutError` (no connection for this caller) that did not wait; retryable
    after a pause, which ``run_transaction()`` takes (jittered backoff).
    """

    __module__ = _PUBLIC_MODULE

    retryable = True


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


class LockTimeoutError(StatementTimeoutError, SerializationError):
    """Waiting for a lock took too long (PostgreSQL 55P03, MySQL/MariaDB 1205, SQLite busy).

    Lock contention, like a deadlock: retrying the whole transaction is safe and usually
    succeeds, so it is a :class:`SerializationError` as well as a
    :class:`StatementTimeoutError` (what it was before retries existed).
    """

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
    if sqlstate == "55P03":
        return LockTimeoutError
    if sqlstate.startswith("23"):
        return IntegrityError
    return QueryError
