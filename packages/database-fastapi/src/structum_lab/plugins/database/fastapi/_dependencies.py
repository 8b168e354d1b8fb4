"""Dependencies: the database itself, or a connection inside the request's transaction."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Request

from structum_lab.plugins.database import AsyncConnection, Connection

from ._state import (
    SCOPE_KEY,
    AsyncPendingTransaction,
    RequestTransactions,
    SyncPendingTransaction,
    checkout_limiter,
    is_async_database,
    resolve_database,
)

__all__ = [
    "AsyncDbConnection",
    "DbConnection",
    "async_transaction",
    "database",
    "request_transactions",
    "transaction",
]


# One dependency per distinct set of arguments: FastAPI runs a dependency once per request, so a
# route (or its sub-dependencies) asking for ``DbConnection`` and ``DbSession`` of one database gets
# one transaction on one connection.
_made: dict[tuple[Any, ...], Any] = {}


def _options(isolation_level: str | None, read_only: bool, timeout: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if isolation_level is not None:
        options["isolation_level"] = isolation_level
    if read_only:
        options["read_only"] = True
    if timeout is not None:
        options["timeout"] = timeout
    return options


def request_transactions(request: Request, what: str) -> RequestTransactions:
    transactions = request.scope.get(SCOPE_KEY)
    if not isinstance(transactions, RequestTransactions):
        raise RuntimeError(
            f"{what} needs TransactionMiddleware, which commits the request's transaction before "
            "the response is sent; add it with app.add_middleware(TransactionMiddleware) "
            "(from structum_lab.plugins.database.fastapi)"
        )
    return transactions


def database(name: str = "default") -> Callable[[Request], Coroutine[Any, Any, Any]]:
    """A dependency returning the database registered as ``name``.

    For routes that open their own transactions (``with db.transaction() as conn:``).

    Args:
        name: Registry name (``set_database(db, name)``) or a name given to
            :func:`database_lifespan`.

    Returns:
        The dependency, for ``Depends(database())``.
    """

    async def get_db(request: Request) -> Any:
        return resolve_database(request, name)

    get_db.__name__ = f"database_{name}"
    return get_db


def transaction(
    name: str = "default",
    *,
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
) -> Callable[[Request], AsyncIterator[Connection]]:
    """A dependency yielding a connection of the sync database ``name`` inside a transaction.

    The transaction lasts for the request. :class:`TransactionMiddleware` commits it when the
    response status is below 400 and rolls it back otherwise, in both cases before the response
    is sent; an exception in the handler rolls it back. Use it in ``def`` routes: FastAPI runs
    those in its threadpool, where blocking calls are fine. The connection is checked out in a
    worker thread whose limiter is sized to the pool, so requests waiting for a connection do not
    occupy the threads the running handlers need.

    Args:
        name: The database to use (registry or lifespan name).
        isolation_level: e.g. ``"SERIALIZABLE"``; None keeps the database default.
        read_only: Open a READ ONLY transaction.
        timeout: Statement timeout in seconds for this transaction, where the server has one.

    Returns:
        The dependency, for ``Depends(transaction(...))`` (``DbConnection`` is the default one).
        The same arguments give the same dependency, which FastAPI runs once per request: every
        part of a request asking for it shares one transaction (and ORM sessions from
        :func:`session` join it).
    """
    key = ("sync", name, isolation_level, read_only, timeout)
    made = _made.get(key)
    if made is not None:
        return made  # type: ignore[no-any-return]
    options = _options(isolation_level, read_only, timeout)

    async def sync_connection(request: Request) -> AsyncIterator[Connection]:
        transactions = request_transactions(request, "transaction()")
        db = resolve_database(request, name)
        if is_async_database(db):
            raise TypeError(
                f"database {name!r} is asynchronous ({type(db).__name__}); use "
                "async_transaction() (AsyncDbConnection) in async def routes"
            )
        cm = db.transaction(**options)
        ctx = contextvars.copy_context()
        conn: Connection = await anyio.to_thread.run_sync(
            ctx.run, cm.__enter__, limiter=checkout_limiter(db)
        )
        # Tracked before the next await, so a cancellation cannot lose the connection.
        pending = SyncPendingTransaction(name, cm, ctx, conn)
        transactions.add(pending)
        try:
            yield conn
        except BaseException as exc:
            await pending.finish(commit=False, exc=exc)
            raise

    sync_connection.__name__ = f"transaction_{name}"
    _made[key] = sync_connection
    return sync_connection


def async_transaction(
    name: str = "default",
    *,
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
) -> Callable[[Request], AsyncIterator[AsyncConnection]]:
    """A dependency yielding a connection of the asyncio database ``name`` inside a transaction.

    Same contract as :func:`transaction`, for ``async def`` routes and
    ``AsyncPostgresDatabase`` / ``AsyncSQLAlchemyDatabase``. Inside the route,
    ``db.transaction()`` on the same database joins the request's transaction as a SAVEPOINT.

    Args:
        name: The database to use (registry or lifespan name).
        isolation_level: e.g. ``"SERIALIZABLE"``; None keeps the database default.
        read_only: Open a READ ONLY transaction.
        timeout: Statement timeout in seconds for this transaction, where the server has one.

    Returns:
        The dependency, for ``Depends(async_transaction(...))`` (``AsyncDbConnection`` is the
        default one).
    """
    key = ("async", name, isolation_level, read_only, timeout)
    made = _made.get(key)
    if made is not None:
        return made  # type: ignore[no-any-return]
    options = _options(isolation_level, read_only, timeout)

    async def async_connection(request: Request) -> AsyncIterator[AsyncConnection]:
        transactions = request_transactions(request, "async_transaction()")
        db = resolve_database(request, name)
        if not is_async_database(db):
            raise TypeError(
                f"database {name!r} is synchronous ({type(db).__name__}); use transaction() "
                "(DbConnection) in def routes, or an asyncio database in async def routes"
            )
        cm = db.transaction(**options)
        conn: AsyncConnection = await cm.__aenter__()
        pending = AsyncPendingTransaction(name, cm, conn)
        transactions.add(pending)
        try:
            yield conn
        except BaseException as exc:
            await pending.finish(commit=False, exc=exc)
            raise

    async_connection.__name__ = f"async_transaction_{name}"
    _made[key] = async_connection
    return async_connection


#: A connection of the sync database ``default`` in the request's transaction (``def`` routes).
DbConnection = Annotated[Connection, Depends(transaction())]
#: A connection of the asyncio database ``default`` in the request's transaction.
AsyncDbConnection = Annotated[AsyncConnection, Depends(async_transaction())]
