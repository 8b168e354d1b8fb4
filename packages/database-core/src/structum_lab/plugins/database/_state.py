"""State and checks shared by every backend, sync and async (psycopg_pool's ``base.py`` role).

The transaction machinery itself is in ``_base_async.py`` (the source) and ``_base_sync.py`` (its
generated twin); :mod:`structum_lab.plugins.database.base` re-exports both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any

from . import _observe
from ._checkouts import CheckoutTracker, leak_threshold, register_database
from ._retry import DEFAULT_POLICY, RetryPolicy
from ._types import PoolInfo
from .errors import (
    CommitOutcomeUnknownError,
    ConfigurationError,
    DatabaseClosedError,
    DatabaseError,
    DatabaseUnavailableError,
    PoolOverloadedError,
    PoolTimeoutError,
    QueryError,
    StatementTimeoutError,
    error_class_for_sqlstate,
)
from .health import HealthResult, HealthStatus, HealthThresholds, evaluate_health
from .secrets import MaskingFilter, mask_url, redact, remember, scrub_handled, secrets_in
from .settings import UPPER_BOUNDS, check_bounds

__all__ = [
    "DEFAULT_HEALTH_TIMEOUT",
    "DatabaseState",
    "forget_active",
    "logger",
    "seconds_or_none",
]

#: Seconds ``health_check()`` may take by default (below the 5 s of FastAPI's health_router).
DEFAULT_HEALTH_TIMEOUT = 3.0

logger = logging.getLogger("structum_lab.plugins.database")
logger.addFilter(MaskingFilter())


class DatabaseState:
    """Name, masked URL, closed flag, health thresholds, retry policy, checkouts and error wording.

    Shared by both twins of every backend. ``max_waiting`` (0: no limit), the ``retry*``
    options, ``leak_detection_threshold`` and ``slow_transaction_threshold`` are checked here
    once; each backend applies ``max_waiting`` to its own pool and reports its connections back
    (``_ticket``, see ``_checkouts.py``). Pool metrics and the slow-transaction log: see
    ``_observe.py``.
    """

    backend_name: str = "database"
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    transaction_timeout: float | None = None
    retry_policy: RetryPolicy = DEFAULT_POLICY
    max_waiting: int = 0
    slow_transaction_threshold: float | None = None
    # True while transactions are timed (metrics recording, or the slow-transaction log).
    _observed: bool = False
    _metric_attrs: dict[str, Any]

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        health_thresholds: HealthThresholds | Mapping[str, Any] | None = None,
        max_waiting: int = 0,
        retries: int = DEFAULT_POLICY.retries,
        retry_backoff: float = DEFAULT_POLICY.backoff,
        retry_max_backoff: float = DEFAULT_POLICY.max_backoff,
        retry_timeout: float = DEFAULT_POLICY.timeout,
        leak_detection_threshold: float | None = None,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        transaction_timeout: float | None = None,
        slow_transaction_threshold: float | None = None,
    ) -> None:
        self._masked_url = mask_url(url)
        self._secrets: tuple[str, ...] = tuple(secrets_in(url))
        remember(self, self._secrets)
        self.name = self._redact(name) if name else self._masked_url
        if isinstance(health_thresholds, Mapping):
            health_thresholds = HealthThresholds.from_mapping(health_thresholds)
        self.health_thresholds = health_thresholds or HealthThresholds()
        self._closed = False
        owner = type(self).__name__
        if isinstance(max_waiting, bool) or not isinstance(max_waiting, int) or max_waiting < 0:
            raise ConfigurationError(
                f"{owner}: max_waiting must be an integer >= 0 (0: no limit), got {max_waiting!r}",
                key="max_waiting",
            )
        self.max_waiting = max_waiting
        if (
            isinstance(health_timeout, bool)
            or not isinstance(health_timeout, (int, float))
            or not math.isfinite(health_timeout)
            or not 0 < health_timeout <= UPPER_BOUNDS["health_timeout"]
        ):
            raise ConfigurationError(
                f"{owner}: health_timeout must be a number of seconds > 0, got {health_timeout!r}",
                key="health_timeout",
            )
        self.health_timeout = float(health_timeout)
        self.retry_policy = RetryPolicy.checked(
            owner,
            retries=retries,
            backoff=retry_backoff,
            max_backoff=retry_max_backoff,
            timeout=retry_timeout,
        )
        self.leak_detection_threshold = leak_threshold(leak_detection_threshold, owner)
        self.transaction_timeout = seconds_or_none(
            owner, "transaction_timeout", transaction_timeout
        )
        self._checkouts = CheckoutTracker(self._masked_url, self.leak_detection_threshold)
        self.slow_transaction_threshold = _observe.seconds_threshold(
            slow_transaction_threshold, "slow_transaction_threshold", owner
        )
        _observe.attach(self)
        self._checkouts.metric_attrs = self._metric_attrs
        register_database(self)

    def _init_replicas(
        self,
        replicas: Any,
        max_replica_lag: float,
        replica_check_interval: float,
        settings: dict[str, Any],
    ) -> None:
        """Build the replicas and their router (the sync and async bases implement it)."""
        raise NotImplementedError  # pragma: no cover

    def _replica_info(self, info: PoolInfo) -> PoolInfo:
        """``info`` (this node's pool statistics) with each replica's under ``replicas``."""
        router: Any = getattr(self, "_router", None)
        if router is not None:
            info["replicas"] = router.info()
        return info

    @property
    def url(self) -> str:
        """The database URL with its password masked (safe to log and show)."""
        return self._masked_url

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has run."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._masked_url!r} {state}>"

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _add_secrets(self, settings: Any) -> None:
        """Remember the secrets in ``settings`` (``connect_args``...) so that errors mask them."""
        self._secrets += tuple(s for s in secrets_in(settings) if s not in self._secrets)
        remember(self, self._secrets)

    def _chained(self, exc: BaseException) -> None:
        """Scrub ``exc`` and the exception being handled before they become a chain's links.

        See :func:`~structum_lab.plugins.database.secrets.scrub_exception`: driver exceptions
        keep their type and masked message but lose connection objects and their traceback.
        """
        scrub_handled(exc, self._secrets)

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(
                f"the database {self._masked_url!r} is shut down; create a new "
                f"{type(self).__name__} to connect again"
            )

    def _report_unreturned(self, checked_out: int) -> None:
        """Log, at shutdown, the connections still checked out and where they were taken."""
        if checked_out <= 0:
            return
        known = self._checkouts.outstanding()
        places = "".join(f"\n  - {ticket.describe()}" for ticket in known)
        logger.warning(
            "%s shut down with %d connection(s) still checked out; each is closed when it comes "
            "back%s",
            self._masked_url,
            checked_out,
            f". Taken by:{places}" if places else "",
            extra={
                "structum_event": "connections_unreturned",
                "structum_taken_at": [ticket.where for ticket in known],
            },
        )

    def _after_fork(self) -> None:
        """In a child process after ``os.fork()``: forget what belongs to the parent.

        Backends extend it to replace their pool (without closing the parent's connections).
        """
        for conn in self._checkouts.forget_inherited():
            self._disown(conn)

    def _disown(self, conn: Any) -> None:
        """In a forked child: make an inherited ``get_connection()`` connection unusable here."""

    def _pool_timeout_error(
        self,
        timeout: float,
        pool_info: Mapping[str, Any],
        cls: type[PoolTimeoutError] = PoolTimeoutError,
        *,
        oldest_held: float | None = None,
    ) -> PoolTimeoutError:
        """The pool is exhausted: every connection is held by a caller.

        ``oldest_held``: seconds the longest-held connection has been checked out, when known;
        it tells a slow or stuck holder (a leak) from a pool too small for its load.
        """
        held = ""
        if oldest_held is not None:
            pool_info = {**pool_info, "oldest_held_s": round(oldest_held, 3)}
            held = f"; the oldest holder has had its connection for {oldest_held:.1f}s"
        _observe.count_timeout(self)
        return cls(
            f"no connection to {self._masked_url!r} became free within {timeout:g}s "
            f"(pool: {_snapshot(pool_info)}){held}; increase the pool size or look for "
            "connections not returned (leak_detection_threshold logs where they were taken)",
            pool_info=pool_info,
        )

    def _connect_failed_error(
        self, waited: float, last_error: BaseException | None
    ) -> DatabaseUnavailableError:
        """No connection could be opened: name the (masked) target and the last connect error.

        Never a pool-size hint: nothing is checked out, the database cannot be reached.
        """
        if last_error is None:
            reason = "no connection attempt finished (the server accepts no connections)"
        else:
            self._chained(last_error)
            text = self._redact(str(last_error)).strip() or type(last_error).__name__
            reason = f"the last attempt failed: {text}"
        return DatabaseUnavailableError(
            f"cannot connect to {self._masked_url!r} (waited {waited:.1f}s); {reason}"
        )

    def _deadline_error(
        self, seconds: float, exc: BaseException | None = None, *, committing: bool = False
    ) -> DatabaseError:
        """The transaction outlived its client-side deadline and its connection was broken.

        ``committing``: the deadline fired while COMMIT was in flight, so the outcome is unknown.
        """
        if exc is not None:
            self._chained(exc)
        if committing:
            return CommitOutcomeUnknownError(
                f"the transaction on {self._masked_url!r} ran out of its {seconds:g}s timeout "
                "during COMMIT (the server did not answer); its connection was closed, so the "
                "transaction may or may not have been committed. Check whether its changes are "
                "there before running it again"
            )
        return StatementTimeoutError(
            f"the transaction on {self._masked_url!r} did not finish within its {seconds:g}s "
            "timeout and the server did not answer; its connection was closed (never reused) "
            "and nothing was committed"
        )

    def _overloaded_error(
        self,
        pool_info: Mapping[str, Any],
        cls: type[PoolOverloadedError] = PoolOverloadedError,
    ) -> PoolOverloadedError:
        _observe.count_overload(self)
        return cls(
            f"{self.max_waiting} caller(s) already wait for a connection to {self._masked_url!r} "
            f"(max_waiting={self.max_waiting}; pool: {_snapshot(pool_info)}); failed without "
            "waiting. "
            "Retry later (run_transaction() does, with backoff), or raise max_waiting or the "
            "pool size if this load is normal",
            pool_info=pool_info,
        )

    def _unavailable_error(self, exc: BaseException) -> DatabaseUnavailableError:
        self._chained(exc)
        return DatabaseUnavailableError(
            f"cannot use the database {self._masked_url!r}: {self._redact(str(exc)).strip()}"
        )

    def _commit_unknown_error(
        self, exc: BaseException, *, during: str = "COMMIT"
    ) -> CommitOutcomeUnknownError:
        self._chained(exc)
        return CommitOutcomeUnknownError(
            f"the connection to {self._masked_url!r} was lost during {during}, so the "
            "transaction may or may not have been committed; it was not retried. Check whether "
            f"its changes are there before running it again: {self._redact(str(exc)).strip()}"
        )

    def _query_error(
        self,
        exc: BaseException,
        sqlstate: str | None,
        cls: type[QueryError] | None = None,
    ) -> QueryError:
        # ``cls`` lets a backend pick the class when the SQLSTATE alone cannot (MySQL reports
        # lock-wait and statement timeouts as HY000/70100).
        cls = cls or error_class_for_sqlstate(sqlstate)
        self._chained(exc)
        code = f" [SQLSTATE {sqlstate}]" if sqlstate else ""
        return cls(f"{self._redact(str(exc)).strip()}{code}", sqlstate=sqlstate)

    @staticmethod
    def _statement_type_error(sql: object) -> QueryError:
        """A statement that is not text (bytes, None...): say what to pass instead."""
        hint = (
            "decode it first: sql.decode('utf-8')"
            if isinstance(sql, (bytes, bytearray))
            else "pass the SQL text as a str"
        )
        return QueryError(f"the statement must be a str, got {type(sql).__name__}; {hint}")

    def _health_ok(self, latency_ms: float, pool_info: Mapping[str, Any]) -> HealthResult:
        return evaluate_health(
            latency_ms,
            pool_info,
            self.health_thresholds,
            details={"backend": self.backend_name, "url": self._masked_url},
        )

    def _health_failed(self, exc: BaseException, latency_ms: float) -> HealthResult:
        reason = (
            self._redact(str(exc)).strip().splitlines()[0]
            if str(exc).strip()
            else type(exc).__name__
        )
        return HealthResult(
            HealthStatus.UNHEALTHY,
            f"database unreachable: {reason}",
            latency_ms,
            {"backend": self.backend_name, "url": self._masked_url, "error": type(exc).__name__},
        )


def seconds_or_none(owner: str, key: str, value: Any) -> float | None:
    """Check a duration setting that may be off: seconds > 0 (and bounded), or None.

    Raises:
        ConfigurationError: Not a number > 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{owner}: {key} must be a number of seconds > 0, or None, got {value!r}", key=key
        )
    check_bounds(owner, key, value)
    return float(value)


def _snapshot(pool_info: Mapping[str, Any]) -> str:
    """``checked_out=1, total=1, ...``: the numeric pool statistics, for error messages."""
    return ", ".join(f"{k}={v}" for k, v in pool_info.items() if isinstance(v, (int, float)))


def forget_active(var: ContextVar[Any], token: Token[Any], conn: Any) -> None:
    """Undo ``var.set()`` of a transaction's ``__enter__`` from another Context.

    FastAPI runs a sync generator dependency's ``__enter__`` and ``__exit__`` in two threadpool
    calls, each in its own copy of the context, and ``reset()`` refuses a token from another
    Context. The connection must still be given back, and the exiting context must not keep
    pointing at it (a later ``transaction()`` there would join a returned connection).

    The transactions' ``__exit__`` try ``var.reset(token)`` first (the common case) and come here
    only when it raised ``ValueError``.
    """
    current = var.get()
    if current is not None and current[0] is conn:
        var.set(None if token.old_value is Token.MISSING else token.old_value)
