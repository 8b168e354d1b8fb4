"""What ``PostgresDatabase`` and ``AsyncPostgresDatabase`` share: settings, state and checks.

psycopg_pool keeps the logic of its sync and async pools in one place; so do we: everything that
does not wait on the network lives here once (settings, URL checks, idle validation policy, error
translation, pool statistics). The twins (``_async.py``, the source, and the generated
``_sync.py``) only sequence the I/O calls. Parameter conversion is in ``_queries.py``, transaction
options in ``_transactions.py``.
"""

from __future__ import annotations

import logging
import math
import re
import time
import weakref
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool.base import AttemptWithBackoff, BasePool

from structum_lab.plugins.database._checkouts import blind_socket, keep_inherited
from structum_lab.plugins.database._hooks import ConfigureHook, ConnectionHooks, PasswordSource
from structum_lab.plugins.database._observe import connection_created
from structum_lab.plugins.database._replicas import DEFAULT_CHECK_INTERVAL, DEFAULT_MAX_LAG
from structum_lab.plugins.database._retry import DEFAULT_POLICY
from structum_lab.plugins.database._state import DEFAULT_HEALTH_TIMEOUT, seconds_or_none
from structum_lab.plugins.database.base import DatabaseState
from structum_lab.plugins.database.errors import (
    ConfigurationError,
    DatabaseClosedError,
    DatabaseError,
    DatabaseUnavailableError,
    QueryError,
)
from structum_lab.plugins.database.health import HealthThresholds
from structum_lab.plugins.database.interfaces import PoolInfo
from structum_lab.plugins.database.secrets import MaskingFilter, mask_url, redact, url_secrets
from structum_lab.plugins.database.settings import check_bounds

__all__ = [
    "BAD",
    "IDLE",
    "INERROR",
    "INTRANS",
    "PUBLIC_MODULE",
    "TUPLES_OK",
    "ConnectFailed",
    "ConnectMonitor",
    "PostgresCommon",
    "ReconnectAttempt",
    "logger",
    "normalize_url",
]


PUBLIC_MODULE = "structum_lab.plugins.database.postgres"

#: Seconds a new connection may take before the attempt fails (``connect_timeout``).
DEFAULT_CONNECT_TIMEOUT = 5.0

logger = logging.getLogger("structum_lab.plugins.database.postgres")

BAD = ConnStatus.BAD
IDLE = TransactionStatus.IDLE
INERROR = TransactionStatus.INERROR
TUPLES_OK = ExecStatus.TUPLES_OK
INTRANS = TransactionStatus.INTRANS


