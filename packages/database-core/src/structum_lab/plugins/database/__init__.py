"""Structum Database: pooled, transactional, health-checked database access.

Core names are imported eagerly. Backends live in their own distributions and are imported on
first use, so ``from structum_lab.plugins.database import PostgresDatabase`` works when
``structum-database-postgres`` is installed and otherwise fails with the command to run.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .base import logger
from .errors import (
    CommitOutcomeUnknownError,
    ConfigurationError,
    DatabaseClosedError,
    DatabaseError,
    DatabaseUnavailableError,
    IntegrityError,
    LockTimeoutError,
    PoolOverloadedError,
    PoolTimeoutError,
    QueryError,
    SerializationError,
    StatementTimeoutError,
)
from .health import HealthResult, HealthStatus, HealthThresholds
from .interfaces import (
    AsyncConnection,
    AsyncDatabaseInterface,
    AsyncResult,
    Connection,
    DatabaseInterface,
    MaybeRow,
    PoolInfo,
    Result,
    Row,
)
from .registry import get_database, set_database
from .secrets import mask_url

# Join the database/ folders of the sibling distributions (editable installs put each in its own
# src/ on sys.path; without this only core's folder would be searched).
__path__ = pkgutil.extend_path(__path__, __name__)

if TYPE_CHECKING:
    from .postgres import AsyncPostgresDatabase as AsyncPostgresDatabase
    from .postgres import PostgresDatabase as PostgresDatabase
    from .sqlalchemy import AsyncSQLAlchemyDatabase as AsyncSQLAlchemyDatabase
    from .sqlalchemy import SQLAlchemyDatabase as SQLAlchemyDatabase
    from .testing import AsyncMockDatabase as AsyncMockDatabase
    from .testing import MockDatabase as MockDatabase

__all__ = [
    "AsyncConnection",
    "AsyncDatabaseInterface",
    "AsyncResult",
    "CommitOutcomeUnknownError",
    "ConfigurationError",
    "Connection",
    "DatabaseClosedError",
    "DatabaseError",
    "DatabaseInterface",
    "DatabaseUnavailableError",
    "HealthResult",
    "HealthStatus",
    "HealthThresholds",
    "IntegrityError",
    "LockTimeoutError",
    "MaybeRow",
    "PoolInfo",
    "PoolOverloadedError",
    "PoolTimeoutError",
    "QueryError",
    "Result",
    "Row",
    "SerializationError",
    "StatementTimeoutError",
    "__version__",
    "get_database",
    "logger",
    "mask_url",
    "set_database",
]

# name -> (module, extra of the meta package that installs it). Kept out of __all__ so that
# ``from structum_lab.plugins.database import *`` works with any set of backends installed.
_LAZY: dict[str, tuple[str, str]] = {
    "SQLAlchemyDatabase": (".sqlalchemy", "sqlalchemy"),
    "AsyncSQLAlchemyDatabase": (".sqlalchemy", "sqlalchemy"),
    "PostgresDatabase": (".postgres", "postgres"),
    "AsyncPostgresDatabase": (".postgres", "postgres"),
    "MockDatabase": (".testing", "testing"),
    "AsyncMockDatabase": (".testing", "testing"),
}


def install_hint(extra: str) -> str:
    """The command that installs the backend behind ``extra`` (``postgres``, ``sqlalchemy``...)."""
    return f'pip install "structum-database[{extra}]"'


def __getattr__(name: str) -> Any:
    try:
        module_name, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        module = import_module(module_name, __name__)
    except ModuleNotFoundError as exc:
        # Only our own backend missing earns the hint; a broken dependency inside it must surface.
        if exc.name and not (__name__ + module_name).startswith(exc.name):
            missing = exc.name
            raise ImportError(
                f"{name} needs the package {missing!r}, which is not installed; run: "
                f"{install_hint(extra)}"
            ) from exc
        raise ImportError(f"{name} is not installed; run: {install_hint(extra)}") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value
