"""The pytest plugin of structum-database-testing (entry point ``structum_database``).

Options (each with an environment variable, for CI):

- ``--structum-db-url URL`` / ``STRUCTUM_TEST_DATABASE_URL`` (or ``STRUCTUM_TEST_POSTGRES_URL``):
  the PostgreSQL server to use.
- ``--structum-db-mysql-url URL`` / ``STRUCTUM_TEST_MYSQL_URL``: the MariaDB/MySQL server to use.
- ``--structum-db-provision {auto,url,service,docker,local}`` /
  ``STRUCTUM_TEST_DATABASE_PROVISION``: walk the whole chain (default) or allow only one way.
- ``--structum-db-require`` / ``STRUCTUM_TEST_REQUIRE_DB=1``: fail, instead of skip, the tests that
  need a server when none can be found or started.

Fixtures: ``mock_db``, ``async_mock_db`` (no server); ``postgres_url`` and ``mysql_url``
(session); the backend databases ``sqlalchemy_db``, ``postgres_db`` (session) and
``async_sqlalchemy_db``, ``async_postgres_db`` (per test); and their per-test isolated variants
``isolated_*``, whose writes are rolled back after the test; ``postgres_template`` (session: the
schema of the ``structum_schema`` fixture, loaded once into a template database),
``postgres_template_url`` (session: a database cloned from it) and ``fresh_postgres_url`` (per
test: a clone of its own). Backends are imported inside the
fixtures, so this module loads with no database driver installed; the async fixtures need
pytest-asyncio. :func:`skip_or_fail` is the plugin's rule for a test whose server cannot be had.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

import pytest

from .isolation import ConnectionLeakError, async_isolated, checked_out, isolated, leak_error
from .mock import AsyncMockDatabase, MockDatabase
from .provision import (
    ENV_MYSQL_URL,
    ENV_POSTGRES_URL,
    ENV_PROVISION,
    ENV_REQUIRE,
    ENV_URL,
    MODES,
    ClusterError,
    Mode,
    ProvisionedServer,
    ServerUnavailable,
    provision_mysql,
    provision_postgres,
)
from .template import SchemaSource, TemplateDatabase

__all__ = [
    "async_isolated_postgres_db",
    "async_isolated_sqlalchemy_db",
    "async_mock_db",
    "async_postgres_db",
    "async_sqlalchemy_db",
    "fresh_postgres_url",
    "isolated_postgres_db",
    "isolated_sqlalchemy_db",
    "mock_db",
    "mysql_url",
    "postgres_db",
    "postgres_template",
    "postgres_template_url",
    "postgres_url",
    "pytest_addoption",
    "pytest_terminal_summary",
    "skip_or_fail",
    "sqlalchemy_db",
    "structum_schema",
]

F = TypeVar("F", bound=Callable[..., Any])

_PROVISIONED = pytest.StashKey[ProvisionedServer]()
_PROVISIONED_MYSQL = pytest.StashKey[ProvisionedServer]()
_LEAK_REPORTED = pytest.StashKey[bool]()
_TRUE = ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--structum-db-*`` options."""
    group = parser.getgroup("structum-database", "Structum Database test support")
    group.addoption(
        "--structum-db-url",
        dest="structum_db_url",
        default=None,
        metavar="URL",
        help="PostgreSQL server for postgres_url and the database fixtures "
        f"(env {ENV_URL} or {ENV_POSTGRES_URL}).",
    )
    group.addoption(
        "--structum-db-mysql-url",
        dest="structum_db_mysql_url",
        default=None,
        metavar="URL",
        help=f"MariaDB/MySQL server for mysql_url (env {ENV_MYSQL_URL}).",
    )
    group.addoption(
        "--structum-db-provision",
        dest="structum_db_provision",
        default=None,
        choices=MODES,
        help="How postgres_url and mysql_url find a server: auto (URL, then the local service, "
        "then Docker, then a throwaway local server; the default) or only url, service, docker "
        f"or local (env {ENV_PROVISION}).",
    )
    group.addoption(
        "--structum-db-require",
        dest="structum_db_require",
        action="store_true",
        default=False,
        help="Fail, instead of skip, tests that need a server when none can be provided "
        f"(env {ENV_REQUIRE}=1).",
    )


