"""Dynaconf settings objects that see only the data we hand them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from dynaconf.base import Settings
from dynaconf.loaders.base import BaseLoader
from dynaconf.utils import build_env_list
from dynaconf.utils.parse_conf import boolean_fix, parse_conf_data

__all__ = ["env_sections", "load_sections", "lower_keys", "new_settings", "parse_env_value"]

# A name no one exports: dynaconf reads its settings-module path from this variable.
_NO_SETTINGS_MODULE_VAR = "_STRUCTUM_DYNACONF_NO_SETTINGS_MODULE"


class _IsolatedSettings(Settings):  # type: ignore[misc]
    """Settings that never read the process environment.

    Dynaconf otherwise lets ``*_FOR_DYNACONF`` variables change its own behaviour
    (merge mode, environment, extra files); we read variables ourselves, from the
    mapping the provider was given.
    """

    @property
    def environ(self) -> Mapping[str, str]:
        return {}


def new_settings(*, env: str, root_path: str) -> Any:
    """Return an empty Dynaconf settings object in layered-environment mode for `env`."""
    return _IsolatedSettings(
        ENVIRONMENTS_FOR_DYNACONF=True,
        ENV_FOR_DYNACONF=env.upper(),
        FORCE_ENV_FOR_DYNACONF=None,
        DEFAULT_ENV_FOR_DYNACONF="DEFAULT",
        ENVVAR_PREFIX_FOR_DYNACONF="DYNACONF",
        # Tables merge key by key across [default] < [env] < secrets < variables.
        MERGE_ENABLED_FOR_DYNACONF=True,
        DOTTED_LOOKUP_FOR_DYNACONF=True,
        NESTED_SEPARATOR_FOR_DYNACONF="__",
        ROOT_PATH_FOR_DYNACONF=root_path,
        ENVVAR_FOR_DYNACONF=_NO_SETTINGS_MODULE_VAR,
        SETTINGS_FILE_FOR_DYNACONF=[],
        INCLUDES_FOR_DYNACONF=[],
        PRELOAD_FOR_DYNACONF=[],
        SECRETS_FOR_DYNACONF=None,
        LOADERS_FOR_DYNACONF=[],
        CORE_LOADERS_FOR_DYNACONF=[],
        VAULT_ENABLED_FOR_DYNACONF=False,
        REDIS_ENABLED_FOR_DYNACONF=False,
        SYSENV_FALLBACK_FOR_DYNACONF=False,
        VALIDATE_ON_UPDATE_FOR_DYNACONF=False,
    )


class _ParsedLoader(BaseLoader):  # type: ignore[misc]
    """Dynaconf's file loader fed with data we already parsed (for precise errors)."""

    def __init__(self, settings: Any, *, env: str, source: str, data: dict[str, Any]) -> None:
        super().__init__(
            obj=settings,
            env=env,
            identifier="toml",
            extensions=(".toml",),
            file_reader=None,
            string_reader=None,
        )
        self._source = source
        self._data = data

    def get_source_data(self, files: object) -> dict[str, Any]:
        return {self._source: self._data}


def load_sections(settings: Any, *, env: str, source: str, data: dict[str, Any]) -> None:
    """Apply a file's ``[default]``, ``[<env>]``, ``[global]`` tables the way dynaconf does."""
    sections = {name: lower_keys(value) for name, value in data.items()}
    loader = _ParsedLoader(settings, env=env, source=source, data=copy.deepcopy(sections))
    loader.load(filename=[source], silent=True)


def env_sections(settings: Any, env: str) -> list[str]:
    """Return the section names dynaconf applies for `env`, lowest precedence first."""
    return [str(name) for name in build_env_list(settings, env)]


def parse_env_value(settings: Any, raw: str) -> Any:
    """Type an environment variable's text as dynaconf does (TOML value, ``@`` tokens)."""
    return parse_conf_data(boolean_fix(raw), tomlfy=True, box_settings=settings)


def lower_keys(value: Any) -> Any:
    """Return `value` with every mapping key lower-cased (and plain dicts and lists)."""
    if isinstance(value, Mapping):
        return {str(key).lower(): lower_keys(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [lower_keys(item) for item in value]
    return value
