from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from structum_lab.config import DictConfigProvider, set_config_provider
from structum_lab.plugins.database import (
    ConfigurationError,
    HealthResult,
    HealthStatus,
    HealthThresholds,
)
from structum_lab.plugins.database.interfaces import DatabaseInterface
from structum_lab.plugins.database.settings import shown_value


class _Configurable(DatabaseInterface):
    config_aliases: ClassVar[dict[str, str]] = {"pool_timeout": "timeout"}

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        timeout: float = 30.0,
        echo: bool = False,
        name: str | None = None,
        **engine_options: Any,
    ) -> None:
        self.kwargs = {"url": url, "pool_size": pool_size, "timeout": timeout, "echo": echo}
        self.engine_options = engine_options

    def transaction(self, **options: Any) -> Any:
        raise NotImplementedError

    def health_check(self) -> HealthResult:
        return HealthResult(HealthStatus.HEALTHY, "ok", 0.0)


@pytest.fixture
def provider() -> Iterator[Any]:
    def install(data: Mapping[str, Any]) -> None:
        set_config_provider(DictConfigProvider(data))

    yield install
    set_config_provider(None)


def test_values_typed_aliases_and_options(provider: Any) -> None:
    provider(
        {
            "database": {
                "url": "postgresql://u:pw@h/d",
                "pool_size": "20",
                "pool_timeout": 5,
                "echo": "false",
                "options": {"pool_use_lifo": True, "echo": True},
            }
        }
    )
    db = _Configurable.from_config()
    assert db.kwargs == {
        "url": "postgresql://u:pw@h/d",
        "pool_size": 20,
        "timeout": 5.0,
        "echo": True,
    }
    assert db.engine_options == {"pool_use_lifo": True}


def test_missing_url_names_namespace_key_and_sources(provider: Any) -> None:
    provider({"replica_db": {"pool_size": 3}})
    with pytest.raises(ConfigurationError) as info:
        _Configurable.from_config(namespace="replica_db")
    message = str(info.value)
    assert "'replica_db' has no 'url'" in message
    assert "STRUCTUM_REPLICA_DB__URL" in message
    assert "DictConfigProvider" in message
    assert info.value.namespace == "replica_db"
    assert info.value.key == "url"


def test_bad_int_is_named(provider: Any) -> None:
    provider({"database": {"url": "sqlite://", "pool_size": "abc"}})
    with pytest.raises(
        ConfigurationError, match=r"database.pool_size must be an integer, got 'abc'"
    ):
        _Configurable.from_config()


def test_unknown_top_level_key(provider: Any) -> None:
    provider({"database": {"url": "sqlite://", "pool_szie": 3}})
    with pytest.raises(ConfigurationError, match="pool_szie is not a setting of _Configurable"):
        _Configurable.from_config()


def test_url_value_never_shown(provider: Any) -> None:
    provider({"database": {"url": 12345}})
    with pytest.raises(ConfigurationError) as info:
        _Configurable.from_config()
    assert "12345" not in str(info.value)