class ConnectFailed(Exception):
    """Handed to the pool's waiting callers when connecting failed and nobody holds a connection.

    Nothing will come back to the pool, so they stop waiting; ``cause`` says why.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__("connecting failed")
        self.cause = cause


class ConnectMonitor:
    """Remembers whether the pool's latest connection attempt failed, and why.

    The pool connects in background workers; when a caller's wait for a connection times out this
    tells a database that cannot be reached (``DatabaseUnavailableError``) from an exhausted pool
    (``PoolTimeoutError``).
    """

    __slots__ = ("last_error", "metric_attrs")

    def __init__(self, metric_attrs: dict[str, Any] | None = None) -> None:
        self.last_error: BaseException | None = None
        self.metric_attrs = metric_attrs

    def ok(self, started: float) -> None:
        """A connection attempt begun at ``started`` (``perf_counter()``) succeeded."""
        self.last_error = None
        connection_created(self.metric_attrs, started)

    def failed(self, exc: BaseException) -> None:
        self.last_error = exc


class ReconnectAttempt(AttemptWithBackoff):
    """psycopg_pool's reconnect schedule, with short pauses: 0.1 s doubling up to 0.5 s.

    psycopg_pool waits 1 s after a failed connect, then 2, 4, 8 ... (up to ``reconnect_timeout``)
    before trying again, and callers wait for that attempt: after an outage of 12 to 20 s the
    first transaction came 2.6 to 14 s after the server was back. With these pauses it comes
    within 0.5 s (plus the connect). A refused connect costs the server nothing; the pool's
    workers try each missing connection twice a second at most (with psycopg_pool's 10 % jitter,
    so many clients do not knock in step).
    """

    INITIAL_DELAY = 0.1
    MAX_DELAY = 0.5

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self._jitter(self.MAX_DELAY))

    @staticmethod
    def _jitter(value: float) -> float:
        return BasePool._jitter(value, -AttemptWithBackoff.DELAY_JITTER, 0.0)


# psycopg_pool logs each failed connection attempt with libpq's text, which can quote a piece of
# a password that a mistyped URL turned into a host name.
logging.getLogger("psycopg.pool").addFilter(MaskingFilter())

_QUOTED_PIECE = re.compile(r'"[\s\S]*"')


def _unquoted_pieces(message: str) -> str:
    """The text of a libpq parse error with the pieces it quotes masked (maybe a password's).

    'missing "=" after "b c" in connection info string' keeps its "=" and loses "b c"; the
    quoted piece may itself hold quotes, so everything from its opening to the last quote goes.
    """
    return _QUOTED_PIECE.sub('"***"', message.replace('"="', "\0")).replace("\0", '"="')


def normalize_url(url: str, owner: str) -> tuple[str, dict[str, Any]]:
    """Return a libpq conninfo for ``url`` and its parsed parameters.

    Accepts ``postgresql://``, ``postgres://``, SQLAlchemy-style ``postgresql+driver://`` (the
    driver part is dropped) and libpq keyword strings (``host=... dbname=...``).

    Raises:
        ConfigurationError: Another database's URL, or one libpq cannot parse.
    """
    if not isinstance(url, str) or not url.strip():
        got = "an empty string" if isinstance(url, str) else f"a {type(url).__name__}"
        raise ConfigurationError(f"{owner} needs a PostgreSQL URL string, got {got}", key="url")
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if sep:
        base = scheme.split("+", 1)[0].lower()
        if base not in ("postgresql", "postgres"):
            raise ConfigurationError(
                f"{owner} talks to PostgreSQL only and needs a postgresql:// URL, got "
                f"{mask_url(text)!r}; for other databases use SQLAlchemyDatabase "
                '(pip install "structum-database[sqlalchemy]")',
                key="url",
            )
        text = f"postgresql://{rest}"
    try:
        params = conninfo_to_dict(text)
    except psycopg.Error as exc:
        failure = str(exc)
    else:
        return text, params
    # Raised outside the except block: libpq's error (and the ones it chains) quote pieces of
    # the URL, so no link to them is kept, not even as __context__.
    reason = redact(_unquoted_pieces(failure), url_secrets(text)).strip()
    raise ConfigurationError(
        f"{owner}: invalid PostgreSQL URL {mask_url(text)!r}: {reason}; percent-encode "
        "special characters of a password in a URL (urllib.parse.quote(password, safe='')) "
        "or quote it in a keyword string (password='...')",
        key="url",
    )


class PostgresCommon(DatabaseState):
    """Settings and checks of both PostgreSQL twins (the pool itself is made by each twin).

    See :class:`PostgresDatabase` for the meaning of every argument.
    """

    backend_name = "postgresql (psycopg)"

    # Keys of a shared database.toml written for SQLAlchemyDatabase, understood under our names.
    config_aliases: ClassVar[dict[str, str]] = {
        "pool_timeout": "timeout",
        "pool_recycle": "max_lifetime",
    }

    _pool: BasePool
    _is_async: ClassVar[bool] = False

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        min_size: int = 2,
        max_size: int | None = None,
        max_overflow: int = 0,
        timeout: float = 5.0,
        max_lifetime: float = 3600.0,
        max_idle: float = 600.0,
        check_idle_seconds: float = 0.0,
        pool_pre_ping: bool = True,
        prepare_threshold: int | None = 5,
        pgbouncer: bool = False,
        application_name: str | None = "structum",
        statement_timeout: float | None = None,
        connect_args: Mapping[str, Any] | None = None,
        echo: bool = False,
        open: bool = True,
        pool_use_lifo: bool = False,
        name: str | None = None,
        health_thresholds: HealthThresholds | Mapping[str, float] | None = None,
        max_waiting: int = 0,
        retries: int = DEFAULT_POLICY.retries,
        retry_backoff: float = DEFAULT_POLICY.backoff,
        retry_max_backoff: float = DEFAULT_POLICY.max_backoff,
        retry_timeout: float = DEFAULT_POLICY.timeout,
        configure: ConfigureHook | str | None = None,
        password: PasswordSource | None = None,
        leak_detection_threshold: float | None = None,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        transaction_timeout: float | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        replicas: Sequence[str] | None = None,
        max_replica_lag: float = DEFAULT_MAX_LAG,
        replica_check_interval: float = DEFAULT_CHECK_INTERVAL,
        slow_transaction_threshold: float | None = None,
    ) -> None:
        settings = dict(locals())  # what each replica is built with (see _init_replicas)
        owner = type(self).__name__
        conninfo, url_params = normalize_url(url, owner)
        if password is not None and "password" in url_params:
            raise ConfigurationError(
                f"{owner}: the URL has a password and password= is given too; keep it in one "
                "place (remove it from the URL to use password=)",
                key="password",
            )
        self._hooks = ConnectionHooks(
            configure=configure, password=password, owner=owner, is_async=self._is_async
        )
        # A Mapping of thresholds is checked by the core (unknown keys, ranges).
        super().__init__(
            url,
            name=name,
            health_thresholds=health_thresholds,
            max_waiting=max_waiting,
            retries=retries,
            retry_backoff=retry_backoff,
            retry_max_backoff=retry_max_backoff,
            retry_timeout=retry_timeout,
            leak_detection_threshold=leak_detection_threshold,
            health_timeout=health_timeout,
            transaction_timeout=transaction_timeout,
            slow_transaction_threshold=slow_transaction_threshold,
        )
        self.connect_timeout = seconds_or_none(owner, "connect_timeout", connect_timeout)
        if connect_args is not None and not isinstance(connect_args, Mapping):
            raise ConfigurationError(
                f"{owner}: connect_args must be a mapping such as {{'connect_timeout': 10}}, "
                f"got a {type(connect_args).__name__}",
                key="connect_args",
            )
        self._add_secrets(connect_args)
        numbers = {
            "pool_size": pool_size,
            "min_size": min_size,
            "max_size": max_size,
            "max_overflow": max_overflow,
            "timeout": timeout,
            "max_lifetime": max_lifetime,
            "max_idle": max_idle,
            "check_idle_seconds": check_idle_seconds,
            "prepare_threshold": prepare_threshold,
            "statement_timeout": statement_timeout,
        }
        for key, value in numbers.items():
            if value is None and key in ("max_size", "prepare_threshold", "statement_timeout"):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigurationError(
                    f"{owner}: {key} must be a number, got a {type(value).__name__}", key=key
                )
            check_bounds(owner, key, value)

        def bad(key: str, must: str, value: Any) -> ConfigurationError:
            return ConfigurationError(f"{owner}: {key} must be {must}, got {value!r}", key=key)

        if pool_size < 1:
            raise bad("pool_size", "at least 1", pool_size)
        if max_overflow < 0:
            raise bad("max_overflow", "0 or more", max_overflow)
        if max_size is None:
            max_size = pool_size + max_overflow
        if max_size < 1:
            raise bad("max_size", "at least 1", max_size)
        if min_size < 0:
            raise bad("min_size", "0 or more", min_size)
        if timeout <= 0:
            raise bad("timeout", "a number of seconds > 0", timeout)
        if check_idle_seconds < 0:
            raise bad("check_idle_seconds", "0 or more seconds", check_idle_seconds)
        if max_idle <= 0:
            raise bad("max_idle", "a number of seconds > 0", max_idle)
        if prepare_threshold is not None and prepare_threshold < 0:
            raise bad("prepare_threshold", "0 or more, or None to never prepare", prepare_threshold)
        if statement_timeout is not None and statement_timeout <= 0:
            raise bad("statement_timeout", "a number of seconds > 0, or None", statement_timeout)
        if pgbouncer and statement_timeout is not None:
            raise ConfigurationError(
                f"{owner}: statement_timeout is a session setting, which PgBouncer in transaction "
                "mode does not keep; set it on the role (ALTER ROLE ... SET statement_timeout) or "
                "per transaction with transaction(timeout=...)",
                key="statement_timeout",
            )

        self.pool_size = pool_size
        # min_size never exceeds the maximum (a pool_size=1 database keeps the default min_size).
        self.min_size = min(min_size, max_size)
        self.max_size = max_size
        self.timeout = float(timeout)
        # SQLAlchemy's pool_recycle=-1 means "never"; psycopg_pool wants a positive lifetime.
        self.max_lifetime = float(max_lifetime) if max_lifetime > 0 else float("inf")
        self.max_idle = float(max_idle)
        self.check_idle_seconds = float(check_idle_seconds)
        self.pool_pre_ping = bool(pool_pre_ping)
        self.pgbouncer = bool(pgbouncer)
        self.prepare_threshold = None if pgbouncer else prepare_threshold
        self.echo = bool(echo)
        if self.echo and logger.level == logging.NOTSET:
            logger.setLevel(logging.DEBUG)
        if pool_use_lifo:
            logger.debug(
                "%s: pool_use_lifo is a SQLAlchemy pool setting; psycopg_pool shrinks unused "
                "connections itself (max_idle) and ignores it",
                owner,
            )

        kwargs: dict[str, Any] = dict(connect_args or {})
        if self._hooks.static_password is not None:
            kwargs["password"] = self._hooks.static_password
            self._add_secrets({"password": self._hooks.static_password})
        kwargs["autocommit"] = False
        kwargs["row_factory"] = dict_row
        kwargs["prepare_threshold"] = self.prepare_threshold
        if application_name and "application_name" not in url_params:
            kwargs.setdefault("application_name", application_name)
        if "connect_timeout" not in url_params and self.connect_timeout is not None:
            # libpq waits forever for an unresponsive host by default; the pool's workers must
            # not. libpq counts whole seconds, 2 at least.
            kwargs.setdefault("connect_timeout", max(2, math.ceil(self.connect_timeout)))
        if statement_timeout is not None:
            ms = max(1, round(statement_timeout * 1000))
            existing = str(kwargs.get("options", url_params.get("options", "")))
            kwargs["options"] = f"{existing} -c statement_timeout={ms}".strip()
        self._conninfo = conninfo
        self._connect_kwargs = kwargs
        # How long a caller waits for a new connection when nobody holds one (see _checkout).
        seconds = kwargs.get("connect_timeout", url_params.get("connect_timeout"))
        try:
            seconds = max(2.0, float(seconds)) if seconds and float(seconds) > 0 else 130.0
        except (TypeError, ValueError):
            seconds = 130.0  # psycopg's own default
        self._connect_wait = seconds + 1.0

        self._monitor = ConnectMonitor(self._metric_attrs)
        # Raw connections currently checked out (set.add/discard are atomic under the GIL).
        self._out: set[Any] = set()
        # Every connection the pool opened (added once per connect): what a forked child drops.
        self._raws: weakref.WeakSet[Any] = weakref.WeakSet()
        # Connections idle since before this instant are validated even inside the idle window:
        # set when a connection is found dead, as a dead server kills every pooled connection.
        self._suspect_before = 0.0
        self._pool_open = False
        self._pool = self._create_pool(open_now=open)
        self._init_replicas(replicas, max_replica_lag, replica_check_interval, settings)

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _create_pool(self, *, open_now: bool) -> BasePool:
        """Build the twin's psycopg_pool pool (opening it now when ``open_now`` and possible)."""

    def _after_fork(self) -> None:
        """In a forked child: a new pool; the parent's connections are never used or closed.

        Closing them would send libpq's Terminate on sockets the parent still uses; they are
        kept referenced until exit instead, and this process's copies of their sockets are
        swapped for ``/dev/null`` so a stray use fails here rather than talking on the parent's
        session. The new pool opens on first use, in this process.
        """
        super()._after_fork()
        inherited = list(self._raws)
        keep_inherited(self._pool, *inherited)
        for raw in inherited:
            try:
                fd = raw.pgconn.socket
            except psycopg.Error:
                continue  # already closed: no socket to drop
            blind_socket(fd)
        self._raws = weakref.WeakSet()
        self._out = set()
        self._monitor = ConnectMonitor(self._metric_attrs)
        self._suspect_before = 0.0
        self._pool_open = False
        if not self._closed:
            self._pool = self._create_pool(open_now=False)

    def _pool_arguments(self, connection_class: type[Any]) -> dict[str, Any]:
        return {
            "conninfo": self._conninfo,
            "connection_class": connection_class,
            "kwargs": self._connect_kwargs,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "name": self.name,
            "timeout": self.timeout,
            "max_lifetime": self.max_lifetime,
            "max_idle": self.max_idle,
            "max_waiting": self.max_waiting,
        }

    # -- checks ------------------------------------------------------------------------------
    def _mark_suspect(self) -> None:
        self._suspect_before = time.monotonic()

    def _probe_connect_arguments(self, deadline: float) -> tuple[str, dict[str, Any]]:
        """Conninfo and keyword arguments of a health probe's own connection.

        The pool's own, with a ``connect_timeout`` no longer than what is left of the probe's
        time (libpq counts whole seconds, 2 at least; the caller stops waiting at ``deadline``
        anyway).
        """
        kwargs = dict(self._connect_kwargs)
        left = max(2, math.ceil(deadline - time.monotonic()))
        configured = kwargs.get("connect_timeout")
        if configured is None:
            configured = conninfo_to_dict(self._conninfo).get("connect_timeout")
        try:
            current = int(configured) if configured is not None else 0
        except (TypeError, ValueError):
            current = 0
        kwargs["connect_timeout"] = left if current <= 0 else min(current, left)
        return self._conninfo, kwargs

    def _probe_timeout_error(self) -> DatabaseUnavailableError:
        return DatabaseUnavailableError(
            f"no connection to {self.url!r} within health_timeout={self.health_timeout:g}s "
            "(the server accepts no connections or does not answer)"
        )

    def _acquire_error(self, exc: BaseException) -> tuple[DatabaseError, BaseException]:
        """Turn psycopg_pool's PoolTimeout into ours, or into "the database is unreachable".

        Returns:
            The error to raise and the exception to chain as its cause.
        """
        failure = self._monitor.last_error
        out = list(self._out)
        if not out:
            # Nothing is checked out: the pool is not exhausted, it cannot connect.
            return self._connect_failed_error(self.timeout, failure), failure or exc
        oldest = min(raw._structum_taken_at for raw in out)
        exhausted = self._pool_timeout_error(
            self.timeout, self.get_pool_info(), oldest_held=time.monotonic() - oldest
        )
        return exhausted, exc

    def _closed_pool_error(self) -> DatabaseClosedError:
        return DatabaseClosedError(
            f"the database {self.url!r} is shut down; create a new {type(self).__name__} "
            "to connect again"
        )

    def _translate(
        self, exc: BaseException, raw: Any, *, committing: bool | str = False
    ) -> DatabaseError:
        """Map a psycopg error to the core hierarchy (the caller chains ``exc`` as the cause).

        ``committing``: ``exc`` came from a COMMIT that was sent (or, when it is a string, from
        what it names: a statement that commits by itself), so a lost connection means the
        outcome is unknown (``CommitOutcomeUnknownError``) rather than "rolled back".
        """
        if isinstance(exc, DatabaseError):
            return exc
        sqlstate = getattr(exc, "sqlstate", None)
        lost = raw is not None and (raw.closed or raw.broken)
        if lost:
            deadline = getattr(raw, "_structum_deadline", None)  # (not ours: a plain one)
            if deadline is not None and deadline.fired:
                # Our own deadline broke the connection: the server did not answer in time.
                return self._deadline_error(deadline.seconds, exc, committing=bool(committing))
        if lost or (
            sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _GONE_SQLSTATES)
        ):
            self._mark_suspect()
            if not committing:
                return self._unavailable_error(exc)
            during = committing if isinstance(committing, str) else "COMMIT"
            return self._commit_unknown_error(exc, during=during)
        if isinstance(exc, psycopg.errors.PipelineAborted):
            return self._aborted_error()
        return self._query_error(exc, sqlstate)

    @staticmethod
    def _lost(exc: BaseException, raw: Any) -> bool:
        """True when ``exc`` says the server side is gone (closed, or the server ended it).

        False when our own deadline closed the connection: the server was slow, not gone, and
        the statement must not be run again.
        """
        if raw is not None and (raw.closed or raw.broken):
            deadline = getattr(raw, "_structum_deadline", None)  # (not ours: a plain one)
            return deadline is None or not deadline.fired
        sqlstate = getattr(exc, "sqlstate", None)
        return sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _GONE_SQLSTATES)

    def _aborted_error(self) -> QueryError:
        return QueryError(
            "the transaction was aborted by an earlier error and has been rolled back; "
            "catch errors inside a nested transaction() (a savepoint) to carry on after them",
            sqlstate="25P02",
        )

    def _log_statement(self, sql: Any, params: Any) -> None:
        logger.debug("%s %r", sql, params)

    # -- statistics --------------------------------------------------------------------------
    def get_pool_info(self) -> PoolInfo:
        """Pool statistics.

        Returns:
            ``checked_out`` (held by callers), ``available`` (idle in the pool), ``total`` (open
            or being opened), ``overflow`` (connections beyond ``pool_size``), ``max``, ``min``,
            ``waiting`` (callers waiting for a connection), and ``stats``: psycopg_pool's own
            ``get_stats()`` counters (``requests_num``, ``connections_errors``, ...).
        """
        stats = self._pool.get_stats()
        total = stats.get("pool_size", 0) if self._pool_open and not self._closed else 0
        return self._replica_info(
            {
                "checked_out": len(self._out),
                "leaked": self._checkouts.leaked,
                "available": stats.get("pool_available", 0),
                "total": total,
                "overflow": max(0, total - self.pool_size),
                "max": self.max_size,
                "min": self.min_size,
                "waiting": self._waiting(stats),
                "stats": stats,
            }
        )

    def _waiting(self, stats: dict[str, int]) -> int:
        """Callers waiting now: psycopg_pool's ``requests_waiting`` without the ones that gave up.

        psycopg_pool leaves a caller whose wait timed out (or was cancelled) in its queue until
        a connection comes back, so its figure stays up after a ``PoolTimeoutError``.
        """
        queue = getattr(self._pool, "_waiting", None)
        if queue is None:  # not psycopg_pool's layout: its own figure
            return stats.get("requests_waiting", 0)
        return sum(1 for w in list(queue) if w.conn is None and w.error is None)


