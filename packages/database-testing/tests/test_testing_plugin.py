"""The pytest plugin, exercised by real pytest runs (``pytester``, in a subprocess)."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

Run = Callable[..., pytest.RunResult]

NO_DOCKER = "unix:///nonexistent/docker.sock"


def test_plugin_is_registered_and_mock_fixtures_work(
    pytester: pytest.Pytester, inner_pytest: Run
) -> None:
    pytester.makepyfile(
        """
        from structum_lab.plugins.database import MockDatabase, AsyncMockDatabase

        def test_sync(mock_db):
            assert isinstance(mock_db, MockDatabase)
            with mock_db.transaction() as conn:
                conn.execute("SELECT * FROM users")
            assert len(mock_db.queries) == 1

        async def test_async(async_mock_db):
            assert isinstance(async_mock_db, AsyncMockDatabase)
            async with async_mock_db.transaction() as conn:
                await conn.execute("SELECT 1")
            async_mock_db.assert_committed()
        """
    )
    result = inner_pytest("-v")
    result.assert_outcomes(passed=2)
    help_text = inner_pytest("--help").stdout.str()
    for option in (
        "--structum-db-url",
        "--structum-db-mysql-url",
        "--structum-db-provision",
        "--structum-db-require",
    ):
        assert option in help_text


def test_a_test_leaking_a_mock_connection_fails_clearly(
    pytester: pytest.Pytester, inner_pytest: Run
) -> None:
    pytester.makepyfile(
        test_leak="""
        HELD = []  # referenced: a dropped connection would be given back (with a WARNING)

        def test_leaks(mock_db):
            HELD.append(mock_db.get_connection())

        async def test_leaks_async(async_mock_db):
            HELD.append(await async_mock_db.get_connection())

        def test_fine(mock_db):
            with mock_db.get_connection() as conn:
                conn.execute("SELECT 1")
        """
    )
    result = inner_pytest()
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*test_leak.py::test_leaks leaked 1 connection(s) of <MockDatabase 'mock://' open>:"
            " a connection from get_connection() was never given back*",
        ]
    )
    assert "test_leak.py::test_leaks_async leaked 1 connection(s)" in result.stdout.str()


def test_skip_message_names_the_ways(
    pytester: pytest.Pytester, inner_pytest: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    monkeypatch.setenv("STRUCTUM_TEST_PG_BINDIR", "/nonexistent")
    monkeypatch.setenv("STRUCTUM_TEST_POSTGRES_SERVICE", "off")
    monkeypatch.setenv("STRUCTUM_TEST_MARIADB_BINDIR", "/nonexistent")
    monkeypatch.setenv("STRUCTUM_TEST_MYSQL_SERVICE", "off")
    pytester.makepyfile(
        """
        def test_needs_postgres(postgres_url):
            raise AssertionError("must not run")

        def test_also_needs_it(postgres_db):
            raise AssertionError("must not run")

        def test_needs_mysql(mysql_url):
            raise AssertionError("must not run")

        def test_no_server_needed(mock_db):
            pass
        """
    )
    result = inner_pytest("-rs")
    result.assert_outcomes(passed=1, skipped=3)
    output = result.stdout.str()
    assert "no PostgreSQL server for the tests. Provide one of:" in output
    assert "no MariaDB/MySQL server for the tests. Provide one of:" in output
    for way in (
        "1. a URL: --structum-db-url=",
        "STRUCTUM_TEST_DATABASE_URL",
        "2. a running PostgreSQL service at postgresql://postgres@127.0.0.1:5432/test",
        "3. a running Docker daemon",
        "structum-database-testing[containers]",
        "4. the PostgreSQL server binaries (initdb, pg_ctl)",
        "local service: switched off",
        "Docker: no daemon answered",
        "local cluster: no PostgreSQL server binaries",
        "STRUCTUM_TEST_MYSQL_URL",
        "local server: no MariaDB server binaries",
    ):
        assert way in output

    required = inner_pytest("--structum-db-require")
    required.assert_outcomes(passed=1, errors=3)
    assert "a server is required: --structum-db-require" in required.stdout.str()

    monkeypatch.setenv("STRUCTUM_TEST_REQUIRE_DB", "1")
    inner_pytest().assert_outcomes(passed=1, errors=3)


def test_provision_option_is_validated(
    pytester: pytest.Pytester, inner_pytest: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_x(postgres_url): pass")
    result = inner_pytest("--structum-db-provision=cloud")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "invalid choice: 'cloud'" in result.stderr.str()
    monkeypatch.setenv("STRUCTUM_TEST_DATABASE_PROVISION", "cloud")
    result = inner_pytest()
    assert "STRUCTUM_TEST_DATABASE_PROVISION must be one of" in result.stdout.str()


# -- against a real server ---------------------------------------------------------------------
@pytest.fixture
def scratch_table(postgres_url: str) -> Iterator[str]:
    """A table on the outer run's server, for inner runs to write into; checked empty after."""
    psycopg = pytest.importorskip("psycopg")
    name = f"structum_iso_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
    try:
        yield name
        with psycopg.connect(postgres_url) as conn:
            left = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
        assert left == (0,), f"isolation leaked rows into {name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


