"""The configuration examples of the user's document (seed §3 and §9), verbatim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from structum_lab.config import get_config_provider, set_config_provider
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

QUICK_START_DATABASE_TOML = """\
[default]
url = "postgresql://user:password@localhost:5432/mydb"
pool_size = 10
pool_timeout = 30
echo = false # Set true to log SQL queries
"""

QUICK_START_SECRETS_TOML = """\
[database]
url = "postgresql://user:YOUR_PASSWORD@prod.db.example.com:5432/production_db"
"""

COMPLETE_DATABASE_TOML = """\
[default]
url = "postgresql://localhost:5432/dev_db"
pool_size = 5
pool_timeout = 30
pool_recycle = 3600
echo = true # Log SQL in development

[default.options]
pool_pre_ping = true
connect_args = { "connect_timeout": 10 }

[production]
url = "postgresql://prod.db.internal:5432/prod_db"
pool_size = 20
pool_timeout = 60
pool_recycle = 1800
echo = false

[production.options]
pool_pre_ping = true
pool_use_lifo = true # LIFO for better connection reuse
"""

COMPLETE_SECRETS_TOML = """\
[database]
# Production credentials
url = "postgresql://app_user:STRONG_PASSWORD@prod.db.example.com:5432/production"
"""

SECRET_URL = "postgresql://app_user:STRONG_PASSWORD@prod.db.example.com:5432/production"


def write_project(root: Path, *, database: str, secrets: str | None) -> None:
    (root / "config" / "app").mkdir(parents=True)
    (root / "config" / "app" / "database.toml").write_text(database, encoding="utf-8")
    if secrets is not None:
        (root / "config" / ".secrets.toml").write_text(secrets, encoding="utf-8")


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STRUCTUM_") or name.endswith("_FOR_DYNACONF"):
            monkeypatch.delenv(name)


@pytest.fixture
def restore_provider() -> Iterator[None]:
    saved = get_config_provider()
    yield
    set_config_provider(saved)


@pytest.mark.usefixtures("clean_environ", "restore_provider")
def test_quick_start_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, database=QUICK_START_DATABASE_TOML, secrets=QUICK_START_SECRETS_TOML)
    monkeypatch.chdir(tmp_path)

    # Seed §3, Step 3, as written.
    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)

    registered = get_config_provider()
    assert registered is provider
    assert registered.get("database") == {
        # config/.secrets.toml [database] wins over config/app/database.toml
        "url": "postgresql://user:YOUR_PASSWORD@prod.db.example.com:5432/production_db",
        "pool_size": 10,
        "pool_timeout": 30,
        "echo": False,
    }
    assert provider.env == "development"


def test_quick_start_without_secrets_uses_database_toml(tmp_path: Path) -> None:
    write_project(tmp_path, database=QUICK_START_DATABASE_TOML, secrets=None)
    provider = DynaconfConfigProvider(root_path=tmp_path, environ={}).auto_discover()
    assert provider.get("database.url") == "postgresql://user:password@localhost:5432/mydb"


@pytest.fixture
def complete_project(tmp_path: Path) -> Path:
    write_project(tmp_path, database=COMPLETE_DATABASE_TOML, secrets=COMPLETE_SECRETS_TOML)
    return tmp_path


def test_complete_example_production(complete_project: Path) -> None:
    provider = DynaconfConfigProvider(
        root_path=complete_project, environ={"STRUCTUM_ENV": "production"}
    ).auto_discover()

    assert provider.env == "production"
    assert provider.get("database") == {
        "url": SECRET_URL,
        "pool_size": 20,
        "pool_timeout": 60,
        "pool_recycle": 1800,
        "echo": False,
        # [production.options] layered over [default.options]
        "options": {
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": 10},
            "pool_use_lifo": True,
        },
    }


def test_complete_example_development_uses_default(complete_project: Path) -> None:
    provider = DynaconfConfigProvider(root_path=complete_project, environ={}).auto_discover()

    assert provider.get("database") == {
        "url": SECRET_URL,
        "pool_size": 5,
        "pool_timeout": 30,
        "pool_recycle": 3600,
        "echo": True,
        "options": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
    }


@pytest.mark.usefixtures("clean_environ")
def test_structum_env_read_from_os_environ(
    complete_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    provider = DynaconfConfigProvider(root_path=complete_project).auto_discover()
    assert provider.get("database.pool_size") == 20
    assert provider.get("database.options.pool_use_lifo") is True


def test_environment_variable_overrides(complete_project: Path) -> None:
    # Seed §9.2
    provider = DynaconfConfigProvider(
        root_path=complete_project,
        environ={
            "STRUCTUM_ENV": "production",
            "STRUCTUM_DATABASE__URL": "postgresql://localhost/test_db",
            "STRUCTUM_DATABASE__POOL_SIZE": "20",
            "STRUCTUM_DATABASE__POOL_TIMEOUT": "5",
            "STRUCTUM_DATABASE__OPTIONS__POOL_PRE_PING": "false",
        },
    ).auto_discover()

    database = provider.get("database")
    assert database["url"] == "postgresql://localhost/test_db"  # beats .secrets.toml
    assert database["pool_size"] == 20
    assert type(database["pool_size"]) is int
    assert database["pool_timeout"] == 5
    assert database["options"] == {
        "pool_pre_ping": False,
        "connect_args": {"connect_timeout": 10},
        "pool_use_lifo": True,
    }


@pytest.mark.usefixtures("clean_environ")
def test_multiple_databases_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seed §9.2 / §9.3: namespaces that exist only as environment variables.
    monkeypatch.setenv("STRUCTUM_PRIMARY_DB__URL", "postgresql://primary.example/app")
    monkeypatch.setenv("STRUCTUM_REPLICA_DB__URL", "postgresql://replica.example/app")
    monkeypatch.setenv("STRUCTUM_REPLICA_DB__POOL_SIZE", "3")

    provider = DynaconfConfigProvider(root_path=tmp_path).auto_discover()

    assert provider.get("primary_db") == {"url": "postgresql://primary.example/app"}
    assert provider.get("replica_db") == {"url": "postgresql://replica.example/app", "pool_size": 3}
    assert provider.has("primary_db.url")
    assert not provider.has("database")
    assert provider.get("database", {}) == {}


def test_json_style_inline_table_is_logged(
    complete_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="structum_lab.plugins.dynaconf")
    DynaconfConfigProvider(root_path=complete_project, environ={}).auto_discover()
    [record] = caplog.records
    assert "database.toml, line 10" in record.getMessage()