# Operator intervention: the server is shutting down or terminated the backend (57P05: it ended
# an idle session, idle_session_timeout).
_GONE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05"})


def autocommit_idle(raw: Any, value: bool) -> None:
    """Switch psycopg's autocommit on a connection known to be idle and outside a pipeline.

    psycopg's ``set_autocommit()`` takes the connection's lock and runs a generator through its
    wait loop to check that no transaction is open, only to set a flag: nothing is sent. The
    backend switches a connection fresh from the pool (idle) and back before returning it
    (where psycopg_pool itself rolls back anything left open), so the flag alone is set: a few
    thousand client instructions fewer, twice per pipelined transaction, transaction with
    options or single-statement call.
    """
    raw._autocommit = value


def queue_command(raw: Any, command: bytes) -> None:
    """Queue ``command`` (BEGIN, SET LOCAL, COMMIT) in ``raw``'s open pipeline, no cursor.

    psycopg's own route for its BEGIN and COMMIT (``_exec_command``): inside a pipeline it only
    appends the command to the queue (its result is checked when the pipeline syncs), and
    returns before waiting for anything. A cursor's ``execute()`` would cost some fifteen
    Python calls and a cursor per command.

    Raises:
        psycopg.OperationalError: The connection is closed.
    """
    if raw._pipeline is None:  # never waits: only valid inside a pipeline
        raise psycopg.ProgrammingError("queue_command() needs an open pipeline")
    next(raw._exec_command(command), None)
