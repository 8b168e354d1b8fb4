"""The request transaction of structum_lab.plugins.database.fastapi against real PostgreSQL.

When it commits (status below 400) and rolls back (status 400 and above, an exception), that the
commit happens before the client can see the response, what happens when the commit itself fails,
and that nothing is ever left checked out. Every backend that talks to PostgreSQL takes part:
sync ones through ``DbConnection`` in ``def`` routes, asyncio ones through ``AsyncDbConnection``
in ``async def`` routes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import httpx
import psycopg
import pytest
from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.testclient import TestClient
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from structum_lab.plugins.database import (
    AsyncConnection,
    Connection,
    IntegrityError,
    set_database,
)
from structum_lab.plugins.database.fastapi import (
    AsyncDbConnection,
    DbConnection,
    TransactionMiddleware,
    async_transaction,
    database_lifespan,
    transaction,
)

pytestmark = pytest.mark.integration

BACKENDS = ["sqlalchemy", "psycopg", "sqlalchemy-async", "psycopg-async"]


def make_db(kind: str, url: str) -> Any:
    from structum_lab.plugins.database import (
        AsyncPostgresDatabase,
        AsyncSQLAlchemyDatabase,
        PostgresDatabase,
        SQLAlchemyDatabase,
    )

    if kind == "sqlalchemy":
        return SQLAlchemyDatabase(url, pool_size=3, max_overflow=0, pool_timeout=5)
    if kind == "sqlalchemy-async":
        return AsyncSQLAlchemyDatabase(url, pool_size=3, max_overflow=0, pool_timeout=5)
    if kind == "psycopg":
        return PostgresDatabase(url, pool_size=3, min_size=1, timeout=5)
    return AsyncPostgresDatabase(url, pool_size=3, min_size=1, timeout=5)


@pytest.fixture
def table(postgres_server_url: str) -> Iterator[str]:
    """A table of our own on the shared server: ``name`` unique, and a deferred-unique ``code``."""
    name = f"fastapi_tx_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {name} (name TEXT PRIMARY KEY, code INTEGER, "
            "UNIQUE (code) DEFERRABLE INITIALLY DEFERRED)"
        )
    try:
        yield name
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def names(url: str, table: str) -> list[str]:
    """The committed rows, read through a connection of our own."""
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(f"SELECT name FROM {table} ORDER BY name")]


def add_sync_routes(app: FastAPI, table: str) -> None:
    insert = f"INSERT INTO {table} (name, code) VALUES (:name, :code)"

    @app.post("/ok/{name}", status_code=201)
    def ok(name: str, conn: DbConnection) -> dict[str, str]:
        conn.execute(insert, {"name": name, "code": None})
        return {"name": name}

    @app.post("/http-error/{name}")
    def http_error(name: str, conn: DbConnection) -> None:
        conn.execute(insert, {"name": name, "code": None})
        raise HTTPException(404, "nope")

    @app.post("/crash/{name}")
    def crash(name: str, conn: DbConnection) -> None:
        conn.execute(insert, {"name": name, "code": None})
        raise RuntimeError("the handler failed")

    @app.post("/returned-4xx/{name}")
    def returned_4xx(name: str, conn: DbConnection) -> JSONResponse:
        conn.execute(insert, {"name": name, "code": None})
        return JSONResponse({"detail": "rejected"}, status_code=422)

    @app.post("/status-param/{name}")
    def status_param(name: str, conn: DbConnection, response: Response) -> dict[str, str]:
        conn.execute(insert, {"name": name, "code": None})
        response.status_code = 400
        return {"detail": "bad"}

    @app.post("/redirect/{name}")
    def redirect(name: str, conn: DbConnection) -> RedirectResponse:
        conn.execute(insert, {"name": name, "code": None})
        return RedirectResponse(f"/ok/{name}", status_code=303)

    @app.post("/deferred/{name}", status_code=201)
    def deferred(name: str, conn: DbConnection) -> dict[str, str]:
        # The UNIQUE (code) check is deferred to COMMIT: the handler succeeds, the commit fails.
        conn.execute(insert, {"name": name, "code": 7})
        conn.execute(insert, {"name": name + "-twin", "code": 7})
        return {"name": name}


def add_async_routes(app: FastAPI, table: str) -> None:
    insert = f"INSERT INTO {table} (name, code) VALUES (:name, :code)"

    @app.post("/ok/{name}", status_code=201)
    async def ok(name: str, conn: AsyncDbConnection) -> dict[str, str]:
        await conn.execute(insert, {"name": name, "code": None})
        return {"name": name}

    @app.post("/http-error/{name}")
    async def http_error(name: str, conn: AsyncDbConnection) -> None:
        await conn.execute(insert, {"name": name, "code": None})
        raise HTTPException(404, "nope")

    @app.post("/crash/{name}")
    async def crash(name: str, conn: AsyncDbConnection) -> None:
        await conn.execute(insert, {"name": name, "code": None})
        raise RuntimeError("the handler failed")

    @app.post("/returned-4xx/{name}")
    async def returned_4xx(name: str, conn: AsyncDbConnection) -> JSONResponse:
        await conn.execute(insert, {"name": name, "code": None})
        return JSONResponse({"detail": "rejected"}, status_code=422)

    @app.post("/status-param/{name}")
    async def status_param(
        name: str, conn: AsyncDbConnection, response: Response
    ) -> dict[str, str]:
        await conn.execute(insert, {"name": name, "code": None})
        response.status_code = 400
        return {"detail": "bad"}

    @app.post("/redirect/{name}")
    async def redirect(name: str, conn: AsyncDbConnection) -> RedirectResponse:
        await conn.execute(insert, {"name": name, "code": None})
        return RedirectResponse(f"/ok/{name}", status_code=303)

    @app.post("/deferred/{name}", status_code=201)
    async def deferred(name: str, conn: AsyncDbConnection) -> dict[str, str]:
        await conn.execute(insert, {"name": name, "code": 7})
        await conn.execute(insert, {"name": name + "-twin", "code": 7})
        return {"name": name}


def build_app(db: Any, kind: str, table: str, *, lifespan: bool = True) -> FastAPI:
    app = (
        FastAPI(lifespan=database_lifespan(db, shutdown_instances=True)) if lifespan else FastAPI()
    )
    app.add_middleware(TransactionMiddleware)
    if kind.endswith("-async"):
        add_async_routes(app, table)
    else:
        add_sync_routes(app, table)
    return app


@pytest.mark.parametrize("kind", BACKENDS)
def test_commit_below_400_rollback_otherwise(
    postgres_server_url: str, table: str, kind: str, registry: None
) -> None:
    db = make_db(kind, postgres_server_url)
    app = build_app(db, kind, table)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        assert client.post("/ok/committed").status_code == 201
        assert client.post("/redirect/redirected").status_code == 303
        assert client.post("/http-error/http-error").status_code == 404
        assert client.post("/crash/crash").status_code == 500
        assert client.post("/returned-4xx/returned").status_code == 422
        assert client.post("/status-param/status-param").status_code == 400
        assert db.get_pool_info()["checked_out"] == 0
    assert names(postgres_server_url, table) == ["committed", "redirected"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_failed_commit_never_reaches_the_client_as_success(
    postgres_server_url: str, table: str, kind: str, registry: None, caplog: Any
) -> None:
    db = make_db(kind, postgres_server_url)
    app = build_app(db, kind, table)
    with TestClient(app) as client:
        response = client.post("/deferred/a")
        # The handler answered 201; the COMMIT failed; the client reads 409 instead.
        assert response.status_code == 409
        assert response.json() == {
            "detail": "the request conflicted with other data; nothing was saved, try again"
        }
        # The rows are not leaked in the answer, the driver's message stays in the log.
        assert "twin" not in response.text
        assert any(
            record.exc_info and isinstance(record.exc_info[1], IntegrityError)
            for record in caplog.records
        )
        # The pool is fine afterwards.
        assert client.post("/ok/b").status_code == 201
        assert db.get_pool_info()["checked_out"] == 0
    assert names(postgres_server_url, table) == ["b"]


class ObserveAtResponseStart:
    """Outer ASGI app recording what another client sees when the status goes out."""

    def __init__(self, app: ASGIApp, url: str, table: str) -> None:
        self.app = app
        self.url = url
        self.table = table
        self.seen: list[tuple[int, list[str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            if message["type"] == "http.response.start":
                rows = await anyio.to_thread.run_sync(names, self.url, self.table)
                self.seen.append((message["status"], rows))
            await send(message)

        await self.app(scope, receive, spy if scope["type"] == "http" else send)


@pytest.mark.parametrize("kind", BACKENDS)
def test_commit_happens_before_the_response_is_sent(
    postgres_server_url: str, table: str, kind: str, registry: None
) -> None:
    db = make_db(kind, postgres_server_url)
    observer = ObserveAtResponseStart(build_app(db, kind, table), postgres_server_url, table)
    with TestClient(observer) as client:
        assert client.post("/ok/a").status_code == 201
    assert observer.seen == [(201, ["a"])]


def test_control_a_yield_dependency_commits_after_the_response(
    postgres_server_url: str, table: str, registry: None
) -> None:
    """What TransactionMiddleware fixes: FastAPI runs a ``yield`` dependency's exit code after
    the response has started, so a dependency that commits there lets the client see 201 for
    data that is not committed yet (and would never be, were the commit to fail).
    """
    db = make_db("psycopg", postgres_server_url)

    def committing_dependency() -> Iterator[Connection]:
        with db.transaction() as conn:
            yield conn

    app = FastAPI()

    @app.post("/ok/{name}", status_code=201)
    def ok(name: str, conn: Connection = Depends(committing_dependency)) -> None:  # noqa: B008
        conn.execute(f"INSERT INTO {table} (name) VALUES (:name)", {"name": name})

    observer = ObserveAtResponseStart(app, postgres_server_url, table)
    try:
        with TestClient(observer) as client:
            assert client.post("/ok/a").status_code == 201
        assert observer.seen == [(201, [])]  # not committed when the status went out
        assert names(postgres_server_url, table) == ["a"]  # committed later
        # The core gives the connection back even though FastAPI runs the dependency's enter
        # and exit in two different worker threads (two copies of the context).
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


def test_dependency_without_the_middleware_says_what_to_add(
    postgres_server_url: str, table: str, registry: None
) -> None:
    db = make_db("psycopg", postgres_server_url)
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    add_sync_routes(app, table)
    with TestClient(app) as client, pytest.raises(RuntimeError, match="TransactionMiddleware"):
        client.post("/ok/a")
    assert names(postgres_server_url, table) == []


@pytest.mark.parametrize("kind", ["psycopg", "psycopg-async"])
def test_wrong_flavour_of_dependency_is_refused(
    postgres_server_url: str, kind: str, registry: None
) -> None:
    db = make_db(kind, postgres_server_url)
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    app.add_middleware(TransactionMiddleware)
    if kind == "psycopg":

        @app.get("/")
        async def index_async(conn: AsyncConnection = Depends(async_transaction())) -> None:  # noqa: B008
            raise AssertionError("unreachable")

        expected = "synchronous"
    else:

        @app.get("/")
        def index_sync(conn: Connection = Depends(transaction())) -> None:  # noqa: B008
            raise AssertionError("unreachable")

        expected = "asynchronous"
    with TestClient(app) as client, pytest.raises(TypeError, match=expected):
        client.get("/")
    assert db.get_pool_info()["checked_out"] == 0


@pytest.mark.parametrize("kind", ["sqlalchemy-async", "psycopg-async"])
def test_async_route_nested_transaction_is_a_savepoint_of_the_request(
    postgres_server_url: str, table: str, kind: str, registry: None
) -> None:
    db = make_db(kind, postgres_server_url)
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    app.add_middleware(TransactionMiddleware)
    insert = f"INSERT INTO {table} (name) VALUES (:name)"

    @app.post("/nested", status_code=201)
    async def nested(conn: AsyncDbConnection) -> None:
        await conn.execute(insert, {"name": "outer"})
        try:
            async with db.transaction() as inner:
                assert inner is conn  # the request's connection, under a SAVEPOINT
                await inner.execute(insert, {"name": "inner"})
                await inner.execute(insert, {"name": "outer"})  # duplicate: back to the savepoint
        except IntegrityError:
            await conn.execute(insert, {"name": "after"})

    with TestClient(app) as client:
        assert client.post("/nested").status_code == 201
    assert names(postgres_server_url, table) == ["after", "outer"]


class PassThrough(BaseHTTPMiddleware):
    async def dispatch(self, request: Any, call_next: Any) -> Any:
        return await call_next(request)


@pytest.mark.parametrize("kind", ["sqlalchemy", "psycopg-async"])
@pytest.mark.parametrize("order", ["base-http-inside", "base-http-outside"])
def test_works_beside_a_base_http_middleware(
    postgres_server_url: str, table: str, kind: str, order: str, registry: None
) -> None:
    """BaseHTTPMiddleware runs the app in another task: enter and finish happen in two contexts."""
    db = make_db(kind, postgres_server_url)
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    if order == "base-http-inside":
        app.add_middleware(PassThrough)
        app.add_middleware(TransactionMiddleware)
    else:
        app.add_middleware(TransactionMiddleware)
        app.add_middleware(PassThrough)
    (add_async_routes if kind.endswith("-async") else add_sync_routes)(app, table)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/ok/a").status_code == 201
        assert client.post("/http-error/b").status_code == 404
        assert client.post("/crash/c").status_code == 500
        assert client.post("/deferred/d").status_code == 409
        assert db.get_pool_info()["checked_out"] == 0
    assert names(postgres_server_url, table) == ["a"]


def test_per_test_isolation_of_the_testing_package_reaches_the_routes(
    postgres_server_url: str, table: str, registry: None
) -> None:
    """``isolated(db)`` turns each request transaction into a SAVEPOINT of one rolled back."""
    from structum_lab.plugins.database.testing import isolated

    db = make_db("sqlalchemy", postgres_server_url)
    set_database(db)
    app = build_app(db, "sqlalchemy", table, lifespan=False)
    try:
        with isolated(db), TestClient(app) as client:
            assert client.post("/ok/a").status_code == 201
            assert client.post("/http-error/b").status_code == 404
            with db.transaction() as conn:
                seen = conn.execute(f"SELECT name FROM {table} ORDER BY name").fetchall()
            assert [row["name"] for row in seen] == ["a"]
        assert names(postgres_server_url, table) == []
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


async def test_async_isolation_with_httpx(
    postgres_server_url: str, table: str, registry: None
) -> None:
    from structum_lab.plugins.database.testing import async_isolated

    db = make_db("psycopg-async", postgres_server_url)
    set_database(db)
    app = build_app(db, "psycopg-async", table, lifespan=False)
    try:
        async with async_isolated(db):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.post("/ok/a")).status_code == 201
                assert (await client.post("/returned-4xx/b")).status_code == 422
            async with db.transaction() as conn:
                result = await conn.execute(f"SELECT name FROM {table}")
                assert [row["name"] for row in await result.fetchall()] == ["a"]
        assert names(postgres_server_url, table) == []
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()
