"""Constructor settings, URL checks and ``from_config`` keys (no server: nothing is opened)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg.rows import dict_row

from structum_lab.config import DictConfigProvider, set_config_provider
from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    ConfigurationError,
    HealthThresholds,
    PostgresDatabase,
)

URL = "postgresql://app:Sup3rSecret@db.example.com:5432/app"


def make(**kw: Any) -> PostgresDatabase:
    # open=False: the pool starts no worker threads and makes no connection.
    return PostgresDatabase(URL, open=False, **kw)


@pytest.fixture
def use_config() -> Iterator[Callable[[dict[str, Any]], None]]:
    """Register a DictConfigProvider over the given namespaces (unregistered afterwards)."""
    yield lambda data: set_config_provider(DictConfigProvider(data))
    set_config_provider(None)


def test_defaults() -> None:
    db = make()
    assert (db.pool_size, db.min_size, db.max_size, db.timeout) == (10, 2, 10, 5.0)
    assert db.prepare_threshold == 5
    assert db.check_idle_seconds == 0.0
    kwargs = db._connect_kwargs
    assert kwargs["row_factory"] is dict_row
    assert kwargs["autocommit"] is False
    assert kwargs["application_name"] == "structum"
    assert kwargs["connect_timeout"] == 5  # connect_timeout=5.0 by default
    assert "options" not in kwargs


def test_seed_5_1_sizes() -> None:
    db = make(pool_size=10, min_size=2, max_size=20, timeout=5.0)
    assert (db.min_size, db.max_size) == (2, 20)
    assert db._pool.max_size == 20
    assert db._pool.min_size == 2


def test_max_overflow_raises_the_maximum() -> None:
    assert make(pool_size=10, max_overflow=5).max_size == 15


def test_min_size_never_exceeds_the_maximum() -> None:
    assert make(pool_size=1).min_size == 1


def test_pgbouncer_disables_prepared_statements() -> None:
    db = make(pgbouncer=True, prepare_threshold=3)
    assert db.prepare_threshold is None
    assert db._connect_kwargs["prepare_threshold"] is None


def test_pgbouncer_refuses_a_session_statement_timeout() -> None:
    with pytest.raises(ConfigurationError, match="ALTER ROLE"):
        make(pgbouncer=True, statement_timeout=5)


def test_statement_timeout_is_a_startup_option_appended_to_the_urls() -> None:
    db = PostgresDatabase(
        "postgresql://u@h/db?options=-csearch_path%3Dapp", statement_timeout=1.5, open=False
    )
    assert db._connect_kwargs["options"] == "-csearch_path=app -c statement_timeout=1500"


def test_application_name_and_connect_timeout_in_the_url_win() -> None:
    db = PostgresDatabase(
        "postgresql://u@h/db?application_name=billing&connect_timeout=3", open=False
    )
    assert "application_name" not in db._connect_kwargs
    assert "connect_timeout" not in db._connect_kwargs


def test_connect_args_are_passed_to_psycopg() -> None:
    db = make(connect_args={"connect_timeout": 2, "sslmode": "disable"})
    assert db._connect_kwargs["connect_timeout"] == 2
    assert db._connect_kwargs["sslmode"] == "disable"


def test_never_recycle() -> None:
    assert make(max_lifetime=-1).max_lifetime == float("inf")


def test_health_thresholds_from_a_table() -> None:
    db = make(health_thresholds={"degraded_latency_ms": 50.0})
    assert db.health_thresholds == HealthThresholds(degraded_latency_ms=50.0)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"pool_size": 0}, "pool_size"),
        ({"max_overflow": -1}, "max_overflow"),
        ({"min_size": -1}, "min_size"),
        ({"timeout": 0}, "timeout"),
        ({"check_idle_seconds": -1}, "check_idle_seconds"),
        ({"prepare_threshold": -1}, "prepare_threshold"),
        ({"statement_timeout": 0}, "statement_timeout"),
    ],
)
def test_out_of_range_settings_name_the_key(kw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError, match=key) as info:
        make(**kw)
    assert info.value.key == key


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@h/db",
        "postgres://u:pw@h/db",
        "postgresql+psycopg://u:pw@h/db",
        "host=h dbname=db user=u password=pw",
    ],
)
def test_accepted_url_forms(url: str) -> None:
    db = PostgresDatabase(url, open=False)
    assert "pw" not in repr(db)
    assert "pw" not in db.url


def test_another_databases_url_says_what_to_use() -> None:
    with pytest.raises(ConfigurationError, match="SQLAlchemyDatabase") as info:
        PostgresDatabase("mysql://root:Hunter22@localhost/app")
    assert "Hunter22" not in str(info.value)


def test_unparsable_url_is_masked() -> None:
    with pytest.raises(ConfigurationError, match="invalid PostgreSQL URL") as info:
        PostgresDatabase("postgresql://u:Hunter22@h/db?nosuchparam=1")
    assert "Hunter22" not in str(info.value)


def test_empty_url() -> None:
    with pytest.raises(ConfigurationError, match="needs a PostgreSQL URL"):
        PostgresDatabase("")


def test_repr_masks_the_password() -> None:
    db = make()
    assert "Sup3rSecret" not in repr(db)
    assert "***" in repr(db)


def test_async_twin_builds_without_an_event_loop() -> None:
    db = AsyncPostgresDatabase(URL, pool_size=3)
    assert db.get_pool_info()["total"] == 0
    assert db.get_pool_info()["max"] == 3


def test_pool_info_before_opening() -> None:
    info = make(pool_size=4).get_pool_info()
    assert {k: info[k] for k in ("checked_out", "available", "total", "overflow", "max")} == {
        "checked_out": 0,
        "available": 0,
        "total": 0,
        "overflow": 0,
        "max": 4,
    }
    assert info["stats"]["pool_max"] == 4


def test_from_config_understands_a_sqlalchemy_database_toml(
    use_config: Callable[[dict[str, Any]], None],
) -> None:
    # seed §3 and §9.1 keys, written for SQLAlchemyDatabase
    database = {
        "url": URL,
        "pool_size": 5,
        "pool_timeout": 30,
        "pool_recycle": 3600,
        "max_overflow": 5,
        "echo": False,
        "open": False,
        "options": {
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": 10},
            "pool_use_lifo": True,
        },
    }
    use_config({"database": database})
    db = PostgresDatabase.from_config()
    assert db.timeout == 30.0
    assert db.max_lifetime == 3600.0
    assert db.max_size == 10
    assert db.pool_pre_ping is True
    assert db._connect_kwargs["connect_timeout"] == 10


def test_from_config_namespace_and_env_strings(
    use_config: Callable[[dict[str, Any]], None],
) -> None:
    use_config({"replica_db": {"url": URL, "pool_size": "7", "pgbouncer": "true", "open": "false"}})
    db = AsyncPostgresDatabase.from_config(namespace="replica_db")
    assert db.pool_size == 7
    assert db.pgbouncer is True


def test_from_config_rejects_unknown_and_badly_typed_keys(
    use_config: Callable[[dict[str, Any]], None],
) -> None:
    use_config({"database": {"url": URL, "pool_size": "abc"}})
    with pytest.raises(ConfigurationError, match=r"database\.pool_size must be an integer"):
        PostgresDatabase.from_config()
    use_config({"database": {"url": URL, "options": {"pool_reset_on_return": "commit"}}})
    with pytest.raises(ConfigurationError, match="not a setting of PostgresDatabase"):
        PostgresDatabase.from_config()


def test_leak_detection_threshold_from_config(
    use_config: Callable[[dict[str, Any]], None],
) -> None:
    assert make().leak_detection_threshold is None  # off by default
    use_config({"database": {"url": URL, "open": False, "leak_detection_threshold": "1.5"}})
    assert PostgresDatabase.from_config().leak_detection_threshold == 1.5
    use_config({"database": {"url": URL, "open": False, "leak_detection_threshold": 0}})
    with pytest.raises(ConfigurationError, match="leak_detection_threshold") as info:
        AsyncPostgresDatabase.from_config()
    assert info.value.key == "leak_detection_threshold"


def test_from_config_without_url_names_the_namespace(
    use_config: Callable[[dict[str, Any]], None],
) -> None:
    use_config({"database": {"pool_size": 3}})
    with pytest.raises(ConfigurationError, match="'database' has no 'url'") as info:
        PostgresDatabase.from_config()
    assert info.value.key == "url"


def test_slow_transaction_threshold_from_config(
    use_config: Callable[[dict[str, Any]], None],
) -> None:
    assert make().slow_transaction_threshold is None  # off by default
    use_config({"database": {"url": URL, "open": False, "slow_transaction_threshold": "0.5"}})
    assert PostgresDatabase.from_config().slow_transaction_threshold == 0.5
    use_config({"database": {"url": URL, "open": False, "slow_transaction_threshold": 1e9}})
    with pytest.raises(ConfigurationError, match="slow_transaction_threshold") as info:
        AsyncPostgresDatabase.from_config()
    assert info.value.key == "slow_transaction_threshold"
    use_config({"database": {"url": URL, "open": False, "slow_transaction_threshold": 0}})
    with pytest.raises(ConfigurationError, match="slow_transaction_threshold"):
        PostgresDatabase.from_config()
