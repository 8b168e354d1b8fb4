"""Pool metrics (OpenTelemetry semantic conventions) and the slow-transaction log, all backends.

Every checkout and return of every backend, sync and async, passes through the core
(``_base_async.py`` and its twin, ``_checkouts.py``, ``_state.py``), so both live here once.

**Metrics** are emitted through the OpenTelemetry *API* only (``pip install
"structum-database[otel]"``); the application configures an SDK (or not). Names, units and
instrument kinds are the semantic conventions' for database client connection pools, each
observation carrying ``db.client.connection.pool.name`` (the database's ``name``):

- read from ``get_pool_info()`` when a reader collects (nothing per transaction):
  ``db.client.connection.count`` (``db.client.connection.state`` = ``idle`` | ``used``),
  ``.idle.max``, ``.idle.min``, ``.max``, ``.pending_requests`` (observable up-down counters);
- recorded as they happen: ``db.client.connection.timeouts`` (counter), ``.create_time``,
  ``.wait_time``, ``.use_time`` (histograms, seconds); and two of ours,
  ``structum.db.client.connection.leaks`` and ``structum.db.client.connection.overloads``.

**Cost.** Without the API installed, or with the API but no SDK, a transaction pays one attribute
test on entry and one on exit (``db._observed``): the clock is read only once recording is on.
Recording turns on when :func:`enable_metrics` is called, when a database is created while an SDK
meter provider is the global one, or, for a provider set later, at its first collection (the
observable instruments' callbacks run only under an SDK). The SDK's ``Histogram.record()`` is
what costs (two per transaction): ``enable_metrics(timings=False)`` keeps every other instrument
and records no times, so transactions are not timed at all.

**Slow transactions**: with ``slow_transaction_threshold`` set, a ``transaction()`` that took
longer logs one WARNING with its duration, where it was opened and its statements' text (masked,
never parameter values). The statements are collected by shadowing the connection's ``execute``
and ``executemany`` with recording wrappers for the transaction's duration (instance attributes,
removed at its end), so no backend's statement path has a check for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from . import _checkouts
from .errors import ConfigurationError
from .secrets import mask_text

__all__ = [
    "INSTALL_HINT",
    "POOL_NAME",
    "Watch",
    "disable_metrics",
    "enable_metrics",
    "metrics_enabled",
    "seconds_threshold",
]

logger = logging.getLogger("structum_lab.plugins.database")

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
INSTALL_HINT = 'pip install "structum-database[otel]"'
METER_NAME = "structum_lab.plugins.database"

# Seconds: the semantic conventions' advisory boundaries for database client durations.
_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
# What a slow-transaction record shows at most.
_MAX_STATEMENTS = 50
_MAX_STATEMENT_CHARS = 1000
_NO_STATEMENTS: list[Any] = []  # shared, never appended to


def seconds_threshold(value: Any, key: str, owner: str) -> float | None:
    """Check a threshold option: seconds > 0, or None (off).

    Raises:
        ConfigurationError: Not a number > 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{owner}: {key} must be a number of seconds > 0, or None to turn it off, "
            f"got {value!r}",
            key=key,
        )
    return float(value)


