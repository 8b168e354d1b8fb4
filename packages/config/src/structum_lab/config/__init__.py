"""Configuration for Structum Lab packages: a provider protocol and a registry.

Packages read their settings through the registered `ConfigProvider`::

    from structum_lab.config import DictConfigProvider, set_config_provider

    set_config_provider(DictConfigProvider({"database": {"url": "sqlite://"}}))

File-based configuration (TOML, environments, secrets, environment variables)
is in the ``structum-dynaconf`` distribution.
"""

from ._dict import DictConfigProvider
from ._errors import ConfigError
from ._provider import ConfigProvider
from ._registry import get_config_provider, set_config_provider
from ._version import __version__

__all__ = [
    "ConfigError",
    "ConfigProvider",
    "DictConfigProvider",
    "__version__",
    "get_config_provider",
    "set_config_provider",
]
