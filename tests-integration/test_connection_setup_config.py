"""``configure`` from configuration: an import path resolved by core's one resolver.

Real Dynaconf configuration (``config/app/database.toml``) names a setup function in a module of
the application; the databases import it and run it on every new connection (SQLite file and
PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from structum_lab.config import get_config_provider, set_config_provider
from structum_lab.plugins.database import ConfigurationError
from structum_lab.plugins.database.postgres import PostgresDatabase
from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

SETUP_MODULE = """
NOT_CALLABLE = 3

def setup(conn):
    cur = conn.cursor()
    if type(conn).__module__.startswith("sqlite3"):
        cur.execute("PRAGMA cache_size = -777")
    else:
        cur.execute("SET application_name = 'configured-by-path'")
    cur.close()
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"structum_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(SETUP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_module: str) -> Iterator[str]:
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        f'[default]\nconfigure = "{app_module}:setup"\npool_size = 2\n'
    )
    for var in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF", "STRUCTUM_DATABASE__URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    previous = get_config_provider()
    set_config_provider(DynaconfConfigProvider(root_path=str(tmp_path)).auto_discover())
    try:
        yield app_module
    finally:
        set_config_provider(previous)


def test_configure_import_path_from_configuration_sqlite(configured: str, tmp_path: Path) -> None:
    db = SQLAlchemyDatabase.from_config("database", url=f"sqlite:///{tmp_path / 'cfg.db'}")
    try:
        with db.transaction() as conn:
            assert conn.execute("PRAGMA cache_size").scalar() == -777
    finally:
        db.shutdown()


def test_configure_import_path_from_configuration_postgres(
    configured: str, postgres_server_url: str
) -> None:
    for cls in (PostgresDatabase, SQLAlchemyDatabase):
        db = cls.from_config("database", url=postgres_server_url)
        try:
            with db.transaction() as conn:
                row = conn.execute("SELECT current_setting('application_name') AS a").fetchone()
                assert row is not None
                assert row["a"] == "configured-by-path"
        finally:
            db.shutdown()


def test_bad_configure_paths_are_configuration_errors(tmp_path: Path, app_module: str) -> None:
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    cases = [
        ("structum_no_such_module:setup", "cannot import module 'structum_no_such_module'"),
        (f"{app_module}:nothing", "has no attribute 'nothing'"),
        ("setup", "is not an import path"),
        (f"{app_module}:NOT_CALLABLE", "configure must be a callable"),
    ]
    for path, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            SQLAlchemyDatabase(url, configure=path)
