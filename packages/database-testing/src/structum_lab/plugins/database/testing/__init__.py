"""Test support for Structum Database: mock databases, isolation helpers, real servers per run.

- :class:`MockDatabase` / :class:`AsyncMockDatabase`: in-memory implementations of the database
  interfaces that record statements, answer with scripted rows and inject faults; one
  :class:`MockScript` drives both.
- :func:`isolated` / :func:`async_isolated`: run a test inside a transaction that is rolled back.
- :func:`provision_postgres` / :func:`provision_mysql`, :class:`LocalPostgresCluster` and
  :class:`LocalMariaDBServer`: find (a URL, the standard local service) or start (a throwaway
  server) a PostgreSQL or MariaDB/MySQL server.
- :class:`RoundTripProxy` / :func:`counting_proxy`: a loopback TCP proxy that counts the round
  trips a client makes to a server (deterministic: for tests and benchmarks of wire efficiency).
- :class:`TemplateDatabase`: test databases cloned from a template holding the schema.
- The pytest plugin (``pytest_plugin``, registered as ``structum_database``) turns these into
  fixtures: ``mock_db``, ``async_mock_db``, ``postgres_url``, ``mysql_url``, the backend
  databases and their isolated variants. See the package README.

This package depends on core and pytest only; database drivers are imported when a fixture that
needs one runs.
"""

from __future__ import annotations

from ._version import __version__
from .isolation import ConnectionLeakError, async_isolated, checked_out, isolated, no_leaks
from .mariadb import LocalMariaDBServer, find_mariadb_binaries
from .mock import AsyncMockConnection, AsyncMockDatabase, MockConnection, MockDatabase
from .provision import (
    ClusterError,
    LocalPostgresCluster,
    MySQLUnavailable,
    PostgresUnavailable,
    ProvisionedPostgres,
    ProvisionedServer,
    ServerUnavailable,
    docker_status,
    find_postgres_bindir,
    provision_mysql,
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
from .template import SchemaSource, TemplateDatabase
from .wire import RoundTripProxy, counting_proxy

__all__ = [
    "ANY",
    "AsyncMockConnection",
    "AsyncMockDatabase",
    "ClusterError",
    "ConnectionLeakError",
    "ErrorSpec",
    "LocalMariaDBServer",
    "LocalPostgresCluster",
    "MockConnection",
    "MockDatabase",
    "MockResponse",
    "MockRule",
    "MockSavepoint",
    "MockScript",
    "MockTransaction",
    "MySQLUnavailable",
    "PostgresUnavailable",
    "ProvisionedPostgres",
    "ProvisionedServer",
    "QueryRecord",
    "RoundTripProxy",
    "SchemaSource",
    "ServerUnavailable",
    "TemplateDatabase",
    "__version__",
    "async_isolated",
    "checked_out",
    "counting_proxy",
    "docker_status",
    "find_mariadb_binaries",
    "find_postgres_bindir",
    "isolated",
    "no_leaks",
    "provision_mysql",
    "provision_postgres",
]
