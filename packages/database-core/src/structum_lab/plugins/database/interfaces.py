"""The public interfaces every backend implements, sync and async.

Only :meth:`DatabaseInterface.transaction` and :meth:`DatabaseInterface.health_check` are abstract,
so an application's own database class (a test double, an adapter) needs just those two. Rows are
plain ``dict[str, Any]``: ``row["username"]``, JSON-ready. The async interfaces are written in
``_interfaces_async.py``; the sync ones in ``_interfaces_sync.py`` are generated from them.
"""

from __future__ import annotations

from ._interfaces_async import AsyncConnection, AsyncDatabaseInterface, AsyncResult
from ._interfaces_sync import Connection, DatabaseInterface, Result
from ._types import (
    AsyncTransactionFunction,
    MaybeRow,
    Params,
    PoolInfo,
    Row,
    TransactionFunction,
)

__all__ = [
    "AsyncConnection",
    "AsyncDatabaseInterface",
    "AsyncResult",
    "AsyncTransactionFunction",
    "Connection",
    "DatabaseInterface",
    "MaybeRow",
    "Params",
    "PoolInfo",
    "Result",
    "Row",
    "TransactionFunction",
]
