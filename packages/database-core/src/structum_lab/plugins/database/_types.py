"""Type aliases shared by every interface and backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

__all__ = ["PUBLIC_MODULE", "AsyncTransactionFunction", "Params", "Row", "TransactionFunction"]

C = TypeVar("C")
T = TypeVar("T")

#: A row: a plain dict (``row["username"]``), JSON-ready.
Row: TypeAlias = dict[str, Any]
#: A mapping for ``:name`` placeholders, a sequence for positional ones.
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None

PUBLIC_MODULE = "structum_lab.plugins.database"
#: What ``run_transaction()`` runs: a function of the transaction's connection, whose result it
#: returns (``TransactionFunction[Connection, int]``).
TransactionFunction: TypeAlias = Callable[[C], T]
#: The async twins': an ``async def fn(conn)``.
AsyncTransactionFunction: TypeAlias = Callable[[C], Awaitable[T]]