@dataclass(frozen=True)
class _Settings:
    url: str | None
    mysql_url: str | None
    mode: Mode
    require: bool


def _settings(config: pytest.Config) -> _Settings:
    url = (
        config.getoption("structum_db_url")
        or os.environ.get(ENV_URL)
        or os.environ.get(ENV_POSTGRES_URL)
        or None
    )
    mysql_url = config.getoption("structum_db_mysql_url") or os.environ.get(ENV_MYSQL_URL) or None
    mode = config.getoption("structum_db_provision") or os.environ.get(ENV_PROVISION) or "auto"
    if mode not in MODES:
        raise pytest.UsageError(f"{ENV_PROVISION} must be one of {', '.join(MODES)}, not {mode!r}")
    require = bool(config.getoption("structum_db_require")) or (
        os.environ.get(ENV_REQUIRE, "").strip().lower() in _TRUE
    )
    return _Settings(url, mysql_url, cast(Mode, mode), require)


def skip_or_fail(config: pytest.Config, message: str) -> NoReturn:
    """Skip the current test for want of a server, or fail it when one is required.

    A server is required with ``--structum-db-require`` or ``STRUCTUM_TEST_REQUIRE_DB=1`` (CI:
    every integration test must run). ``message`` should say how to get the server.
    """
    if _settings(config).require:
        pytest.fail(
            f"{message}\n(a server is required: --structum-db-require or {ENV_REQUIRE}=1)",
            pytrace=False,
        )
    pytest.skip(message)


_SERVER_LINES: pytest.StashKey[list[str]] = pytest.StashKey()
_WORKER_OUTPUT_KEY = "structum_database_servers"


def _server_lines(config: pytest.Config) -> list[str]:
    lines = []
    for key, what in ((_PROVISIONED, "PostgreSQL"), (_PROVISIONED_MYSQL, "MariaDB/MySQL")):
        server = config.stash.get(key, None)
        if server is not None:
            lines.append(f"structum-database: {what} {server.description}")
    return lines


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker, hand the summary lines to the main process, which writes them."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_WORKER_OUTPUT_KEY] = _server_lines(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist (main process): collect a finished worker's server lines."""
    lines = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY, [])
    node.config.stash.setdefault(_SERVER_LINES, []).extend(lines)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say where the servers of this run came from (and how long they took to start)."""
    # Under pytest-xdist the workers found the servers; each line is said once, in worker order.
    lines = _server_lines(config) + config.stash.get(_SERVER_LINES, [])
    for line in dict.fromkeys(lines):
        terminalreporter.write_line(line)


# -- no server -------------------------------------------------------------------------------
def _report_leak(leak: ConnectionLeakError | None, request: pytest.FixtureRequest) -> None:
    # Failing outside the ``except`` block keeps the report to the one clear message.
    if leak is not None:
        request.node.stash[_LEAK_REPORTED] = True
        pytest.fail(str(leak), pytrace=False)


def _fail_on_leak(db: Any, request: pytest.FixtureRequest) -> None:
    if request.node.stash.get(_LEAK_REPORTED, False):
        return  # the isolated_* fixture on top of this one already said it
    leaked = checked_out(db)
    if leaked > 0:
        _report_leak(leak_error(db, leaked, request.node.nodeid), request)


@pytest.fixture
def mock_db(request: pytest.FixtureRequest) -> Iterator[MockDatabase]:
    """A fresh :class:`MockDatabase`; the test fails if it leaves a connection checked out."""
    db = MockDatabase()
    yield db
    try:
        _fail_on_leak(db, request)
    finally:
        db.shutdown()


@pytest.fixture
def async_mock_db(request: pytest.FixtureRequest) -> Iterator[AsyncMockDatabase]:
    """A fresh :class:`AsyncMockDatabase` (a plain fixture: any async test runner can use it)."""
    db = AsyncMockDatabase()
    yield db
    try:
        _fail_on_leak(db, request)
    finally:
        db._closed = True  # shutdown() only sets this; no event loop is needed here


# -- a PostgreSQL server ---------------------------------------------------------------------
def _provided(
    request: pytest.FixtureRequest,
    provision: Callable[..., ProvisionedServer],
    url: str | None,
    key: pytest.StashKey[ProvisionedServer],
) -> Iterator[str]:
    settings = _settings(request.config)
    try:
        server = provision(
            url=url, mode=settings.mode, worker=os.environ.get("PYTEST_XDIST_WORKER")
        )
    except ServerUnavailable as exc:
        skip_or_fail(request.config, exc.message())
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    request.config.stash[key] = server
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a PostgreSQL database for this test run (this xdist worker's own).

    Provided by ``--structum-db-url``/``STRUCTUM_TEST_DATABASE_URL``/``STRUCTUM_TEST_POSTGRES_URL``,
    else the local service (``postgresql://postgres@127.0.0.1:5432/test``) when it answers, else a
    throwaway Docker container, else a throwaway local cluster; otherwise the tests that need it
    are skipped (or fail, with ``--structum-db-require``). A container or cluster is removed
    after the run.
    """
    yield from _provided(request, provision_postgres, _settings(request.config).url, _PROVISIONED)


