"""Type aliases shared by every interface and backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

from typing_extensions import NotRequired, TypedDict

__all__ = [
    "PUBLIC_MODULE",
    "AsyncTransactionFunction",
    "MaybeRow",
    "Params",
    "PoolInfo",
    "Row",
    "TransactionFunction",
]

C = TypeVar("C")
T = TypeVar("T")

#: A row: a plain dict (``row["username"]``), JSON-ready.
Row: TypeAlias = dict[str, Any]
#: What ``fetchone()`` returns: a :data:`Row`, or None when there is none. Annotated ``Row | Any``
#: rather than ``Row | None`` so that ``result.fetchone()["id"]`` type-checks where the caller knows
#: a row exists, as the user guide's examples do (psycopg and SQLAlchemy force a None check there);
#: a misspelt method of the row is still reported. Check ``is None`` where a row may be missing.
MaybeRow: TypeAlias = Row | Any
#: A mapping for ``:name`` placeholders, a sequence for positional ones.
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None

PUBLIC_MODULE = "structum_lab.plugins.database"
#: What ``run_transaction()`` runs: a function of the transaction's connection, whose result it
#: returns (``TransactionFunction[Connection, int]``).
TransactionFunction: TypeAlias = Callable[[C], T]
#: The async twins': an ``async def fn(conn)``.
AsyncTransactionFunction: TypeAlias = Callable[[C], Awaitable[T]]


class PoolInfo(TypedDict):
    """What ``get_pool_info()`` returns: a plain dict (psycopg_pool ``get_stats()`` style).

    Every backend fills the first four keys; the others where its pool knows them.
    """

    #: Connections held by callers.
    checked_out: int
    #: Open connections idle in the pool.
    available: int
    #: Open connections (or being opened).
    total: int
    #: Connections open beyond ``pool_size``.
    overflow: int
    #: The most connections the pool will open (None: unlimited).
    max: NotRequired[int | None]
    #: Connections the pool keeps open (psycopg ``min_size``).
    min: NotRequired[int]
    #: ``pool_size``.
    size: NotRequired[int]
    #: Callers waiting for a connection.
    waiting: NotRequired[int]
    #: Connections checked out longer than ``leak_detection_threshold``.
    leaked: NotRequired[int]
    #: The driver pool's own counters (psycopg_pool ``get_stats()``).
    stats: NotRequired[dict[str, int]]
    #: With ``replicas``: each replica's ``name``, ``url``, ``state``, ``lag_seconds``, ``pool``.
    replicas: NotRequired[list[dict[str, Any]]]
