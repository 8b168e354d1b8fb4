"""What both mock databases share: the simulated pool, the per-connection core and scripting.

The mock twins themselves are in ``_mock_async.py`` (the source) and ``_mock_sync.py`` (generated
from it); :mod:`structum_lab.plugins.database.testing.mock` re-exports them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from structum_lab.plugins.database import (
    CommitOutcomeUnknownError,
    DatabaseError,
    DatabaseUnavailableError,
    HealthResult,
    HealthStatus,
    PoolInfo,
)
from structum_lab.plugins.database.base import DatabaseState

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

__all__ = ["ConnectionCore", "MockMixin", "MockPool", "user_queries"]

PUBLIC_MODULE = "structum_lab.plugins.database.testing"
_POLL = 0.002  # seconds between checks while an async checkout waits for a free connection


Acquired = Literal["ok", "timeout", "overloaded"]


class MockPool:
    """Connection accounting of one mock database (what ``get_pool_info()`` reports)."""

    def __init__(self, size: int, timeout: float, max_waiting: int = 0) -> None:
        if size < 1:
            raise ValueError(f"pool_size must be at least 1, got {size}")
        self.size = size
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.checked_out = 0
        self.opened = 0
        self.waiting = 0
        self.cond = threading.Condition()

    def _overloaded(self) -> bool:
        """A caller arriving now would wait beyond ``max_waiting`` (call with ``cond`` held)."""
        return bool(
            self.max_waiting and self.checked_out >= self.size and self.waiting >= self.max_waiting
        )

    def try_acquire(self) -> bool:
        with self.cond:
            if self.checked_out >= self.size:
                return False
            self.checked_out += 1
            self.opened = max(self.opened, self.checked_out)
            return True

    def acquire(self, timeout: float) -> Acquired:
        deadline = time.monotonic() + timeout
        with self.cond:
            if self._overloaded():
                return "overloaded"
            self.waiting += 1
            try:
                while self.checked_out >= self.size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return "timeout"
                    self.cond.wait(remaining)
                self.checked_out += 1
                self.opened = max(self.opened, self.checked_out)
                return "ok"
            finally:
                self.waiting -= 1

    async def aacquire(self, timeout: float) -> Acquired:
        deadline = time.monotonic() + timeout
        with self.cond:
            if self._overloaded():
                return "overloaded"
            self.waiting += 1
        try:
            while not self.try_acquire():
                if time.monotonic() >= deadline:
                    return "timeout"
                await asyncio.sleep(_POLL)
            return "ok"
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

    def info(self) -> PoolInfo:
        with self.cond:
            return {
                "checked_out": self.checked_out,
                "available": self.opened - self.checked_out,
                "total": self.opened,
                "overflow": 0,
                "max": self.size,
                "waiting": self.waiting,
            }


class ConnectionCore:
    """State and rules of one mock connection, shared by the sync and async wrappers."""

    __slots__ = ("_sp_ids", "broken", "check_open", "closed", "pool", "savepoints", "script", "tx")

    def __init__(self, script: MockScript, check_open: Callable[[], None] | None = None) -> None:
        self.script = script
        self.check_open = check_open
        self.pool: MockPool | None = None
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
        error = self.script._take_commit_fault()
        if error is None:
            self._finish("committed")
            return
        if isinstance(error, CommitOutcomeUnknownError):
            # Lost during COMMIT: say it did commit (the case callers must cope with); the
            # connection is gone.
            self._finish("committed")
            self.broken = True
        else:
            self._finish("rolled_back")
            if isinstance(error, DatabaseUnavailableError):
                self.broken = True
        raise error

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


def user_queries(database: object) -> list[QueryRecord] | None:
    queries = getattr(database, "queries", None)
    return queries if isinstance(queries, list) else None


class MockMixin(DatabaseState):
    """What both mock databases offer on top of the interface: scripting and inspection.

    Every method here forwards to :attr:`script`, so the sync and async twins share one
    implementation and one script can back both.
    """

    script: MockScript
    _pool: MockPool
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
        self._pool = MockPool(pool_size, pool_timeout, self.max_waiting)

    def _checkout_error(self) -> Exception | None:
        """The error a checkout raises before waiting for the pool, if any."""
        if self.script.offline:
            return self._unavailable_error(
                ConnectionRefusedError("connection refused (the mock database is offline)")
            )
        fault = self.script._take_pool_fault()
        if fault == "overloaded":
            return self._overloaded_error(self._pool.info())
        if fault is not None:
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

    def overload_pool(self, times: int = 1) -> None:
        """Make the next ``times`` checkouts raise ``PoolOverloadedError``."""
        self.script.overload_pool(times)

    def fail_commit(self, times: int = 1, *, error: ErrorSpec = "commit_unknown") -> None:
        """Make the next ``times`` COMMITs raise; see :meth:`MockScript.fail_commit`."""
        self.script.fail_commit(times, error=error)

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

    def get_pool_info(self) -> PoolInfo:
        """Simulated pool statistics: ``checked_out``, ``available``, ``total``, ``max``, ...

        ``leaked`` counts connections held longer than ``leak_detection_threshold``.
        """
        info = self._pool.info()
        info["leaked"] = self._checkouts.leaked
        return info

    def _after_fork(self) -> None:
        # In a forked child the parent's checkouts are not ours (and the lock may be held).
        super()._after_fork()
        self._pool = MockPool(self._pool.size, self._pool.timeout)