SYNC_ISOLATION = """
import pytest

T = "{table}"

def count(db):
    with db.transaction() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {{T}}").scalar()

def test_1_insert(db):
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {{T}} (name) VALUES (:n)", {{"n": "ann"}})
    assert count(db) == 1

def test_2_row_of_the_previous_test_is_gone(db):
    assert count(db) == 0

def test_3_nested_savepoint_inside_the_outer_transaction(db):
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {{T}} (name) VALUES ('outer')")
        with pytest.raises(ZeroDivisionError):
            with db.transaction() as inner:
                inner.execute(f"INSERT INTO {{T}} (name) VALUES ('inner')")
                1 / 0
        with db.transaction() as inner:
            inner.execute(f"INSERT INTO {{T}} (name) VALUES ('kept')")
        rows = conn.execute(f"SELECT name FROM {{T}} ORDER BY id").fetchall()
        assert [r["name"] for r in rows] == ["outer", "kept"]
    assert count(db) == 2

def test_4_threads_join_the_outer_transaction(db):
    import threading
    def write():
        with db.transaction() as conn:
            conn.execute(f"INSERT INTO {{T}} (name) VALUES ('thread')")
    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert count(db) == 1

def test_5_still_empty(db):
    assert count(db) == 0
"""

ASYNC_ISOLATION = """
import pytest

T = "{table}"

async def count(db):
    async with db.transaction() as conn:
        return await (await conn.execute(f"SELECT count(*) AS n FROM {{T}}")).scalar()

async def test_1_insert(db):
    async with db.transaction() as conn:
        await conn.execute(f"INSERT INTO {{T}} (name) VALUES (:n)", {{"n": "ann"}})
    assert await count(db) == 1

async def test_2_row_of_the_previous_test_is_gone(db):
    assert await count(db) == 0

async def test_3_nested_savepoint_inside_the_outer_transaction(db):
    async with db.transaction() as conn:
        await conn.execute(f"INSERT INTO {{T}} (name) VALUES ('outer')")
        with pytest.raises(ZeroDivisionError):
            async with db.transaction() as inner:
                await inner.execute(f"INSERT INTO {{T}} (name) VALUES ('inner')")
                1 / 0
        async with db.transaction() as inner:
            await inner.execute(f"INSERT INTO {{T}} (name) VALUES ('kept')")
        rows = await (await conn.execute(f"SELECT name FROM {{T}} ORDER BY id")).fetchall()
        assert [r["name"] for r in rows] == ["outer", "kept"]
    assert await count(db) == 2

async def test_4_tasks_join_the_outer_transaction(db):
    import asyncio
    async def write():
        async with db.transaction() as conn:
            await conn.execute(f"INSERT INTO {{T}} (name) VALUES ('task')")
    # Child tasks (one after the other: they share the one pinned connection, so their
    # savepoints must nest) join the outer transaction too.
    await asyncio.create_task(write())
    await asyncio.create_task(write())
    assert await count(db) == 2

async def test_5_still_empty(db):
    assert await count(db) == 0
"""


