"""The users API, sync flavour: ``def`` routes on a sync database.

FastAPI runs ``def`` routes in its threadpool, where the blocking calls of ``SQLAlchemyDatabase``
(or ``PostgresDatabase``) are fine. Run it from the repository root::

    uvicorn fastapi_app.sync_app:app --app-dir examples

Each request that asks for a connection gets one inside a transaction; ``TransactionMiddleware``
commits it when the response status is below 400, rolls it back otherwise, and does either before
the response is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, status
from starlette.concurrency import run_in_threadpool

from structum_lab.plugins.database import (
    Connection,
    DatabaseInterface,
    IntegrityError,
    SQLAlchemyDatabase,
    get_database,
)
from structum_lab.plugins.database.fastapi import (
    DbConnection,
    TransactionMiddleware,
    database_lifespan,
    health_router,
    transaction,
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

# Reads run in READ ONLY transactions: the server refuses a write slipped into them.
ReadConnection = Annotated[Connection, Depends(transaction(read_only=True))]


def create_schema(db: DatabaseInterface) -> None:
    with db.transaction() as conn:
        for statement in SCHEMA:
            conn.execute(statement)


def create_app(backend: type[DatabaseInterface] = SQLAlchemyDatabase) -> FastAPI:
    """The application, on ``backend`` (``SQLAlchemyDatabase`` or ``PostgresDatabase``)."""
    databases = database_lifespan("database", backend=backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        configure()
        async with databases(app) as state:
            await run_in_threadpool(create_schema, get_database())
            yield state

    app = FastAPI(title="Users (sync)", lifespan=lifespan)
    app.add_middleware(TransactionMiddleware)
    app.include_router(health_router())

    @app.post("/users", status_code=status.HTTP_201_CREATED)
    def create_user(user: UserIn, conn: DbConnection) -> User:
        try:
            user_id = conn.execute(INSERT_USER, {"username": user.username}).scalar()
        except IntegrityError:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"the username {user.username!r} is taken"
            ) from None
        try:
            conn.executemany(INSERT_EMAIL, [{"email": e, "user_id": user_id} for e in user.emails])
        except IntegrityError:
            # The users row above is in the same transaction: the 409 rolls it back too.
            raise HTTPException(
                status.HTTP_409_CONFLICT, "an e-mail address is already in use"
            ) from None
        return User(id=user_id, username=user.username, emails=sorted(user.emails))

    @app.get("/users/{user_id}")
    def get_user(user_id: int, conn: ReadConnection) -> User:
        row = conn.execute(SELECT_USER, {"id": user_id}).fetchone()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
        return User(**row)

    @app.get("/users")
    def list_users(
        conn: ReadConnection,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[User]:
        rows = conn.execute(LIST_USERS, {"limit": limit, "offset": offset}).fetchall()
        return [User(**row) for row in rows]

    return app


app = create_app()
