"""FastAPI integration of Structum Database.

- :func:`database_lifespan`: opens the configured databases at startup, registers them with
  ``set_database`` and shuts them down at exit (``FastAPI(lifespan=...)``).
- :func:`transaction` / :func:`async_transaction` (and the ``DbConnection`` /
  ``AsyncDbConnection`` annotations): a connection inside the request's transaction, for ``def``
  routes with a sync database and ``async def`` routes with an asyncio one;
  ``SQLAlchemyDbConnection``, ``PostgresDbConnection`` and their async twins type it with one
  backend's connection (its own API, e.g. ``.sqlalchemy_connection``, type-checks).
- :func:`session` / :func:`async_session` (and the ``DbSession`` / ``AsyncDbSession``
  annotations): an ORM session inside the request's transaction, on the same connection
  (SQLAlchemy backend; imported on first use, so the package works without SQLAlchemy).
- :class:`TransactionMiddleware`: commits that transaction when the response status is below
  400 and rolls it back otherwise, before the response is sent.
- :func:`health_router`: readiness (``health_check()``, IETF health+json, 200/503) and liveness
  (never touches a database).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    import fastapi as _fastapi  # noqa: F401 - fail here, with the command to run
except ModuleNotFoundError as exc:  # pragma: no cover - fastapi is a dependency of this package
    if exc.name not in ("fastapi", "starlette", "anyio"):
        raise
    raise ImportError(
        "structum_lab.plugins.database.fastapi needs FastAPI, which is not installed; run: "
        'pip install "structum-database[fastapi]"'
    ) from exc

from ._dependencies import (
    AsyncDbConnection,
    DbConnection,
    async_transaction,
    database,
    transaction,
)
from ._health import (
    HEALTH_MEDIA_TYPE,
    HealthDetail,
    HealthJSONResponse,
    health_router,
    render_health,
)
from ._lifespan import DatabaseLifespan, DatabaseSource, database_lifespan
from ._middleware import TransactionMiddleware
from ._version import __version__

if TYPE_CHECKING:
    from ._orm import AsyncDbSession as AsyncDbSession
    from ._orm import DbSession as DbSession
    from ._orm import async_session as async_session
    from ._orm import session as session
    from ._typed import AsyncPostgresDbConnection as AsyncPostgresDbConnection
    from ._typed import AsyncSQLAlchemyDbConnection as AsyncSQLAlchemyDbConnection
    from ._typed import PostgresDbConnection as PostgresDbConnection
    from ._typed import SQLAlchemyDbConnection as SQLAlchemyDbConnection

_ORM_NAMES = ("AsyncDbSession", "DbSession", "async_session", "session")
_TYPED_NAMES = (
    "AsyncPostgresDbConnection",
    "AsyncSQLAlchemyDbConnection",
    "PostgresDbConnection",
    "SQLAlchemyDbConnection",
)


def __getattr__(name: str) -> Any:
    # The ORM dependencies need SQLAlchemy; importing them on first use keeps the package
    # usable with the psycopg backend alone (and fails with the install command otherwise).
    if name in _ORM_NAMES:
        from . import _orm  # noqa: PLC0415

        return getattr(_orm, name)
    if name in _TYPED_NAMES:  # each imports its backend
        from . import _typed  # noqa: PLC0415

        return getattr(_typed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HEALTH_MEDIA_TYPE",
    "AsyncDbConnection",
    "DatabaseLifespan",
    "DatabaseSource",
    "DbConnection",
    "HealthDetail",
    "HealthJSONResponse",
    "TransactionMiddleware",
    "__version__",
    "async_transaction",
    "database",
    "database_lifespan",
    "health_router",
    "render_health",
    "transaction",
]
