"""Alembic migrations on the configured database, one process at a time.

In an Alembic ``env.py``::

    from structum_lab.plugins.database.sqlalchemy.migrations import run_migrations
    from myapp.models import Base

    run_migrations(Base.metadata)

The engine comes from the configured database (``SQLAlchemyDatabase.from_config("database")``:
the same files, secrets and ``STRUCTUM_DATABASE__*`` variables as the application), so the URL is
not repeated in ``alembic.ini``. While migrating, the connection holds a lock that every other
``run_migrations()`` on the same database waits for, so two processes starting at once (replicas
of one service, each running ``alembic upgrade head`` at start) migrate once: the second finds the
work done (alembic#633):

- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``), held across every migration
  transaction and released at the end (the server releases it if the process dies);
- MySQL / MariaDB: a named lock (``GET_LOCK``), likewise per session (their DDL is not
  transactional, so two concurrent migrations would otherwise fail half-way);
- SQLite: no lock (it has no such thing); migrate from one process, e.g. before starting workers.

Needs Alembic: ``pip install "structum-database-sqlalchemy[alembic]"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from alembic import context as _alembic_context
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without alembic installed
    if _exc.name != "alembic":
        raise
    raise ImportError(
        "structum_lab.plugins.database.sqlalchemy.migrations needs Alembic, which is not "
        'installed; run: pip install "structum-database-sqlalchemy[alembic]"'
    ) from _exc

from sqlalchemy import Connection, MetaData, text

from structum_lab.plugins.database.errors import ConfigurationError
from structum_lab.plugins.database.secrets import mask_url

from ._async import AsyncSQLAlchemyDatabase
from ._sync import SQLAlchemyDatabase

__all__ = ["migration_lock", "migration_lock_key", "run_migrations"]

logger = logging.getLogger("structum_lab.plugins.database.migrations")

#: MySQL/MariaDB ``GET_LOCK`` wait when ``lock_timeout`` is None: a year, i.e. as long as it takes.
_FOREVER = 365 * 24 * 3600


def migration_lock_key(version_table: str = "alembic_version", schema: str | None = None) -> int:
    """The advisory-lock key of migrations that record their version in ``schema.version_table``.

    A signed 64-bit integer (PostgreSQL's ``pg_advisory_lock(bigint)``), stable across processes
    and Python versions; the same for every process migrating the same version table.
    """
    name = f"structum-alembic:{schema or ''}.{version_table}".encode()
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)


@contextmanager
def migration_lock(
    connection: Connection, *, key: int | None = None, timeout: float | None = None
) -> Iterator[None]:
    """Hold the migration lock on ``connection`` (PostgreSQL, MySQL/MariaDB; SQLite: nothing).

    Session-level: it survives the commits of the migrations and is released on exit (or by the
    server when the connection dies). The connection has no transaction open on entry or exit.

    Args:
        connection: A SQLAlchemy connection (not inside a transaction).
        key: The lock (default :func:`migration_lock_key`).
        timeout: Seconds to wait for another process's migration; None waits as long as it
            takes.

    Raises:
        TimeoutError: The lock was not obtained within ``timeout``.
    """
    dialect = connection.dialect.name
    key = migration_lock_key() if key is None else key
    where = mask_url(connection.engine.url)
    if dialect == "postgresql":
        acquire, release = _postgres_lock(connection, key, timeout, where)
    elif dialect in ("mysql", "mariadb"):
        acquire, release = _mysql_lock(connection, key, timeout, where)
    else:
        logger.debug("no migration lock on %s (%s has none)", where, dialect)
        yield
        return
    acquire()
    try:
        yield
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
            release()
        except Exception as exc:  # the session ends with the connection, and the lock with it
            logger.warning(
                "releasing the migration lock on %s failed: %s", where, type(exc).__name__
            )
            connection.invalidate()


def _postgres_lock(
    connection: Connection, key: int, timeout: float | None, where: str
) -> tuple[Any, Any]:
    def acquire() -> None:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
        if not got.scalar():
            logger.info("another process is migrating %s; waiting for it to finish", where)
            if timeout is not None:
                connection.execute(text(f"SET lock_timeout = {int(timeout * 1000)}"))
            try:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            except Exception as exc:
                connection.rollback()
                if getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03":
                    raise TimeoutError(
                        f"another process kept migrating {where} for more than {timeout}s"
                    ) from None
                raise
            if timeout is not None:
                connection.execute(text("RESET lock_timeout"))
        connection.commit()  # the lock is the session's: it outlives this transaction
        logger.info("migration lock taken on %s", where)

    def release() -> None:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()

    return acquire, release


def _mysql_lock(
    connection: Connection, key: int, timeout: float | None, where: str
) -> tuple[Any, Any]:
    name = f"structum-alembic-{key & 0xFFFFFFFFFFFFFFFF:016x}"
    wait = _FOREVER if timeout is None else max(0, int(timeout))

    def acquire() -> None:
        free = connection.execute(text("SELECT IS_FREE_LOCK(:name)"), {"name": name}).scalar()
        if not free:
            logger.info("another process is migrating %s; waiting for it to finish", where)
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}
        ).scalar()
        connection.commit()
        if got != 1:
            raise TimeoutError(f"another process kept migrating {where} for more than {timeout}s")
        logger.info("migration lock taken on %s", where)

    def release() -> None:
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        connection.commit()

    return acquire, release


def run_migrations(
    target_metadata: MetaData | list[MetaData] | None = None,
    *,
    namespace: str = "database",
    database: SQLAlchemyDatabase | AsyncSQLAlchemyDatabase | None = None,
    lock: bool = True,
    lock_timeout: float | None = None,
    **configure_options: Any,
) -> None:
    """Run Alembic's migrations from ``env.py`` on the configured database.

    Online (``alembic upgrade``): connects with the configured database's engine, takes the
    migration lock (see the module docstring), runs the migrations, releases the lock and shuts
    the database down if it built it. A connection handed over by the caller in
    ``config.attributes["connection"]`` (Alembic's cookbook, for tests) is used as it is.
    Offline (``alembic upgrade --sql``): writes the SQL for the configured URL's dialect.

    Args:
        target_metadata: The models' ``MetaData`` (for ``--autogenerate``), or None.
        namespace: Configuration namespace of the database (``from_config(namespace)``).
        database: Use this database's engine instead of building one from configuration (it is
            not shut down). An ``AsyncSQLAlchemyDatabase`` works too (through ``run_sync``), as
            does a configured URL naming an asyncio driver (``sqlite+aiosqlite://...``).
        lock: Take the migration lock (PostgreSQL, MySQL/MariaDB).
        lock_timeout: Seconds to wait for another process's migration (None: as long as it
            takes); then ``TimeoutError``.
        **configure_options: Passed to ``context.configure()`` (``compare_type=True``,
            ``version_table=...``, ``transaction_per_migration=True``...).

    Raises:
        ConfigurationError: The namespace has no usable database configuration.
        TimeoutError: The lock was not obtained within ``lock_timeout``.
    """
    context = _alembic_context
    version_table = configure_options.get("version_table", "alembic_version")
    key = migration_lock_key(version_table, configure_options.get("version_table_schema"))
    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "lock": lock,
        "key": key,
        "lock_timeout": lock_timeout,
        "configure_options": configure_options,
    }
    given = context.config.attributes.get("connection")
    if not context.is_offline_mode() and isinstance(given, Connection):
        _migrate(given, **options)
        return
    db = database if database is not None else _from_config(namespace)
    try:
        if context.is_offline_mode():
            context.configure(
                url=db.engine.url,
                target_metadata=target_metadata,
                literal_binds=True,
                dialect_opts={"paramstyle": "named"},
                **configure_options,
            )
            with context.begin_transaction():
                context.run_migrations()
        elif isinstance(db, AsyncSQLAlchemyDatabase):
            asyncio.run(_migrate_async(db, options))
        else:
            with db.engine.connect() as connection:
                _migrate(connection, **options)
    finally:
        if database is None:
            if isinstance(db, AsyncSQLAlchemyDatabase):
                asyncio.run(db.shutdown())
            else:
                db.shutdown()


def _from_config(namespace: str) -> SQLAlchemyDatabase | AsyncSQLAlchemyDatabase:
    """The configured database; the asyncio twin when the URL names an asyncio driver."""
    try:
        return SQLAlchemyDatabase.from_config(namespace)
    except ConfigurationError as exc:
        try:  # e.g. url = "sqlite+aiosqlite:///app.db": only the asyncio twin takes it
            return AsyncSQLAlchemyDatabase.from_config(namespace)
        except ConfigurationError:
            raise exc from None


async def _migrate_async(db: AsyncSQLAlchemyDatabase, options: dict[str, Any]) -> None:
    async with db.engine.connect() as connection:
        await connection.run_sync(lambda sync: _migrate(sync, **options))


def _migrate(
    connection: Connection,
    *,
    target_metadata: Any,
    lock: bool,
    key: int,
    lock_timeout: float | None,
    configure_options: dict[str, Any],
) -> None:
    context = _alembic_context
    if lock and not connection.in_transaction():
        with migration_lock(connection, key=key, timeout=lock_timeout):
            context.configure(
                connection=connection, target_metadata=target_metadata, **configure_options
            )
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, **configure_options)
    with context.begin_transaction():
        context.run_migrations()
