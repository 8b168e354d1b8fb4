"""ORM sessions in the request's transaction (``DbSession`` / ``AsyncDbSession``) on real servers.

One shared scenario per twin, on PostgreSQL, MariaDB and SQLite: what the session holds is
committed with the request when the status is below 400 (even if the handler never flushed or
committed), rolled back otherwise, a failing flush at commit time answers 409 with nothing saved,
raw SQL and the session share one transaction on one connection, ``session.commit()`` in a
handler only releases the session's savepoint, and nothing is left checked out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy import String, event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from typing_extensions import assert_type

from structum_lab.plugins.database import PostgresDatabase
from structum_lab.plugins.database.fastapi import (
    AsyncDbConnection,
    AsyncDbSession,
    DbConnection,
    DbSession,
    PostgresDbConnection,
    SQLAlchemyDbConnection,
    TransactionMiddleware,
    async_session,
    database_lifespan,
    session,
)
from structum_lab.plugins.database.postgres import PostgresConnection
from structum_lab.plugins.database.sqlalchemy import (
    AsyncSQLAlchemyConnection,
    AsyncSQLAlchemyDatabase,
    SQLAlchemyConnection,
    SQLAlchemyDatabase,
)

pytestmark = pytest.mark.integration

_TABLE = f"orm_note_{uuid.uuid4().hex[:8]}"


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = _TABLE

    name: Mapped[str] = mapped_column(String(50), primary_key=True)


class MySession(Session):
    """An application's own session class (a SQLModel ``Session`` is such a subclass)."""


class MyAsyncSession(AsyncSession):
    pass


Mine = Annotated[MySession, Depends(session(session_class=MySession))]
AsyncMine = Annotated[MyAsyncSession, Depends(async_session(session_class=MyAsyncSession))]


def saved(db: SQLAlchemyDatabase) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.scalars(select(Note.name).order_by(Note.name)))


def sync_app(db: SQLAlchemyDatabase) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(db))
    app.add_middleware(TransactionMiddleware)

    @app.post("/pending/{name}", status_code=201)
    def pending(name: str, orm: DbSession) -> dict[str, str]:
        orm.add(Note(name=name))  # never flushed by the handler
        return {"name": name}

    @app.post("/refused/{name}")
    def refused(name: str, orm: DbSession) -> None:
        orm.add(Note(name=name))
        orm.flush()
        raise HTTPException(409, "refused")

    @app.post("/crash/{name}")
    def crash(name: str, orm: DbSession) -> None:
        orm.add(Note(name=name))
        orm.flush()
        raise RuntimeError("the handler failed")

    @app.post("/committed-then-404/{name}")
    def committed_then_404(name: str, orm: DbSession) -> None:
        note = Note(name=name)
        orm.add(note)
        orm.commit()  # the template's style: commit, refresh, ... then the request fails
        orm.refresh(note)
        raise HTTPException(404, "gone")

    @app.post("/shared/{name}", status_code=201)
    def shared(name: str, conn: DbConnection, orm: DbSession) -> dict[str, Any]:
        assert isinstance(conn, SQLAlchemyConnection)
        conn.execute(f"INSERT INTO {_TABLE} (name) VALUES (:name)", {"name": name})
        seen = orm.scalar(select(func.count()).select_from(Note).where(Note.name == name))
        same = orm.connection().connection.dbapi_connection is (
            conn.sqlalchemy_connection.connection.dbapi_connection
        )
        return {"seen": seen, "same": same}

    @app.post("/late-conflict/{name}", status_code=201)
    def late_conflict(name: str, orm: DbSession) -> dict[str, str]:
        orm.add(Note(name=f"{name}-fresh"))
        orm.add(Note(name=name))  # exists already: the flush at commit time fails
        return {"name": name}

    @app.get("/class")
    def session_class(orm: Mine, default: DbSession) -> dict[str, str]:
        return {"mine": type(orm).__name__, "default": type(default).__name__}

    return app


