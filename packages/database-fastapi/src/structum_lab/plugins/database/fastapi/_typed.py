"""``DbConnection`` typed with one backend's connection (``.sqlalchemy_connection`` type-checks).

``DbConnection`` is the portable ``Connection``; a route that uses a backend's own API asks for
that backend's connection instead. The connection is the same one (the same transaction as
``DbConnection`` in the same request); the dependency also checks at run time that the database
is of that backend, so a mismatch fails with a clear ``TypeError`` rather than an
``AttributeError`` in the handler. Each alias imports its backend on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends

from ._dependencies import async_transaction, transaction

if TYPE_CHECKING:
    from structum_lab.plugins.database.postgres import (
        AsyncPostgresConnection,
        PostgresConnection,
    )
    from structum_lab.plugins.database.sqlalchemy import (
        AsyncSQLAlchemyConnection,
        SQLAlchemyConnection,
    )

__all__ = [
    "AsyncPostgresDbConnection",
    "AsyncSQLAlchemyDbConnection",
    "PostgresDbConnection",
    "SQLAlchemyDbConnection",
]


def _checked(
    expected: type[Any], dependency: Callable[..., Any]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def connection(conn: Any = Depends(dependency)) -> Any:  # noqa: B008
        if not isinstance(conn, expected):
            raise TypeError(
                f"the route asks for a {expected.__name__}, but the database gives a "
                f"{type(conn).__name__}; use DbConnection / AsyncDbConnection for any backend"
            )
        return conn

    connection.__name__ = f"{expected.__name__}_dependency"
    return connection


if TYPE_CHECKING:
    SQLAlchemyDbConnection = Annotated[SQLAlchemyConnection, Depends(transaction())]
    AsyncSQLAlchemyDbConnection = Annotated[AsyncSQLAlchemyConnection, Depends(async_transaction())]
    PostgresDbConnection = Annotated[PostgresConnection, Depends(transaction())]
    AsyncPostgresDbConnection = Annotated[AsyncPostgresConnection, Depends(async_transaction())]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    package = "sqlalchemy" if "SQLAlchemy" in name else "postgres"
    backend = importlib.import_module(f"structum_lab.plugins.database.{package}")
    cls = getattr(backend, name.replace("DbConnection", "Connection"))
    dependency = async_transaction() if name.startswith("Async") else transaction()
    alias = Annotated[cls, Depends(_checked(cls, dependency))]  # type: ignore[valid-type]
    globals()[name] = alias
    return alias
