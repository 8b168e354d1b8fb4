"""SQLAlchemy backend of Structum Database (sync and asyncio).

``SQLAlchemyDatabase`` and ``AsyncSQLAlchemyDatabase`` implement the portable interfaces on top of a
SQLAlchemy engine: PostgreSQL (psycopg 3), MySQL/MariaDB (PyMySQL / aiomysql) and SQLite (sqlite3 /
aiosqlite), plus ``get_session()`` for the ORM.
"""

from __future__ import annotations

try:
    import sqlalchemy as _sqlalchemy  # noqa: F401 - fail early with the install command
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without sqlalchemy installed
    raise ModuleNotFoundError(
        'structum_lab.plugins.database.sqlalchemy needs SQLAlchemy; run: pip install "structum-database-sqlalchemy"',  # noqa: E501
        name=_exc.name,
    ) from _exc

from ._async import AsyncSQLAlchemyConnection, AsyncSQLAlchemyDatabase
from ._errors import PoolOverloadedError, PoolTimeoutError
from ._results import SQLAlchemyAsyncResult, SQLAlchemyResult
from ._sync import SQLAlchemyConnection, SQLAlchemyDatabase
from ._version import __version__

__all__ = [
    "AsyncSQLAlchemyConnection",
    "AsyncSQLAlchemyDatabase",
    "PoolOverloadedError",
    "PoolTimeoutError",
    "SQLAlchemyAsyncResult",
    "SQLAlchemyConnection",
    "SQLAlchemyDatabase",
    "SQLAlchemyResult",
    "__version__",
]
