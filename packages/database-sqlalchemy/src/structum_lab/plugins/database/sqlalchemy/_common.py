"""What the sync and async SQLAlchemy backends share: URLs, engine set-up, events, errors, results.

Each rule lives here once; ``_sync.py`` and ``_async.py`` only differ where one calls a method and
the other awaits it.
"""

from __future__ import annotations

import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.engine import URL, CursorResult, Engine, make_url
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolResetState, QueuePool, StaticPool
from sqlalchemy.pool.base import ConnectionPoolEntry, PoolProxiedConnection

from structum_lab.plugins.database.base import DatabaseState, logger
from structum_lab.plugins.database.errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    IntegrityError,
    QueryError,
    StatementTimeoutError,
)
from structum_lab.plugins.database.errors import PoolTimeoutError as _CorePoolTimeoutError
from structum_lab.plugins.database.health import HealthThresholds
from structum_lab.plugins.database.interfaces import AsyncResult, Params, Result, Row
from structum_lab.plugins.database.params import adapt_params, convert_named
from structum_lab.plugins.database.secrets import mask_url

__all__ = [
    "SUPPORTED_SCHEMES",
    "PoolTimeoutError",
    "SQLAlchemyAsyncResult",
    "SQLAlchemyResult",
    "SQLAlchemyState",
    "TransactionSetup",
    "classify_error",
    "driver_hint",
    "resolve_url",
    "transaction_setup",
]

_PUBLIC_MODULE = "structum_lab.plugins.database.sqlalchemy"
_DIST = "structum-database-sqlalchemy"


class PoolTimeoutError(_CorePoolTimeoutError, sa_exc.TimeoutError):
    """No pooled connection became free within ``pool_timeout``.

    It is both the core :class:`~structum_lab.plugins.database.PoolTimeoutError` and SQLAlchemy's
    ``sqlalchemy.exc.TimeoutError``, so ``except sqlalchemy.exc.TimeoutError`` keeps working.
    """

    __module__ = _PUBLIC_MODULE

    def __str__(self) -> str:
        # SQLAlchemyError.__str__ would append its own "background on this error" link.
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------
# URLs and drivers
# --------------------------------------------------------------------------------------------

# scheme -> (sync driver, async driver) used when the URL names none.
_DEFAULT_DRIVERS: dict[str, tuple[str, str]] = {
    "postgresql": ("psycopg", "psycopg"),
    "mysql": ("pymysql", "aiomysql"),
    "mariadb": ("pymysql", "aiomysql"),
    "sqlite": ("pysqlite", "aiosqlite"),
}
_SCHEME_ALIASES = {"postgres": "postgresql"}
# importable driver module -> extra of structum-database-sqlalchemy that installs it
_DRIVER_EXTRAS = {
    "psycopg": "postgresql",
    "psycopg_binary": "postgresql",
    "pymysql": "mysql",
    "aiomysql": "mysql",
    "aiosqlite": "sqlite-async",
}
SUPPORTED_SCHEMES = (
    "postgresql:// (or postgres://), mysql://, mariadb://, sqlite://; or any SQLAlchemy URL that "
    "names its driver, e.g. mssql+pyodbc://, oracle+oracledb://"
)


def driver_hint(module: str) -> str:
    """The command that installs the DBAPI driver ``module`` (e.g. ``pymysql``)."""
    top = module.split(".", maxsplit=1)[0]
    extra = _DRIVER_EXTRAS.get(top)
    if extra:
        return f'pip install "{_DIST}[{extra}]"'
    if top == "sqlite3":
        return "a Python built with the sqlite3 module (install your OS's libsqlite3 development files and rebuild Python)"  # noqa: E501
    return f"pip install {top}"


