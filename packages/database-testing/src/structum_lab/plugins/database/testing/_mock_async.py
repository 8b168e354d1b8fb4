"""``AsyncMockDatabase`` and its connection; ``_mock_sync.py`` is generated from this file.

Both twins subclass core's shared bases, so ``transaction()`` nesting (savepoints),
``force_rollback()``, the closed check and health grading behave exactly as on the real backends.
What happens to a statement is decided by a
:class:`~structum_lab.plugins.database.testing.MockScript`, shared by both twins; the twins only
differ in how they wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from typing_extensions import Self

from structum_lab.plugins.database import AsyncConnection, HealthResult, HealthThresholds
from structum_lab.plugins.database._acompat import asleep
from structum_lab.plugins.database._retry import DEFAULT_POLICY
from structum_lab.plugins.database._statements import (
    check_statement,
    control_statement_error,
    manual_only_error,
)
from structum_lab.plugins.database.base import AsyncDatabaseBase
from structum_lab.plugins.database.interfaces import Params
from structum_lab.plugins.database.results import AsyncBufferedResult

from ._mock_base import PUBLIC_MODULE, ConnectionCore, MockMixin, user_queries
from .script import MockScript, MockTransaction, _Outcome

__all__ = ["AsyncMockConnection", "AsyncMockDatabase"]


class AsyncMockConnection(AsyncConnection):
    """A connection of :class:`AsyncMockDatabase` (its ``transaction()`` yields one).

    Args:
        database: The mock database it belongs to. Any other object (an application's own test
            double, seed §11.3) gets a standalone connection with its own :class:`MockScript`
            that records into ``database.queries`` when that is a list.
    """

    __module__ = PUBLIC_MODULE

    def __init__(self, database: object | None = None) -> None:
        if isinstance(database, MockMixin):
            self._core = ConnectionCore(database.script, database._check_open)
        else:
            self._core = ConnectionCore(MockScript(queries=user_queries(database)))
            self._manual = True  # a standalone connection: its owner commits
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
            await asleep(outcome.delay)
        if outcome.error is not None:
            raise outcome.error
        self._result_last = AsyncBufferedResult(outcome.rows, outcome.rowcount)
        return self._result_last

    def _vet(self, sql: str) -> None:
        # As every backend: no NUL in SQL, no COMMIT/ROLLBACK inside a transaction() block.
        control = check_statement(sql, True)
        if control is not None and not self._manual:
            raise control_statement_error(control)

    async def execute(self, sql: str, params: Params = None) -> AsyncBufferedResult:
        """Record the statement and return its scripted result (or raise its scripted error)."""
        self._vet(sql)
        return await self._result(self._core.run(sql, params, many=False))

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> AsyncBufferedResult:
        """Record the statement with every parameter set; one scripted answer for the batch."""
        self._vet(sql)
        return await self._result(self._core.run(sql, list(params_seq), many=True))

    @property
    def last_result(self) -> AsyncBufferedResult | None:
        """The result of the last successful ``execute()``."""
        return self._result_last

    async def commit(self) -> None:
        """Mark the current transaction committed (raises on a lost connection).

        Raises:
            DatabaseError: On a connection of a ``transaction()`` block, as on every backend.
        """
        if not self._manual:
            raise manual_only_error("commit")
        self._core.commit()

    async def rollback(self) -> None:
        """Mark the current transaction rolled back (``get_connection()`` connections only)."""
        if not self._manual:
            raise manual_only_error("rollback")
        self._core.rollback()

    async def close(self) -> None:
        """Roll back anything uncommitted and give the connection back to the pool."""
        ticket = self._ticket
        if ticket is not None:
            ticket.checkin(self)
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


class AsyncMockDatabase(MockMixin, AsyncDatabaseBase[AsyncMockConnection]):
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
        max_waiting: Most callers waiting for a connection; one more fails at once with
            ``PoolOverloadedError`` (0: no limit).
        retries: ``run_transaction()``'s default retries (as on the real backends).
        retry_backoff: Upper bound of its first pause, in seconds (doubling each retry)...
        retry_max_backoff: ... up to this many seconds.
        retry_timeout: Seconds after which ``run_transaction()`` starts no more retries.
        leak_detection_threshold: Seconds a connection may stay checked out before a WARNING
            (None: off), as on the real backends.
        slow_transaction_threshold: Seconds after which a ``transaction()`` logs one WARNING
            with its duration and statements (None: off), as on the real backends.

    Example::

        db = AsyncMockDatabase()
        db.on("SELECT name FROM users WHERE id = :id", rows=[{"name": "ann"}])
        async with db.transaction() as conn:
            result = await conn.execute("SELECT name FROM users WHERE id = :id", {"id": 1})
            assert await result.scalar() == "ann"
    """

    __module__ = PUBLIC_MODULE

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
        max_waiting: int = 0,
        retries: int = DEFAULT_POLICY.retries,
        retry_backoff: float = DEFAULT_POLICY.backoff,
        retry_max_backoff: float = DEFAULT_POLICY.max_backoff,
        retry_timeout: float = DEFAULT_POLICY.timeout,
        leak_detection_threshold: float | None = None,
        slow_transaction_threshold: float | None = None,
    ) -> None:
        super().__init__(
            url,
            name=name or "mock",
            health_thresholds=health_thresholds,
            max_waiting=max_waiting,
            retries=retries,
            retry_backoff=retry_backoff,
            retry_max_backoff=retry_max_backoff,
            retry_timeout=retry_timeout,
            leak_detection_threshold=leak_detection_threshold,
            slow_transaction_threshold=slow_transaction_threshold,
        )
        self._setup(script, strict, check_params, pool_size, pool_timeout)

    async def _begin(self, **options: Any) -> AsyncMockConnection:
        error = self._checkout_error()
        if error is not None:
            raise error
        acquired = await self._pool.aacquire(self._pool.timeout)
        if acquired == "overloaded":
            raise self._overloaded_error(self._pool.info())
        if acquired == "timeout":
            raise self._pool_timeout_error(self._pool.timeout, self._pool.info())
        return AsyncMockConnection._from_pool(self, options)

    async def _end(self, conn: AsyncMockConnection, *, commit: bool) -> None:
        try:
            if commit:
                conn._core.commit()
            else:
                conn._core.rollback()
        finally:
            await conn.close()

    def _reclaimer(self, conn: AsyncMockConnection) -> Callable[[], Any]:
        return partial(self._reclaim, conn._core)

    async def _reclaim(self, core: ConnectionCore) -> None:
        """Roll back and return a dropped ``get_connection()`` connection (see core)."""
        core.close()

    async def _probe(self) -> None:
        delay = self.script._health_plan().delay
        if delay:
            await asleep(delay)
        error = self._probe_error()
        if error is not None:
            raise error

    async def health_check(self) -> HealthResult:
        """Probe the mock: UNHEALTHY while offline, otherwise as scripted by ``set_health()``."""
        return self._scripted_health(await super().health_check())

    async def shutdown(self) -> None:
        """Close the mock; later use raises ``DatabaseClosedError``."""
        if not self._closed:
            self._report_unreturned(self._pool.checked_out)
        self._closed = True
