"""Alembic through ``run_migrations()``: the configured database, and one migration at a time.

Two ``alembic upgrade head`` processes start against one database while the migration lock is
held by the test; both queue on it, the test lets go, and the database must be migrated exactly
once with both processes succeeding (alembic#633). PostgreSQL (advisory lock) and MariaDB
(``GET_LOCK``); SQLite takes no lock and is migrated by one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import sqlalchemy as sa

pytest.importorskip("alembic")

from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase
from structum_lab.plugins.database.sqlalchemy.migrations import migration_lock, migration_lock_key

pytestmark = pytest.mark.integration

# A usual env.py: logging from alembic.ini, then the helper.
ENV_PY = """
from logging.config import fileConfig

from alembic import context

from structum_lab.plugins.database.sqlalchemy.migrations import run_migrations

fileConfig(context.config.config_file_name)
run_migrations()
"""

MIGRATION = '''
"""create notes"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True))
    # One row per run of this migration: more than one means it ran twice.
    op.create_table("migration_runs", sa.Column("pid", sa.Integer))
    op.execute(f"INSERT INTO migration_runs (pid) VALUES ({os.getpid()})")


def downgrade() -> None:
    op.drop_table("migration_runs")
    op.drop_table("notes")
'''.replace("import sqlalchemy as sa\n", "import os\nimport sqlalchemy as sa\n", 1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A minimal Alembic project whose env.py is two lines of ours."""
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text(
        "[alembic]\nscript_location = migrations\n\n"
        "[loggers]\nkeys = root,structum,alembic\n"
        "[handlers]\nkeys = console\n[formatters]\nkeys = plain\n"
        "[logger_root]\nlevel = WARNING\nhandlers = console\n"
        "[logger_structum]\nlevel = INFO\nhandlers =\nqualname = structum_lab\n"
        "[logger_alembic]\nlevel = INFO\nhandlers =\nqualname = alembic\n"
        "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = plain\n"
        "[formatter_plain]\nformat = %(name)s %(message)s\n"
    )
    (tmp_path / "migrations" / "env.py").write_text(ENV_PY)
    (tmp_path / "migrations" / "script.py.mako").write_text("")
    (tmp_path / "migrations" / "versions" / "0001_notes.py").write_text(MIGRATION)
    return tmp_path


def upgrade(project: Path, url: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=project,
        env={**os.environ, "STRUCTUM_DATABASE__URL": url, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url.replace("mysql://", "mysql+pymysql://", 1))
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(sql)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def fresh_postgres(postgres_server_url: str) -> Iterator[str]:
    name = f"structum_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_mysql(mysql_server_url: str) -> Iterator[str]:
    name = f"structum_migrate_{uuid.uuid4().hex[:10]}"
    rows(mysql_server_url, f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(mysql_server_url)._replace(path=f"/{name}"))
    finally:
        rows(mysql_server_url, f"DROP DATABASE IF EXISTS {name}")


def wait_until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def finish(processes: list[subprocess.Popen[str]]) -> list[str]:
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    return outputs


def test_two_concurrent_upgrades_on_postgres_migrate_once(
    project: Path, fresh_postgres: str
) -> None:
    key = migration_lock_key()
    with psycopg.connect(fresh_postgres, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        processes = [upgrade(project, fresh_postgres) for _ in range(2)]

        def both_queued() -> bool:
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            return waiting is not None and waiting[0] == 2

        wait_until(both_queued, "both alembic processes to wait for the migration lock")
        holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
        outputs = finish(processes)

    assert rows(fresh_postgres, "SELECT count(*) FROM migration_runs") == [(1,)]
    assert rows(fresh_postgres, "SELECT version_num FROM alembic_version") == [("0001",)]
    assert all("another process is migrating" in out for out in outputs), outputs
    assert sum("Running upgrade  -> 0001" in out for out in outputs) == 1, outputs
    # The lock was released: nothing of ours is left holding it.
    ours = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert rows(fresh_postgres, ours) == [(0,)]


def test_two_concurrent_upgrades_on_mariadb_migrate_once(project: Path, fresh_mysql: str) -> None:
    name = f"structum-alembic-{migration_lock_key() & 0xFFFFFFFFFFFFFFFF:016x}"
    engine = sa.create_engine(fresh_mysql.replace("mysql://", "mysql+pymysql://", 1))
    try:
        with engine.connect() as holder:
            assert holder.execute(sa.text("SELECT GET_LOCK(:n, 10)"), {"n": name}).scalar() == 1
            processes = [upgrade(project, fresh_mysql) for _ in range(2)]

            def both_queued() -> bool:
                waiting = holder.execute(
                    sa.text(
                        "SELECT count(*) FROM information_schema.processlist "
                        "WHERE info LIKE 'SELECT GET_LOCK(%' AND db = DATABASE()"
                    )
                ).scalar()
                holder.commit()
                return waiting == 2

            wait_until(both_queued, "both alembic processes to wait for the migration lock")
            holder.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
            outputs = finish(processes)
    finally:
        engine.dispose()
    assert rows(fresh_mysql, "SELECT count(*) FROM migration_runs") == [(1,)]
    assert rows(fresh_mysql, "SELECT version_num FROM alembic_version") == [("0001",)]
    assert sum("Running upgrade  -> 0001" in out for out in outputs) == 1, outputs


@pytest.mark.parametrize("driver", ["", "+aiosqlite"])
def test_sqlite_upgrade_without_a_lock(project: Path, tmp_path: Path, driver: str) -> None:
    # "+aiosqlite": an asyncio application's URL; the migrations run through run_sync().
    url = f"sqlite{driver}:///{tmp_path / 'app.db'}"
    (output,) = finish([upgrade(project, url)])
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert rows(url, "SELECT count(*) FROM migration_runs") == [(1,)]
    assert "migration lock" not in output
    finish([upgrade(project, url)])  # at head: nothing to do
    assert rows(url, "SELECT count(*) FROM migration_runs") == [(1,)]


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_lock_timeout(dialect: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(
        "postgres_server_url" if dialect == "postgresql" else "mysql_server_url"
    )
    key = migration_lock_key("timeout_test_version")
    db = SQLAlchemyDatabase(url, pool_size=2)
    try:
        with db.engine.connect() as holder, db.engine.connect() as other:
            with migration_lock(holder, key=key):
                started = time.monotonic()
                with (
                    pytest.raises(TimeoutError, match="another process kept migrating"),
                    migration_lock(other, key=key, timeout=1),
                ):
                    pass
                assert time.monotonic() - started < 30
            with migration_lock(other, key=key, timeout=1):  # released: taken at once
                assert not other.in_transaction()
    finally:
        db.shutdown()


def test_offline_sql_for_the_configured_dialect(project: Path, tmp_path: Path) -> None:
    """``alembic upgrade head --sql``: the script for the configured URL, nothing connected."""
    url = "postgresql://app:s3cret@db.invalid:5432/app"  # never reached
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        cwd=project,
        env={**os.environ, "STRUCTUM_DATABASE__URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE notes" in done.stdout
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in done.stdout
    assert "s3cret" not in done.stdout + done.stderr
