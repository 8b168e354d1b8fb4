"""Ready-made results over rows already in memory (used by async backends and by mocks)."""

from __future__ import annotations

from collections.abc import Iterable

from .interfaces import AsyncResult, MaybeRow, Result, Row

__all__ = ["AsyncBufferedResult", "BufferedResult"]


class BufferedResult(Result):
    """A :class:`Result` over a list of rows.

    Args:
        rows: The rows (dicts); consumed as they are fetched.
        rowcount: Rows affected; defaults to the number of rows (or -1 for none).
        arraysize: Default ``fetchmany()`` size.
    """

    __slots__ = ("_pos", "_rowcount", "_rows", "arraysize")

    def __init__(
        self, rows: Iterable[Row] = (), rowcount: int | None = None, arraysize: int = 1
    ) -> None:
        self._rows = list(rows)
        self._pos = 0
        self._rowcount = len(self._rows) if rowcount is None else rowcount
        self.arraysize = arraysize

    @property
    def rowcount(self) -> int:
        """Rows affected by the statement."""
        return self._rowcount

    def fetchone(self) -> MaybeRow:
        """Return the next row, or None."""
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Return up to ``size`` further rows."""
        end = self._pos + (self.arraysize if size is None else size)
        rows = self._rows[self._pos : end]
        self._pos += len(rows)
        return rows

    def fetchall(self) -> list[Row]:
        """Return every remaining row."""
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows


class AsyncBufferedResult(AsyncResult):
    """An :class:`AsyncResult` over rows already fetched (wraps a :class:`BufferedResult`)."""

    __slots__ = ("_inner",)

    def __init__(
        self, rows: Iterable[Row] = (), rowcount: int | None = None, arraysize: int = 1
    ) -> None:
        self._inner = BufferedResult(rows, rowcount, arraysize)

    @property
    def rowcount(self) -> int:
        """Rows affected by the statement."""
        return self._inner.rowcount

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
        return f"<AsyncBufferedResult rowcount={self.rowcount}>"
