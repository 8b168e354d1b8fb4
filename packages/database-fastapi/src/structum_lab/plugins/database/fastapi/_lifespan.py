"""Open the application's databases at startup and shut them down at exit (FastAPI lifespan)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import MappingProxyType
from typing import Any, TypeAlias

import anyio
import anyio.to_thread

from structum_lab.plugins.database import (
    AsyncDatabaseInterface,
    DatabaseInterface,
    DatabaseUnavailableError,
    HealthStatus,
    set_database,
)

from ._state import STATE_KEY, is_async_database, logger

__all__ = ["DatabaseLifespan", "DatabaseSource", "database_lifespan"]

#: A configuration namespace (built with ``backend.from_config(namespace)``) or a database.
DatabaseSource: TypeAlias = str | DatabaseInterface | AsyncDatabaseInterface
Backend: TypeAlias = type[DatabaseInterface] | type[AsyncDatabaseInterface]


def _default_name(source: DatabaseSource) -> str:
    if isinstance(source, str):
        return "default" if source == "database" else source
    return "default"


class DatabaseLifespan:
    """A FastAPI/Starlette lifespan that owns the application's databases.

    At startup it builds each database (``backend.from_config(namespace)`` for a namespace, or
    takes the instance given), opens asyncio pools in the running loop, registers each with
    ``set_database(db, name)`` and publishes them in the lifespan state, where the dependencies
    look first. At exit it shuts down, in reverse order, what it built itself (awaiting the asyncio
    ones and running the blocking ones in a worker thread). Databases passed as instances belong
    to the caller and stay open (a test client per test module can reuse one), unless
    ``shutdown_instances=True`` hands them over.

    Names: the namespace ``database`` (the default one) is registered as ``default``, any other
    namespace under its own name (``replica_db``), an instance as ``default``; ``named`` gives
    explicit names.

    Use it as ``FastAPI(lifespan=database_lifespan(...))``, or enter it from your own lifespan::

        databases = database_lifespan("database", backend=AsyncPostgresDatabase)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
            async with databases(app) as state:
                ...  # your own startup
                yield state
    """

    def __init__(
        self,
        *sources: DatabaseSource,
        backend: Backend | None = None,
        named: Mapping[str, DatabaseSource] | None = None,
        require_healthy: bool = False,
        shutdown_instances: bool = False,
    ) -> None:
        """Describe the databases to open.

        Args:
            *sources: Configuration namespaces and/or database instances; none means the
                namespace ``database``.
            backend: The class that builds a namespace (``SQLAlchemyDatabase``,
                ``AsyncPostgresDatabase``, ...); required when a namespace is given.
            named: ``{name: namespace or database}`` for explicit registry names.
            require_healthy: Run ``health_check()`` at startup and refuse to start while a
                database is UNHEALTHY (DEGRADED starts). By default the application starts and
                the readiness endpoint answers 503 until the database is reachable.
            shutdown_instances: Also shut down, at exit, the databases passed as instances. By
                default only those built from a namespace are shut down: an instance's owner
                decides when it closes.

        Raises:
            ValueError: Two databases would get the same name, or a namespace has no backend.
        """
        entries: list[tuple[str, DatabaseSource]] = []
        if not sources and not named:
            sources = ("database",)
        entries.extend((_default_name(source), source) for source in sources)
        entries.extend((named or {}).items())
        seen: set[str] = set()
        for name, source in entries:
            if name in seen:
                raise ValueError(
                    f"two databases would be registered as {name!r}; give them distinct names "
                    "with named={'<name>': ...}"
                )
            seen.add(name)
            if isinstance(source, str) and backend is None:
                raise ValueError(
                    f"database_lifespan() needs backend=<class> to build the namespace "
                    f"{source!r}, e.g. backend=SQLAlchemyDatabase or backend=AsyncPostgresDatabase"
                )
        self._entries = entries
        self._backend = backend
        self._require_healthy = require_healthy
        self._shutdown_instances = shutdown_instances
        self._open: dict[str, Any] = {}

    @property
    def databases(self) -> Mapping[str, Any]:
        """The databases open right now, by name (empty outside the lifespan)."""
        return MappingProxyType(self._open)

    def __call__(self, app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
        """The lifespan context for ``app`` (FastAPI calls this at startup)."""
        return self._run()

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self._entries)
        return f"<DatabaseLifespan {names}>"

    async def _build(self, source: DatabaseSource) -> Any:
        if not isinstance(source, str):
            return source
        assert self._backend is not None  # checked in __init__
        if issubclass(self._backend, AsyncDatabaseInterface):
            return self._backend.from_config(source)
        # Reading configuration files, and a sync pool may connect in its constructor.
        return await anyio.to_thread.run_sync(self._backend.from_config, source)

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        if self._open:
            raise RuntimeError(f"{self!r} is already running; create one per application")
        opened: dict[str, Any] = {}
        owned: dict[str, Any] = {}  # what exit shuts down: built here, or handed over
        try:
            for name, source in self._entries:
                db = await self._build(source)
                opened[name] = db
                if isinstance(source, str) or self._shutdown_instances:
                    owned[name] = db
                opener = getattr(db, "open", None)
                if is_async_database(db) and inspect.iscoroutinefunction(opener):
                    await opener()  # fill the asyncio pool in this loop, not on the first request
                set_database(db, name)
            if self._require_healthy:
                await self._check(opened)
            self._open = opened
            yield {STATE_KEY: dict(opened)}
        finally:
            self._open = {}
            with anyio.CancelScope(shield=True):
                for name, db in reversed(owned.items()):
                    await _shutdown(name, db)

    @staticmethod
    async def _check(opened: Mapping[str, Any]) -> None:
        for name, db in opened.items():
            if is_async_database(db):
                result = await db.health_check()
            else:
                result = await anyio.to_thread.run_sync(db.health_check)
            if result.status is HealthStatus.UNHEALTHY:
                raise DatabaseUnavailableError(
                    f"database {name!r} is unhealthy at startup: {result.message}"
                )
            logger.info("database %r is %s at startup", name, result.status.value)


async def _shutdown(name: str, db: Any) -> None:
    try:
        if is_async_database(db):
            await db.shutdown()
        else:
            await anyio.to_thread.run_sync(db.shutdown)
    except Exception:
        # Keep shutting the others down; the application is exiting anyway.
        logger.exception("shutdown of database %r failed", name)


def database_lifespan(
    *sources: DatabaseSource,
    backend: Backend | None = None,
    named: Mapping[str, DatabaseSource] | None = None,
    require_healthy: bool = False,
    shutdown_instances: bool = False,
) -> DatabaseLifespan:
    """A lifespan opening the configured databases at startup and shutting them down at exit.

    Example::

        app = FastAPI(lifespan=database_lifespan("database", backend=AsyncPostgresDatabase))

    Args:
        *sources: Configuration namespaces and/or database instances (default: ``database``).
        backend: The class that builds the namespaces, e.g. ``SQLAlchemyDatabase``.
        named: ``{name: namespace or database}`` for explicit registry names.
        require_healthy: Refuse to start while a database is UNHEALTHY.
        shutdown_instances: Shut down the databases passed as instances at exit too (by default
            only those built from a namespace are).

    Returns:
        A :class:`DatabaseLifespan`, for ``FastAPI(lifespan=...)``.
    """
    return DatabaseLifespan(
        *sources,
        backend=backend,
        named=named,
        require_healthy=require_healthy,
        shutdown_instances=shutdown_instances,
    )
