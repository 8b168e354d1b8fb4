"""``MockDatabase`` and ``AsyncMockDatabase``: in-memory twins of the database interfaces.

Both subclass core's shared bases, so ``transaction()`` nesting (savepoints), ``force_rollback()``,
the closed check and health grading behave exactly as on the real backends. What happens to a
statement is decided by a :class:`~structum_lab.plugins.database.testing.MockScript`, shared by
both twins; the twins only differ in how they wait (``time.sleep`` or ``await asyncio.sleep``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from typing_extensions import Self

from structum_lab.plugins.database import (
    AsyncConnection,
    Connection,
    DatabaseError,
    DatabaseUnavailableError,
    HealthResult,
    HealthStatus,
    HealthThresholds,
)
from structum_lab.plugins.database.base import AsyncDatabaseBase, DatabaseState, SyncDatabaseBase
from structum_lab.plugins.database.interfaces import Params
from structum_lab.plugins.database.results import AsyncBufferedResult, BufferedResult

from .script import (
    ANY,
    ErrorSpec,
    Handler,
    MockRule,
    MockSavepoint,
    MockScript,
    MockTransaction,
    QueryRecord,
    SQLMatcher,
    _Outcome,
)

__all__ = ["AsyncMockConnection", "AsyncMockDatabase", "MockConnection", "MockDatabase"]

_PUBLIC = "structum_lab.plugins.database.testing"
_POLL = 0.002  # seconds between checks while an async checkout waits for a free connection


class _MockPool:
    """Connection accounting of one mock database (what ``get_pool_info()`` reports)."""

    def __init__(self, size: int, timeout: float) -> None:
        if size < 1:
            raise ValueError(f"pool_size must be at least 1, got {size}")
        self.size = size
        self.timeout = timeout
        self.checked_out = 0
        self.opened = 0
        self.waiting = 0
        self.cond = threading.Condition()

    def try_acquire(self) -> bool:
        with self.cond:
            if self.checked_out >= self.size:
                return False
            self.checked_out += 1
            self.opened = max(self.opened, self.checked_out)
            return True

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            self.waiting += 1
            try:
                while self.checked_out >= self.size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self.cond.wait(remaining)
                self.checked_out += 1
                self.opened = max(self.opened, self.checked_out)
                return True
            finally:
                self.waiting -= 1

    async def acquire_async(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            self.waiting += 1
        try:
            while not self.try_acquire():
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(_POLL)
            return True
        finally:
            with self.cond:
                self.waiting -= 1

    def release(self, *, discard: bool) -> None:
        with self.cond:
            self.checked_out -= 1
            if discard:
                # A broken connection is thrown away; the next checkout opens a new one.
                self.opened -= 1
            self.cond.notify()

    def info(self) -> dict[str, Any]:
        with self.cond:
            return {
                "checked_out": self.checked_out,
                "available": self.opened - self.checked_out,
                "total": self.opened,
                "overflow": 0,
                "max": self.size,
                "waiting": self.waiting,
            }


class _ConnectionCore:
    """State and rules of one mock connection, shared by the sync and async wrappers."""

    __slots__ = ("_sp_ids", "broken", "check_open", "closed", "pool", "savepoints", "script", "tx")

    def __init__(self, script: MockScript, check_open: Callable[[], None] | None = None) -> None:
        self.script = script
        self.check_open = check_open
        self.pool: _MockPool | None = None
        self.tx: MockTransaction | None = None
        self.savepoints: list[MockSavepoint] = []
        self.closed = False
        self.broken = False
        self._sp_ids = 0

    def begin(self, options: dict[str, Any]) -> None:
        self.tx = self.script._begin(options)

    def _usable(self) -> None:
        if self.closed:
            raise DatabaseError(
                "this mock connection was already returned to the pool; use a connection only "
                "inside its transaction() block, or before close()"
            )
        if self.check_open is not None:
            self.check_open()
        if self.script.offline:
            self.broken = True
        if self.broken:
            raise DatabaseUnavailableError(
                "the connection to the mock database was lost; roll back and use a new one"
            )

    def run(self, sql: str, params: Any, *, many: bool) -> _Outcome:
        self._usable()
        if self.tx is None:  # after commit()/rollback() the next statement starts a transaction
            self.tx = self.script._begin({})
        outcome = self.script._run(
            sql,
            params,
            many=many,
            tx=self.tx,
            savepoint=self.savepoints[-1] if self.savepoints else None,
        )
        if isinstance(outcome.error, DatabaseUnavailableError):
            self.broken = True
        return outcome

    def _finish(self, status: str) -> None:
        if self.tx is not None:
            self.tx.status = status  # type: ignore[assignment]
            for sp in self.savepoints:
                sp.status = "released" if status == "committed" else "rolled_back"
            self.tx = None
        self.savepoints.clear()

    def commit(self) -> None:
        try:
            self._usable()
        except DatabaseUnavailableError:
            # COMMIT on a lost connection fails and the transaction is gone: record the rollback.
            self._finish("rolled_back")
            raise
        self._finish("committed")

    def rollback(self) -> None:
        if self.closed:
            self._usable()
        # Rolling back a broken connection must not fail: it is what error handling does.
        self._finish("rolled_back")

    def close(self) -> None:
        if self.closed:
            return
        self._finish("rolled_back")
        self.closed = True
        if self.pool is not None:
            self.pool.release(discard=self.broken)

    def savepoint_begin(self, name: str | None) -> MockSavepoint:
        self._usable()
        if self.tx is None:
            self.tx = self.script._begin({})
        self._sp_ids += 1
        sp = MockSavepoint(name or f"sp_{self._sp_ids}")
        self.savepoints.append(sp)
        self.tx.savepoints.append(sp)
        return sp

    def savepoint_end(self, sp: MockSavepoint, *, ok: bool) -> None:
        if sp in self.savepoints:
            del self.savepoints[self.savepoints.index(sp) :]
        if sp.status == "open":
            sp.status = "released" if ok else "rolled_back"


def _user_queries(database: object) -> list[QueryRecord] | None:
    queries = getattr(database, "queries", None)
    return queries if isinstance(queries, list) else None


class MockConnection(Connection):
    """A connection of :class:`MockDatabase` (its ``transaction()`` yields one).

    Args:
        database: The mock database it belongs to. Any other object (an application's own test
            double, seed §11.3) gets a standalone connection with its own :class:`MockScript`
            that records into ``database.queries`` when that is a list.
    """

    __module__ = _PUBLIC

    def __init__(self, database: object | None = None) -> None:
        if isinstance(database, _MockMixin):
            self._core = _ConnectionCore(database.script, database._check_open)
        else:
            self._core = _ConnectionCore(MockScript(queries=_user_queries(database)))
        self._result_last: BufferedResult | None = None

    @classmethod
    def _from_pool(cls, db: MockDatabase, options: dict[str, Any]) -> Self:
        conn = cls(db)
        conn._core.pool = db._pool
        conn._core.begin(options)
        return conn

    def __repr__(self) -> str:
        state = "closed" if self._core.closed else "broken" if self._core.broken else "open"
        return f"<MockConnection {state}>"

    @property
    def transaction_record(self) -> MockTransaction | None:
        """The :class:`MockTransaction` currently open on this connection, if any."""
        return self._core.tx

    def _result(self, outcome: _Outcome) -> BufferedResult:
        if outcome.delay:
            time.sleep(outcome.delay)
        if outcome.error is not None:
            raise outcome.error
        self._result_last = BufferedResult(outcome.rows, outcome.rowcount)
        return self._result_last

    def execute(self, sql: str, params: Params = None) -> BufferedResult:
        """Record the statement and return its scripted result (or raise its scripted error)."""
        return self._result(self._core.run(sql, params, many=False))

    def executemany(self, sql: str, params_seq: Iterable[Params]) -> BufferedResult:
        """Record the statement with every parameter set; one scripted answer for the batch."""
        return self._result(self._core.run(sql, list(params_seq), many=True))

    @property
    def last_result(self) -> BufferedResult | None:
        """The result of the last successful ``execute()``."""
        return self._result_last

    def commit(self) -> None:
        """Mark the current transaction committed (raises on a lost connection)."""
        self._core.commit()

    def rollback(self) -> None:
        """Mark the current transaction rolled back."""
        self._core.rollback()

    def close(self) -> None:
        """Roll back anything uncommitted and give the connection back to the pool."""
        self._core.close()

    @contextmanager
    def savepoint(self, name: str | None = None) -> Iterator[Self]:
        """A savepoint: released on success, rolled back to (and the error re-raised) on failure."""
        sp = self._core.savepoint_begin(name)
        try:
            yield self
        except BaseException:
            self._core.savepoint_end(sp, ok=False)
            raise
        self._core.savepoint_end(sp, ok=True)


class AsyncMockConnection(AsyncConnection):
    """Async twin of :class:`MockConnection` (driven by the same :class:`MockScript`)."""

    __module__ = _PUBLIC

    def __init__(self, database: object | None = None) -> None:
        if isinstance(database, _MockMixin):
            self._core = _ConnectionCore(database.script, database._check_open)
        else:
            self._core = _ConnectionCore(MockScript(queries=_user_queries(database)))
        self._result_last: AsyncBufferedResult | None = None

    @classmethod
    def _from_pool(cls, db: AsyncMockDatabase, options: dict[str, Any]) -> Self:
        conn = cls(db)
        conn._core.pool = db._pool
        conn._core.begin(options)
        return conn

    def __repr__(self) -> str:
        state = "closed" if self._core.closed else "broken" if self._core.broken else "open"
        return f"<AsyncMockConnection {state}>"

    @property
    def transaction_record(self) -> MockTransaction | None:
        """The :class:`MockTransaction` currently open on this connection, if any."""
        return self._core.tx

    async def _result(self, outcome: _Outcome) -> AsyncBufferedResult:
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        if outcome.error is not None:
            raise outcome.error
        self._result_last = AsyncBufferedResult(outcome.rows, outcome.rowcount)
        return self._result_last

    async def execute(self, sql: str, params: Params = None) -> AsyncBufferedResult:
        """Record the statement and return its scripted result (or raise its scripted error)."""
        return await self._result(self._core.run(sql, params, many=False))

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> AsyncBufferedResult:
        """Record the statement with every parameter set; one scripted answer for the batch."""
        return await self._result(self._core.run(sql, list(params_seq), many=True))

    @property
    def last_result(self) -> AsyncBufferedResult | None:
        """The result of the last successful ``execute()``."""
        return self._result_last

    async def commit(self) -> None:
        """Mark the current transaction committed (raises on a lost connection)."""
        self._core.commit()

    async def rollback(self) -> None:
        """Mark the current transaction rolled back."""
        self._core.rollback()

    async def close(self) -> None:
        """Roll back anything uncommitted and give the connection back to the pool."""
        self._core.close()

    @asynccontextmanager
    async def savepoint(self, name: str | None = None) -> AsyncIterator[Self]:
        """A savepoint: released on success, rolled back to (and the error re-raised) on failure."""
        sp = self._core.savepoint_begin(name)
        try:
            yield self
        except BaseException:
            self._core.savepoint_end(sp, ok=False)
            raise
        self._core.savepoint_end(sp, ok=True)


class _MockMixin(DatabaseState):
    """What both mock databases offer on top of the interface: scripting and inspection.

    Every method here forwards to :attr:`script`, so the sync and async twins share one
    implementation and one script can back both.
    """

    script: MockScript
    _pool: _MockPool
    backend_name = "mock"

    def _setup(
        self,
        script: MockScript | None,
        strict: bool,
        check_params: bool,
        pool_size: int,
        pool_timeout: float,
    ) -> None:
        if script is None:
            script = MockScript(strict=strict, check_params=check_params)
        elif strict or not check_params:
            raise TypeError("set strict/check_params on the MockScript you pass as script=")
        self.script = script
        self._pool = _MockPool(pool_size, pool_timeout)

    def _checkout_error(self) -> Exception | None:
        """The error a checkout raises before waiting for the pool, if any."""
        if self.script.offline:
            return self._unavailable_error(
                ConnectionRefusedError("connection refused (the mock database is offline)")
            )
        if self.script._take_pool_fault():
            return self._pool_timeout_error(self._pool.timeout, self._pool.info())
        return None

    def _probe_error(self) -> Exception | None:
        if self.script.offline:
            return ConnectionRefusedError("connection refused (the mock database is offline)")
        return None

    def _scripted_health(self, result: HealthResult) -> HealthResult:
        plan = self.script._health_plan()
        if result.status is HealthStatus.UNHEALTHY:  # offline or shut down: nothing to script
            return result
        if plan.status is None:
            if plan.latency_ms is None:
                return result
            return self._health_ok(plan.latency_ms, self.get_pool_info())
        default = {
            HealthStatus.HEALTHY: "Database connection OK",
            HealthStatus.DEGRADED: "database degraded (scripted by set_health())",
            HealthStatus.UNHEALTHY: "database unreachable (scripted by set_health())",
        }[plan.status]
        latency = result.latency_ms if plan.latency_ms is None else plan.latency_ms
        return HealthResult(plan.status, plan.message or default, latency, dict(result.details))

    # -- scripting (see MockScript) ------------------------------------------------------------
    @property
    def queries(self) -> list[QueryRecord]:
        """Every statement executed, in order (``len(mock_db.queries)``)."""
        return self.script.queries

    @property
    def transactions(self) -> list[MockTransaction]:
        """Every transaction opened, in order, with its status and statements."""
        return self.script.transactions

    @property
    def committed_transactions(self) -> list[MockTransaction]:
        """Transactions that were committed."""
        return self.script.committed_transactions

    @property
    def rolled_back_transactions(self) -> list[MockTransaction]:
        """Transactions that were rolled back."""
        return self.script.rolled_back_transactions

    @property
    def offline(self) -> bool:
        """True while the database is down (set it to simulate an outage).

        Meanwhile checkouts and statements raise ``DatabaseUnavailableError`` and
        ``health_check()`` reports UNHEALTHY.
        """
        return self.script.offline

    @offline.setter
    def offline(self, value: bool) -> None:
        self.script.offline = value

    def on(
        self,
        sql: SQLMatcher,
        *,
        params: Any = ANY,
        rows: Iterable[dict[str, Any]] | None = None,
        rowcount: int | None = None,
        error: ErrorSpec | None = None,
        delay: float = 0.0,
        handler: Handler | None = None,
        times: int | None = None,
    ) -> MockRule:
        """Script the answer to matching statements; see :meth:`MockScript.on`."""
        return self.script.on(
            sql,
            params=params,
            rows=rows,
            rowcount=rowcount,
            error=error,
            delay=delay,
            handler=handler,
            times=times,
        )

    def fail_next(self, times: int = 1, *, error: ErrorSpec = "unavailable") -> None:
        """Make the next ``times`` statements raise; see :meth:`MockScript.fail_next`."""
        self.script.fail_next(times, error=error)

    def exhaust_pool(self, times: int = 1) -> None:
        """Make the next ``times`` checkouts raise ``PoolTimeoutError``."""
        self.script.exhaust_pool(times)

    def set_health(
        self,
        status: HealthStatus | None = None,
        *,
        message: str | None = None,
        latency_ms: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script ``health_check()``; see :meth:`MockScript.set_health`."""
        self.script.set_health(status, message=message, latency_ms=latency_ms, delay=delay)

    def executed(self, sql: SQLMatcher, params: Any = ANY) -> list[QueryRecord]:
        """The recorded statements matching ``sql`` (and ``params``)."""
        return self.script.executed(sql, params)

    def count(self, sql: SQLMatcher, params: Any = ANY) -> int:
        """How many recorded statements match ``sql`` (and ``params``)."""
        return self.script.count(sql, params)

    def assert_executed(
        self, sql: SQLMatcher, params: Any = ANY, *, times: int | None = None
    ) -> None:
        """Assert ``sql`` ran (with ``params``; exactly ``times`` times when given)."""
        self.script.assert_executed(sql, params, times=times)

    def assert_executed_with(self, sql: SQLMatcher, params: Any) -> None:
        """Assert ``sql`` ran with exactly ``params``."""
        self.script.assert_executed_with(sql, params)

    def assert_not_executed(self, sql: SQLMatcher, params: Any = ANY) -> None:
        """Assert no statement matching ``sql`` (and ``params``) ran."""
        self.script.assert_not_executed(sql, params)

    def assert_committed(self) -> None:
        """Assert the last finished transaction was committed."""
        self.script.assert_committed()

    def assert_rolled_back(self) -> None:
        """Assert the last finished transaction was rolled back."""
        self.script.assert_rolled_back()

    def reset(self) -> None:
        """Forget rules, faults and history (the pool keeps its checked-out connections)."""
        self.script.reset()

    def get_pool_info(self) -> dict[str, Any]:
        """Simulated pool statistics: ``checked_out``, ``available``, ``total``, ``max``, ..."""
        return self._pool.info()


