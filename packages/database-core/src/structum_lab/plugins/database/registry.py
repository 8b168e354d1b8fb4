"""A process-wide registry of named databases (``set_database`` / ``get_database``)."""

from __future__ import annotations

import threading
from typing import Any

from .errors import ConfigurationError

__all__ = ["clear_databases", "get_database", "set_database"]

_lock = threading.Lock()
_databases: dict[str, Any] = {}


def set_database(db: Any, name: str = "default") -> None:
    """Register ``db`` under ``name`` (replacing any previous one).

    Args:
        db: A ``DatabaseInterface`` or ``AsyncDatabaseInterface``.
        name: Registry key; applications with a primary and a replica use two names.
    """
    with _lock:
        _databases[name] = db


def get_database(name: str = "default") -> Any:
    """Return the database registered under ``name``.

    Raises:
        ConfigurationError: Nothing is registered under that name.
    """
    try:
        return _databases[name]
    except KeyError:
        known = ", ".join(sorted(_databases)) or "none"
        raise ConfigurationError(
            f"no database registered as {name!r} (registered: {known}); "
            f"call set_database(db, name={name!r}) at startup"
        ) from None


def clear_databases() -> dict[str, Any]:
    """Forget every registered database and return them (their shutdown is the caller's)."""
    with _lock:
        removed = dict(_databases)
        _databases.clear()
        return removed
