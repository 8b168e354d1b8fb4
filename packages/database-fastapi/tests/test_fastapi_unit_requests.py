"""The request transaction: dependencies + TransactionMiddleware, on in-memory databases."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncGenerator, Iterator
from typing import Any, cast

import anyio
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from structum_lab.plugins.database import (
    AsyncConnection,
    CommitOutcomeUnknownError,
    Connection,
    DatabaseUnavailableError,
    IntegrityError,
    SerializationError,
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
from structum_lab.plugins.database.fastapi._state import checkout_limiter


def sync_app(db: Any) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    app.add_middleware(TransactionMiddleware)

    @app.get("/ok")
    def ok(conn: DbConnection) -> str:
        conn.execute("ok")
        return "ok"

    @app.get("/not-found")
    def not_found(conn: DbConnection) -> None:
        conn.execute("not found")
        raise HTTPException(404)

    @app.get("/crash")
    def crash(conn: DbConnection) -> None:
        conn.execute("crash")
        raise RuntimeError("boom")

    @app.get("/conflict")
    def conflict(conn: DbConnection) -> JSONResponse:
        conn.execute("conflict")
        return JSONResponse({"detail": "conflict"}, status_code=409)

    @app.get("/no-db")
    def no_db() -> str:
        return "no database"

    return app


@pytest.mark.parametrize(
    ("path", "status", "outcome"),
    [
        ("/ok", 200, "commit"),
        ("/not-found", 404, "rollback"),
        ("/crash", 500, "rollback"),
        ("/conflict", 409, "rollback"),
    ],
)
def test_sync_outcome_follows_the_status(
    fake_db: Any, path: str, status: int, outcome: str
) -> None:
    db = fake_db()
    with TestClient(sync_app(db), raise_server_exceptions=False) as client:
        assert client.get(path).status_code == status
        assert db.checked_out == 0
    assert db.log == ["begin", f"execute {path[1:].replace('-', ' ')}", outcome, "shutdown"]


def test_requests_without_a_transaction_touch_nothing(fake_db: Any) -> None:
    db = fake_db()
    with TestClient(sync_app(db)) as client:
        assert client.get("/no-db").json() == "no database"
    assert db.log == ["shutdown"]


def test_sync_checkout_and_finish_happen_off_the_event_loop(fake_db: Any) -> None:
    db = fake_db()
    loop_threads: list[int] = []
    app = sync_app(db)

    @app.get("/loop")
    async def loop_thread() -> None:
        loop_threads.append(threading.get_ident())

    with TestClient(app) as client:
        client.get("/loop")
        client.get("/ok")
    assert db.begin_threads
    assert loop_threads[0] not in db.begin_threads


def test_options_reach_the_transaction(fake_db: Any) -> None:
    db = fake_db()
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    app.add_middleware(TransactionMiddleware)
    serializable = transaction(isolation_level="SERIALIZABLE", read_only=True, timeout=2.5)

    @app.get("/")
    def index(conn: Connection = Depends(serializable)) -> None:  # noqa: B008
        conn.execute("select")

    with TestClient(app) as client:
        client.get("/")
    assert db.options == [{"isolation_level": "SERIALIZABLE", "read_only": True, "timeout": 2.5}]


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (IntegrityError("dup key (email)=(a@b.c)"), 409, "conflicted"),
        (SerializationError("could not serialize"), 409, "conflicted"),
        (DatabaseUnavailableError("connection lost"), 503, "nothing was saved"),
        (CommitOutcomeUnknownError("lost during COMMIT"), 503, "outcome is unknown"),
        (RuntimeError("disk full"), 500, "could not be saved"),
    ],
)
def test_a_failed_commit_replaces_the_response(
    fake_db: Any, error: Exception, status: int, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = fake_db(commit_error=error)
    with TestClient(sync_app(db)) as client:
        response = client.get("/ok")
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert str(error) not in response.text  # the driver's words stay in the log
    assert db.checked_out == 0
    assert f"answering {status} instead of 200" in caplog.text


def test_several_databases_commit_in_order_and_stop_at_the_first_failure(fake_db: Any) -> None:
    first, second, third = fake_db(), fake_db(commit_error=IntegrityError("dup")), fake_db()
    app = FastAPI(
        lifespan=database_lifespan(
            first, named={"second": second, "third": third}, shutdown_instances=True
        )
    )
    app.add_middleware(TransactionMiddleware)
    second_tx, third_tx = transaction("second"), transaction("third")

    @app.get("/")
    def index(
        a: DbConnection,
        b: Connection = Depends(second_tx),  # noqa: B008
        c: Connection = Depends(third_tx),  # noqa: B008
    ) -> None:
        pass

    with TestClient(app) as client:
        assert client.get("/").status_code == 409
    assert first.log == ["begin", "commit", "shutdown"]  # not atomic across databases
    assert second.log == ["begin", "commit failed", "shutdown"]
    assert third.log == ["begin", "rollback", "shutdown"]


def async_app(db: Any) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    app.add_middleware(TransactionMiddleware)

    @app.get("/ok")
    async def ok(conn: AsyncDbConnection) -> str:
        await conn.execute("ok")
        async with db.transaction() as nested:  # joins the request's transaction
            assert nested is conn
            await nested.execute("nested")
        return "ok"

    @app.get("/not-found")
    async def not_found(conn: AsyncDbConnection) -> None:
        await conn.execute("not found")
        raise HTTPException(404)

    @app.get("/crash")
    async def crash(conn: AsyncDbConnection) -> None:
        await conn.execute("crash")
        raise RuntimeError("boom")

    @app.get("/text")
    async def text(conn: AsyncDbConnection) -> PlainTextResponse:
        await conn.execute("text")
        return PlainTextResponse("teapot", status_code=418)

    return app


@pytest.mark.parametrize(
    ("path", "status", "log"),
    [
        ("/ok", 200, ["execute ok", "savepoint", "execute nested", "release savepoint", "commit"]),
        ("/not-found", 404, ["execute not found", "rollback"]),
        ("/crash", 500, ["execute crash", "rollback"]),
        ("/text", 418, ["execute text", "rollback"]),
    ],
)
def test_async_outcome_follows_the_status(
    async_fake_db: Any, path: str, status: int, log: list[str]
) -> None:
    db = async_fake_db()
    with TestClient(async_app(db), raise_server_exceptions=False) as client:
        assert client.get(path).status_code == status
        assert db.checked_out == 0
    assert db.log == ["open", "begin", *log, "shutdown"]


def test_async_failed_commit_is_a_409(async_fake_db: Any) -> None:
    db = async_fake_db(commit_error=IntegrityError("dup"))
    with TestClient(async_app(db)) as client:
        assert client.get("/ok").status_code == 409
    assert db.checked_out == 0


def test_without_the_middleware_the_dependency_says_what_to_add(
    fake_db: Any, async_fake_db: Any
) -> None:
    sync_db, async_db = fake_db(), async_fake_db()
    app = FastAPI(
        lifespan=database_lifespan(sync_db, named={"aio": async_db}, shutdown_instances=True)
    )
    aio = async_transaction("aio")

    @app.get("/sync")
    def sync_route(conn: DbConnection) -> None:
        pass

    @app.get("/async")
    async def async_route(conn: AsyncConnection = Depends(aio)) -> None:  # noqa: B008
        pass

    with TestClient(app) as client:
        with pytest.raises(RuntimeError, match=r"app.add_middleware\(TransactionMiddleware\)"):
            client.get("/sync")
        with pytest.raises(RuntimeError, match="async_transaction"):
            client.get("/async")
    assert sync_db.log == ["shutdown"]
    assert async_db.log == ["open", "shutdown"]


def test_mismatched_flavours_are_refused(fake_db: Any, async_fake_db: Any) -> None:
    app = FastAPI(
        lifespan=database_lifespan(
            async_fake_db(), named={"sync": fake_db()}, shutdown_instances=True
        )
    )
    app.add_middleware(TransactionMiddleware)
    sync_tx = async_transaction("sync")

    @app.get("/sync-dep-async-db")
    def one(conn: DbConnection) -> None:
        pass

    @app.get("/async-dep-sync-db")
    async def two(conn: AsyncConnection = Depends(sync_tx)) -> None:  # noqa: B008
        pass

    with TestClient(app) as client:
        with pytest.raises(TypeError, match=r"'default' is asynchronous \(AsyncFakeDatabase\)"):
            client.get("/sync-dep-async-db")
        with pytest.raises(TypeError, match=r"'sync' is synchronous \(FakeDatabase\)"):
            client.get("/async-dep-sync-db")


def test_unregistered_database_is_a_configuration_error(fake_db: Any) -> None:
    app = FastAPI()
    app.add_middleware(TransactionMiddleware)

    @app.get("/")
    def index(conn: DbConnection) -> None:
        pass

    with TestClient(app) as client, pytest.raises(Exception, match="set_database"):
        client.get("/")


async def test_an_answer_that_never_starts_still_rolls_back(fake_db: Any) -> None:
    """An app that returns without sending a response (client gone) leaves nothing open."""
    db = fake_db()
    set_database(db)
    dependency = transaction()
    opened: list[AsyncGenerator[Connection, None]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        gen = cast("AsyncGenerator[Connection, None]", dependency(Request(scope, receive, send)))
        opened.append(gen)
        await gen.__anext__()

    middleware = TransactionMiddleware(app)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    await middleware({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    assert db.log == ["begin", "rollback"]
    assert db.checked_out == 0
    await opened[0].aclose()  # what FastAPI would do later: finds the transaction finished
    assert db.log == ["begin", "rollback"]


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        pass

    scope: dict[str, Any] = {"type": "lifespan"}
    await TransactionMiddleware(app)(scope, receive, send)
    assert seen == ["lifespan"]
    assert "structum_lab.database.transactions" not in scope


async def test_checkout_limiter_is_sized_to_the_pool(fake_db: Any) -> None:
    sized, unknown = fake_db(pool_max=7), fake_db(pool_max=None)
    assert checkout_limiter(sized).total_tokens == 7
    assert checkout_limiter(sized) is checkout_limiter(sized)  # one per database and loop
    assert checkout_limiter(unknown).total_tokens == 10

    class Unweakrefable:
        __slots__ = ()

        def get_pool_info(self) -> dict[str, Any]:
            raise RuntimeError("no statistics")

    limiter = checkout_limiter(Unweakrefable())
    assert isinstance(limiter, anyio.CapacityLimiter)
    assert limiter.total_tokens == 10


def test_core_transaction_survives_enter_and_exit_in_two_contexts(fake_db: Any) -> None:
    """FastAPI runs a sync ``yield`` dependency's enter and exit in two copied contexts."""
    db = fake_db()
    tx = db.transaction()
    entered = contextvars.copy_context()
    entered.run(tx.__enter__)
    exiting = entered.copy()  # sees the transaction as active, but reset() refuses its token
    exiting.run(tx.__exit__, None, None, None)
    assert db.log == ["begin", "commit"]
    assert db.checked_out == 0

    def fresh_transaction() -> None:
        with db.transaction() as conn:
            conn.execute("later")

    # The exiting context does not point at the returned connection any more: a new transaction
    # there is a real one, not a SAVEPOINT of a connection that is back in the pool.
    exiting.run(fresh_transaction)
    assert db.log[2:] == ["begin", "execute later", "commit"]


def test_the_usual_sync_yield_dependency_gives_its_connection_back(fake_db: Any) -> None:
    db = fake_db()

    def get_conn() -> Iterator[Connection]:
        with db.transaction() as conn:
            yield conn

    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))

    @app.get("/")
    def index(conn: Connection = Depends(get_conn)) -> None:  # noqa: B008
        conn.execute("select")

    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    assert db.log == ["begin", "execute select", "commit", "shutdown"]
    assert db.checked_out == 0
