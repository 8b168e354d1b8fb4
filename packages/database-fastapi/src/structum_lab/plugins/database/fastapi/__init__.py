"""FastAPI integration of Structum Database.

- :func:`database_lifespan`: opens the configured databases at startup, registers them with
  ``set_database`` and shuts them down at exit (``FastAPI(lifespan=...)``).
- :func:`transaction` / :func:`async_transaction` (and the ``DbConnection`` /
  ``AsyncDbConnection`` annotations): a connection inside the request's transaction, for ``def``
  routes with a sync database and ``async def`` routes with an asyncio one.
- :class:`TransactionMiddleware`: commits that transaction when the response status is below
  400 and rolls it back otherwise, before the response is sent.
- :func:`health_router`: readiness (``health_check()``, IETF health+json, 200/503) and liveness
  (never touches a database).
"""

from __future__ import annotations

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