def async_app(db: AsyncSQLAlchemyDatabase) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(db))
    app.add_middleware(TransactionMiddleware)

    @app.post("/pending/{name}", status_code=201)
    async def pending(name: str, orm: AsyncDbSession) -> dict[str, str]:
        orm.add(Note(name=name))
        return {"name": name}

    @app.post("/refused/{name}")
    async def refused(name: str, orm: AsyncDbSession) -> None:
        orm.add(Note(name=name))
        await orm.flush()
        raise HTTPException(409, "refused")

    @app.post("/crash/{name}")
    async def crash(name: str, orm: AsyncDbSession) -> None:
        orm.add(Note(name=name))
        await orm.flush()
        raise RuntimeError("the handler failed")

    @app.post("/committed-then-404/{name}")
    async def committed_then_404(name: str, orm: AsyncDbSession) -> None:
        note = Note(name=name)
        orm.add(note)
        await orm.commit()
        await orm.refresh(note)
        raise HTTPException(404, "gone")

    @app.post("/shared/{name}", status_code=201)
    async def shared(name: str, conn: AsyncDbConnection, orm: AsyncDbSession) -> dict[str, Any]:
        assert isinstance(conn, AsyncSQLAlchemyConnection)
        await conn.execute(f"INSERT INTO {_TABLE} (name) VALUES (:name)", {"name": name})
        seen = await orm.scalar(select(func.count()).select_from(Note).where(Note.name == name))
        ours = await orm.connection()
        same = ours.sync_connection is conn.sqlalchemy_connection.sync_connection
        return {"seen": seen, "same": same}

    @app.post("/late-conflict/{name}", status_code=201)
    async def late_conflict(name: str, orm: AsyncDbSession) -> dict[str, str]:
        orm.add(Note(name=f"{name}-fresh"))
        orm.add(Note(name=name))
        return {"name": name}

    @app.get("/class")
    async def session_class(orm: AsyncMine, default: AsyncDbSession) -> dict[str, str]:
        return {"mine": type(orm).__name__, "default": type(default).__name__}

    return app


@pytest.fixture
def sync_orm_db(sqlalchemy_url: str) -> Iterator[SQLAlchemyDatabase]:
    db = SQLAlchemyDatabase(sqlalchemy_url, pool_size=2, max_overflow=0, pool_timeout=10)
    Base.metadata.create_all(db.engine)
    try:
        yield db
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        Base.metadata.drop_all(db.engine)
        db.shutdown()


def check_scenario(client: TestClient, db: SQLAlchemyDatabase, expected_class: str) -> None:
    """The requests and answers (the async test makes the same ones)."""
    assert client.post("/pending/ada").status_code == 201
    assert saved(db) == ["ada"]
    assert client.post("/refused/bob").status_code == 409
    assert client.post("/crash/carol").status_code == 500
    assert client.post("/committed-then-404/dan").status_code == 404
    assert saved(db) == ["ada"]

    shared = client.post("/shared/eve")
    assert shared.status_code == 201
    assert shared.json() == {"seen": 1, "same": True}
    assert saved(db) == ["ada", "eve"]

    late = client.post("/late-conflict/ada")
    assert late.status_code == 409
    assert "nothing was saved" in late.json()["detail"]
    assert saved(db) == ["ada", "eve"]  # "ada-fresh" was rolled back with the failed flush

    assert client.get("/class").json() == {"mine": expected_class, "default": "Session"}


def test_db_session_in_request_transaction(sync_orm_db: SQLAlchemyDatabase) -> None:
    app = sync_app(sync_orm_db)
    with TestClient(app, raise_server_exceptions=False) as client:
        check_scenario(client, sync_orm_db, "MySession")
        assert sync_orm_db.get_pool_info()["checked_out"] == 0


async def test_async_db_session_in_request_transaction(
    sqlalchemy_url: str, sync_orm_db: SQLAlchemyDatabase
) -> None:
    db = AsyncSQLAlchemyDatabase(sqlalchemy_url, pool_size=2, max_overflow=0, pool_timeout=10)
    app = async_app(db)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                responses: dict[tuple[str, str], httpx.Response] = {}

                async def run(method: str, path: str) -> httpx.Response:
                    responses[method, path] = await client.request(method, path)
                    return responses[method, path]

                assert (await run("POST", "/pending/ada")).status_code == 201
                assert saved(sync_orm_db) == ["ada"]
                assert (await run("POST", "/refused/bob")).status_code == 409
                assert (await run("POST", "/crash/carol")).status_code == 500
                assert (await run("POST", "/committed-then-404/dan")).status_code == 404
                assert saved(sync_orm_db) == ["ada"]
                shared = await run("POST", "/shared/eve")
                assert shared.status_code == 201
                assert shared.json() == {"seen": 1, "same": True}
                late = await run("POST", "/late-conflict/ada")
                assert late.status_code == 409
                assert saved(sync_orm_db) == ["ada", "eve"]
                assert (await run("GET", "/class")).json() == {
                    "mine": "MyAsyncSession",
                    "default": "AsyncSession",
                }
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()


