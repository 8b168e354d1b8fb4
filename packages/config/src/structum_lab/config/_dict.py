"""A configuration provider over an in-memory mapping."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["DictConfigProvider"]

_MISSING: Any = object()


def _normalize(value: Any) -> Any:
    """Return `value` as plain data: dicts with lower-case str keys, lists, scalars."""
    if isinstance(value, Mapping):
        return {str(key).lower(): _normalize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(item) for item in value]
    return value


class DictConfigProvider:
    """A `ConfigProvider` over a nested mapping of namespaces.

    Keys are matched case-insensitively; the mapping is copied, so changing it
    afterwards does not change the provider.

    Args:
        data: ``{namespace: {key: value, ...}, ...}``.

    Example:
        >>> provider = DictConfigProvider({"database": {"url": "sqlite://"}})
        >>> provider.get("database.url")
        'sqlite://'
    """

    __module__ = "structum_lab.config"

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = _normalize(data or {})

    def __repr__(self) -> str:
        # Namespaces only: values may be secrets.
        return f"{type(self).__name__}(namespaces={sorted(self._data)!r})"

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """Return a copy of the value at a dotted key.

        Args:
            key: A namespace or a dotted path inside one.
            default: Returned when the key is missing.

        Returns:
            The value, or `default`.

        Raises:
            KeyError: The key is missing and no default was given.
        """
        value = self._lookup(key)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return copy.deepcopy(value)

    def has(self, key: str) -> bool:
        """Return whether a dotted key (or namespace) is present."""
        return self._lookup(key) is not _MISSING

    def sources(self, namespace: str) -> list[str]:
        """Return ``["DictConfigProvider"]``: the values come from code, not files."""
        return [type(self).__name__]

    def _lookup(self, key: str) -> Any:
        node: Any = self._data
        for part in key.lower().split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node
