"""Per-test isolation by an outer transaction that is rolled back, and connection-leak checks.

``isolated(db)`` wraps a block in core's ``force_rollback()``: every ``transaction()`` the block
opens on ``db`` becomes a SAVEPOINT of one outer transaction, which is rolled back at the end, so
nothing the block writes survives it. Afterwards it checks that the block gave back every
connection it checked out. The pytest fixtures are built on these; an application can use them
for its own database fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from structum_lab.plugins.database.base import AsyncDatabaseBase, SyncDatabaseBase

__all__ = [
    "ConnectionLeakError",
    "async_isolated",
    "checked_out",
    "isolated",
    "leak_error",
    "no_leaks",
]

D = TypeVar("D", bound=SyncDatabaseBase[Any])
AD = TypeVar("AD", bound=AsyncDatabaseBase[Any])
DB = TypeVar("DB")


class ConnectionLeakError(AssertionError):
    """A block (a test) ended with connections still checked out of the pool."""

    __module__ = "structum_lab.plugins.database.testing"


def checked_out(db: Any) -> int:
    """How many connections ``db`` has checked out right now (0 when it does not say)."""
    try:
        return int(db.get_pool_info().get("checked_out", 0) or 0)
    except Exception:  # a shut-down or foreign database: nothing to count
        return 0


def leak_error(db: Any, leaked: int, what: str) -> ConnectionLeakError:
    """The error for ``what`` leaving ``leaked`` connections of ``db`` checked out."""
    return ConnectionLeakError(
        f"{what} leaked {leaked} connection(s) of {db!r}: a connection from get_connection() "
        "was never given back. Close it (conn.close(), or `with db.get_connection() as conn:`) "
        "or use `with db.transaction() as conn:`, which always gives it back."
    )


@contextmanager
def no_leaks(db: DB, *, what: str = "the block") -> Iterator[DB]:
    """Fail when the block leaves more connections of ``db`` checked out than it found.

    Raises:
        ConnectionLeakError: Naming ``what`` and how many connections were not given back.
    """
    before = checked_out(db)
    yield db
    leaked = checked_out(db) - before
    if leaked > 0:
        raise leak_error(db, leaked, what)


def _require(db: Any, base: type) -> None:
    if not isinstance(db, base) or not hasattr(db, "force_rollback"):
        raise TypeError(
            f"{type(db).__name__} cannot be isolated: per-test rollback needs a database built on "
            f"{base.__module__}.{base.__name__} (every Structum backend and the mocks are)"
        )


@contextmanager
def isolated(db: D, *, what: str = "the block") -> Iterator[D]:
    """Run the block inside one transaction of ``db`` that is rolled back at the end.

    Every ``db.transaction()`` inside, from any thread, becomes a SAVEPOINT of that transaction.
    Connections taken with ``get_connection()`` are outside it (and commit for real); they must
    be closed by the end of the block.

    Args:
        db: A sync Structum database (any backend, or ``MockDatabase``).
        what: How to name the block in the leak message (the fixtures pass the test id).

    Raises:
        ConnectionLeakError: The block did not give back a connection it checked out.
    """
    _require(db, SyncDatabaseBase)
    before = checked_out(db)
    with db.force_rollback():
        yield db
    leaked = checked_out(db) - before
    if leaked > 0:
        raise leak_error(db, leaked, what)


@asynccontextmanager
async def async_isolated(db: AD, *, what: str = "the block") -> AsyncIterator[AD]:
    """Async twin of :func:`isolated` (every ``transaction()`` from any task joins the outer one).

    Raises:
        ConnectionLeakError: The block did not give back a connection it checked out.
    """
    _require(db, AsyncDatabaseBase)
    before = checked_out(db)
    async with db.force_rollback():
        yield db
    leaked = checked_out(db) - before
    if leaked > 0:
        raise leak_error(db, leaked, what)