class _Instruments:
    """The instruments of one meter (created once per :func:`enable_metrics` / auto start)."""

    def __init__(self, meter: Any) -> None:
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time",
            unit="s",
            description="The time it took to create a new connection.",
            **_advice(),
        )
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="The time it took to obtain an open connection from the pool.",
            **_advice(),
        )
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time",
            unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
            **_advice(),
        )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to obtain "
            "a connection from the pool.",
        )
        self.leaks = meter.create_counter(
            "structum.db.client.connection.leaks",
            unit="{connection}",
            description="Connections held longer than leak_detection_threshold.",
        )
        self.overloads = meter.create_counter(
            "structum.db.client.connection.overloads",
            unit="{request}",
            description="Requests for a connection refused at once because max_waiting "
            "callers already waited (PoolOverloadedError).",
        )
        updown = meter.create_observable_up_down_counter
        self.observables = [
            updown(
                "db.client.connection.count",
                callbacks=[_observe_count],
                unit="{connection}",
                description="The number of connections that are currently in state described "
                "by the state attribute.",
            ),
            updown(
                "db.client.connection.idle.max",
                callbacks=[_gauge("idle_max")],
                unit="{connection}",
                description="The maximum number of idle open connections allowed.",
            ),
            updown(
                "db.client.connection.idle.min",
                callbacks=[_gauge("idle_min")],
                unit="{connection}",
                description="The minimum number of idle open connections allowed.",
            ),
            updown(
                "db.client.connection.max",
                callbacks=[_gauge("max")],
                unit="{connection}",
                description="The maximum number of open connections allowed.",
            ),
            updown(
                "db.client.connection.pending_requests",
                callbacks=[_gauge("pending")],
                unit="{request}",
                description="The number of current pending requests for an open connection.",
            ),
        ]


def _advice() -> dict[str, Any]:
    # ``explicit_bucket_boundaries_advisory`` exists from opentelemetry-api 1.23 on.
    import inspect  # noqa: PLC0415

    from opentelemetry.metrics import Meter  # noqa: PLC0415

    params = inspect.signature(Meter.create_histogram).parameters
    if "explicit_bucket_boundaries_advisory" in params:
        return {"explicit_bucket_boundaries_advisory": list(_BUCKETS)}
    return {}


class _State:
    """Process-wide: the instruments, whether recording is on, the databases to observe."""

    def __init__(self) -> None:
        self.instruments: _Instruments | None = None
        self.on = False  # record the counters and create_time
        self.timed = False  # and time every checkout (wait_time, use_time)
        self.timings = True  # what enable_metrics(timings=...) asked for
        self.explicit = False  # enable_metrics() chose the provider
        self.tried = False  # the automatic start ran (once)
        self.databases: weakref.WeakSet[Any] = weakref.WeakSet()
        self.lock = threading.Lock()

    def snapshot(self) -> list[Any]:
        with self.lock:
            return list(self.databases)


_STATE = _State()


def _is_sdk(provider: Any) -> bool:
    """True for a meter provider that records (not the API's proxy or no-op one)."""
    from opentelemetry.metrics import NoOpMeterProvider  # noqa: PLC0415

    if isinstance(provider, NoOpMeterProvider):
        return False
    # The API's placeholder until set_meter_provider() (opentelemetry.metrics._internal).
    return type(provider).__name__ != "_ProxyMeterProvider"


def _start(provider: Any) -> None:
    from opentelemetry import metrics  # noqa: PLC0415

    from ._version import __version__  # noqa: PLC0415

    if provider is None:
        provider = metrics.get_meter_provider()
    _STATE.instruments = _Instruments(provider.get_meter(METER_NAME, __version__))
    if _is_sdk(provider):
        _switch(True)


def _switch(on: bool) -> None:
    _STATE.on = on
    _STATE.timed = timed = on and _STATE.timings
    for db in _STATE.snapshot():
        db._observed = timed or db.slow_transaction_threshold is not None


def attach(db: Any) -> None:
    """Observe ``db`` (from ``DatabaseState.__init__``): metrics attributes and flags."""
    db._metric_attrs = {POOL_NAME: db.name}
    with _STATE.lock:
        _STATE.databases.add(db)
        first = not _STATE.tried
        _STATE.tried = True
    if first and _STATE.instruments is None:
        # Without the API installed, metrics are off, at no cost.
        with contextlib.suppress(ImportError):
            _start(None)
    db._observed = _STATE.timed or db.slow_transaction_threshold is not None


