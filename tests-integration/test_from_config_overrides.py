"""``from_config(namespace, **overrides)``: files < environment < overrides, on real servers.

The configuration is real (Dynaconf over ``config/app/database.toml``, ``config/.secrets.toml`` and
``STRUCTUM_DATABASE__*``), the file's URL points at a closed port, and the application passes the
working URL it already has, as issue 13's template does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from structum_lab.config import get_config_provider, set_config_provider
from structum_lab.plugins.database.postgres import AsyncPostgresDatabase, PostgresDatabase
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

DEAD_URL = "postgresql://app:file-secret@127.0.0.1:1/nowhere"


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Files and environment that all say something else than the overrides."""
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        f'[default]\nurl = "{DEAD_URL}"\npool_size = 9\npool_timeout = 30\n'
    )
    (tmp_path / "config" / ".secrets.toml").write_text(f'[database]\nurl = "{DEAD_URL}"\n')
    for var in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF", "STRUCTUM_DATABASE__URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "4")
    monkeypatch.chdir(tmp_path)
    previous = get_config_provider()
    set_config_provider(DynaconfConfigProvider(root_path=str(tmp_path)).auto_discover())
    try:
        yield
    finally:
        set_config_provider(previous)


@pytest.fixture(params=["sqlite", "postgresql"])
def real_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'override.db'}"
    return str(request.getfixturevalue("postgres_server_url"))


def test_sqlalchemy_overrides_win(configured: None, real_url: str) -> None:
    # Environment over the file: pool_size 4 (not 9); the URL can only come from the override.
    db = SQLAlchemyDatabase.from_config("database", url=real_url, pool_timeout=5)
    try:
        with db.transaction() as conn:
            assert conn.execute("SELECT 1").scalar() == 1
        if not real_url.startswith("sqlite"):
            assert db.get_pool_info()["size"] == 4
    finally:
        db.shutdown()
    db = SQLAlchemyDatabase.from_config(url=real_url, pool_size=2)  # over the environment too
    try:
        with db.transaction() as conn:
            assert conn.execute("SELECT 1").scalar() == 1
        if not real_url.startswith("sqlite"):
            assert db.get_pool_info()["size"] == 2
    finally:
        db.shutdown()


async def test_async_sqlalchemy_overrides_win(configured: None, real_url: str) -> None:
    db = AsyncSQLAlchemyDatabase.from_config(url=real_url, pool_size=2, echo=False)
    try:
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1")).scalar() == 1
        if not real_url.startswith("sqlite"):
            assert db.get_pool_info()["size"] == 2
    finally:
        await db.shutdown()


def test_psycopg_overrides_win(configured: None, postgres_server_url: str) -> None:
    db = PostgresDatabase.from_config(url=postgres_server_url, pool_size=3, min_size=1)
    try:
        with db.transaction() as conn:
            assert conn.execute("SELECT 1").scalar() == 1
        info = db.get_pool_info()
        assert info["max"] == 3
    finally:
        db.shutdown()


async def test_async_psycopg_overrides_win(configured: None, postgres_server_url: str) -> None:
    db = AsyncPostgresDatabase.from_config(url=postgres_server_url, min_size=1)
    try:
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1")).scalar() == 1
        assert db.get_pool_info()["max"] == 4  # from the environment
    finally:
        await db.shutdown()
