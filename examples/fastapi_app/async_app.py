"""The users API, async flavour: ``async def`` routes on an asyncio database.

``async def`` routes run on the event loop, so they need a database that awaits instead of
blocking: ``AsyncPostgresDatabase`` (or ``AsyncSQLAlchemyDatabase``). Run it from the repository
root::

    uvicorn fastapi_app.async_app:app --app-dir examples

Same API and the same transaction rules as ``sync_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, status

from structum_lab.plugins.database import (
    AsyncConnection,
    AsyncDatabaseInterface,
    AsyncPostgresDatabase,
    IntegrityError,
    get_database,
)
from structum_lab.plugins.database.fastapi import (
    AsyncDbConnection,
    TransactionMiddleware,
    async_transaction,
    database_lifespan,
    health_router,
)

from .users import (
    INSERT_EMAIL,
    INSERT_USER,
    LIST_USERS,
    SCHEMA,
    SELECT_USER,
    User,
    UserIn,
    configure,
)

ReadConnection = Annotated[AsyncConnection, Depends(async_transaction(read_only=True))]


async def create_schema(db: AsyncDatabaseInterface) -> None:
    async with db.transaction() as conn:
        for statement in SCHEMA:
            await conn.execute(statement)


def create_app(backend: type[AsyncDatabaseInterface] = AsyncPostgresDatabase) -> FastAPI:
    """The application on ``backend`` (``AsyncPostgresDatabase``, ``AsyncSQLAlchemyDatabase``)."""
    databases = database_lifespan("database", backend=backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        configure()
        async with databases(app) as state:
            await create_schema(get_database())
            yield state

    app = FastAPI(title="Users (async)", lifespan=lifespan)
    app.add_middleware(TransactionMiddleware)
    app.include_router(health_router())

    @app.post("/users", status_code=status.HTTP_201_CREATED)
    async def create_user(user: UserIn, conn: AsyncDbConnection) -> User:
        try:
            user_id = await (await conn.execute(INSERT_USER, {"username": user.username})).scalar()
        except IntegrityError:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"the username {user.username!r} is taken"
            ) from None
        try:
            await conn.executemany(
                INSERT_EMAIL, [{"email": e, "user_id": user_id} for e in user.emails]
            )
        except IntegrityError:
            # The users row above is in the same transaction: the 409 rolls it back too.
            raise HTTPException(
                status.HTTP_409_CONFLICT, "an e-mail address is already in use"
            ) from None
        return User(id=user_id, username=user.username, emails=sorted(user.emails))

    @app.get("/users/{user_id}")
    async def get_user(user_id: int, conn: ReadConnection) -> User:
        row = await (await conn.execute(SELECT_USER, {"id": user_id})).fetchone()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
        return User(**row)

    @app.get("/users")
    async def list_users(
        conn: ReadConnection,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[User]:
        result = await conn.execute(LIST_USERS, {"limit": limit, "offset": offset})
        return [User(**row) for row in await result.fetchall()]

    return app


app = create_app()
