"""Test support for Structum Database: mock databases, isolation helpers, a PostgreSQL per run.

- :class:`MockDatabase` / :class:`AsyncMockDatabase`: in-memory implementations of the database
  interfaces that record statements, answer with scripted rows and inject faults; one
  :class:`MockScript` drives both.
- :func:`isolated` / :func:`async_isolated`: run a test inside a transaction that is rolled back.
- :func:`provision_postgres` and :class:`LocalPostgresCluster`: find or start a PostgreSQL server.
- The pytest plugin (``pytest_plugin``, registered as ``structum_database``) turns these into
  fixtures: ``mock_db``, ``async_mock_db``, ``postgres_url``, the backend databases and their
  isolated variants. See the package README.

This package depends on core and pytest only; database drivers are imported when a fixture that
needs one runs.
"""

from __future__ import annotations

from ._version import __version__
from .isolation import ConnectionLeakError, async_isolated, checked_out, isolated, no_leaks
from .mock import AsyncMockConnection, AsyncMockDatabase, MockConnection, MockDatabase
from .provision import (
    ClusterError,
    LocalPostgresCluster,
    PostgresUnavailable,
    ProvisionedPostgres,
    docker_status,
    find_postgres_bindir,
    provision_postgres,
)
from .script import (
    ANY,
    ErrorSpec,
    MockResponse,
    MockRule,
    MockSavepoint,
    MockScript,
    MockTransaction,
    QueryRecord,
)

__all__ = [
    "ANY",
    "AsyncMockConnection",
    "AsyncMockDatabase",
    "ClusterError",
    "ConnectionLeakError",
    "ErrorSpec",
    "LocalPostgresCluster",
    "MockConnection",
    "MockDatabase",
    "MockResponse",
    "MockRule",
    "MockSavepoint",
    "MockScript",
    "MockTransaction",
    "PostgresUnavailable",
    "ProvisionedPostgres",
    "QueryRecord",
    "__version__",
    "async_isolated",
    "checked_out",
    "docker_status",
    "find_postgres_bindir",
    "isolated",
    "no_leaks",
    "provision_postgres",
]
