"""The protocol every configuration provider implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["ConfigProvider"]


@runtime_checkable
class ConfigProvider(Protocol):
    """Read-only access to configuration, addressed by dotted keys.

    The first part of a key is a namespace (``"database"``); the rest walks into
    it (``"database.options.pool_pre_ping"``). Values are plain data: dicts with
    lower-case string keys, lists and scalars, so callers may treat them as JSON.
    """

    def get(self, key: str, default: Any = ...) -> Any:
        """Return the value at a dotted key.

        Args:
            key: A namespace (returns its whole dict) or a dotted path inside one.
            default: Returned when the key is missing. Without it a missing key
                raises `KeyError`.

        Returns:
            A copy of the value; changing it does not change the provider.

        Raises:
            KeyError: The key is missing and no default was given.
        """
        ...

    def has(self, key: str) -> bool:
        """Return whether a dotted key (or namespace) is present."""
        ...

    def sources(self, namespace: str) -> list[str]:
        """Describe, for error messages, where the namespace's values are looked for.

        Args:
            namespace: The namespace, e.g. ``"database"``.

        Returns:
            Human-readable descriptions of files, sections and environment variables,
            listed whether or not they exist or hold the namespace.
        """
        ...


ConfigProvider.__module__ = "structum_lab.config"