def resolve_url(url: str, *, is_async: bool) -> URL:
    """Parse ``url`` and pick the driver Structum uses for its scheme.

    ``postgresql://`` gets psycopg 3 (sync and async), ``mysql://``/``mariadb://`` PyMySQL (sync)
    or aiomysql (async), ``sqlite://`` sqlite3 (sync) or aiosqlite (async). A ``+driver`` in the
    URL is kept.

    Raises:
        ConfigurationError: The URL cannot be parsed, its scheme is unknown, or its driver does not
            match the sync/async flavour of the database class.
    """
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError, TypeError):
        raise ConfigurationError(
            f"cannot parse the database URL {mask_url(url)!r}; expected "
            "dialect[+driver]://user:password@host:port/dbname, e.g. "
            "postgresql://app:secret@localhost:5432/app",
            key="url",
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = _SCHEME_ALIASES.get(backend, backend)
    if not driver and backend in _DEFAULT_DRIVERS:
        driver = _DEFAULT_DRIVERS[backend][1 if is_async else 0]
    parsed = parsed.set(drivername=f"{backend}+{driver}" if driver else backend)
    try:
        dialect_cls = parsed.get_dialect()
    except sa_exc.NoSuchModuleError:
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r} in {mask_url(url)!r}; "
            f"supported: {SUPPORTED_SCHEMES}",
            key="url",
        ) from None
    if is_async:
        dialect_cls = dialect_cls.get_async_dialect_cls(parsed)
    if bool(getattr(dialect_cls, "is_async", False)) != is_async:
        other = "SQLAlchemyDatabase" if not is_async else "AsyncSQLAlchemyDatabase"
        flavour = "an asyncio" if not is_async else "a blocking"
        raise ConfigurationError(
            f"the driver of {mask_url(url)!r} ({parsed.drivername}) is {flavour} driver; use "
            f"{'AsyncSQLAlchemyDatabase' if not is_async else 'SQLAlchemyDatabase'} with it, or "
            f"a URL without '+driver' so that {other} picks a matching one",
            key="url",
        )
    return parsed


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def savepoint_name(name: str) -> str:
    """Check a user-given savepoint name (it is spliced into SQL, so identifiers only)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"savepoint name must be a plain identifier, got {name!r}")
    return name


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

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
    1205: ("HY000", StatementTimeoutError),  # lock wait timeout
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
        return None, StatementTimeoutError  # busy_timeout expired waiting for a lock
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
    timeout is HY000 but a StatementTimeoutError) or stand in for it on older drivers and for
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


# --------------------------------------------------------------------------------------------
# Per-transaction options
# --------------------------------------------------------------------------------------------


class TransactionSetup(NamedTuple):
    """How to open one transaction: execution options, statements to run, statements to undo."""

    execution_options: dict[str, Any]
    statements: tuple[str, ...]
    restore: tuple[str, ...]


@lru_cache(maxsize=256)
def transaction_setup(
    dialect: str,
    is_mariadb: bool,
    isolation_level: str | None,
    read_only: bool,
    timeout: float | None,
) -> TransactionSetup:
    """Translate ``transaction()`` options for ``dialect``.

    - ``isolation_level`` goes through SQLAlchemy (which restores it when the connection returns).
    - ``read_only``: PostgreSQL ``postgresql_readonly``; MySQL/MariaDB ``SET TRANSACTION READ
      ONLY``; SQLite ``PRAGMA query_only`` (undone on return).
    - ``timeout``: PostgreSQL ``SET LOCAL statement_timeout``; MariaDB ``SET SESSION
      max_statement_time`` and MySQL ``max_execution_time`` (SELECT only; undone on return);
      ignored on SQLite, which has no statement timeout.

    Raises:
        ValueError: An option has a value the database cannot take.
    """
    options: dict[str, Any] = {}
    statements: list[str] = []
    restore: list[str] = []
    if isolation_level is not None:
        options["isolation_level"] = str(isolation_level).strip().upper().replace("_", " ")
    if read_only:
        if dialect == "postgresql":
            options["postgresql_readonly"] = True
        elif dialect in ("mysql", "mariadb"):
            statements.append("SET TRANSACTION READ ONLY")
        elif dialect == "sqlite":
            statements.append("PRAGMA query_only = 1")
            restore.append("PRAGMA query_only = 0")
        else:
            raise ValueError(f"read_only transactions are not supported on {dialect}")
    if timeout is not None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        millis = max(1, round(timeout * 1000))
        if dialect == "postgresql":
            statements.append(f"SET LOCAL statement_timeout = {millis}")
        elif dialect in ("mysql", "mariadb") and is_mariadb:
            statements.append(f"SET SESSION max_statement_time = {millis / 1000:g}")
            restore.append("SET SESSION max_statement_time = DEFAULT")
        elif dialect == "mysql":
            statements.append(f"SET SESSION max_execution_time = {millis}")
            restore.append("SET SESSION max_execution_time = DEFAULT")
        else:
            logger.debug("transaction timeout ignored: %s has no statement timeout", dialect)
    return TransactionSetup(options, tuple(statements), tuple(restore))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


class SQLAlchemyResult(Result):
    """A :class:`Result` over a SQLAlchemy ``CursorResult``; rows come out as dicts."""

    __slots__ = ("_cursor", "_keys", "_rowcount")
    __module__ = _PUBLIC_MODULE

    def __init__(self, cursor: CursorResult[Any]) -> None:
        self._cursor = cursor
        # Read now: some drivers reset it to -1 once the rows are consumed.
        self._rowcount = int(cursor.rowcount)
        # Statements without rows (INSERT without RETURNING, DDL) fetch nothing rather than fail.
        self._keys: tuple[str, ...] | None = tuple(cursor.keys()) if cursor.returns_rows else None

    @property
    def rowcount(self) -> int:
        """Rows affected (or returned, where the driver counts them); -1 when unknown."""
        return self._rowcount

    def keys(self) -> tuple[str, ...]:
        """Column names of the rows (empty for statements that return none)."""
        return self._keys or ()

    def fetchone(self) -> Row | None:
        """Return the next row, or None."""
        if self._keys is None:
            return None
        row = self._cursor.fetchone()
        return None if row is None else dict(zip(self._keys, row, strict=True))

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows (the cursor's arraysize when None)."""
        if self._keys is None:
            return []
        keys = self._keys
        return [dict(zip(keys, row, strict=True)) for row in self._cursor.fetchmany(size)]

    def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        if self._keys is None:
            return []
        keys = self._keys
        return [dict(zip(keys, row, strict=True)) for row in self._cursor.fetchall()]

    def close(self) -> None:
        """Release the cursor (also done when the connection goes back to the pool)."""
        self._cursor.close()

    def __repr__(self) -> str:
        return f"<SQLAlchemyResult rowcount={self.rowcount}>"


