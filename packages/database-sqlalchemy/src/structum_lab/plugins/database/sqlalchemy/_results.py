"""Results of both twins over SQLAlchemy's ``CursorResult`` (rows as dicts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import CursorResult

from structum_lab.plugins.database.interfaces import AsyncResult, MaybeRow, Result, Row

from ._errors import _PUBLIC_MODULE

__all__ = ["SQLAlchemyAsyncResult", "SQLAlchemyResult"]


class SQLAlchemyResult(Result):
    """A :class:`Result` over a SQLAlchemy ``CursorResult``; rows come out as dicts."""

    __slots__ = ("_cursor", "_keys", "_rowcount")
    __module__ = _PUBLIC_MODULE

    def __init__(self, cursor: CursorResult[Any]) -> None:
        self._cursor = cursor
        # Read now: some drivers reset it to -1 once the rows are consumed.
        self._rowcount = int(cursor.rowcount)
        # Statements without rows (INSERT without RETURNING, DDL) fetch nothing rather than fail.
        self._keys: tuple[str, ...] | None = tuple(cursor.keys()) if cursor.returns_rows else None

    @property
    def rowcount(self) -> int:
        """Rows affected (or returned, where the driver counts them); -1 when unknown."""
        return self._rowcount

    def keys(self) -> tuple[str, ...]:
        """Column names of the rows (empty for statements that return none)."""
        return self._keys or ()

    def fetchone(self) -> MaybeRow:
        """Return the next row, or None."""
        if self._keys is None:
            return None
        row = self._cursor.fetchone()
        return None if row is None else dict(zip(self._keys, row, strict=True))

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows (the cursor's arraysize when None)."""
        if self._keys is None:
            return []
        keys = self._keys
        return [dict(zip(keys, row, strict=True)) for row in self._cursor.fetchmany(size)]

    def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        if self._keys is None:
            return []
        keys = self._keys
        return [dict(zip(keys, row, strict=True)) for row in self._cursor.fetchall()]

    def close(self) -> None:
        """Release the cursor (also done when the connection goes back to the pool)."""
        self._cursor.close()

    def __repr__(self) -> str:
        return f"<SQLAlchemyResult rowcount={self.rowcount}>"


class SQLAlchemyAsyncResult(AsyncResult):
    """Async twin of :class:`SQLAlchemyResult` (the async engine has already buffered the rows)."""

    __slots__ = ("_inner",)
    __module__ = _PUBLIC_MODULE

    def __init__(self, cursor: CursorResult[Any]) -> None:
        self._inner = SQLAlchemyResult(cursor)

    @property
    def rowcount(self) -> int:
        """Rows affected (or returned, where the driver counts them); -1 when unknown."""
        return self._inner.rowcount

    def keys(self) -> tuple[str, ...]:
        """Column names of the rows (empty for statements that return none)."""
        return self._inner.keys()

    async def fetchone(self) -> MaybeRow:
        """Return the next row, or None."""
        return self._inner.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows."""
        return self._inner.fetchmany(size)

    async def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        return self._inner.fetchall()

    def __repr__(self) -> str:
        return f"<SQLAlchemyAsyncResult rowcount={self.rowcount}>"
