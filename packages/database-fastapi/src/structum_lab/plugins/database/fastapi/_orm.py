"""ORM sessions inside the request's transaction: ``DbSession`` / ``AsyncDbSession``.

The session is bound to the connection of the request's transaction (the one ``DbConnection``
gives) and joins it under a SAVEPOINT, so ``session.commit()`` in a handler only releases that
savepoint. :class:`TransactionMiddleware` settles the session with the transaction, before the
response is sent: committed (anything still pending is flushed) when the status is below 400,
rolled back otherwise. Needs the SQLAlchemy backend (``SQLAlchemyDatabase`` /
``AsyncSQLAlchemyDatabase``); SQLModel's session classes work as ``session_class``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar, overload

from fastapi import Depends, Request

try:
    import sqlalchemy.exc as sa_exc
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without sqlalchemy installed
    if exc.name is None or not exc.name.startswith("sqlalchemy"):
        raise
    raise ImportError(
        "DbSession, AsyncDbSession, session() and async_session() need the SQLAlchemy backend; "
        'run: pip install "structum-database[sqlalchemy]"'
    ) from exc

from ._dependencies import async_transaction, request_transactions, transaction
from ._state import resolve_database

__all__ = ["AsyncDbSession", "DbSession", "async_session", "session"]

_S = TypeVar("_S", bound=Session)
_AS = TypeVar("_AS", bound=AsyncSession)


def _orm_database(request: Request, name: str, *, is_async: bool) -> Any:
    from structum_lab.plugins.database.sqlalchemy import (  # noqa: PLC0415
        AsyncSQLAlchemyDatabase,
        SQLAlchemyDatabase,
    )

    db = resolve_database(request, name)
    wanted: type[Any] = AsyncSQLAlchemyDatabase if is_async else SQLAlchemyDatabase
    if not isinstance(db, wanted):
        raise TypeError(
            f"an ORM session needs database {name!r} to be a {wanted.__name__}, got a "
            f"{type(db).__name__} (raw SQL on it: DbConnection / AsyncDbConnection)"
        )
    return db


def _translating(db: Any, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` raising the library's errors (``IntegrityError``...) instead of SQLAlchemy's."""
    from structum_lab.plugins.database.sqlalchemy._errors import error_cause  # noqa: PLC0415

    def call() -> Any:
        try:
            return fn()
        except sa_exc.SQLAlchemyError as exc:
            raise db._translate(exc) from error_cause(exc)

    return call


def _translating_async(db: Any, fn: Callable[[], Any]) -> Callable[[], Any]:
    from structum_lab.plugins.database.sqlalchemy._errors import error_cause  # noqa: PLC0415

    async def call() -> Any:
        try:
            return await fn()
        except sa_exc.SQLAlchemyError as exc:
            raise db._translate(exc) from error_cause(exc)

    return call


@overload
def session(
    name: str = "default",
    *,
    session_class: None = None,
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
    **session_kwargs: Any,
) -> Callable[..., AsyncIterator[Session]]: ...


@overload
def session(
    name: str = "default",
    *,
    session_class: type[_S],
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
    **session_kwargs: Any,
) -> Callable[..., AsyncIterator[_S]]: ...


