"""Fixtures for the cross-package integration suite: real PostgreSQL, MariaDB/MySQL and SQLite.

The servers come from the testing package's pytest plugin, the one place that finds them
(``postgres_url`` and ``mysql_url``, see packages/database-testing/README.md), first match wins:

1. an explicit URL: ``STRUCTUM_TEST_POSTGRES_URL`` (or ``STRUCTUM_TEST_DATABASE_URL``),
   ``STRUCTUM_TEST_MYSQL_URL``;
2. the standard local service, ``postgresql://postgres@127.0.0.1:5432/test`` and
   ``mysql://root@127.0.0.1:3306/test``, when a real query on it answers;
3. a throwaway server started from the server binaries of this machine (PostgreSQL cluster,
   MariaDB), deleted at the end of the run.

Only when none works is a test that needs the server skipped, with a message saying how to get
one; with ``STRUCTUM_TEST_REQUIRE_DB=1`` (CI) it fails instead.

Every backend is described once in ``SYNC_BACKENDS`` / ``ASYNC_BACKENDS``; the portable suites are
parametrised over them, so a new backend joins by adding one line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from structum_lab.plugins.database import set_database
from structum_lab.plugins.database.registry import clear_databases

_URL_FIXTURES = {"postgresql": "postgres_url", "mysql": "mysql_url"}


def server_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """URL of a real server for ``dialect`` (``postgresql``, ``mysql``, ``sqlite``), or skip."""
    if dialect in _URL_FIXTURES:
        return str(request.getfixturevalue(_URL_FIXTURES[dialect]))
    return f"sqlite:///{tmp_path / 'structum-test.sqlite3'}"


@pytest.fixture
def postgres_server_url(postgres_url: str) -> str:
    """URL of the real PostgreSQL server (skips or fails when there is none)."""
    return postgres_url


@pytest.fixture
def mysql_server_url(mysql_url: str) -> str:
    """URL of the real MariaDB/MySQL server (skips or fails when there is none)."""
    return mysql_url


@dataclass(frozen=True)
class Backend:
    """How to build one backend for the portable suites.

    ``make(url, pool_size=..., timeout=...)`` maps the portable pool knobs to the backend's own.
    """

    id: str
    dialect: str
    is_async: bool
    make: Callable[..., Any]

    def __str__(self) -> str:
        return self.id


def _sqlalchemy(url: str, *, pool_size: int = 5, timeout: float = 10.0, **kw: Any) -> Any:
    from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

    return SQLAlchemyDatabase(url, pool_size=pool_size, max_overflow=0, pool_timeout=timeout, **kw)


def _async_sqlalchemy(url: str, *, pool_size: int = 5, timeout: float = 10.0, **kw: Any) -> Any:
    from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

    return AsyncSQLAlchemyDatabase(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=timeout, **kw
    )


def _psycopg(url: str, *, pool_size: int = 5, timeout: float = 10.0, **kw: Any) -> Any:
    from structum_lab.plugins.database.postgres import PostgresDatabase

    return PostgresDatabase(url, pool_size=pool_size, min_size=1, timeout=timeout, **kw)


def _async_psycopg(url: str, *, pool_size: int = 5, timeout: float = 10.0, **kw: Any) -> Any:
    from structum_lab.plugins.database.postgres import AsyncPostgresDatabase

    return AsyncPostgresDatabase(url, pool_size=pool_size, min_size=1, timeout=timeout, **kw)


SYNC_BACKENDS = [
    Backend("sqlalchemy-postgresql", "postgresql", False, _sqlalchemy),
    Backend("sqlalchemy-mysql", "mysql", False, _sqlalchemy),
    Backend("sqlalchemy-sqlite", "sqlite", False, _sqlalchemy),
    Backend("psycopg", "postgresql", False, _psycopg),
]
ASYNC_BACKENDS = [
    Backend("sqlalchemy-postgresql-async", "postgresql", True, _async_sqlalchemy),
    Backend("sqlalchemy-mysql-async", "mysql", True, _async_sqlalchemy),
    Backend("sqlalchemy-sqlite-async", "sqlite", True, _async_sqlalchemy),
    Backend("psycopg-async", "postgresql", True, _async_psycopg),
]


def id_column(dialect: str) -> str:
    """DDL of an auto-incrementing integer primary key for ``dialect``."""
    return {
        "postgresql": "id SERIAL PRIMARY KEY",
        "mysql": "id INTEGER AUTO_INCREMENT PRIMARY KEY",
        "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
    }[dialect]


@pytest.fixture(params=SYNC_BACKENDS, ids=str)
def sync_backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=ASYNC_BACKENDS, ids=str)
def async_backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=[b for b in SYNC_BACKENDS if b.dialect == "postgresql"], ids=str)
def sync_postgres_backend(request: pytest.FixtureRequest) -> Backend:
    """Each sync PostgreSQL backend (the fault suite: only there can a test stop the server)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=[b for b in ASYNC_BACKENDS if b.dialect == "postgresql"], ids=str)
def async_postgres_backend(request: pytest.FixtureRequest) -> Backend:
    """Each async PostgreSQL backend."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Backend], str]:
    return lambda backend: server_url(backend.dialect, tmp_path, request)


@pytest.fixture
def sync_db(sync_backend: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh database of each sync backend; at the end nothing may still be checked out."""
    db = sync_backend.make(server_url(sync_backend.dialect, tmp_path, request))
    try:
        yield db
        assert db.get_pool_info()["checked_out"] == 0, "a test leaked a connection"
    finally:
        db.shutdown()


@pytest.fixture
async def async_db(
    async_backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """A fresh database of each async backend; at the end nothing may still be checked out."""
    db = async_backend.make(server_url(async_backend.dialect, tmp_path, request))
    try:
        yield db
        assert db.get_pool_info()["checked_out"] == 0, "a test leaked a connection"
    finally:
        await db.shutdown()


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def sqlalchemy_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A real server's URL for every dialect the SQLAlchemy backend is tested on (ORM tests)."""
    return server_url(request.param, tmp_path, request)


@pytest.fixture
def registry() -> Iterator[None]:
    """The database registry emptied for the test and put back as it was afterwards."""
    registered = clear_databases()
    try:
        yield
    finally:
        clear_databases()
        for name, db in registered.items():
            set_database(db, name)
