from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import structum_lab.config
from structum_lab.config import (
    ConfigError,
    ConfigProvider,
    DictConfigProvider,
    get_config_provider,
    set_config_provider,
)


@pytest.fixture(autouse=True)
def _restore_provider() -> Iterator[None]:
    saved = get_config_provider()
    yield
    set_config_provider(saved)


def test_set_and_get_provider() -> None:
    provider = DictConfigProvider({"database": {"url": "sqlite://"}})
    set_config_provider(provider)
    assert get_config_provider() is provider
    set_config_provider(None)
    assert get_config_provider() is None


def test_any_object_with_the_methods_is_a_provider() -> None:
    class Custom:
        def get(self, key: str, default: Any = None) -> Any:
            return default

        def has(self, key: str) -> bool:
            return False

        def sources(self, namespace: str) -> list[str]:
            return ["custom"]

    custom = Custom()
    assert isinstance(custom, ConfigProvider)
    set_config_provider(custom)
    assert get_config_provider() is custom
    assert not isinstance(object(), ConfigProvider)


def test_config_error_attributes() -> None:
    error = ConfigError("bad value in config/app/database.toml", source="x.toml", line=3)
    assert str(error) == "bad value in config/app/database.toml"
    assert (error.source, error.line) == ("x.toml", 3)
    assert ConfigError("no position").source is None
    assert ConfigError("no position").line is None


def test_public_names() -> None:
    assert structum_lab.config.__version__ == "0.1.0"
    assert set(structum_lab.config.__all__) == {
        "ConfigError",
        "ConfigProvider",
        "DictConfigProvider",
        "__version__",
        "get_config_provider",
        "set_config_provider",
    }
    for name in ("ConfigError", "ConfigProvider", "DictConfigProvider"):
        assert getattr(structum_lab.config, name).__module__ == "structum_lab.config"