class SQLAlchemyAsyncResult(AsyncResult):
    """Async twin of :class:`SQLAlchemyResult` (the async engine has already buffered the rows)."""

    __slots__ = ("_inner",)
    __module__ = _PUBLIC_MODULE

    def __init__(self, cursor: CursorResult[Any]) -> None:
        self._inner = SQLAlchemyResult(cursor)

    @property
    def rowcount(self) -> int:
        """Rows affected (or returned, where the driver counts them); -1 when unknown."""
        return self._inner.rowcount

    def keys(self) -> tuple[str, ...]:
        """Column names of the rows (empty for statements that return none)."""
        return self._inner.keys()

    async def fetchone(self) -> Row | None:
        """Return the next row, or None."""
        return self._inner.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows."""
        return self._inner.fetchmany(size)

    async def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        return self._inner.fetchall()

    def __repr__(self) -> str:
        return f"<SQLAlchemyAsyncResult rowcount={self.rowcount}>"


# --------------------------------------------------------------------------------------------
# Pool events
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# The shared database state
# --------------------------------------------------------------------------------------------


def _setting(name: str, value: Any, kind: type, minimum: float) -> Any:
    ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if not ok or isinstance(value, bool) or value < minimum:
        wanted = "an integer" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {wanted} >= {minimum:g}, got {value!r}", key=name)
    return value


def _thresholds(value: HealthThresholds | Mapping[str, float] | None) -> HealthThresholds | None:
    if value is None or isinstance(value, HealthThresholds):
        return value
    if isinstance(value, Mapping):
        try:
            return HealthThresholds(**dict(value))
        except TypeError as exc:
            raise ConfigurationError(
                f"health_thresholds: {exc}; known keys: degraded_latency_ms, degraded_pool_usage",
                key="health_thresholds",
            ) from None
    raise ConfigurationError(
        f"health_thresholds must be a HealthThresholds or a table, got {type(value).__name__}",
        key="health_thresholds",
    )


class SQLAlchemyState(DatabaseState):
    """Constructor, engine, pool statistics, parameter handling and error translation.

    Shared by :class:`SQLAlchemyDatabase` and :class:`AsyncSQLAlchemyDatabase` (it comes first in
    their MRO, before the core sync/async base).
    """

    backend_name = "sqlalchemy"
    #: keys of other backends' configuration understood here (``timeout`` of PostgresDatabase).
    config_aliases: ClassVar[dict[str, str]] = {"timeout": "pool_timeout"}
    _is_async: ClassVar[bool] = False

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        pool_recycle: int = 3600,
        echo: bool = False,
        pool_pre_ping: bool = True,
        pre_ping_idle_seconds: float = 0.5,
        name: str | None = None,
        health_thresholds: HealthThresholds | Mapping[str, float] | None = None,
        **engine_options: Any,
    ) -> None:
        """Create the engine and its pool (connections are opened on first use).

        Args:
            url: Database URL. ``postgresql://`` uses psycopg 3, ``mysql://``/``mariadb://``
                PyMySQL (sync) or aiomysql (async), ``sqlite://`` sqlite3 or aiosqlite; an
                explicit ``+driver`` is kept.
            pool_size: Connections kept open in the pool.
            max_overflow: Extra connections allowed under load (-1: no limit).
            pool_timeout: Seconds to wait for a free connection before ``PoolTimeoutError``.
            pool_recycle: Replace connections older than this many seconds (-1: never).
            echo: Log every SQL statement (SQLAlchemy's ``echo``).
            pool_pre_ping: Test a pooled connection before use when it has been idle longer than
                ``pre_ping_idle_seconds``, replacing it transparently if the server dropped it.
            pre_ping_idle_seconds: Idle time after which a connection is tested on checkout.
            name: Name shown in logs and health output (defaults to the masked URL).
            health_thresholds: When a reachable database counts as DEGRADED.
            **engine_options: Further ``sqlalchemy.create_engine`` arguments
                (``connect_args``, ``pool_use_lifo``, ``poolclass``, ``isolation_level``...).

        Raises:
            ConfigurationError: Invalid URL, unknown scheme, missing driver (the message is the
                ``pip install`` command) or an engine option SQLAlchemy rejects.
        """
        text_url = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        super().__init__(text_url, name=name, health_thresholds=_thresholds(health_thresholds))
        if not isinstance(text_url, str) or not text_url.strip():
            raise ConfigurationError("url must be a non-empty database URL string", key="url")
        pool_size = _setting("pool_size", pool_size, int, 1)
        max_overflow = _setting("max_overflow", max_overflow, int, -1)
        self._pool_timeout = float(_setting("pool_timeout", pool_timeout, float, 0))
        pool_recycle = _setting("pool_recycle", pool_recycle, int, -1)
        idle = float(_setting("pre_ping_idle_seconds", pre_ping_idle_seconds, float, 0))

        sa_url = resolve_url(text_url.strip(), is_async=self._is_async)
        backend = sa_url.get_backend_name()
        kwargs = dict(engine_options)
        kwargs["echo"] = echo
        # We validate idle connections ourselves (_install_idle_ping); SQLAlchemy's pre-ping
        # would cost a round trip on every checkout.
        kwargs["pool_pre_ping"] = False
        poolclass = kwargs.get("poolclass")
        if _is_memory_sqlite(sa_url) and poolclass is None:
            # Every connection to ":memory:" is a separate, empty database. One connection,
            # handed to one transaction at a time, makes the pool behave like a real server.
            poolclass = AsyncAdaptedQueuePool if self._is_async else QueuePool
            kwargs["poolclass"] = poolclass
            pool_size, max_overflow, pool_recycle = 1, 0, -1
            connect_args = dict(kwargs.get("connect_args") or {})
            connect_args.setdefault("check_same_thread", False)
            kwargs["connect_args"] = connect_args
        queue_pool = poolclass is None or (
            isinstance(poolclass, type) and issubclass(poolclass, QueuePool)
        )
        if queue_pool:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
            kwargs["pool_timeout"] = self._pool_timeout
        kwargs["pool_recycle"] = pool_recycle
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._engine_any = self._create_engine(sa_url, kwargs)
        sync_engine: Engine = getattr(self._engine_any, "sync_engine", self._engine_any)
        self._sync_engine = sync_engine
        self.dialect_name: str = backend
        """``postgresql``, ``mysql``, ``mariadb``, ``sqlite``, ..."""

        if pool_pre_ping:
            _install_idle_ping(sync_engine, idle, self._masked_url)
        event.listen(sync_engine, "reset", _restore_session)
        if backend == "sqlite" and engine_options.get("isolation_level") != "AUTOCOMMIT":
            _install_sqlite_transactions(sync_engine)
        self._counter = (
            None if isinstance(sync_engine.pool, QueuePool) else (_CheckoutCounter(sync_engine))
        )
        self._paramstyle: Any = sync_engine.dialect.paramstyle
        # MySQL/MariaDB read backslash escapes in every literal (unless NO_BACKSLASH_ESCAPES).
        self._backslash_escapes = self.dialect_name in ("mysql", "mariadb")
        self._acquiring: deque[None] = deque()

    def _create_engine(self, url: URL, kwargs: dict[str, Any]) -> Any:
        from sqlalchemy import create_engine  # noqa: PLC0415
        from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

        try:
            if self._is_async:
                return create_async_engine(url, **kwargs)
            return create_engine(url, **kwargs)
        except ModuleNotFoundError as exc:
            missing = exc.name or str(exc)
            raise ConfigurationError(
                f"the driver {missing!r} needed by {self._masked_url!r} is not installed; "
                f"run: {driver_hint(missing)}",
                key="url",
            ) from exc
        except (TypeError, sa_exc.ArgumentError, sa_exc.InvalidRequestError) as exc:
            raise ConfigurationError(
                f"invalid engine option for {self._masked_url!r}: {self._redact(str(exc))}",
                key="options",
            ) from exc

    # -- pool ---------------------------------------------------------------------------------
    def get_pool_info(self) -> dict[str, Any]:
        """Pool statistics.

        Returns:
            ``checked_out`` (in use), ``available`` (open and idle), ``total`` (open),
            ``overflow`` (open beyond ``size``), ``max`` (most connections the pool will open;
            None when unlimited), ``size`` (``pool_size``) and ``waiting`` (callers blocked
            for a connection).
        """
        pool = self._sync_engine.pool
        if isinstance(pool, QueuePool):
            idle = pool.checkedin()
            out = pool.checkedout()
            size = pool.size()
            limit: int | None = size + self._max_overflow if self._max_overflow >= 0 else None
        else:
            out = self._counter.value if self._counter is not None else 0
            idle = 1 if isinstance(pool, StaticPool) and out == 0 else 0
            size = 1 if isinstance(pool, StaticPool) else 0
            limit = 1 if isinstance(pool, StaticPool) else None
        total = idle + out
        # A caller in checkout is waiting only if no idle connection or free slot can serve it.
        room = idle + (limit - total if limit is not None else len(self._acquiring))
        return {
            "checked_out": out,
            "available": idle,
            "total": total,
            "overflow": max(0, total - size),
            "max": limit,
            "size": size,
            "waiting": max(0, len(self._acquiring) - max(room, 0)),
        }

    # -- statements ---------------------------------------------------------------------------
    def _prepare(self, sql: str, params: Params) -> tuple[str, Any]:
        """Convert ``:name`` placeholders to the driver's style and arrange ``params``.

        A mapping (or None) means ``:name`` placeholders; a sequence is handed to the driver as
        is, for its native positional placeholders.
        """
        if params is None or isinstance(params, Mapping):
            converted = convert_named(sql, self._paramstyle, self._backslash_escapes)
            if converted.positional:
                try:
                    return converted.sql, tuple(adapt_params(converted, params or {}))
                except KeyError as exc:
                    raise self._missing_param(exc) from None
            return converted.sql, (params if isinstance(params, dict) else dict(params or {}))
        if isinstance(params, (str, bytes)):
            raise TypeError("params must be a mapping (for :name) or a sequence, not a string")
        return sql, tuple(params)

    def _prepare_many(self, sql: str, params_seq: Iterable[Params]) -> tuple[str, list[Any]]:
        batch = list(params_seq)
        if not batch:
            return sql, []
        if all(p is None or isinstance(p, Mapping) for p in batch):
            converted = convert_named(sql, self._paramstyle, self._backslash_escapes)
            rows: list[Any]
            try:
                if converted.positional:
                    rows = [tuple(adapt_params(converted, p or {})) for p in batch]
                else:
                    rows = [p if isinstance(p, dict) else dict(p or {}) for p in batch]
            except KeyError as exc:
                raise self._missing_param(exc) from None
            return converted.sql, rows
        return sql, [tuple(p) for p in batch if isinstance(p, Sequence)]

    @staticmethod
    def _missing_param(exc: KeyError) -> QueryError:
        name = exc.args[0] if exc.args else "?"
        return QueryError(f"the statement uses :{name} but params has no value for {name!r}")

    def _check_options(self, options: dict[str, Any]) -> None:
        """Reject bad ``transaction()`` options before a connection is checked out."""
        unknown = set(options) - {"isolation_level", "read_only", "timeout"}
        if unknown:
            raise TypeError(
                f"transaction() got unknown option(s) {', '.join(sorted(unknown))} for "
                f"{type(self).__name__}; it takes isolation_level, read_only, timeout"
            )
        timeout = options.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")

    def _setup_for(self, options: dict[str, Any]) -> TransactionSetup:
        """The statements for ``options``.

        Call it with a connection checked out: MariaDB and MySQL are told apart only once the
        dialect has seen the server.
        """
        self._check_options(options)
        return transaction_setup(
            self.dialect_name,
            bool(getattr(self._sync_engine.dialect, "is_mariadb", False)),
            options.get("isolation_level"),
            bool(options.get("read_only", False)),
            options.get("timeout"),
        )

    # -- health -------------------------------------------------------------------------------
    def _probe_pooled(self) -> None:
        """Check a pooled connection out, ping it, give it back: the body of both ``_probe()``.

        Plain blocking code on the sync engine and its pool's DBAPI connection (no ``Connection``
        object: a ping needs no transaction bookkeeping). The async twin runs it whole inside
        one ``greenlet_spawn``, so a health check costs one greenlet instead of three
        (``connect()`` + ``run_sync()`` + ``close()``), which kept it above 2x a bare round trip.

        Raises:
            PoolTimeoutError: No connection became free in time.
            DatabaseUnavailableError: The server cannot be reached or did not answer the ping.
        """
        self._acquiring.append(None)
        try:
            pooled = self._sync_engine.raw_connection()
        except Exception as exc:
            raise self._translate(exc, connecting=True) from error_cause(exc)
        finally:
            self._acquiring.pop()
        try:
            # The dialect's ping: one round trip, no transaction (psycopg sends an empty query).
            ping_ok(self._sync_engine.dialect, pooled.dbapi_connection)
        except Exception as exc:
            pooled.invalidate()  # a connection that failed its ping must not go back to the pool
            raise self._unavailable_error(exc) from exc
        finally:
            pooled.close()

    # -- errors -------------------------------------------------------------------------------
    def _translate(self, exc: BaseException, *, connecting: bool = False) -> Exception:
        """Turn a SQLAlchemy/driver exception into the Structum error for it."""
        if isinstance(exc, DatabaseError):
            return exc
        if isinstance(exc, sa_exc.TimeoutError):
            return self._pool_timeout_error(
                self._pool_timeout, self.get_pool_info(), cls=PoolTimeoutError
            )
        orig = error_cause(exc)
        if connecting:
            return self._unavailable_error(orig)
        if isinstance(exc, sa_exc.DBAPIError):
            if exc.connection_invalidated:
                return self._unavailable_error(orig)
            sqlstate, cls = classify_error(orig)
            if sqlstate and (sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_STATES):
                return self._unavailable_error(orig)
            if cls is None and sqlstate is None and isinstance(exc, sa_exc.IntegrityError):
                cls = IntegrityError
            return self._query_error(orig, sqlstate, cls)
        if isinstance(exc, sa_exc.PendingRollbackError):
            return DatabaseUnavailableError(
                f"the connection to {self._masked_url!r} was lost in this transaction; "
                f"roll back and retry: {self._redact(str(exc)).splitlines()[0]}"
            )
        return self._query_error(orig, None)


def ping_ok(dialect: Any, dbapi_connection: Any) -> None:
    """Ping through the dialect (one round trip, no transaction); raise if the server is gone."""
    if dbapi_connection is None or not dialect.do_ping(dbapi_connection):
        raise DatabaseUnavailableError("the server did not answer the ping")
