"""The users API, ORM flavour: SQLModel models and sessions inside the request's transaction.

The same API as ``sync_app`` / ``async_app``, written with SQLModel instead of SQL. Each request
that asks for a session gets one bound to the request's transaction; ``TransactionMiddleware``
flushes and commits it when the response status is below 400 and rolls it back otherwise, before
the response is sent, so a handler neither commits nor closes anything itself. Run it from the
repository root::

    uvicorn fastapi_app.orm_app:app --app-dir examples          # def routes, SQLAlchemyDatabase
    uvicorn fastapi_app.orm_app:async_app --app-dir examples    # async def, AsyncSQLAlchemyDatabase
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy.exc
from fastapi import Depends, FastAPI, HTTPException, Query, status
from sqlmodel import Session, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from structum_lab.plugins.database import (
    AsyncSQLAlchemyDatabase,
    SQLAlchemyDatabase,
    get_database,
)
from structum_lab.plugins.database.fastapi import (
    TransactionMiddleware,
    async_session,
    database_lifespan,
    health_router,
    session,
)

from .orm_models import EmailRow, UserRow
from .users import User, UserIn, configure

# SQLModel's session classes (``.exec()``); the plain SQLAlchemy ``Session`` works the same way.
# ``DbSession`` / ``AsyncDbSession`` are the ready-made ones for SQLAlchemy's own classes.
DbSession = Annotated[Session, Depends(session(session_class=Session))]
ReadSession = Annotated[Session, Depends(session(session_class=Session, read_only=True))]
AsyncDbSession = Annotated[AsyncSession, Depends(async_session(session_class=AsyncSession))]
AsyncReadSession = Annotated[
    AsyncSession, Depends(async_session(session_class=AsyncSession, read_only=True))
]


def _users(rows: Sequence[UserRow], emails: Sequence[EmailRow]) -> list[User]:
    by_user: dict[int, list[str]] = {}
    for email in emails:
        by_user.setdefault(email.user_id, []).append(email.email)
    return [
        User(id=row.id or 0, username=row.username, emails=sorted(by_user.get(row.id or 0, [])))
        for row in rows
    ]


def _emails_of(ids: list[int]) -> Any:
    return select(EmailRow).where(col(EmailRow.user_id).in_(ids))


def _page(limit: int, offset: int) -> Any:
    return select(UserRow).order_by(col(UserRow.id)).offset(offset).limit(limit)


def create_app(backend: type[SQLAlchemyDatabase] = SQLAlchemyDatabase) -> FastAPI:
    """The application with ``def`` routes on a ``SQLAlchemyDatabase``."""
    databases = database_lifespan("database", backend=backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        configure()
        async with databases(app) as state:
            db = get_database("default", SQLAlchemyDatabase)
            await run_in_threadpool(SQLModel.metadata.create_all, db.engine)
            yield state

    app = FastAPI(title="Users (ORM)", lifespan=lifespan)
    app.add_middleware(TransactionMiddleware)
    app.include_router(health_router())

    @app.post("/users", status_code=status.HTTP_201_CREATED)
    def create_user(user: UserIn, db: DbSession) -> User:
        row = UserRow(username=user.username)
        db.add(row)
        try:
            db.flush()  # the INSERT now, to learn the id and a conflict
        except sqlalchemy.exc.IntegrityError:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"the username {user.username!r} is taken"
            ) from None
        assert row.id is not None
        db.add_all(EmailRow(email=e, user_id=row.id) for e in user.emails)
        try:
            db.flush()
        except sqlalchemy.exc.IntegrityError:
            # The users row above is in the same transaction: the 409 rolls it back too.
            raise HTTPException(
                status.HTTP_409_CONFLICT, "an e-mail address is already in use"
            ) from None
        return User(id=row.id, username=row.username, emails=sorted(user.emails))

    @app.get("/users/{user_id}")
    def get_user(user_id: int, db: ReadSession) -> User:
        row = db.get(UserRow, user_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
        return _users([row], db.exec(_emails_of([user_id])).all())[0]

    @app.get("/users")
    def list_users(
        db: ReadSession,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[User]:
        rows = db.exec(_page(limit, offset)).all()
        return _users(rows, db.exec(_emails_of([r.id for r in rows])).all())

    return app


def create_async_app(backend: type[AsyncSQLAlchemyDatabase] = AsyncSQLAlchemyDatabase) -> FastAPI:
    """The application with ``async def`` routes on an ``AsyncSQLAlchemyDatabase``."""
    databases = database_lifespan("database", backend=backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        configure()
        async with databases(app) as state:
            db = get_database("default", AsyncSQLAlchemyDatabase)
            async with db.engine.begin() as conn:
                await conn.run_sync(SQLModel.metadata.create_all)
            yield state

    app = FastAPI(title="Users (ORM, async)", lifespan=lifespan)
    app.add_middleware(TransactionMiddleware)
    app.include_router(health_router())

    @app.post("/users", status_code=status.HTTP_201_CREATED)
    async def create_user(user: UserIn, db: AsyncDbSession) -> User:
        row = UserRow(username=user.username)
        db.add(row)
        try:
            await db.flush()
        except sqlalchemy.exc.IntegrityError:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"the username {user.username!r} is taken"
            ) from None
        assert row.id is not None
        db.add_all(EmailRow(email=e, user_id=row.id) for e in user.emails)
        try:
            await db.flush()
        except sqlalchemy.exc.IntegrityError:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "an e-mail address is already in use"
            ) from None
        return User(id=row.id, username=row.username, emails=sorted(user.emails))

    @app.get("/users/{user_id}")
    async def get_user(user_id: int, db: AsyncReadSession) -> User:
        row = await db.get(UserRow, user_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
        return _users([row], (await db.exec(_emails_of([user_id]))).all())[0]

    @app.get("/users")
    async def list_users(
        db: AsyncReadSession,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[User]:
        rows = (await db.exec(_page(limit, offset))).all()
        return _users(rows, (await db.exec(_emails_of([r.id or 0 for r in rows]))).all())

    return app


app = create_app()
async_app = create_async_app()
