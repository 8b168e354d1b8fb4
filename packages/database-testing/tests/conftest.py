"""Shared setup of the structum-database-testing tests.

``pytester`` (real pytest runs inside tests) is enabled here rather than in the root ``addopts``
because only this package needs it. Tests that time a throwaway server (PostgreSQL cluster,
MariaDB) attach the figure as the user property ``structum_cluster_startup``; the summary at the
end of the run prints it, so CI logs say how long the servers took to start.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from structum_lab.plugins.database.testing import find_mariadb_binaries, find_postgres_bindir
from structum_lab.plugins.database.testing.mariadb import MariaDBBinaries
from structum_lab.plugins.database.testing.pytest_plugin import skip_or_fail

# pytester restores sys.modules after each test: a driver first imported inside such a test would
# be imported anew later, and its C extension would then raise exception classes that the new
# module does not know. Importing the optional drivers up front keeps one copy for the session.
for _driver in ("psycopg", "sqlalchemy"):
    with contextlib.suppress(ImportError):
        __import__(_driver)

_cluster_timings: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        for name, value in report.user_properties:
            if name == "structum_cluster_startup":
                _cluster_timings.append(f"{report.nodeid}: {value}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _cluster_timings:
        terminalreporter.write_sep("-", "structum-database-testing: throwaway servers")
        for line in _cluster_timings:
            terminalreporter.write_line(line)


_INNER_INI = """
[pytest]
addopts = -p no:cacheprovider
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
filterwarnings = error
"""

# Variables of the outer run that would change how the inner runs find their servers.
_OUTER_ENV = (
    "STRUCTUM_TEST_DATABASE_URL",
    "STRUCTUM_TEST_POSTGRES_URL",
    "STRUCTUM_TEST_POSTGRES_SERVICE",
    "STRUCTUM_TEST_MYSQL_URL",
    "STRUCTUM_TEST_MYSQL_SERVICE",
    "STRUCTUM_TEST_DATABASE_PROVISION",
    "STRUCTUM_TEST_REQUIRE_DB",
    "STRUCTUM_TEST_PG_BINDIR",
    "STRUCTUM_TEST_MARIADB_BINDIR",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_ADDOPTS",
)


@pytest.fixture
def inner_pytest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run pytest in a subprocess on files made with ``pytester``, with the plugin installed.

    The inner run gets its own ini (asyncio auto mode, warnings as errors) and none of the outer
    run's provisioning variables; a test sets the ones it wants with ``monkeypatch.setenv``.
    """
    for name in _OUTER_ENV:
        monkeypatch.delenv(name, raising=False)
    pytester.makeini(_INNER_INI)

    def run(*args: str, timeout: float = 300) -> pytest.RunResult:
        return pytester.runpytest_subprocess(*args, timeout=timeout)

    return run


@pytest.fixture
def postgres_bindir(request: pytest.FixtureRequest) -> Path:
    """PostgreSQL's server binaries, for the tests of the throwaway cluster (else skip or fail)."""
    found = find_postgres_bindir()
    if found is None:
        skip_or_fail(
            request.config,
            "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql",
        )
    return found


@pytest.fixture
def mariadb_binaries(request: pytest.FixtureRequest) -> MariaDBBinaries:
    """MariaDB's server binaries, for the tests of the throwaway server (else skip or fail)."""
    found = find_mariadb_binaries()
    if found is None:
        skip_or_fail(
            request.config,
            "no MariaDB server binaries (mariadbd, mariadb-install-db): "
            "apt-get install mariadb-server",
        )
    return found
