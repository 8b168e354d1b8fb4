"""A process-wide registry of named databases (``set_database`` / ``get_database``)."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ._interfaces_sync import DatabaseInterface
from .errors import ConfigurationError

__all__ = ["clear_databases", "get_database", "set_database"]

_lock = threading.Lock()
_databases: dict[str, Any] = {}
_DB = TypeVar("_DB")


def set_database(db: Any, name: str = "default") -> None:
    """Register ``db`` under ``name`` (replacing any previous one).

    Args:
        db: A ``DatabaseInterface`` or ``AsyncDatabaseInterface``.
        name: Registry key; applications with a primary and a replica use two names.
    """
    with _lock:
        _databases[name] = db


@overload
def get_database(name: str = "default", type: None = None) -> DatabaseInterface: ...


# ``type`` is annotated as a callable returning the class's instances rather than ``type[_DB]``:
# mypy refuses an abstract class where ``type[X]`` is expected, and the interfaces are abstract.
@overload
def get_database(name: str, type: Callable[..., _DB]) -> _DB: ...


@overload
def get_database(name: str = "default", *, type: Callable[..., _DB]) -> _DB: ...


def get_database(name: str = "default", type: Callable[..., Any] | None = None) -> Any:
    """Return the database registered under ``name``, checked against ``type`` when given.

    Typing: without ``type`` the result is typed ``DatabaseInterface`` (the sync interface, as
    seed §10.1's ``def get_db() -> DatabaseInterface: return get_database()`` expects) whatever
    is registered; for an asyncio database, or to reach a backend's own API, pass the class:
    ``get_database("default", AsyncDatabaseInterface)``,
    ``get_database("default", SQLAlchemyDatabase)`` (typed as that class and checked at run time).

    Args:
        name: Registry key given to :func:`set_database`.
        type: The class the registered object must be an instance of (a backend class or an
            interface); None accepts anything registered.

    Raises:
        ConfigurationError: Nothing is registered under that name, or what is registered is not
            an instance of ``type``.
    """
    try:
        db = _databases[name]
    except KeyError:
        known = ", ".join(sorted(_databases)) or "none"
        raise ConfigurationError(
            f"no database registered as {name!r} (registered: {known}); "
            f"call set_database(db, name={name!r}) at startup"
        ) from None
    if type is None:
        return db
    if not isinstance(type, builtins.type):
        raise TypeError(f"get_database() type must be a class, got {type!r}")
    if not isinstance(db, type):
        raise ConfigurationError(
            f"the database registered as {name!r} is a {builtins.type(db).__name__}, not a "
            f"{type.__name__}; ask for get_database({name!r}, {builtins.type(db).__name__}) or "
            f"register a {type.__name__} with set_database(db, name={name!r})"
        )
    return db


def clear_databases() -> dict[str, Any]:
    """Forget every registered database and return them (their shutdown is the caller's)."""
    with _lock:
        removed = dict(_databases)
        _databases.clear()
        return removed
