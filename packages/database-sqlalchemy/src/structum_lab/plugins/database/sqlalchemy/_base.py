"""What ``SQLAlchemyDatabase`` and ``AsyncSQLAlchemyDatabase`` share: settings, engine, state.

The twins (``_async.py``, the source, and the generated ``_sync.py``) only sequence the I/O
calls; URLs are in ``_urls.py``, errors in ``_errors.py``, transaction options in
``_transactions.py``, results in ``_results.py`` and pool events in ``_events.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import QueuePool, StaticPool

from structum_lab.plugins.database._checkouts import blind_socket, keep_inherited
from structum_lab.plugins.database._deadlines import arm, ping_budget
from structum_lab.plugins.database._hooks import ConfigureHook, ConnectionHooks, PasswordSource
from structum_lab.plugins.database._observe import record_use, record_wait
from structum_lab.plugins.database._replicas import DEFAULT_CHECK_INTERVAL, DEFAULT_MAX_LAG
from structum_lab.plugins.database._retry import DEFAULT_POLICY
from structum_lab.plugins.database._state import DEFAULT_HEALTH_TIMEOUT, seconds_or_none
from structum_lab.plugins.database._statements import check_statement
from structum_lab.plugins.database.base import DatabaseState, logger
from structum_lab.plugins.database.errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    IntegrityError,
    QueryError,
)
from structum_lab.plugins.database.health import HealthThresholds
from structum_lab.plugins.database.interfaces import Params, PoolInfo
from structum_lab.plugins.database.params import adapt_params, convert_named, unencodable_error
from structum_lab.plugins.database.settings import check_bounds

from ._errors import (
    _UNAVAILABLE_STATES,
    PoolOverloadedError,
    PoolTimeoutError,
    classify_error,
    error_cause,
)
from ._events import (
    _CheckoutCounter,
    _install_idle_ping,
    _install_sqlite_transactions,
    _restore_session,
    install_connection_hooks,
    install_create_timing,
    looks_dead,
    ping_ok,
    socket_fd,
)
from ._pool import StructumAsyncQueuePool, StructumQueuePool, checkout_now, is_structum_pool
from ._results import SQLAlchemyResult
from ._sessions import session_class_for
from ._transactions import TransactionSetup, transaction_setup
from ._urls import (
    DEFAULT_CONNECT_TIMEOUT,
    _is_memory_sqlite,
    connect_arguments,
    driver_hint,
    pgbouncer_connect_args,
    resolve_url,
)

__all__ = ["SQLAlchemyState"]

_AUTOCOMMIT_STATEMENT = "a statement that commits by itself (db.execute/fetchone/fetchall)"
# Drivers whose autocommit switch is client-side (psycopg 3 sends nothing: it only decides
# whether its next statement is preceded by BEGIN), so db.fetchone() & co. cost one round trip.
_CLIENT_SIDE_AUTOCOMMIT = frozenset({"psycopg", "psycopg_async"})


def _setting(name: str, value: Any, kind: type, minimum: float) -> Any:
    ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if not ok or isinstance(value, bool) or value < minimum:
        wanted = "an integer" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {wanted} >= {minimum:g}, got {value!r}", key=name)
    check_bounds("SQLAlchemyDatabase", name, value)
    return value


def _thresholds(value: HealthThresholds | Mapping[str, float] | None) -> HealthThresholds | None:
    if value is None or isinstance(value, HealthThresholds):
        return value
    if isinstance(value, Mapping):
        return HealthThresholds.from_mapping(value)  # unknown keys and ranges: core's errors
    raise ConfigurationError(
        f"health_thresholds must be a HealthThresholds or a table, got {type(value).__name__}",
        key="health_thresholds",
    )


# Python types PyMySQL/aiomysql turn into SQL literals. Anything else they send as its str()
# (object() would be stored as "<object object at 0x...>"), so it is refused instead.
_MYSQL_TYPES = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        Decimal,
        str,
        bytes,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
    }
)


def _fix_aiomysql_bytes() -> None:
    """Let aiomysql bind bytes again with PyMySQL >= 1.2.

    aiomysql 0.3 imports ``pymysql.converters.escape_bytes_prefixed``, which PyMySQL 1.2 turned
    into a placeholder string (PyMySQL issue #1274), so every bytes parameter failed with
    "'str' object is not callable". No PyMySQL release that works with it is in reach of our
    version ranges, so the name is pointed back at a function that renders what PyMySQL's own
    ``escape_bytes`` does. A no-op once aiomysql stops importing it.
    """
    import aiomysql.connection  # noqa: PLC0415 - only for the aiomysql driver

    if isinstance(getattr(aiomysql.connection, "escape_bytes_prefixed", None), str):
        aiomysql.connection.escape_bytes_prefixed = _escape_bytes


def _escape_bytes(value: bytes, mapping: Any = None) -> str:
    return f"_binary X'{value.hex()}'"


def _mysql_args(args: Any) -> Any:
    if isinstance(args, Mapping):
        return {key: _mysql_value(value, key) for key, value in args.items()}
    return tuple(_mysql_value(value, index + 1) for index, value in enumerate(args))


def _mysql_value(value: Any, name: object) -> Any:
    """``value`` as PyMySQL binds it correctly, or a QueryError saying what to pass."""
    kind = type(value)
    if kind in _MYSQL_TYPES:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    for base in (bool, int, float, str, Decimal):  # IntEnum, StrEnum and other subclasses
        if isinstance(value, base):
            return base(value)
    raise QueryError(
        f"parameter {name!r} is a {kind.__name__}, which MySQL/MariaDB cannot store; pass None, "
        "bool, int, float, Decimal, str, bytes, date, time, datetime, timedelta or UUID "
        "(convert it yourself, e.g. json.dumps() for a dict)"
    )


def _missing_param(name: object) -> QueryError:
    return QueryError(
        f"the statement uses :{name} but the parameters have no value for {name!r}; "
        "add it to the mapping"
    )


def _password_key(dialect: Any, url: URL) -> str:
    """The connect parameter the dialect passes the URL's password as (``passwd`` for PyMySQL)."""
    probe = "structum-password-probe"
    _, cparams = dialect.create_connect_args(url.set(password=probe))
    for key, value in cparams.items():
        if value == probe:
            return str(key)
    return "password"


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
        pre_ping_idle_seconds: float = 0.0,
        name: str | None = None,
        health_thresholds: HealthThresholds | Mapping[str, float] | None = None,
        session_class: type[Any] | str | None = None,
        max_waiting: int = 0,
        retries: int = DEFAULT_POLICY.retries,
        retry_backoff: float = DEFAULT_POLICY.backoff,
        retry_max_backoff: float = DEFAULT_POLICY.max_backoff,
        retry_timeout: float = DEFAULT_POLICY.timeout,
        configure: ConfigureHook | str | None = None,
        password: PasswordSource | None = None,
        leak_detection_threshold: float | None = None,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        pgbouncer: bool = False,
        replicas: Sequence[str] | None = None,
        max_replica_lag: float = DEFAULT_MAX_LAG,
        replica_check_interval: float = DEFAULT_CHECK_INTERVAL,
        slow_transaction_threshold: float | None = None,
        transaction_timeout: float | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
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
            pool_pre_ping: Check a pooled connection before use, without a round trip: only a
                connection whose socket the server closed or wrote to is pinged (and replaced
                transparently when dead). A connection found dead at a transaction's first
                statement is replaced and the statement run again, with or without this.
            pre_ping_idle_seconds: Connections used more recently than this are not checked
                (default 0: every checkout is).
            name: Name shown in logs and health output (defaults to the masked URL).
            health_thresholds: When a reachable database counts as DEGRADED.
            health_timeout: Seconds ``health_check()`` may take (3 by default). It never queues
                behind the pool: with no connection free it connects on its own, within this
                time.
            session_class: The class ``get_session()`` builds by default: a ``Session`` subclass
                for ``SQLAlchemyDatabase``, an ``AsyncSession`` subclass for
                ``AsyncSQLAlchemyDatabase``, or its import path (``"sqlmodel:Session"``, as
                configuration gives it), imported here. Default: SQLAlchemy's own.
            max_waiting: Most callers that may wait for a connection; one more fails at once
                with ``PoolOverloadedError`` (0: no limit).
            retries: ``run_transaction()``'s default number of retries.
            retry_backoff: Upper bound of its first pause in seconds (doubling each retry)...
            retry_max_backoff: ... up to this; each pause is random below the bound.
            retry_timeout: Seconds after which ``run_transaction()`` starts no more retries.
            configure: Called with each new physical connection before the pool hands it out
                (type adapters, ``SET search_path``, ``SET ROLE``), or its import path
                (``"myapp.db:setup"``). ``SQLAlchemyDatabase`` passes the DBAPI connection;
                ``AsyncSQLAlchemyDatabase`` the driver's own async connection
                (``psycopg.AsyncConnection``, ``aiosqlite.Connection``, ``aiomysql``'s), and
                awaits a coroutine function. What it runs is committed. If it raises, the
                connection is closed and the caller gets ``DatabaseUnavailableError`` saying the
                setup failed.
            password: The password (instead of one in the URL), or a callable returning it
                (awaited on the async twin when it is a coroutine function), called for each
                new connection (rotating tokens); its value is used for that connect only and
                masked in errors. Not for SQLite.
            transaction_timeout: Default ``timeout`` of every ``transaction()``, in seconds
                (None: no limit). It only adds the client-side deadline: a transaction still
                running shortly after it has its connection closed (never reused) and raises
                ``StatementTimeoutError``.
            connect_timeout: Seconds a new connection may take (5 by default; None: the
                driver's default), given to the driver as its own setting (psycopg's
                ``connect_timeout``, whole seconds, 2 at least; PyMySQL's and aiomysql's
                ``connect_timeout``). A value in ``connect_args`` or the URL wins.
            leak_detection_threshold: Seconds a connection may stay checked out before one
                WARNING with the stack that took it is logged (None: off; see the README).
            pgbouncer: Preset for PgBouncer in transaction mode (PostgreSQL): no server-side
                prepared statements (psycopg ``prepare_threshold=None``; asyncpg statement
                caches off).
            replicas: URLs of PostgreSQL streaming replicas (same settings as this database).
                Reads (``transaction(read_only=True)``, ``fetchone/fetchall(...,
                read_only=True)``, ``get_session(read_only=True)``) go to one whose lag is
                within ``max_replica_lag``, else here; see the README, "Scaling out".
            max_replica_lag: Seconds a replica may be behind and still serve reads.
            replica_check_interval: Seconds between two background lag measurements.
            slow_transaction_threshold: Seconds after which a ``transaction()`` logs one
                WARNING with its duration, its statements (masked, without parameter values)
                and where it was opened (None: off; see the README).
            **engine_options: Further ``sqlalchemy.create_engine`` arguments
                (``connect_args``, ``pool_use_lifo``, ``poolclass``, ``isolation_level``...).

        Raises:
            ConfigurationError: Invalid URL, unknown scheme, missing driver (the message is the
                ``pip install`` command), an engine option SQLAlchemy rejects, or a
                ``session_class`` that cannot be imported or is not a session class of the right
                kind.
        """
        settings = dict(locals())  # what each replica is built with (see _init_replicas)
        settings.update(settings.pop("engine_options"))
        text_url = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        super().__init__(
            text_url,
            name=name,
            health_thresholds=_thresholds(health_thresholds),
            max_waiting=max_waiting,
            retries=retries,
            retry_backoff=retry_backoff,
            retry_max_backoff=retry_max_backoff,
            retry_timeout=retry_timeout,
            leak_detection_threshold=leak_detection_threshold,
            health_timeout=health_timeout,
            slow_transaction_threshold=slow_transaction_threshold,
            transaction_timeout=transaction_timeout,
        )
        self.connect_timeout = seconds_or_none(
            type(self).__name__, "connect_timeout", connect_timeout
        )
        if not isinstance(text_url, str) or not text_url.strip():
            raise ConfigurationError("url must be a non-empty database URL string", key="url")
        pool_size = _setting("pool_size", pool_size, int, 1)
        max_overflow = _setting("max_overflow", max_overflow, int, -1)
        self._pool_timeout = float(_setting("pool_timeout", pool_timeout, float, 0))
        pool_recycle = _setting("pool_recycle", pool_recycle, int, -1)
        idle = float(_setting("pre_ping_idle_seconds", pre_ping_idle_seconds, float, 0))
        # Checked before the engine exists: a bad class fails construction, not the first request.
        self._session_class: type[Any] | None = (
            None if session_class is None else self._checked_session_class(session_class)
        )

        sa_url = resolve_url(text_url.strip(), is_async=self._is_async)
        backend = sa_url.get_backend_name()
        owner = type(self).__name__
        hooks = ConnectionHooks(
            configure=configure, password=password, owner=owner, is_async=self._is_async
        )
        if password is not None:
            if backend == "sqlite":
                raise ConfigurationError(
                    f"{owner}: SQLite has no passwords; remove password=", key="password"
                )
            if sa_url.password is not None:
                raise ConfigurationError(
                    f"{owner}: the URL has a password and password= is given too; keep it in one "
                    "place (remove it from the URL to use password=)",
                    key="password",
                )
            if hooks.static_password is not None:
                self._add_secrets({"password": hooks.static_password})
                sa_url = sa_url.set(password=hooks.static_password)
        connect_args = engine_options.get("connect_args")
        if connect_args is not None and not isinstance(connect_args, Mapping):
            raise ConfigurationError(
                f"connect_args must be a mapping such as {{'connect_timeout': 10}}, got a "
                f"{type(connect_args).__name__}",
                key="connect_args",
            )
        self._add_secrets(engine_options)  # connect_args={"password": ...} and the like
        kwargs = dict(engine_options)
        self.pgbouncer = bool(pgbouncer)
        if self.pgbouncer:
            kwargs["connect_args"] = pgbouncer_connect_args(
                sa_url, dict(kwargs.get("connect_args") or {}), owner
            )
        driver_args = connect_arguments(sa_url, self.connect_timeout, is_async=self._is_async)
        if driver_args:
            kwargs["connect_args"] = {**driver_args, **dict(kwargs.get("connect_args") or {})}
        kwargs["echo"] = echo
        # We validate idle connections ourselves (_install_idle_ping); SQLAlchemy's pre-ping
        # would cost a round trip on every checkout.
        kwargs["pool_pre_ping"] = False
        poolclass = kwargs.get("poolclass")
        if poolclass is None:
            # SQLAlchemy's default pool for every dialect we know, with a no-wait checkout
            # for health probes (_pool.py).
            poolclass = StructumAsyncQueuePool if self._is_async else StructumQueuePool
            kwargs["poolclass"] = poolclass
            if _is_memory_sqlite(sa_url):
                # Every connection to ":memory:" is a separate, empty database. One connection,
                # handed to one transaction at a time, makes the pool behave like a real server.
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
        if sa_url.get_driver_name() == "aiomysql":  # importable: the engine was created
            _fix_aiomysql_bytes()
        sync_engine: Engine = getattr(self._engine_any, "sync_engine", self._engine_any)
        self._sync_engine = sync_engine
        self.dialect_name: str = backend
        """``postgresql``, ``mysql``, ``mariadb``, ``sqlite``, ..."""
        # PyMySQL/aiomysql send an unknown type as its str(): parameters are checked first.
        self._mysql = backend in ("mysql", "mariadb")

        if pool_pre_ping:
            _install_idle_ping(sync_engine, idle, self._masked_url)
        # Whether every checkout is checked already (else _single_sync() checks its own).
        self._checkout_checked = bool(pool_pre_ping) and idle == 0
        event.listen(sync_engine, "reset", _restore_session)
        if backend == "sqlite" and engine_options.get("isolation_level") != "AUTOCOMMIT":
            _install_sqlite_transactions(sync_engine)
        if hooks.password is not None or hooks.configure is not None:
            install_connection_hooks(
                sync_engine,
                hooks,
                is_async=self._is_async,
                password_key=(
                    _password_key(sync_engine.dialect, sa_url) if hooks.password else "password"
                ),
            )
        install_create_timing(sync_engine, self._metric_attrs)
        # Connections handed to callers: what a pool without its own count reports as checked
        # out, and (with max_waiting) what tells a caller who must wait from one being served.
        self._counter = (
            _CheckoutCounter(sync_engine)
            if self.max_waiting or not isinstance(sync_engine.pool, QueuePool)
            else None
        )
        self._admission = threading.Lock()
        self._paramstyle: Any = sync_engine.dialect.paramstyle
        if backend in ("mysql", "mariadb") and self._paramstyle == "pyformat":
            # PyMySQL formats a dict with %: a missing key would be a bare KeyError. With %s and
            # a tuple arranged here, a missing key is a clear QueryError naming it.
            self._paramstyle = "format"
        # psycopg runs several ;-separated statements from one text when it has no parameters.
        self._multi_statement = backend == "postgresql"
        # db.fetchone()/fetchall()/execute() outside a transaction: one statement in autocommit,
        # one round trip, where switching autocommit sends nothing (PostgreSQL over psycopg).
        # Elsewhere they run as a transaction(): MariaDB's autocommit switch is a round trip of
        # its own each way (SET autocommit), and SQLite has no round trips to save.
        self._single_autocommit = (
            backend == "postgresql" and sync_engine.dialect.driver in _CLIENT_SIDE_AUTOCOMMIT
        )
        # Every DBAPI connection the pool opened (added once per connect): what a forked child
        # must never use or close.
        connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._connections = connections

        def remember(dbapi_connection: Any, record: Any) -> None:
            # (a driver whose connections take no weak reference is simply not remembered)
            with contextlib.suppress(TypeError):
                connections.add(dbapi_connection)

        event.listen(sync_engine, "connect", remember)
        self._acquiring: deque[None] = deque()
        if replicas and backend != "postgresql":
            raise ConfigurationError(
                f"{owner}: replicas are supported on PostgreSQL only (their lag is measured "
                f"from the WAL position), not on {backend}",
                key="replicas",
            )
        self._init_replicas(replicas, max_replica_lag, replica_check_interval, settings)
        # Connections handed out by transaction()/get_connection(), oldest first, and when.
        self._held: dict[int, float] = {}
        self._held_keys = itertools.count()

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

    def _checked_session_class(self, value: Any) -> type[Any]:
        return session_class_for(value, is_async=self._is_async, owner=type(self).__name__)

    # -- pool ---------------------------------------------------------------------------------
    def _checkout_sync(self, begin: bool) -> Connection:
        """Check out a connection from the sync engine and begin its transaction if ``begin``."""
        conn = self._sync_engine.connect()
        if begin:
            try:
                conn.begin()
            except BaseException:
                conn.close()
                raise
        return conn

    def _single_sync(self, sql: str, params: Params, fetch: int) -> Any:
        """One statement on a pooled connection in autocommit: an implicit transaction, one trip.

        The body of both twins' ``fetchone()``/``fetchall()``/``execute()`` outside a
        ``transaction()`` (the async twin runs it whole in one greenlet). Only for drivers whose
        autocommit switch sends nothing (``_single_autocommit``): the statement goes alone, the
        server commits it, and the switch back before the connection returns to the pool is
        client-side too.

        ``fetch``: 0 the rowcount, 1 the first row, 2 every row.
        """
        check_statement(sql, True)  # a NUL is refused; a COMMIT is harmless here, a BEGIN undone
        statement, args = self._prepare(sql, params)
        started = time.perf_counter() if self._observed else 0.0  # pool metrics
        self._enter_checkout()
        try:
            conn = self._sync_engine.connect()
            if not self._checkout_checked:
                conn = self._alive(conn)
        except Exception as exc:
            raise self._translate(exc, connecting=True) from error_cause(exc)
        finally:
            self._exit_checkout()
        if started:
            started = record_wait(self, started)
        switched = False
        deadline = None
        try:
            dbapi = conn.connection.dbapi_connection
            if self.transaction_timeout is not None:  # the same client-side bound as transaction()
                deadline = self._arm_socket(dbapi, self.transaction_timeout)
            dbapi.autocommit = True  # type: ignore[union-attr]
            switched = True
            try:
                result = SQLAlchemyResult(conn.exec_driver_sql(statement, args))
            except sa_exc.SQLAlchemyError as exc:
                # The statement is its own COMMIT: lost in flight, it may have run.
                raise self._translate(
                    exc, committing=_AUTOCOMMIT_STATEMENT, deadline=deadline
                ) from error_cause(exc)
            except UnicodeError as exc:  # raised before anything is sent
                raise unencodable_error(exc) from exc
            if fetch == 0:
                return result.rowcount
            return result.fetchone() if fetch == 1 else result.fetchall()
        except sa_exc.SQLAlchemyError as exc:  # the autocommit switch (a closed connection)
            raise self._translate(exc) from error_cause(exc)
        finally:
            if deadline is not None and deadline.cancel():
                conn.invalidate()  # the deadline broke its socket: never reused
            try:
                # Ends SQLAlchemy's (autobegun) transaction: the driver sends a ROLLBACK only if
                # the statement left one open (a BEGIN).
                conn.rollback()
                if switched:
                    dbapi.autocommit = False  # type: ignore[union-attr]
            except Exception as exc:
                # A connection that cannot be reset must not serve anyone else.
                logger.info("discarding a connection that could not be reset: %s", exc)
                conn.invalidate()
            conn.close()
            if started:
                record_use(self._metric_attrs, time.perf_counter() - started)

    def _alive(self, conn: Connection) -> Connection:
        """``conn``, or a replacement when the server already hung up on it (no round trip).

        For ``_single_sync()`` when the checkout itself did not check (``pool_pre_ping=False``
        or inside ``pre_ping_idle_seconds``): a statement in autocommit cannot be run again once
        sent, so this is the only moment to find a dead connection.
        """
        for _ in range(self._pool_size + max(self._max_overflow, 0) + 1):
            if looks_dead(conn.connection.dbapi_connection) is not True:
                return conn
            logger.info("replacing a dead pooled connection of %s", self._masked_url)
            conn.invalidate()
            conn.close()
            conn = self._sync_engine.connect()
        return conn

    def _after_fork(self) -> None:
        """In a forked child: a new pool (``engine.dispose(close=False)``, SQLAlchemy's recipe).

        The parent's connections, idle or checked out, are kept referenced until exit (closing
        one would roll back or say goodbye on a socket the parent uses), and this process's
        copies of their sockets are swapped for ``/dev/null`` so a stray use fails here.
        """
        super()._after_fork()
        inherited = list(self._connections)
        keep_inherited(self._sync_engine.pool, *inherited)
        for dbapi_connection in inherited:
            fd = socket_fd(dbapi_connection)
            if fd is not None:
                blind_socket(fd)
        self._connections.clear()
        self._sync_engine.dispose(close=False)
        if self._counter is not None:
            self._counter.reset()
        self._acquiring = deque()
        self._held = {}
        self._admission = threading.Lock()  # another thread of the parent may have held it

    def get_pool_info(self) -> PoolInfo:
        """Pool statistics.

        Returns:
            ``checked_out`` (in use), ``leaked`` (checked out longer than
            ``leak_detection_threshold``), ``available`` (open and idle), ``total`` (open),
            ``overflow`` (open beyond ``size``), ``max`` (most connections the pool will open;
            None when unlimited), ``size`` (``pool_size``) and ``waiting`` (callers blocked
            for a connection).
        """
        return self._replica_info(self._pool_info(0))

    def _pool_info(self, arriving: int) -> PoolInfo:
        """``get_pool_info()``, counting ``arriving`` more callers in checkout (0 or 1)."""
        pool = self._sync_engine.pool
        counter = self._counter
        if isinstance(pool, QueuePool):
            idle = pool.checkedin()
            out = pool.checkedout()  # includes connections being opened for a caller
            size = pool.size()
            limit: int | None = size + self._max_overflow if self._max_overflow >= 0 else None
        else:
            out = counter.value if counter is not None else 0
            idle = 1 if isinstance(pool, StaticPool) and out == 0 else 0
            size = 1 if isinstance(pool, StaticPool) else 0
            limit = 1 if isinstance(pool, StaticPool) else None
        total = idle + out
        acquiring = len(self._acquiring) + arriving
        # A caller in checkout is waiting only if no idle connection or free slot can serve it;
        # a slot whose connection is being opened serves one of them (counted by ``counter``).
        held = counter.value if counter is not None else out
        room = limit - held if limit is not None else acquiring
        return {
            "checked_out": out,
            "leaked": self._checkouts.leaked,
            "available": idle,
            "total": total,
            "overflow": max(0, total - size),
            "max": limit,
            "size": size,
            "waiting": max(0, acquiring - max(room, 0)),
        }

    def _enter_checkout(self) -> None:
        """Count the caller as in checkout; beyond ``max_waiting`` waiters fail it at once.

        QueuePool has no such limit, so it is kept here, around every checkout of this object
        (``_exit_checkout()`` must follow). psycopg_pool's ``max_waiting`` has the same meaning.

        Raises:
            PoolOverloadedError: ``max_waiting`` callers already wait and this one would too.
        """
        if not self.max_waiting:
            self._acquiring.append(None)
            return
        with self._admission:  # the check and the count as one step, across threads
            info = self._pool_info(1)
            if info["waiting"] > self.max_waiting:
                info["waiting"] -= 1  # the snapshot shows who waits, not this caller
                raise self._overloaded_error(info, cls=PoolOverloadedError)
            self._acquiring.append(None)

    def _exit_checkout(self) -> None:
        self._acquiring.pop()

    # -- statements ---------------------------------------------------------------------------
    def _prepare(self, sql: str, params: Params) -> tuple[str, Any]:
        """Convert ``:name`` placeholders to the driver's style and arrange ``params``.

        A mapping (or None) means ``:name`` placeholders, read by the lexical rules of
        ``dialect_name``; a sequence is handed to the driver as is, for its native positional
        placeholders.

        Raises:
            QueryError: A placeholder has no value, ``sql`` is not a str, or (MySQL/MariaDB) a
                value the driver would store as its ``str()``.
        """
        self._check_sql(sql)
        statement, args = self._arrange(sql, params)
        if self._mysql and args:
            args = _mysql_args(args)
        return statement, args

    def _check_sql(self, sql: object) -> None:
        if type(sql) is not str:
            raise self._statement_type_error(sql)

    def _arrange(self, sql: str, params: Params) -> tuple[str, Any]:
        if params is None or isinstance(params, Mapping):
            converted = convert_named(sql, self._paramstyle, self.dialect_name)
            mapping = params or {}
            if converted.positional:
                try:
                    return converted.sql, tuple(adapt_params(converted, mapping))
                except KeyError as exc:
                    raise _missing_param(exc.args[0]) from None
            return converted.sql, (mapping if isinstance(mapping, dict) else dict(mapping))
        if isinstance(params, (str, bytes)):
            raise QueryError("params must be a mapping (for :name) or a sequence, not a string")
        return sql, tuple(params)

    def _prepare_many(self, sql: str, params_seq: Iterable[Params]) -> tuple[str, list[Any]]:
        self._check_sql(sql)
        statement, rows = self._arrange_many(sql, params_seq)
        if self._mysql:
            rows = [_mysql_args(row) if row else row for row in rows]
        return statement, rows

    def _arrange_many(self, sql: str, params_seq: Iterable[Params]) -> tuple[str, list[Any]]:
        batch = list(params_seq)
        if not batch:
            return sql, []
        if all(p is None or isinstance(p, Mapping) for p in batch):
            converted = convert_named(sql, self._paramstyle, self.dialect_name)
            if converted.positional:
                try:
                    return converted.sql, [tuple(adapt_params(converted, p or {})) for p in batch]
                except KeyError as exc:
                    raise _missing_param(exc.args[0]) from None
            return converted.sql, [p if isinstance(p, dict) else dict(p or {}) for p in batch]
        return sql, [tuple(p) for p in batch if isinstance(p, Sequence)]

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

    def _readonly_back_to_default(self, sa: Any) -> None:
        """After a READ ONLY transaction, give the connection back with the server's default.

        SQLAlchemy resets ``postgresql_readonly`` to False, which makes psycopg begin every
        later transaction with ``BEGIN READ WRITE``: a hot standby refuses that, so a database
        opened on a replica would fail every transaction after its first read-only one on that
        connection. Psycopg's ``None`` sends a plain ``BEGIN``. This runs after SQLAlchemy's own
        reset (its checkin callbacks run last-added first).
        """
        fairy = getattr(sa, "sync_connection", sa).connection
        dialect: Any = self._sync_engine.dialect
        fairy._connection_record.finalize_callback.appendleft(
            lambda dbapi_connection: dialect.set_readonly(dbapi_connection, None)
        )

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

    def _oldest_held(self) -> float | None:
        """Seconds the longest-held connection of this database has been checked out."""
        try:
            taken_at = next(iter(self._held.values()))
        except (StopIteration, RuntimeError):  # none, or changed by another thread meanwhile
            return None
        return time.monotonic() - taken_at

    def _arm_socket(self, dbapi_connection: Any, seconds: float) -> Any:
        """The client-side deadline of a transaction on ``dbapi_connection`` (see core).

        Breaks the connection's socket when it fires; SQLite, which has none, is interrupted.
        """
        fd = socket_fd(dbapi_connection)
        interrupt = None
        if fd is None:
            driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
            driver = getattr(driver, "_conn", None) or driver  # aiosqlite's sqlite3 connection
            interrupt = getattr(driver, "interrupt", None)
        return arm(seconds, fd=fd, interrupt=interrupt)

    # -- health -------------------------------------------------------------------------------
    def _probe_pooled(self) -> float | None:
        """Ping an idle pooled connection: the first half of both ``_probe()``.

        Plain blocking code on the sync engine and its pool's DBAPI connection (no ``Connection``
        object: a ping needs no transaction bookkeeping); the async twin runs it whole inside one
        ``greenlet_spawn``.

        Returns:
            The ping's round trip in seconds; None when no connection is idle now (every one
            busy, or none open yet) or the idle one was dead: ``_probe_alone()`` decides then.
        """
        pool = self._sync_engine.pool
        try:
            if is_structum_pool(pool):
                with checkout_now():
                    pooled = self._sync_engine.raw_connection()
            elif isinstance(pool, QueuePool) and pool.checkedin() == 0:
                return None  # another pool class: an idle connection or none, best effort
            else:
                pooled = self._sync_engine.raw_connection()
        except sa_exc.TimeoutError:
            return None
        except Exception as exc:
            raise self._translate(exc, connecting=True) from error_cause(exc)
        # A server process that stopped answering must not hold the probe: past half its time
        # the watchdog shuts the socket down, and a connection of its own decides.
        fd = socket_fd(pooled.dbapi_connection)
        guard = arm(ping_budget(self.health_timeout), fd=fd) if fd is not None else None
        try:
            # The dialect's ping: one round trip, no transaction (psycopg sends an empty query).
            start = time.perf_counter()
            ping_ok(self._sync_engine.dialect, pooled.dbapi_connection)
            return time.perf_counter() - start
        except Exception as exc:
            # Dead while idle: the probe goes on with a connection of its own.
            logger.info(
                "a pooled connection to %s failed its ping: %s", self.url, type(exc).__name__
            )
            pooled.invalidate()
            return None
        finally:
            if guard is not None:
                guard.cancel()
            pooled.close()

    def _probe_alone(self, gave_up: threading.Event | None = None) -> float:
        """Open a connection like the pool does (hooks, password) and ping it.

        The connection then joins the pool if it has room (a cold pool is warm afterwards, and
        the next probe costs one round trip); otherwise (every connection busy) it is closed.

        Args:
            gave_up: Set once the caller stopped waiting (the sync twin runs this on a thread
                it abandons at the deadline): the connection is closed then, never pooled.

        Raises:
            DatabaseUnavailableError: The server cannot be reached or did not answer the ping.
        """
        pool = self._sync_engine.pool
        try:
            record = pool._create_connection()
        except Exception as exc:
            raise self._translate(exc, connecting=True) from error_cause(exc)
        try:
            start = time.perf_counter()
            ping_ok(self._sync_engine.dialect, record.dbapi_connection)
            taken = time.perf_counter() - start
        except Exception as exc:
            record.close()
            raise self._unavailable_error(exc) from exc
        # Not once the caller gave up (it may shut the database down meanwhile), nor after
        # shutdown (engine.dispose() replaced the pool).
        current = (
            (gave_up is None or not gave_up.is_set())
            and not self._closed
            and pool is self._sync_engine.pool
        )
        if current and is_structum_pool(pool) and pool._inc_overflow():  # type: ignore[attr-defined]
            # Counted like a connection the pool opened itself; QueuePool closes it on return
            # when its queue is full (and uncounts it).
            pool._do_return_conn(record)
        else:
            record.close()
        return taken

    def _probe_timeout_error(self) -> DatabaseUnavailableError:
        return DatabaseUnavailableError(
            f"no connection to {self._masked_url!r} within "
            f"health_timeout={self.health_timeout:g}s (the server accepts no connections or "
            "does not answer)"
        )

    # -- errors -------------------------------------------------------------------------------
    def _translate(
        self,
        exc: BaseException,
        *,
        connecting: bool = False,
        committing: bool | str = False,
        deadline: Any = None,
    ) -> Exception:
        """Turn a SQLAlchemy/driver exception into the Structum error for it.

        ``committing``: ``exc`` came from a COMMIT that was sent (or, when it is a string, from
        what it names, such as a statement in autocommit), so a lost connection means the
        outcome is unknown (``CommitOutcomeUnknownError``) rather than "rolled back".
        ``deadline``: the transaction's client-side deadline; if it fired, the connection was
        broken by it and the error is ``StatementTimeoutError``.
        """
        if isinstance(exc, DatabaseError):
            return exc
        if isinstance(exc, sa_exc.TimeoutError):
            return self._pool_timeout_error(
                self._pool_timeout,
                self.get_pool_info(),
                cls=PoolTimeoutError,
                oldest_held=self._oldest_held(),
            )
        orig = error_cause(exc)
        if deadline is not None and deadline.fired:
            return self._deadline_error(deadline.seconds, orig, committing=bool(committing))
        if connecting:
            return self._unavailable_error(orig)
        if isinstance(exc, sa_exc.DBAPIError):
            if exc.connection_invalidated:
                return self._lost_error(orig, committing)
            sqlstate, cls = classify_error(orig)
            if sqlstate and (sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_STATES):
                return self._lost_error(orig, committing)
            if cls is None and sqlstate is None and isinstance(exc, sa_exc.IntegrityError):
                cls = IntegrityError
            return self._query_error(orig, sqlstate, cls)
        if isinstance(exc, sa_exc.PendingRollbackError):
            return DatabaseUnavailableError(
                f"the connection to {self._masked_url!r} was lost in this transaction; "
                f"roll back and retry: {self._redact(str(exc)).splitlines()[0]}"
            )
        return self._query_error(orig, None)

    def _lost_error(self, exc: BaseException, committing: bool | str) -> DatabaseUnavailableError:
        if not committing:
            return self._unavailable_error(exc)
        during = committing if isinstance(committing, str) else "COMMIT"
        return self._commit_unknown_error(exc, during=during)