def test_db_session_needs_the_sqlalchemy_backend(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, min_size=1)
    app = FastAPI(lifespan=database_lifespan(db))
    app.add_middleware(TransactionMiddleware)

    @app.get("/orm")
    def orm(session: DbSession) -> None: ...

    @app.get("/sqlalchemy")
    def wrong(conn: SQLAlchemyDbConnection) -> None: ...

    @app.get("/psycopg")
    def right(conn: PostgresDbConnection, same: DbConnection) -> bool:
        assert_type(conn, PostgresConnection)
        return conn is same and conn.execute("SELECT 1").scalar() == 1

    try:
        with TestClient(app) as client:
            with pytest.raises(TypeError, match="needs database 'default' to be a SQLAlchemy"):
                client.get("/orm")
            with pytest.raises(TypeError, match="asks for a SQLAlchemyConnection"):
                client.get("/sqlalchemy")
            assert client.get("/psycopg").json() is True
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


def test_backend_typed_connection(sync_orm_db: SQLAlchemyDatabase) -> None:
    app = FastAPI(lifespan=database_lifespan(sync_orm_db))
    app.add_middleware(TransactionMiddleware)

    @app.post("/core/{name}", status_code=201)
    def core(name: str, conn: SQLAlchemyDbConnection) -> None:
        # The backend's own API, typed: SQLAlchemy Core on the request's connection.
        conn.sqlalchemy_connection.execute(insert(Note).values(name=name))

    with TestClient(app) as client:
        assert client.post("/core/zoe").status_code == 201
    assert saved(sync_orm_db) == ["zoe"]


def test_db_session_under_force_rollback(sync_orm_db: SQLAlchemyDatabase) -> None:
    """An application's tests isolated by ``force_rollback()`` cover ORM sessions too."""
    app = sync_app(sync_orm_db)

    @app.get("/count")
    def count(orm: DbSession) -> int:
        return orm.scalar(select(func.count()).select_from(Note)) or 0

    with TestClient(app, raise_server_exceptions=False) as client:
        with sync_orm_db.force_rollback():
            assert client.post("/pending/ada").status_code == 201
            assert client.post("/refused/bob").status_code == 409
            assert client.get("/count").json() == 1  # the request's commit was a savepoint
            assert saved(sync_orm_db) == []  # nothing reached the database for real
        assert client.get("/count").json() == 0
    assert saved(sync_orm_db) == []


Lean = Annotated[Session, Depends(session(join_transaction_mode="rollback_only"))]


def test_db_session_without_savepoint(sync_orm_db: SQLAlchemyDatabase) -> None:
    """``join_transaction_mode="rollback_only"``: no SAVEPOINT/RELEASE, same request semantics."""
    app = FastAPI(lifespan=database_lifespan(sync_orm_db))
    app.add_middleware(TransactionMiddleware)
    statements: list[str] = []

    @app.post("/lean/{name}", status_code=201)
    def lean(name: str, orm: Lean, fail: bool = False) -> None:
        orm.add(Note(name=name))
        orm.commit()  # flushes; the request transaction is still the middleware's to commit
        if fail:
            raise HTTPException(409, "refused")

    def record(*args: Any) -> None:
        statements.append(str(args[2]).split()[0].upper())

    event.listen(sync_orm_db.engine, "before_cursor_execute", record)
    try:
        with TestClient(app) as client:
            assert client.post("/lean/ada").status_code == 201
            assert client.post("/lean/bob", params={"fail": True}).status_code == 409
    finally:
        event.remove(sync_orm_db.engine, "before_cursor_execute", record)
    assert saved(sync_orm_db) == ["ada"]
    assert "SAVEPOINT" not in statements, statements
