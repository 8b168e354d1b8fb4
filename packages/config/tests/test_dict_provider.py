from __future__ import annotations

import pytest

from structum_lab.config import ConfigProvider, DictConfigProvider


@pytest.fixture
def provider() -> DictConfigProvider:
    return DictConfigProvider(
        {
            "Database": {
                "URL": "postgresql://u:secret@h/db",
                "pool_size": 5,
                "options": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
                "hosts": ("a", "b"),
            }
        }
    )


def test_is_a_config_provider(provider: DictConfigProvider) -> None:
    assert isinstance(provider, ConfigProvider)


def test_namespace_is_plain_lower_case_dict(provider: DictConfigProvider) -> None:
    assert provider.get("database") == {
        "url": "postgresql://u:secret@h/db",
        "pool_size": 5,
        "options": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
        "hosts": ["a", "b"],
    }


def test_dotted_keys_are_case_insensitive(provider: DictConfigProvider) -> None:
    assert provider.get("database.url") == "postgresql://u:secret@h/db"
    assert provider.get("DATABASE.Options.connect_args.connect_timeout") == 10


def test_missing_key_raises_key_error_without_default(provider: DictConfigProvider) -> None:
    with pytest.raises(KeyError, match=r"database\.nope"):
        provider.get("database.nope")
    with pytest.raises(KeyError):
        provider.get("replica_db")
    with pytest.raises(KeyError):
        provider.get("database.url.deeper")


def test_missing_key_returns_default(provider: DictConfigProvider) -> None:
    assert provider.get("replica_db", {}) == {}
    assert provider.get("database.nope", None) is None


def test_has(provider: DictConfigProvider) -> None:
    assert provider.has("database")
    assert provider.has("database.options.pool_pre_ping")
    assert not provider.has("database.nope")
    assert not provider.has("replica_db")


def test_returned_values_are_copies(provider: DictConfigProvider) -> None:
    provider.get("database")["options"]["pool_pre_ping"] = False
    assert provider.get("database.options.pool_pre_ping") is True


def test_input_mapping_is_copied() -> None:
    data = {"database": {"url": "sqlite://"}}
    provider = DictConfigProvider(data)
    data["database"]["url"] = "changed"
    assert provider.get("database.url") == "sqlite://"


def test_sources(provider: DictConfigProvider) -> None:
    assert provider.sources("database") == ["DictConfigProvider"]


def test_repr_hides_values(provider: DictConfigProvider) -> None:
    assert "secret" not in repr(provider)
    assert "database" in repr(provider)


def test_empty_provider() -> None:
    provider = DictConfigProvider()
    assert provider.get("database", {}) == {}
    assert not provider.has("database")