class MockDatabase(_MockMixin, SyncDatabaseBase[MockConnection]):
    """An in-memory :class:`~structum_lab.plugins.database.DatabaseInterface` for unit tests.

    It records every statement (``queries``), answers with scripted rows, tracks commits and
    rollbacks per transaction, injects faults and simulates a pool. Nothing is stored: a test
    scripts what the database answers.

    Args:
        script: Behaviour to use (share one between a sync and an async mock); default: new.
        strict: Raise ``AssertionError`` on statements no rule matches.
        check_params: Reject a ``:name`` placeholder without a value, as real backends do.
        pool_size: Connections the simulated pool hands out at once.
        pool_timeout: Seconds a checkout waits for a free connection before
            ``PoolTimeoutError``.
        url: Shown in ``repr``, errors and health details.
        name: Name of the database (default ``"mock"``).
        health_thresholds: When a slow probe or a full pool counts as DEGRADED.

    Example:
        >>> db = MockDatabase()
        >>> _ = db.on("SELECT name FROM users WHERE id = :id", rows=[{"name": "ann"}])
        >>> with db.transaction() as conn:
        ...     conn.execute("SELECT name FROM users WHERE id = :id", {"id": 1}).scalar()
        'ann'
    """

    __module__ = _PUBLIC

    def __init__(
        self,
        *,
        script: MockScript | None = None,
        strict: bool = False,
        check_params: bool = True,
        pool_size: int = 5,
        pool_timeout: float = 1.0,
        url: str = "mock://",
        name: str | None = None,
        health_thresholds: HealthThresholds | None = None,
    ) -> None:
        super().__init__(url, name=name or "mock", health_thresholds=health_thresholds)
        self._setup(script, strict, check_params, pool_size, pool_timeout)

    def _begin(self, **options: Any) -> MockConnection:
        error = self._checkout_error()
        if error is not None:
            raise error
        if not self._pool.acquire(self._pool.timeout):
            raise self._pool_timeout_error(self._pool.timeout, self._pool.info())
        return MockConnection._from_pool(self, options)

    def _end(self, conn: MockConnection, *, commit: bool) -> None:
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()

    def _probe(self) -> None:
        delay = self.script._health_plan().delay
        if delay:
            time.sleep(delay)
        error = self._probe_error()
        if error is not None:
            raise error

    def health_check(self) -> HealthResult:
        """Probe the mock: UNHEALTHY while offline, otherwise as scripted by ``set_health()``."""
        return self._scripted_health(super().health_check())

    def get_connection(self) -> MockConnection:
        """Check out a connection; the caller must commit/rollback and ``close()`` it."""
        self._check_open()
        return self._begin()

    def shutdown(self) -> None:
        """Close the mock; later use raises ``DatabaseClosedError``."""
        self._closed = True