SYNC_ORM_ISOLATION = """
from sqlalchemy import text

T = "{table}"

def count(db):
    with db.get_session() as session:
        return session.execute(text(f"SELECT count(*) FROM {{T}}")).scalar()

def test_1_session_commits(db):
    with db.get_session() as session:
        session.execute(text(f"INSERT INTO {{T}} (name) VALUES ('orm')"))
        session.commit()
    assert count(db) == 1

def test_2_gone(db):
    assert count(db) == 0
"""

ASYNC_ORM_ISOLATION = """
from sqlalchemy import text

T = "{table}"

async def count(db):
    async with db.get_session() as session:
        return (await session.execute(text(f"SELECT count(*) FROM {{T}}"))).scalar()

async def test_1_session_commits(db):
    async with db.get_session() as session:
        await session.execute(text(f"INSERT INTO {{T}} (name) VALUES ('orm')"))
        await session.commit()
    assert await count(db) == 1

async def test_2_gone(db):
    assert await count(db) == 0
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    "case",
    [
        ("isolated_sqlalchemy_db", SYNC_ISOLATION, 5),
        ("isolated_postgres_db", SYNC_ISOLATION, 5),
        ("async_isolated_sqlalchemy_db", ASYNC_ISOLATION, 5),
        ("async_isolated_postgres_db", ASYNC_ISOLATION, 5),
        # ORM sessions are covered too: they join the outer transaction
        ("isolated_sqlalchemy_db", SYNC_ORM_ISOLATION, 2),
        ("async_isolated_sqlalchemy_db", ASYNC_ORM_ISOLATION, 2),
    ],
    ids=lambda case: f"{case[0]}{'-orm' if case[2] == 2 else ''}",
)
def test_isolation_really_isolates(
    pytester: pytest.Pytester,
    inner_pytest: Run,
    postgres_url: str,
    scratch_table: str,
    case: tuple[str, str, int],
) -> None:
    fixture, source, tests = case
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture
        def db({fixture}):
            return {fixture}
        """
    )
    pytester.makepyfile(test_isolation=source.format(table=scratch_table))
    result = inner_pytest("-v", f"--structum-db-url={postgres_url}", "--structum-db-require")
    result.assert_outcomes(passed=tests)


LEAK = """
def test_leaks(db):
    conn = db.get_connection()
    conn.execute("SELECT 1")
    LEAKED.append(conn)  # keep it referenced: the leak must be seen, not collected

def test_next_test_is_fine(db):
    with db.transaction() as conn:
        assert conn.execute("SELECT 1 AS one").scalar() == 1

LEAKED = []
"""


@pytest.mark.integration
@pytest.mark.parametrize("fixture", ["isolated_postgres_db", "isolated_sqlalchemy_db"])
def test_a_leaking_test_fails_with_a_clear_message(
    pytester: pytest.Pytester, inner_pytest: Run, postgres_url: str, fixture: str
) -> None:
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture
        def db({fixture}):
            return {fixture}
        """
    )
    pytester.makepyfile(test_leak=LEAK)
    result = inner_pytest(f"--structum-db-url={postgres_url}")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*test_leak.py::test_leaks leaked 1 connection(s) of <*Database 'postgresql://*' open>:"
            " a connection from get_connection() was never given back. Close it*",
        ]
    )


@pytest.mark.integration
def test_async_leak_is_reported_once(
    pytester: pytest.Pytester, inner_pytest: Run, postgres_url: str
) -> None:
    pytester.makepyfile(
        test_leak="""
        LEAKED = []

        async def test_leaks(async_isolated_postgres_db):
            LEAKED.append(await async_isolated_postgres_db.get_connection())

        async def test_plain_leaks(async_sqlalchemy_db):
            LEAKED.append(await async_sqlalchemy_db.get_connection())
        """
    )
    result = inner_pytest(f"--structum-db-url={postgres_url}")
    result.assert_outcomes(passed=2, errors=2)
    # The summary repeats the message, truncated or not depending on the terminal width: count
    # the reports above it only.
    output = result.stdout.str().split("short test summary info")[0]
    assert output.count("test_leak.py::test_leaks leaked 1 connection(s)") == 1
    assert "During handling" not in output
    assert "test_leak.py::test_plain_leaks leaked 1 connection(s)" in output


SEED_PATTERN = """
import pytest