class _WithThresholds(_Configurable):
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        timeout: float = 30.0,
        health_thresholds: HealthThresholds | Mapping[str, float] | None = None,
        connect_args: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, pool_size=pool_size, timeout=timeout, **options)
        self.thresholds = health_thresholds
        self.connect_args = connect_args


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pool_size": 1_000_000_000}, "database.pool_size must be at most 10000"),
        ({"timeout": float("nan")}, "database.timeout must be a finite number"),
        ({"timeout": float("inf")}, "database.timeout must be a finite number"),
        ({"options": {"pool_timeout": 1e12}}, "database.options.pool_timeout must be at most"),
        (
            {"health_thresholds": {"degraded_latency": 5}},
            "database.health_thresholds has no key 'degraded_latency'; its keys are "
            "degraded_latency_ms, degraded_pool_usage",
        ),
        (
            {"health_thresholds": {"degraded_pool_usage": 7}},
            "database.health_thresholds.degraded_pool_usage must be a fraction from 0 to 1",
        ),
        (
            {"options": {"connect_args": "password=hunter2 sslmode=require"}},
            "database.options.connect_args must be a table of keys",
        ),
        ({"connect_args": "password=hunter2"}, "database.connect_args must be a table of keys"),
    ],
)
def test_values_out_of_range_or_shape_are_configuration_errors(
    provider: Any, values: dict[str, Any], message: str
) -> None:
    provider({"database": {"url": "postgresql://u:hunter2@h/d", **values}})
    with pytest.raises(ConfigurationError) as info:
        _WithThresholds.from_config()
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_thresholds_from_a_table(provider: Any) -> None:
    provider({"database": {"url": "sqlite://", "health_thresholds": {"degraded_latency_ms": "80"}}})
    db = _WithThresholds.from_config()
    assert db.thresholds == HealthThresholds(degraded_latency_ms=80.0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("password", 12345),
        ("sslpassword", ["x"]),
        ("connect_args", "password=hunter2"),
        ("url", b"postgresql://u:hunter2@h/d"),
        ("options", "-c x=1 password=hunter2"),
    ],
)
def test_rejected_values_that_may_hold_a_secret_are_not_shown(key: str, value: Any) -> None:
    shown = shown_value(key, value)
    assert "hunter2" not in shown
    assert "12345" not in shown
    assert "not shown" in shown


def test_rejected_plain_values_are_shown_masked() -> None:
    assert shown_value("pool_size", "abc") == "'abc'"
    assert shown_value("application_name", "postgresql://u:hunter2@h/d") == (
        "'postgresql://u:***@h/d'"
    )


# -- from_config(namespace, **overrides) ---------------------------------------------------------
def test_overrides_win_over_every_configured_value(provider: Any) -> None:
    provider(
        {
            "database": {
                "url": "postgresql://u:pw@h/file",
                "pool_size": 20,
                "timeout": 5,
                "options": {"pool_use_lifo": True, "pool_recycle": 60},
            }
        }
    )
    db = _Configurable.from_config(
        url="postgresql://u:pw@h/app",
        pool_timeout=7,  # an alias, like a configuration key
        pool_size="3",  # checked and converted like a configuration value
        options={"pool_recycle": 5},
        pool_use_lifo=False,  # not a parameter: an engine option, winning over options.*
    )
    assert db.kwargs == {
        "url": "postgresql://u:pw@h/app",
        "pool_size": 3,
        "timeout": 7.0,
        "echo": False,
    }
    assert db.engine_options == {"pool_use_lifo": False, "pool_recycle": 5}


def test_an_override_can_be_the_only_url(provider: Any) -> None:
    provider({"database": {"pool_size": 4}})
    db = _Configurable.from_config(url="sqlite://")
    assert db.kwargs["url"] == "sqlite://"
    assert db.kwargs["pool_size"] == 4
    provider({})
    with pytest.raises(ConfigurationError, match=r"from_config\(namespace, url=\.\.\.\)"):
        _Configurable.from_config()


def test_bad_override_is_named_as_an_argument(provider: Any) -> None:
    provider({"database": {"url": "sqlite://"}})
    with pytest.raises(ConfigurationError) as info:
        _Configurable.from_config(pool_size="many")
    message = str(info.value)
    assert "database.pool_size must be an integer, got 'many'" in message
    assert "the arguments of _Configurable.from_config()" in message
    with pytest.raises(ConfigurationError, match=r"options=\.\.\.\) must be a mapping"):
        _Configurable.from_config(options=3)


def test_unknown_override_without_options_fails(provider: Any) -> None:
    class _Strict(DatabaseInterface):
        def __init__(self, url: str, *, pool_size: int = 5) -> None:
            self.url = url

        def transaction(self, **options: Any) -> Any:
            raise NotImplementedError

        def health_check(self) -> HealthResult:
            raise NotImplementedError

    provider({"database": {"url": "sqlite://"}})
    with pytest.raises(ConfigurationError, match="pool_szie is not a setting of _Strict"):
        _Strict.from_config(pool_szie=3)


def test_override_url_is_never_shown(provider: Any) -> None:
    provider({"database": {}})
    with pytest.raises(ConfigurationError) as info:
        _Configurable.from_config(url=12345)
    assert "12345" not in str(info.value)
