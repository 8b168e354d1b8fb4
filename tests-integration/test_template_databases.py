"""Test databases cloned from a template (``TemplateDatabase`` and the plugin's fixtures).

The schema is loaded once into a template database on the real PostgreSQL server; every clone
starts with it and is independent of the others.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from structum_lab.plugins.database.postgres import PostgresDatabase
from structum_lab.plugins.database.testing import ClusterError
from structum_lab.plugins.database.testing.template import SchemaSource, TemplateDatabase

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE accounts (id SERIAL PRIMARY KEY, owner TEXT NOT NULL UNIQUE, balance INTEGER NOT NULL);
INSERT INTO accounts (owner, balance) VALUES ('seed', 100);
CREATE VIEW rich AS SELECT owner FROM accounts WHERE balance > 50;
"""


@pytest.fixture(scope="session")
def structum_schema(tmp_path_factory: pytest.TempPathFactory) -> SchemaSource:
    path = tmp_path_factory.mktemp("schema") / "001_accounts.sql"
    path.write_text(SCHEMA)
    return [path]


def _owners(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT owner FROM rich ORDER BY owner")]


def test_clones_start_with_the_schema_and_are_independent(
    postgres_url: str, tmp_path: Path
) -> None:
    (tmp_path / "schema.sql").write_text(SCHEMA)
    with TemplateDatabase(postgres_url, [tmp_path / "schema.sql"]) as template:
        first, second = template.clone(), template.clone()
        assert _owners(first) == ["seed"]
        with psycopg.connect(first) as conn:
            conn.execute("INSERT INTO accounts (owner, balance) VALUES ('only-first', 99)")
        assert _owners(first) == ["only-first", "seed"]
        assert _owners(second) == ["seed"], "a clone does not see another clone's writes"
        assert len(template.clone_seconds) == 2
        names = list(template.clones)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", ([*names, template.name],)
        ).fetchall()
    assert left == [], "close() drops the clones and the template"


def test_callable_schema_and_failures(postgres_url: str, tmp_path: Path) -> None:
    seen: list[str] = []

    def migrate(url: str) -> None:  # what an Alembic upgrade would do
        seen.append(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE migrated (id INTEGER)")

    with TemplateDatabase(postgres_url, migrate) as template:
        url = template.clone()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM migrated").fetchone() == (0,)
        assert seen == [template.template_url]

    (tmp_path / "bad.sql").write_text("CREATE TABLE broken (")
    with pytest.raises(ClusterError, match=r"bad\.sql failed"):
        TemplateDatabase(postgres_url, [tmp_path / "bad.sql"]).build()
    with pytest.raises(ValueError, match="database name"):
        TemplateDatabase(postgres_url, [], name="Robert'); DROP")


def test_fresh_postgres_url_fixture(fresh_postgres_url: str) -> None:
    db = PostgresDatabase(fresh_postgres_url, pool_size=1, min_size=1)
    try:
        with db.transaction() as conn:
            conn.execute("UPDATE accounts SET balance = 0")  # no later test sees this
            row = conn.execute("SELECT count(*) AS n FROM accounts").fetchone()
            assert row is not None
            assert row["n"] == 1
    finally:
        db.shutdown()


def test_fresh_postgres_url_is_fresh_again(fresh_postgres_url: str) -> None:
    assert _owners(fresh_postgres_url) == ["seed"]


def test_postgres_template_url_fixture(postgres_template_url: str) -> None:
    assert _owners(postgres_template_url) == ["seed"]