def enable_metrics(meter_provider: Any = None, *, timings: bool = True) -> None:
    """Emit the pool metrics of every database through ``meter_provider``.

    Databases report through the global meter provider on their own; call this to choose
    another provider, to start recording wait, use and creation times at once when the global
    provider is set after the databases were created (otherwise they start at its first
    collection), or to leave the per-transaction timings out.

    Args:
        meter_provider: An OpenTelemetry ``MeterProvider`` (None: the global one).
        timings: Record ``wait_time`` and ``use_time`` for every checkout (two histogram
            records per transaction). False keeps every other instrument and leaves
            transactions untimed: no cost per transaction, even with an SDK.

    Raises:
        ImportError: The OpenTelemetry API is not installed; the message is the command.
    """
    try:
        import opentelemetry.metrics  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ImportError(
            f"pool metrics need the OpenTelemetry API; install it with: {INSTALL_HINT}"
        ) from exc
    _STATE.explicit = True
    _STATE.timings = timings
    _start(meter_provider)
    _switch(True)


def disable_metrics() -> None:
    """Stop reporting (the observable instruments stay registered, reporting nothing more)."""
    _STATE.instruments = None
    _STATE.explicit = False
    _STATE.timings = True
    _switch(False)


def metrics_enabled() -> bool:
    """True while the metrics are recorded (see ``enable_metrics()`` for the timings)."""
    return _STATE.on


# -- collection (observable instruments) ---------------------------------------------------------
def _pools() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(attributes, figures)`` of every open database, for one callback."""
    if _STATE.instruments is None:
        return
    if not _STATE.on:
        # Only an SDK runs callbacks: a provider set after the databases were created.
        _switch(True)
    for db in _STATE.snapshot():
        if db.closed:
            continue
        try:
            info = db.get_pool_info()
        except Exception as exc:  # a pool being torn down: skip it this time
            logger.debug("pool metrics of %s skipped: %s", db.url, exc)
            continue
        size = info.get("size")
        limit = info.get("max")
        yield (
            db._metric_attrs,
            {
                "used": info.get("checked_out", 0),
                "idle": info.get("available", 0),
                "idle_max": size if size is not None else limit,
                "idle_min": info.get("min", 0),
                "max": limit,
                "pending": info.get("waiting", 0),
            },
        )


def _observe_count(options: Any) -> Iterable[Any]:
    from opentelemetry.metrics import Observation  # noqa: PLC0415

    out = []
    for attrs, figures in _pools():
        out.append(Observation(figures["used"], {**attrs, STATE: "used"}))
        out.append(Observation(figures["idle"], {**attrs, STATE: "idle"}))
    return out


def _gauge(key: str) -> Any:
    def callback(options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        return [
            Observation(figures[key], attrs)
            for attrs, figures in _pools()
            if figures[key] is not None
        ]

    return callback


# -- recording (rare events) ---------------------------------------------------------------------
def count_timeout(db: Any) -> None:
    """A caller's wait for a connection timed out (``PoolTimeoutError``)."""
    instruments = _STATE.instruments
    if _STATE.on and instruments is not None:
        instruments.timeouts.add(1, db._metric_attrs)


def count_overload(db: Any) -> None:
    """A caller was refused at once: ``max_waiting`` callers already waited."""
    instruments = _STATE.instruments
    if _STATE.on and instruments is not None:
        instruments.overloads.add(1, db._metric_attrs)


def count_leak(attrs: dict[str, Any] | None) -> None:
    """The leak detector warned about a connection (``CheckoutTracker._warn``)."""
    instruments = _STATE.instruments
    if _STATE.on and instruments is not None and attrs is not None:
        instruments.leaks.add(1, attrs)


def connection_created(attrs: dict[str, Any] | None, started: float) -> None:
    """A backend opened a physical connection that began at ``started`` (``perf_counter()``)."""
    instruments = _STATE.instruments
    if _STATE.on and instruments is not None and attrs is not None:
        instruments.create_time.record(time.perf_counter() - started, attrs)


def record_use(attrs: dict[str, Any] | None, seconds: float) -> None:
    """A ``get_connection()`` connection came back after ``seconds``."""
    instruments = _STATE.instruments
    if _STATE.timed and instruments is not None and attrs is not None:
        instruments.use_time.record(seconds, attrs)