@pytest.fixture(scope="session")
def structum_schema() -> SchemaSource:
    """The schema of the template databases: override it in your ``conftest.py``.

    Return SQL files (run in order) or a callable given the template's URL (an Alembic upgrade).
    Default: no schema (empty databases).
    """
    return ()


@pytest.fixture(scope="session")
def postgres_template(
    postgres_url: str, structum_schema: SchemaSource
) -> Iterator[TemplateDatabase]:
    """A template database holding ``structum_schema``, loaded once per session (xdist worker).

    Dropped, with every database cloned from it, at the end of the session.
    """
    template = TemplateDatabase(postgres_url, structum_schema)
    try:
        template.build()
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield template
    finally:
        template.close()


@pytest.fixture(scope="session")
def postgres_template_url(postgres_template: TemplateDatabase) -> str:
    """URL of a database cloned from the template for this session (one per xdist worker)."""
    return postgres_template.clone()


@pytest.fixture
def fresh_postgres_url(postgres_template: TemplateDatabase) -> Iterator[str]:
    """URL of a database cloned from the template for this test only (dropped after it)."""
    url = postgres_template.clone()
    try:
        yield url
    finally:
        postgres_template.drop_clone(url)


@pytest.fixture(scope="session")
def mysql_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a MariaDB/MySQL database for this test run (this xdist worker's own).

    Provided by ``--structum-db-mysql-url``/``STRUCTUM_TEST_MYSQL_URL``, else the local service
    (``mysql://root@127.0.0.1:3306/test``) when it answers, else a throwaway MariaDB server from
    the binaries of this machine; otherwise the tests that need it are skipped (or fail, with
    ``--structum-db-require``). A throwaway server is removed after the run.
    """
    yield from _provided(
        request, provision_mysql, _settings(request.config).mysql_url, _PROVISIONED_MYSQL
    )


def _backend_class(module: str, name: str, fixture: str) -> Any:
    # Imported here, not at the top: the plugin must load with no backend (and no driver).
    try:
        loaded = importlib.import_module(f"structum_lab.plugins.database.{module}")
    except ImportError as exc:
        pytest.fail(
            f"the {fixture} fixture needs structum-database-{module}: "
            f'pip install "structum-database[{module}]" ({exc})',
            pytrace=False,
        )
    return getattr(loaded, name)


def _async_fixture(func: F) -> F:
    """Make ``func`` a pytest-asyncio fixture, or a fixture that says pytest-asyncio is missing."""
    try:
        import pytest_asyncio  # noqa: PLC0415 - optional: only the async fixtures need it
    except ImportError:

        def unavailable() -> None:
            pytest.fail(
                f"the {func.__name__} fixture is async and needs pytest-asyncio: "
                "pip install 'structum-database-testing[asyncio]'",
                pytrace=False,
            )

        unavailable.__doc__ = func.__doc__
        return cast(F, pytest.fixture(name=func.__name__)(unavailable))
    return cast(F, pytest_asyncio.fixture(func))


@pytest.fixture(scope="session")
def sqlalchemy_db(postgres_url: str) -> Iterator[Any]:
    """A ``SQLAlchemyDatabase`` on ``postgres_url``, shared by the session (shut down after)."""
    db = _backend_class("sqlalchemy", "SQLAlchemyDatabase", "sqlalchemy_db")(postgres_url)
    try:
        yield db
    finally:
        db.shutdown()


@pytest.fixture(scope="session")
def postgres_db(postgres_url: str) -> Iterator[Any]:
    """A ``PostgresDatabase`` (psycopg 3) on ``postgres_url``, shared by the session."""
    db = _backend_class("postgres", "PostgresDatabase", "postgres_db")(postgres_url)
    try:
        yield db
    finally:
        db.shutdown()


async def _async_backend(
    module: str, name: str, fixture: str, url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    # Per test: an asyncio pool belongs to the event loop it was opened in, and each test has
    # its own loop by default.
    db = _backend_class(module, name, fixture)(url)
    try:
        yield db
        _fail_on_leak(db, request)
    finally:
        await db.shutdown()


@_async_fixture
async def async_sqlalchemy_db(
    postgres_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """An ``AsyncSQLAlchemyDatabase`` on ``postgres_url``, per test (needs pytest-asyncio)."""
    async for db in _async_backend(
        "sqlalchemy", "AsyncSQLAlchemyDatabase", "async_sqlalchemy_db", postgres_url, request
    ):
        yield db


@_async_fixture
async def async_postgres_db(
    postgres_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """An ``AsyncPostgresDatabase`` on ``postgres_url``, per test (needs pytest-asyncio)."""
    async for db in _async_backend(
        "postgres", "AsyncPostgresDatabase", "async_postgres_db", postgres_url, request
    ):
        yield db


# -- per-test isolation ----------------------------------------------------------------------
def _isolate(db: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    leak = None
    try:
        with isolated(db, what=request.node.nodeid):
            yield db
    except ConnectionLeakError as exc:
        leak = exc
    _report_leak(leak, request)


async def _async_isolate(db: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    leak = None
    try:
        async with async_isolated(db, what=request.node.nodeid):
            yield db
    except ConnectionLeakError as exc:
        leak = exc
    _report_leak(leak, request)


@pytest.fixture
def isolated_sqlalchemy_db(sqlalchemy_db: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``sqlalchemy_db`` inside a transaction rolled back after the test.

    The test's ``transaction()`` calls become savepoints; nothing it writes survives it. The
    test fails if it leaves a connection checked out.
    """
    yield from _isolate(sqlalchemy_db, request)


@pytest.fixture
def isolated_postgres_db(postgres_db: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``postgres_db`` inside a transaction rolled back after the test (see above)."""
    yield from _isolate(postgres_db, request)


@_async_fixture
async def async_isolated_sqlalchemy_db(
    async_sqlalchemy_db: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """``async_sqlalchemy_db`` inside a transaction rolled back after the test."""
    async for db in _async_isolate(async_sqlalchemy_db, request):
        yield db


@_async_fixture
async def async_isolated_postgres_db(
    async_postgres_db: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """``async_postgres_db`` inside a transaction rolled back after the test."""
    async for db in _async_isolate(async_postgres_db, request):
        yield db