@pytest.fixture(scope="session")
def schema(postgres_db):
    with postgres_db.transaction() as conn:
        conn.execute("CREATE TABLE users (id SERIAL PRIMARY KEY, username TEXT UNIQUE NOT NULL)")
    yield
    with postgres_db.transaction() as conn:
        conn.execute("DROP TABLE users")

def test_backends_share_the_server(schema, isolated_postgres_db, sqlalchemy_db):
    with isolated_postgres_db.transaction() as conn:
        conn.execute("INSERT INTO users (username) VALUES (:u)", {"u": "ann"})
    with sqlalchemy_db.transaction() as conn:  # another connection: the row is not committed
        assert conn.execute("SELECT count(*) AS n FROM users").scalar() == 0
"""


@pytest.mark.integration
@pytest.mark.usefixtures("postgres_bindir")
def test_cluster_path_end_to_end(
    pytester: pytest.Pytester,
    inner_pytest: Run,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Force the throwaway-cluster way even though a URL is configured (CI must exercise it)."""
    out = pytester.path / "seen.json"
    monkeypatch.setenv("STRUCTUM_TEST_DATABASE_URL", postgres_url)
    monkeypatch.setenv("SEEN", str(out))
    pytester.makepyfile(
        test_cluster="""
        import json, os

        def test_cluster(postgres_url, postgres_db, isolated_sqlalchemy_db):
            with postgres_db.transaction() as conn:
                row = conn.execute(
                    "SELECT current_setting('data_directory') AS data, "
                    "current_setting('fsync') AS fsync, current_database() AS db, "
                    "current_setting('unix_socket_directories') AS sockets"
                ).fetchone()
            with isolated_sqlalchemy_db.transaction() as conn:
                conn.execute("CREATE TABLE t (x int)")
            row["url"] = postgres_url
            row["data_uid"] = os.stat(row["data"]).st_uid
            with open(os.environ["SEEN"], "w") as f:
                json.dump(row, f)
        """,
        test_seed_pattern=SEED_PATTERN,
    )
    result = inner_pytest("--structum-db-provision=local", "--structum-db-require", "-v")
    result.assert_outcomes(passed=2)
    seen: dict[str, Any] = json.loads(out.read_text())
    assert seen["url"] != postgres_url
    assert urlsplit(seen["url"]).hostname == "127.0.0.1"
    assert seen["fsync"] == "off"
    assert seen["db"] == "structum_test"
    assert Path(seen["data"]).name == "data"
    assert Path(seen["data"]).parent.name.startswith("structum-pg-")
    assert seen["sockets"] == str(Path(seen["data"]).parent / "socket")
    if os.geteuid() == 0:
        assert seen["data_uid"] != 0
    assert not Path(seen["data"]).exists(), "the cluster directory must be removed at the end"
    summary = re.search(
        r"structum-database: PostgreSQL from a throwaway local cluster .* started in "
        r"([\d.]+)s \(initdb ([\d.]+)s, start ([\d.]+)s, createdb ([\d.]+)s\)",
        result.stdout.str(),
    )
    assert summary is not None, result.stdout.str()
    total, initdb, start, createdb = summary.groups()
    request.node.user_properties.append(
        (
            "structum_cluster_startup",
            f"plugin start {total}s (initdb {initdb}s, start {start}s, createdb {createdb}s)",
        )
    )


