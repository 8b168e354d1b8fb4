from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from structum_lab.config import DictConfigProvider, set_config_provider
from structum_lab.plugins.database import ConfigurationError, HealthResult, HealthStatus
from structum_lab.plugins.database.interfaces import DatabaseInterface


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

    def transaction(self) -> Any:
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