def record_wait(db: Any, started: float) -> float:
    """A checkout that began at ``started`` (``perf_counter()``) got its connection: now."""
    now = time.perf_counter()
    instruments = _STATE.instruments
    if _STATE.timed and instruments is not None:
        instruments.wait_time.record(now - started, db._metric_attrs)
    return now


# -- one observed transaction --------------------------------------------------------------------
class Watch:
    """The clock of one ``transaction()`` while metrics or the slow-transaction log are on."""

    __slots__ = ("acquired", "db", "started", "statements", "where")

    def __init__(self, db: Any) -> None:
        self.db = db
        self.statements: list[Any] = _NO_STATEMENTS
        self.where: str | None = None
        if db.slow_transaction_threshold is not None:
            self.where = _checkouts._where(_checkouts._caller_frame())
        self.started = time.perf_counter()
        self.acquired = self.started

    def checked_out(self, conn: Any, db: Any = None) -> None:
        """The connection is ours: record the wait, start listing statements if needed.

        ``db``: the database that served it, when not the one the transaction was asked of (a
        read replica): the times are its pool's.
        """
        if db is not None:
            self.db = db
        self.acquired = now = time.perf_counter()
        instruments = _STATE.instruments
        if _STATE.timed and instruments is not None:
            instruments.wait_time.record(now - self.started, self.db._metric_attrs)
        if self.where is not None:
            self.statements = _record_statements(conn)

    def returned(self, conn: Any) -> None:
        """The connection went back (after COMMIT or ROLLBACK)."""
        now = time.perf_counter()
        db = self.db
        instruments = _STATE.instruments
        if _STATE.timed and instruments is not None:
            instruments.use_time.record(now - self.acquired, db._metric_attrs)
        if self.where is None:
            return
        statements = self.statements
        _stop_recording(conn)
        threshold = db.slow_transaction_threshold
        if threshold is None or now - self.started <= threshold:
            return
        self._log(now - self.started, statements)

    def _log(self, duration: float, statements: list[str]) -> None:
        db = self.db
        shown = [_masked(db, sql) for sql in statements[:_MAX_STATEMENTS]]
        more = len(statements) - len(shown)
        listing = "".join(f"\n  {i}. {sql}" for i, sql in enumerate(shown, 1))
        if more > 0:
            listing += f"\n  ... and {more} more"
        logger.warning(
            "%s: slow transaction: %.3fs, longer than slow_transaction_threshold=%gs "
            "(%.3fs of it waiting for a connection); opened at %s; %d statement(s):%s",
            db.url,
            duration,
            db.slow_transaction_threshold,
            self.acquired - self.started,
            self.where,
            len(statements),
            listing or " none",
            extra={
                "structum_event": "slow_transaction",
                "structum_duration": duration,
                "structum_wait": self.acquired - self.started,
                "structum_opened_at": self.where,
                "structum_statements": shown,
            },
        )


def _record_statements(conn: Any) -> list[Any]:
    """Shadow ``conn.execute``/``executemany`` with wrappers listing the SQL text they get.

    The wrappers return what the methods return (a coroutine on the async twins), so they serve
    both twins; they are instance attributes, deleted by :func:`_stop_recording`.
    """
    statements: list[Any] = []
    for name in ("execute", "executemany"):
        method = getattr(conn, name)

        def recording(sql: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            statements.append(sql)
            return _method(sql, *args, **kwargs)

        try:
            setattr(conn, name, recording)
        except AttributeError:  # a connection class with __slots__: statements not listed
            return _NO_STATEMENTS
    return statements


def _stop_recording(conn: Any) -> None:
    shadowed = getattr(conn, "__dict__", None)
    if shadowed is not None:
        shadowed.pop("execute", None)
        shadowed.pop("executemany", None)


def _masked(db: Any, sql: Any) -> str:
    text = sql if isinstance(sql, str) else repr(sql)
    text = str(db._redact(mask_text(text))).strip()
    if len(text) > _MAX_STATEMENT_CHARS:
        text = text[:_MAX_STATEMENT_CHARS] + "..."
    return text