class AsyncMockDatabase(_MockMixin, AsyncDatabaseBase[AsyncMockConnection]):
    """Async twin of :class:`MockDatabase` (same arguments, same script, ``async with``)."""

    __module__ = _PUBLIC

    def __init__(
        self,
        *,
        script: MockScript | None = None,
        strict: bool = False,
        check_params: bool = True,
        pool_size: int = 5,
        pool_timeout: float = 1.0,
        url: str = "mock://",
        name: str | None = None,
        health_thresholds: HealthThresholds | None = None,
    ) -> None:
        super().__init__(url, name=name or "mock", health_thresholds=health_thresholds)
        self._setup(script, strict, check_params, pool_size, pool_timeout)

    async def _begin(self, **options: Any) -> AsyncMockConnection:
        error = self._checkout_error()
        if error is not None:
            raise error
        if not await self._pool.acquire_async(self._pool.timeout):
            raise self._pool_timeout_error(self._pool.timeout, self._pool.info())
        return AsyncMockConnection._from_pool(self, options)

    async def _end(self, conn: AsyncMockConnection, *, commit: bool) -> None:
        try:
            if commit:
                await conn.commit()
            else:
                await conn.rollback()
        finally:
            await conn.close()

    async def _probe(self) -> None:
        delay = self.script._health_plan().delay
        if delay:
            await asyncio.sleep(delay)
        error = self._probe_error()
        if error is not None:
            raise error

    async def health_check(self) -> HealthResult:
        """Probe the mock: UNHEALTHY while offline, otherwise as scripted by ``set_health()``."""
        return self._scripted_health(await super().health_check())

    async def get_connection(self) -> AsyncMockConnection:
        """Check out a connection; the caller must commit/rollback and ``await close()`` it."""
        self._check_open()
        return await self._begin()

    async def shutdown(self) -> None:
        """Close the mock; later use raises ``DatabaseClosedError``."""
        self._closed = True