def session(
    name: str = "default",
    *,
    session_class: type[Session] | None = None,
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
    **session_kwargs: Any,
) -> Callable[..., AsyncIterator[Session]]:
    """A dependency yielding an ORM session inside the request's transaction (``def`` routes).

    The session works on the connection of :func:`transaction` with the same arguments (the one
    ``DbConnection`` gives for the defaults), so raw SQL and ORM work of one request share one
    transaction. :class:`TransactionMiddleware` commits the session and then the transaction
    when the response status is below 400, and rolls both back otherwise, before the response
    is sent; a failing flush at that point answers 409/503/500 like a failing COMMIT. Inside the
    handler, ``session.commit()`` flushes and releases the session's SAVEPOINT (so
    ``session.refresh()`` and generated keys work as usual) and ``session.rollback()`` undoes
    only the session's work since then.

    Args:
        name: The database (registry or lifespan name); a ``SQLAlchemyDatabase``.
        session_class: ``sqlalchemy.orm.Session`` or a subclass (SQLModel's ``Session``); by
            default the database's ``session_class`` (constructor or configuration).
        isolation_level: Passed to :func:`transaction`.
        read_only: Passed to :func:`transaction`.
        timeout: Passed to :func:`transaction`.
        **session_kwargs: Session arguments (``expire_on_commit=False``...).

    Returns:
        The dependency, for ``Annotated[Session, Depends(session(...))]`` (``DbSession`` is the
        default one).
    """
    connection = transaction(
        name, isolation_level=isolation_level, read_only=read_only, timeout=timeout
    )

    async def sync_session(request: Request, conn: Any = Depends(connection)) -> AsyncIterator[Any]:  # noqa: B008
        db = _orm_database(request, name, is_async=False)
        pending = request_transactions(request, "session()").holding(conn)
        if pending is None:  # pragma: no cover - the transaction dependency registered it
            raise RuntimeError("the request transaction of this session is no longer open")
        orm = db._session_on(conn, session_class, dict(session_kwargs))
        pending.add_session(_translating(db, orm.commit), orm.close)
        yield orm

    sync_session.__name__ = f"session_{name}"
    return sync_session


@overload
def async_session(
    name: str = "default",
    *,
    session_class: None = None,
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
    **session_kwargs: Any,
) -> Callable[..., AsyncIterator[AsyncSession]]: ...


@overload
def async_session(
    name: str = "default",
    *,
    session_class: type[_AS],
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
    **session_kwargs: Any,
) -> Callable[..., AsyncIterator[_AS]]: ...


def async_session(
    name: str = "default",
    *,
    session_class: type[AsyncSession] | None = None,
    isolation_level: str | None = None,
    read_only: bool = False,
    timeout: float | None = None,
    **session_kwargs: Any,
) -> Callable[..., AsyncIterator[AsyncSession]]:
    """A dependency yielding an asyncio ORM session inside the request's transaction.

    Same contract as :func:`session`, for ``async def`` routes and ``AsyncSQLAlchemyDatabase``;
    ``session_class`` is ``AsyncSession`` or a subclass (SQLModel's
    ``sqlmodel.ext.asyncio.session.AsyncSession``).

    Args:
        name: The database (registry or lifespan name); an ``AsyncSQLAlchemyDatabase``.
        session_class: The session class; by default the database's ``session_class``.
        isolation_level: Passed to :func:`async_transaction`.
        read_only: Passed to :func:`async_transaction`.
        timeout: Passed to :func:`async_transaction`.
        **session_kwargs: Session arguments (``expire_on_commit=False``...).

    Returns:
        The dependency, for ``Annotated[AsyncSession, Depends(async_session(...))]``
        (``AsyncDbSession`` is the default one).
    """
    connection = async_transaction(
        name, isolation_level=isolation_level, read_only=read_only, timeout=timeout
    )

    async def asyncio_session(
        request: Request,
        conn: Any = Depends(connection),  # noqa: B008
    ) -> AsyncIterator[Any]:
        db = _orm_database(request, name, is_async=True)
        pending = request_transactions(request, "async_session()").holding(conn)
        if pending is None:  # pragma: no cover - the transaction dependency registered it
            raise RuntimeError("the request transaction of this session is no longer open")
        orm = db._session_on(conn, session_class, dict(session_kwargs))
        pending.add_session(_translating_async(db, orm.commit), orm.close)
        yield orm

    asyncio_session.__name__ = f"async_session_{name}"
    return asyncio_session


#: An ORM ``Session`` of the sync database ``default`` in the request's transaction.
DbSession = Annotated[Session, Depends(session())]
#: An ``AsyncSession`` of the asyncio database ``default`` in the request's transaction.
AsyncDbSession = Annotated[AsyncSession, Depends(async_session())]
