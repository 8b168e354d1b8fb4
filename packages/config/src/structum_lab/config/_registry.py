"""The process-wide configuration provider."""

from __future__ import annotations

from ._provider import ConfigProvider

__all__ = ["get_config_provider", "set_config_provider"]

_provider: ConfigProvider | None = None


def set_config_provider(provider: ConfigProvider | None) -> None:
    """Register the provider that packages read their configuration from.

    Args:
        provider: The provider, or None to unregister the current one.
    """
    global _provider  # noqa: PLW0603 - one process-wide registration is the point
    _provider = provider


def get_config_provider() -> ConfigProvider | None:
    """Return the registered provider, or None when none is registered."""
    return _provider
