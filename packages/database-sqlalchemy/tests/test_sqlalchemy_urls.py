"""URL → driver mapping, install hints, and constructor validation (no server needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy.exc

from structum_lab.plugins.database import ConfigurationError
from structum_lab.plugins.database import PoolTimeoutError as CorePoolTimeoutError
from structum_lab.plugins.database.sqlalchemy import (
    AsyncSQLAlchemyDatabase,
    PoolTimeoutError,
    SQLAlchemyDatabase,
)
from structum_lab.plugins.database.sqlalchemy._urls import driver_hint, resolve_url

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("url", "sync_driver", "async_driver"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgres://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("mysql://u:p@h/db", "mysql+pymysql", "mysql+aiomysql"),
        ("mariadb://u:p@h/db", "mariadb+pymysql", "mariadb+aiomysql"),
        ("sqlite:///tmp/x.db", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("sqlite://", "sqlite+pysqlite", "sqlite+aiosqlite"),
    ],
)
def test_default_driver_per_scheme(url: str, sync_driver: str, async_driver: str) -> None:
    assert resolve_url(url, is_async=False).drivername == sync_driver
    assert resolve_url(url, is_async=True).drivername == async_driver


def test_explicit_driver_is_kept() -> None:
    assert resolve_url("postgresql+psycopg://h/db", is_async=True).drivername == (
        "postgresql+psycopg"
    )
    assert resolve_url("mysql+pymysql://h/db", is_async=False).drivername == "mysql+pymysql"
    assert resolve_url("postgres+psycopg://h/db", is_async=False).drivername == (
        "postgresql+psycopg"
    )


def test_url_keeps_credentials_host_and_query() -> None:
    url = resolve_url(
        f"postgresql://app:{SECRET}@db.example:6543/app?sslmode=require", is_async=False
    )
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app",
        SECRET,
        "db.example",
        6543,
        "app",
    )
    assert url.query == {"sslmode": "require"}


def test_one_url_serves_both_twins() -> None:
    url = f"postgresql://app:{SECRET}@localhost/app"
    sync_db = SQLAlchemyDatabase(url)
    async_db = AsyncSQLAlchemyDatabase(url)
    try:
        assert sync_db.engine.dialect.driver == "psycopg"
        assert async_db.engine.dialect.driver == "psycopg"
        assert async_db.engine.dialect.is_async
        assert type(async_db.engine.dialect).__name__ == "PGDialectAsync_psycopg"
    finally:
        sync_db.shutdown()


def test_unknown_scheme_lists_supported_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLAlchemyDatabase(f"foodb://u:{SECRET}@h/db")
    message = str(info.value)
    assert "'foodb'" in message
    for scheme in ("postgresql://", "mysql://", "mariadb://", "sqlite://"):
        assert scheme in message
    assert SECRET not in message
    assert info.value.key == "url"


def test_unparseable_url_is_masked() -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLAlchemyDatabase(f"not a url with {SECRET}")
    assert "cannot parse" in str(info.value)


def test_async_driver_in_sync_class_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="AsyncSQLAlchemyDatabase"):
        SQLAlchemyDatabase("sqlite+aiosqlite:///x.db")
    with pytest.raises(ConfigurationError, match="SQLAlchemyDatabase"):
        AsyncSQLAlchemyDatabase("mysql+pymysql://root@localhost/db")


@pytest.mark.parametrize(
    ("cls", "url", "module", "command"),
    [
        (
            SQLAlchemyDatabase,
            "mysql://root@h/db",
            "pymysql",
            'pip install "structum-database-sqlalchemy[mysql]"',
        ),
        (
            AsyncSQLAlchemyDatabase,
            "mariadb://root@h/db",
            "aiomysql",
            'pip install "structum-database-sqlalchemy[mysql]"',
        ),
        (
            SQLAlchemyDatabase,
            f"postgresql://u:{SECRET}@h/db",
            "psycopg",
            'pip install "structum-database-sqlalchemy[postgresql]"',
        ),
        (
            AsyncSQLAlchemyDatabase,
            "sqlite:///x.db",
            "aiosqlite",
            'pip install "structum-database-sqlalchemy[sqlite-async]"',
        ),
    ],
)
def test_missing_driver_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, cls: type, url: str, module: str, command: str
) -> None:
    # None in sys.modules makes "import <module>" fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigurationError) as info:
        cls(url)
    assert command in str(info.value)
    assert SECRET not in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_driver_hint_for_foreign_drivers() -> None:
    assert driver_hint("pyodbc") == "pip install pyodbc"
    assert driver_hint("psycopg.pq") == 'pip install "structum-database-sqlalchemy[postgresql]"'


def test_pool_timeout_error_is_also_sqlalchemy_timeout() -> None:
    assert issubclass(PoolTimeoutError, CorePoolTimeoutError)
    assert issubclass(PoolTimeoutError, sqlalchemy.exc.TimeoutError)
    err = PoolTimeoutError("pool exhausted (pool: checked_out=1)", pool_info={"checked_out": 1})
    assert str(err) == "pool exhausted (pool: checked_out=1)"
    assert err.pool_info == {"checked_out": 1}


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": "abc"}, "pool_size"),
        ({"max_overflow": -2}, "max_overflow"),
        ({"pool_timeout": -1}, "pool_timeout"),
        ({"pool_recycle": 1.5}, "pool_recycle"),
        ({"pre_ping_idle_seconds": -0.1}, "pre_ping_idle_seconds"),
        ({"health_thresholds": {"nope": 1}}, "health_thresholds"),
        ({"leak_detection_threshold": 0}, "leak_detection_threshold"),
        ({"leak_detection_threshold": "soon"}, "leak_detection_threshold"),
    ],
)
def test_invalid_settings_fail_with_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLAlchemyDatabase("sqlite://", **kwargs)  # type: ignore[arg-type]
    assert info.value.key == key
    assert key in str(info.value)


def test_unknown_engine_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLAlchemyDatabase(f"postgresql://u:{SECRET}@h/db", no_such_option=1)
    assert "no_such_option" in str(info.value)
    assert SECRET not in str(info.value)


def test_engine_options_reach_create_engine() -> None:
    db = SQLAlchemyDatabase(
        "postgresql://u:p@h/db",
        pool_size=3,
        max_overflow=2,
        pool_timeout=4,
        pool_recycle=60,
        pool_use_lifo=True,
        connect_args={"connect_timeout": 10},
    )
    pool = db.engine.pool
    assert pool.size() == 3  # type: ignore[attr-defined]
    assert pool.timeout() == 4  # type: ignore[attr-defined]
    assert pool._recycle == 60
    info = db.get_pool_info()
    assert info == {
        "checked_out": 0,
        "leaked": 0,
        "available": 0,
        "total": 0,
        "overflow": 0,
        "max": 5,
        "size": 3,
        "waiting": 0,
    }
    db.shutdown()


def test_health_thresholds_from_a_table() -> None:
    db = SQLAlchemyDatabase("sqlite://", health_thresholds={"degraded_latency_ms": 5})
    assert db.health_thresholds.degraded_latency_ms == 5
    db.shutdown()


def test_repr_and_url_mask_the_password() -> None:
    db = SQLAlchemyDatabase(f"postgresql://app:{SECRET}@localhost/app")
    assert SECRET not in repr(db)
    assert SECRET not in db.url
    assert SECRET not in repr(db.engine)
    db.shutdown()
    assert "closed" in repr(db)


def test_without_sqlalchemy_the_import_names_the_install_command() -> None:
    # A fresh interpreter where "import sqlalchemy" fails as if it were not installed.
    code = (
        "import sys\n"
        "sys.modules['sqlalchemy'] = None\n"
        "try:\n"
        "    from structum_lab.plugins.database import SQLAlchemyDatabase\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    import structum_lab.plugins.database.sqlalchemy\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert 'pip install "structum-database[sqlalchemy]"' in out[0]
    assert 'pip install "structum-database-sqlalchemy"' in out[1]
