"""Seed §5 (PostgreSQL backend) run as written, against a real PostgreSQL server.

Each example runs in its own schema (the URL sets ``search_path``), so the seed's unqualified
``users`` table cannot collide with other tests using the same database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import PoolInfo
from structum_lab.plugins.dynaconf import DynaconfConfigProvider


@pytest.fixture
def pg_url(postgres_server_url: str) -> Iterator[str]:
    """The server URL with a fresh schema holding the seed's ``users`` table."""
    schema = f"structum_seed_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(
            f"CREATE TABLE {schema}.users (id SERIAL PRIMARY KEY, "
            "username VARCHAR(50) UNIQUE NOT NULL, email VARCHAR(255) UNIQUE NOT NULL)"
        )
        admin.execute(
            f"INSERT INTO {schema}.users (username, email) VALUES ('alice', 'alice@example.com')"
        )
    sep = "&" if "?" in postgres_server_url else "?"
    try:
        yield f"{postgres_server_url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def project(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder with the seed's config/app/database.toml, registered as the provider."""
    for name in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF", "STRUCTUM_DATABASE__URL"):
        monkeypatch.delenv(name, raising=False)
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(
        f'[default]\nurl = "{pg_url}"\npool_size = 10\npool_timeout = 30\n'
        "echo = false  # Set true to log SQL queries\n"
    )
    monkeypatch.chdir(tmp_path)
    provider = DynaconfConfigProvider(root_path=tmp_path)
    provider.auto_discover()
    set_config_provider(provider)
    try:
        yield tmp_path
    finally:
        set_config_provider(None)


def test_seed_5_1_initialization(project: Path, pg_url: str) -> None:
    from structum_lab.plugins.database import PostgresDatabase

    # From config
    db = PostgresDatabase.from_config()

    assert db.timeout == 30.0  # pool_timeout of the shared database.toml
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM users").scalar() == 1
    db.shutdown()

    # Manual
    db = PostgresDatabase(
        url="postgresql://user:pass@localhost/mydb",
        pool_size=10,
        min_size=2,  # Minimum connections to maintain
        max_size=20,  # Maximum connections
        timeout=5.0,
    )

    assert (db.pool_size, db.min_size, db.max_size, db.timeout) == (10, 2, 20, 5.0)
    assert "pass@" not in repr(db)
    db.shutdown()

    # the same call against the real server
    db = PostgresDatabase(url=pg_url, pool_size=10, min_size=2, max_size=20, timeout=5.0)
    with db.transaction() as conn:
        assert conn.execute("SELECT 1 AS one").scalar() == 1
    assert db.get_pool_info()["max"] == 20
    db.shutdown()


def test_seed_5_2_query_execution(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from structum_lab.plugins.database import PostgresDatabase

    db = PostgresDatabase(url=pg_url, pool_size=10, min_size=2, max_size=20, timeout=5.0)
    user_id = 1

    with db.transaction() as conn:
        # Execute with parameters
        result = conn.execute(
            "SELECT * FROM users WHERE id = %s",
            (user_id,),  # Note: tuple for parameters
        )
        # Fetch results
        row = result.fetchone()
        if row:
            print(f"User: {row['username']}")

    assert capsys.readouterr().out == "User: alice\n"
    assert db.get_pool_info()["checked_out"] == 0
    db.shutdown()


def test_seed_5_3_async_support(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user_id = 1

    import asyncio

    from structum_lab.plugins.database import AsyncPostgresDatabase

    async def main():  # type: ignore[no-untyped-def]
        db = AsyncPostgresDatabase.from_config()
        async with db.transaction() as conn:
            result = await conn.execute("SELECT * FROM users WHERE id = $1", [user_id])
            user = await result.fetchone()
            print(f"User: {user['username']}")
        await db.shutdown()

    asyncio.run(main())  # type: ignore[no-untyped-call]

    assert capsys.readouterr().out == "User: alice\n"


def test_seed_5_3_pool_is_empty_after_the_example(project: Path) -> None:
    import asyncio

    from structum_lab.plugins.database import AsyncPostgresDatabase

    async def main() -> PoolInfo:
        db = AsyncPostgresDatabase.from_config()
        async with db.transaction() as conn:
            result = await conn.execute("SELECT * FROM users WHERE id = $1", [1])
            assert (await result.fetchone()) is not None
        info = db.get_pool_info()
        await db.shutdown()
        return info

    info = asyncio.run(main())
    assert info["checked_out"] == 0
    assert info["max"] == 10
