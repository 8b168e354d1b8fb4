"""PostgreSQL backend of Structum Database on psycopg 3 and psycopg_pool.

``PostgresDatabase`` (threads) and ``AsyncPostgresDatabase`` (asyncio) implement the core
interfaces; both are also importable from ``structum_lab.plugins.database``.
"""

from ._async import AsyncPostgresConnection, AsyncPostgresDatabase, AsyncPostgresResult
from ._sync import PostgresConnection, PostgresDatabase, PostgresResult
from ._version import __version__

__all__ = [
    "AsyncPostgresConnection",
    "AsyncPostgresDatabase",
    "AsyncPostgresResult",
    "PostgresConnection",
    "PostgresDatabase",
    "PostgresResult",
    "__version__",
]