@pytest.mark.integration
@pytest.mark.usefixtures("mariadb_binaries")
def test_throwaway_mariadb_end_to_end(
    pytester: pytest.Pytester,
    inner_pytest: Run,
    mysql_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Force the throwaway MariaDB even though a URL is configured (CI must exercise it)."""
    out = pytester.path / "seen.json"
    monkeypatch.setenv("STRUCTUM_TEST_MYSQL_URL", mysql_url)
    monkeypatch.setenv("SEEN", str(out))
    pytester.makepyfile(
        test_mariadb="""
        import json, os
        from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

        def test_mariadb(mysql_url):
            db = SQLAlchemyDatabase(mysql_url, pool_size=1)
            try:
                with db.transaction() as conn:
                    row = conn.execute(
                        "SELECT @@datadir AS data, DATABASE() AS db, @@log_bin AS log_bin"
                    ).fetchone()
                    conn.execute("CREATE TABLE t (x INT)")
            finally:
                db.shutdown()
            row["url"] = mysql_url
            row["data_uid"] = os.stat(row["data"]).st_uid
            with open(os.environ["SEEN"], "w") as f:
                json.dump(row, f)
        """
    )
    result = inner_pytest("--structum-db-provision=local", "--structum-db-require", "-v")
    result.assert_outcomes(passed=1)
    seen: dict[str, Any] = json.loads(out.read_text())
    assert seen["url"] != mysql_url
    assert urlsplit(seen["url"]).hostname == "127.0.0.1"
    assert seen["db"] == "structum_test"
    assert seen["log_bin"] == 0
    assert Path(seen["data"]).parent.name.startswith("structum-mariadb-")
    if os.geteuid() == 0:
        assert seen["data_uid"] != 0
    assert not Path(seen["data"]).exists(), "the server directory must be removed at the end"
    summary = re.search(
        r"structum-database: MariaDB/MySQL from a throwaway local server .* started in "
        r"([\d.]+)s \(install ([\d.]+)s, start ([\d.]+)s\)",
        result.stdout.str(),
    )
    assert summary is not None, result.stdout.str()
    total, install, start = summary.groups()
    request.node.user_properties.append(
        (
            "structum_cluster_startup",
            f"MariaDB plugin start {total}s (install {install}s, start {start}s)",
        )
    )


@pytest.mark.integration
def test_one_database_per_xdist_worker(
    pytester: pytest.Pytester, inner_pytest: Run, postgres_url: str
) -> None:
    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("xdist")
    seen = pytester.path / "seen"
    seen.mkdir()
    pytester.makepyfile(
        test_workers=f"""
        import os, pytest

        @pytest.mark.parametrize("i", range(6))
        def test_db(i, postgres_url, isolated_postgres_db):
            with isolated_postgres_db.transaction() as conn:
                name = conn.execute("SELECT current_database() AS d").scalar()
                conn.execute("CREATE TABLE per_worker (x int)")  # would clash on a shared db
            with open(os.path.join({str(seen)!r}, str(i)), "w") as f:
                f.write(name + " " + os.environ["PYTEST_XDIST_WORKER"])
        """
    )
    result = inner_pytest("-n", "2", f"--structum-db-url={postgres_url}", "--structum-db-require")
    result.assert_outcomes(passed=6)
    # The main process says where each worker's server came from (the workers cannot).
    result.stdout.fnmatch_lines(["structum-database: PostgreSQL *for worker gw*"])
    base = urlsplit(postgres_url).path.lstrip("/")
    pairs = {tuple(p.read_text().split()) for p in seen.iterdir()}
    assert pairs <= {(f"{base}_gw0", "gw0"), (f"{base}_gw1", "gw1")}, pairs
    with psycopg.connect(postgres_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"{base}\\_gw%",)
        ).fetchone()
    assert left == (0,), "the per-worker databases must be dropped at the end"


def test_async_fixtures_without_pytest_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    from structum_lab.plugins.database.testing import pytest_plugin

    monkeypatch.setitem(sys.modules, "pytest_asyncio", None)

    async def async_thing() -> None:
        """Doc."""

    fixture = pytest_plugin._async_fixture(async_thing)
    wrapped = getattr(fixture, "__wrapped__", None) or fixture._get_wrapped_function()  # type: ignore[attr-defined]
    with pytest.raises(pytest.fail.Exception, match=r"async_thing fixture is async and needs "):
        wrapped()


def test_missing_backend_fails_with_the_install_command() -> None:
    from structum_lab.plugins.database.testing import pytest_plugin

    with pytest.raises(pytest.fail.Exception, match=r'pip install "structum-database\[nope\]"'):
        pytest_plugin._backend_class("nope", "NopeDatabase", "nope_db")
