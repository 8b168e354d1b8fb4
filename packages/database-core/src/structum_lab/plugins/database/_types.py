"""Type aliases shared by every interface and backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

__all__ = ["PUBLIC_MODULE", "Params", "Row"]

#: A row: a plain dict (``row["username"]``), JSON-ready.
Row: TypeAlias = dict[str, Any]
#: A mapping for ``:name`` placeholders, a sequence for positional ones.
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None

PUBLIC_MODULE = "structum_lab.plugins.database"
