"""The transaction machinery of the backends (``_base_sync.py`` is generated from this file).

A backend subclasses :class:`AsyncDatabaseBase` and supplies ``_begin()``, ``_end()`` and
``_probe()``; nesting, savepoints, the closed check and health grading live here once
(``run_transaction()``'s retry loop is the interfaces' own, in ``_interfaces_async.py``).
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Generic, TypeVar

from ._acompat import AsyncOwner, current_task
from ._observe import Watch, record_wait
from ._replicas import FAILOVER_ERRORS, checked_replica_options
from ._replicas_async import AsyncReplicaRouter
from ._state import DatabaseState, forget_active
from .errors import DatabaseError
from .health import HealthResult
from .interfaces import AsyncConnection, AsyncDatabaseInterface, MaybeRow, Params, Row

__all__ = ["AsyncDatabaseBase"]

AC = TypeVar("AC", bound=AsyncConnection)

# Settings a replica does not take from its primary.
_NOT_INHERITED = frozenset(
    {"self", "url", "name", "__class__", "replicas", "max_replica_lag", "replica_check_interval"}
)


class _AsyncTransaction(Generic[AC]):
    """``async with db.transaction() as conn``; a plain class is cheaper than a generator here.

    This is the per-transaction hot path of every backend (the wrapper must cost about what the
    raw pool costs), so it reads the owner (thread or task) once and calls ``_begin()`` without
    keyword unpacking when there are no options.
    """

    __slots__ = ("_conn", "_db", "_options", "_savepoint", "_target", "_token", "_watch")
    _watch: Watch | None

    # No ``__init__``: ``transaction()`` sets ``_db``, ``_options`` and ``_savepoint`` itself,
    # which saves a Python frame per transaction.
    _db: AsyncDatabaseBase[AC]
    _options: dict[str, Any]
    _savepoint: Any

    async def __aenter__(self) -> AC:
        db = self._db
        owner = current_task()
        # ``_joinable()``, inlined: this runs once per transaction.
        outer = db._pinned
        if outer is None:
            active = db._active.get()
            if active is not None and active[1] == owner:
                outer = active[0]
        if outer is not None:
            self._savepoint = outer.savepoint()
            return await self._savepoint.__aenter__()  # type: ignore[no-any-return]
        if db._closed:
            db._check_open()  # raises DatabaseClosedError
        options = self._options
        self._target = db
        watch = Watch(db) if db._observed else None  # metrics, slow log: see _observe.py
        if options:
            if db._router is not None and options.get("read_only"):
                conn = await self._routed(db._router, options)
            else:
                conn = await db._begin(**options)
            timeout = options.get("timeout") or db.transaction_timeout
        else:
            conn = await db._begin()
            timeout = db.transaction_timeout
        if timeout is not None:
            # A client-side deadline too: a server that stops answering cannot hold us forever.
            conn._deadline = self._target._arm(conn, timeout)
        if watch is not None:
            self._watch = watch
            watch.checked_out(conn, self._target)
        if db.leak_detection_threshold is not None:
            self._target._checkouts.track(conn, "transaction()")
        self._conn = conn
        self._token = db._active.set((conn, owner))
        return conn

    async def _routed(self, router: AsyncReplicaRouter, options: dict[str, Any]) -> AC:
        """Begin a read-only transaction on a usable replica, else on the primary."""
        target = router.pick_watched()
        if target is not None:
            # A standby refuses writes by itself. Without READ ONLY here, a driver that resets
            # it to "read write" afterwards (SQLAlchemy) never sends BEGIN READ WRITE to it.
            rest = {k: v for k, v in options.items() if k != "read_only" and v is not None}
            try:
                conn: AC = await (target._begin(**rest) if rest else target._begin())
            except FAILOVER_ERRORS as exc:
                node = router.node_of(target)
                if node is not None:
                    router.replica_failed(node, exc)
            else:
                self._target = target
                return conn
        return await self._db._begin(**options)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._savepoint is not None:
            await self._savepoint.__aexit__(exc_type, exc, tb)
            return
        db = self._db
        if exc_type is not None and not issubclass(exc_type, Exception):
            # Cancelled (asyncio.CancelledError, KeyboardInterrupt): a statement may still be
            # in flight, so the connection is closed rather than rolled back on a socket that
            # may never answer.
            self._conn._abandoned = True
        try:
            db._active.reset(self._token)
        except ValueError:  # exited in another Context (FastAPI): see forget_active
            forget_active(db._active, self._token, self._conn)
        watch = None
        if db._observed:
            watch = getattr(self, "_watch", None)
            self._watch = None
        try:
            router = db._router
            if router is None:
                await db._end(self._conn, commit=exc_type is None)
                return
            target = self._target
            try:
                await target._end(self._conn, commit=exc_type is None)
            except FAILOVER_ERRORS as error:
                if target is not db:
                    router.failed_db(target, error)
                raise
            finally:
                if exc_type is None and target is db and not self._options.get("read_only"):
                    # Read-your-writes: this context reads from the primary until a replica has
                    # replayed past this (possible) write.
                    router.wrote()
            if target is not db and isinstance(exc, FAILOVER_ERRORS):
                router.failed_db(target, exc)
        finally:
            if watch is not None:
                watch.returned(self._conn)


class AsyncDatabaseBase(DatabaseState, AsyncDatabaseInterface, Generic[AC]):
    """Shared machinery of the backends (transactions, nesting, health, replica routing)."""

    #: Routes reads to replicas; None without ``replicas`` (and on a replica itself).
    _router: AsyncReplicaRouter | None = None

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._active: ContextVar[tuple[AC, AsyncOwner] | None] = ContextVar(
            f"structum_db_active_{id(self)}", default=None
        )
        self._pinned: AC | None = None
        # Read by every transaction: an instance attribute is a specialized load on CPython 3.11,
        # the class default a generic lookup (replicas set the router after this).
        self._router = None

    def _init_replicas(
        self,
        replicas: Sequence[str] | str | None,
        max_replica_lag: float,
        replica_check_interval: float,
        settings: dict[str, Any],
    ) -> None:
        """Build one database per replica URL (this class, ``settings``) and the router.

        Called by each backend at the end of its constructor with its own constructor
        arguments (without ``url`` and the replica settings).
        """
        owner = type(self).__name__
        urls = checked_replica_options(owner, replicas, max_replica_lag, replica_check_interval)
        self.max_replica_lag = float(max_replica_lag)
        self.replica_check_interval = float(replica_check_interval)
        if not urls:
            return
        self._add_secrets(urls)
        named = settings.get("name")
        settings = {k: v for k, v in settings.items() if k not in _NOT_INHERITED}
        built = []
        try:
            for i, url in enumerate(urls, 1):
                name = f"{named}-replica-{i}" if named else None
                built.append(type(self)(url, name=name, **settings))
        except BaseException:
            for db in built:
                db._closed = True
            raise
        self._router = AsyncReplicaRouter(
            self, built, max_lag=self.max_replica_lag, interval=self.replica_check_interval
        )

    @property
    def replicas(self) -> list[Any]:
        """The replica databases (empty without ``replicas``)."""
        router = self._router
        return [] if router is None else [node.db for node in router.nodes]

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    async def _begin(self, **options: Any) -> AC:
        """Check out a connection and begin a transaction with ``options``."""

    @abstractmethod
    async def _end(self, conn: AC, *, commit: bool) -> None:
        """Commit (or roll back), then return ``conn`` to the pool whatever happens."""

    @abstractmethod
    async def _probe(self) -> float | None:
        """One round trip to the server within ``health_timeout`` (raises when it fails).

        On a pooled connection when one is free at once; otherwise (every connection busy, or
        none open yet) on a short-lived connection of its own, opened like a pooled one.

        Returns:
            The round trip in seconds, connect time excluded; None to let ``health_check()``
            time the whole probe.
        """

    def _arm(self, conn: AC, seconds: float) -> Any:
        """Arm ``conn``'s client-side deadline (``_deadlines.arm`` on its socket), or None.

        The backend cancels it in ``_end()`` before the connection goes back to the pool.
        """
        return None

    def _reclaimer(self, conn: AC) -> Callable[[], Any] | None:
        """What rolls back and returns ``conn`` if its caller drops it (None: nothing to do).

        The callable must not refer to ``conn`` (it runs once ``conn`` is garbage).
        """
        return None

    def _after_fork(self) -> None:
        # The forking thread (or task) may be inside a transaction() block (or force_rollback()):
        # that connection is the parent's. Here it becomes unusable, and a new transaction()
        # starts on a fresh connection instead of nesting into it.
        super()._after_fork()
        active = self._active.get()
        if active is not None:
            self._disown(active[0])
            self._active.set(None)
        if self._pinned is not None:
            self._disown(self._pinned)

    # -- shared behaviour --------------------------------------------------------------------
    def _joinable(self, owner: AsyncOwner | None = None) -> AC | None:
        """The connection a new ``transaction()`` of ``owner`` (default: the caller) joins.

        ``owner`` is the caller's thread id or task when it already has it (None means the same:
        asking again gives the same answer).
        """
        if self._pinned is not None:
            return self._pinned
        active = self._active.get()
        # A child task inherits the context but must not share the parent's connection.
        if active is not None and active[1] == (owner or current_task()):
            return active[0]
        return None

    def transaction(
        self,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> _AsyncTransaction[AC]:
        """A connection inside a transaction: COMMIT on success, ROLLBACK on any exception.

        Args:
            isolation_level: e.g. ``"SERIALIZABLE"``, ``"REPEATABLE READ"``; None keeps the default.
            read_only: Start a READ ONLY transaction.
            timeout: Seconds this transaction may take. The server cancels a statement that runs
                longer (where it has a statement timeout); if the server stops answering, the
                client closes the connection shortly after (never reusing it) and raises
                ``StatementTimeoutError``. Default: the database's ``transaction_timeout``.
            **options: Backend-specific options (``pipeline=True`` on PostgreSQL).

        Returns:
            A context manager yielding the connection. Inside another ``transaction()`` of this
            database in the same thread (or task) it yields the same connection under a SAVEPOINT.
        """
        if isolation_level is not None or read_only or timeout is not None:
            options.update(isolation_level=isolation_level, read_only=read_only, timeout=timeout)
        tx: _AsyncTransaction[AC] = _AsyncTransaction()
        tx._db = self
        tx._options = options
        tx._savepoint = None
        return tx

    async def get_connection(self) -> AC:
        """Check out a connection; ``commit()``/``rollback()`` it, then ``close()`` it.

        A connection dropped without ``close()`` is rolled back and returned to the pool when it
        is garbage collected, with a WARNING naming where it was taken.

        Raises:
            PoolTimeoutError: No connection became free in time.
            DatabaseUnavailableError: The database cannot be reached.
            DatabaseClosedError: After ``shutdown()``.
        """
        self._check_open()
        if self._observed:
            started = time.perf_counter()
            conn = await self._begin()
            record_wait(self, started)
        else:
            conn = await self._begin()
        conn._manual = True
        if True:  # ASYNC: a dropped connection is returned on the loop it belongs to
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        else:
            loop = None
        self._checkouts.handout(conn, self._reclaimer(conn), loop)
        return conn

    @asynccontextmanager
    async def force_rollback(self) -> AsyncIterator[AC]:
        """Run everything inside one transaction that is rolled back at the end (for tests).

        While it is open, every ``transaction()`` on this database, from any thread or task, joins
        its connection as a SAVEPOINT, so nothing a test writes survives it.
        """
        self._check_open()
        if self._pinned is not None:
            raise RuntimeError("force_rollback() is already active on this database")
        conn = await self._begin()
        self._pinned = conn
        try:
            yield conn
        finally:
            self._pinned = None
            await self._end(conn, commit=False)

    def _may_retry(self) -> bool:
        """``run_transaction()``: refuse inside an outer transaction; run once in force_rollback.

        Raises:
            DatabaseError: The caller's thread or task is inside a ``transaction()`` of this
                database: a retry would run again only the inner part of the outer transaction.
        """
        if self._pinned is not None:
            # force_rollback() (test isolation): everything joins one outer transaction that a
            # failure aborts, so there is nothing to retry; fn runs once, in a savepoint.
            return False
        if self._joinable() is not None:
            raise DatabaseError(
                f"run_transaction() was called inside a transaction() of {self.url!r} in the "
                "same thread or task: retrying would run again only the inner part of the outer "
                "transaction. Call run_transaction() outside any transaction(), or call the "
                "function directly with the outer connection"
            )
        return True

    async def health_check(self) -> HealthResult:
        """Probe the database with one round trip and grade the result, within ``health_timeout``.

        The probe does not queue behind the pool: with every connection busy it opens a
        short-lived connection of its own, so a saturated pool is DEGRADED (with its snapshot),
        not UNHEALTHY. The latency reported is the round trip alone, without connect time.

        Returns:
            HEALTHY, DEGRADED (slow or saturated pool) or UNHEALTHY (unreachable, shut down).
            Never raises for an unreachable database.
        """
        start = time.perf_counter()
        try:
            self._check_open()
            round_trip = await self._probe()
        except Exception as exc:
            return self._health_failed(exc, (time.perf_counter() - start) * 1000.0)
        if round_trip is None:
            round_trip = time.perf_counter() - start
        result = self._health_ok(round_trip * 1000.0, self.get_pool_info())
        if self._router is not None:
            return self._router.health(result)
        return result

    async def fetchone(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> MaybeRow:
        """Run one statement as a transaction of its own and return its first row (or None).

        Args:
            sql: The statement.
            params: Its parameters.
            read_only: The statement only reads: with ``replicas`` a usable replica may run it
                (the primary does when none is, or when the replica fails; no error reaches
                the caller for that).
        """
        if self._router is not None:
            return await self._routed_single(sql, params, 1, read_only)
        return await super().fetchone(sql, params)

    async def fetchall(
        self, sql: str, params: Params = None, *, read_only: bool = False
    ) -> list[Row]:
        """Run one statement as a transaction of its own and return every row (see fetchone)."""
        if self._router is not None:
            return await self._routed_single(sql, params, 2, read_only)  # type: ignore[no-any-return]
        return await super().fetchall(sql, params)

    async def _routed_single(self, sql: Any, params: Any, fetch: int, read_only: bool) -> Any:
        """``db.fetchone/fetchall/execute`` of a database with replicas (``fetch``: 1, 2, 0).

        A read outside a transaction may go to a replica; anything else runs here and stamps
        the caller's context for read-your-writes.
        """
        router = self._router
        assert router is not None
        if read_only and self._joinable() is None:
            return await self._replica_read(router, sql, params, fetch)
        try:
            return await self._unrouted_single(sql, params, fetch)
        finally:
            router.wrote()  # read-your-writes (see transaction())

    async def _unrouted_single(self, sql: Any, params: Any, fetch: int) -> Any:
        """One statement on this database, as without replicas (backends use their fast path)."""
        if fetch == 1:
            return await AsyncDatabaseInterface.fetchone(self, sql, params)
        if fetch == 2:
            return await AsyncDatabaseInterface.fetchall(self, sql, params)
        return await AsyncDatabaseInterface.execute(self, sql, params)

    async def _replica_read(
        self, router: AsyncReplicaRouter, sql: str, params: Params, fetch: int
    ) -> Any:
        """One read on a usable replica; on the primary when there is none or it fails."""
        target = router.pick_watched()
        if target is not None:
            try:
                return await target._unrouted_single(sql, params, fetch)
            except FAILOVER_ERRORS as exc:
                router.failed_db(target, exc)
        return await self._unrouted_single(sql, params, fetch)

    async def _shutdown_replicas(self) -> None:
        """Stop the replica watchers and shut the replicas down (backends' ``shutdown()``)."""
        if self._router is not None:
            await self._router.shutdown()
