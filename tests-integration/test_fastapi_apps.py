"""FastAPI applications against real PostgreSQL: the seed's §8.2/§10 code, and examples/fastapi_app.

Each test gets a database of its own on the shared server (created and dropped here), because the
seed's code and the examples use fixed table names (``users``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from structum_lab.config import get_config_provider, set_config_provider
from structum_lab.plugins.database import Connection, get_database, set_database
from structum_lab.plugins.database.registry import clear_databases
from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.integration


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def fresh_database_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty database on the shared server, dropped at the end."""
    name = f"structum_fastapi_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(postgres_server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def isolated_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put the database registry and the configuration provider back as they were."""
    for var in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF", "STRUCTUM_DATABASE__URL"):
        monkeypatch.delenv(var, raising=False)
    provider = get_config_provider()
    registered = clear_databases()
    try:
        yield
    finally:
        set_config_provider(provider)
        clear_databases()
        for name, db in registered.items():
            set_database(db, name)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Read through a connection of our own: what other clients of the database see."""
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


# -- the seed's code -----------------------------------------------------------------------------
# §10.1 exactly as the seed writes it (indentation restored: the document lost it).
SEED_10_1 = """
from fastapi import FastAPI, Depends
from structum_lab.plugins.database import get_database, DatabaseInterface

app = FastAPI()

# Database initialization
@app.on_event("startup")
async def startup():
    db = SQLAlchemyDatabase.from_config()
    set_database(db)

@app.on_event("shutdown")
async def shutdown():
    db = get_database()
    db.shutdown()

# Dependency
def get_db() -> DatabaseInterface:
    return get_database()

# Route with injection
@app.get("/users/{user_id}")
async def get_user(user_id: int, db: DatabaseInterface = Depends(get_db)):
    with db.transaction() as conn:
        result = conn.execute(
            "SELECT * FROM users WHERE id = :id",
            {"id": user_id}
        )
        user = result.fetchone()
        if not user:
            raise HTTPException(status_code=404, detail="User not found")
        return {"id": user["id"], "username": user["username"]}
"""
# The seed's §10.1 uses three names it never imports; the README says so.
SEED_10_1_MISSING_IMPORTS = """
from fastapi import HTTPException
from structum_lab.plugins.database import SQLAlchemyDatabase, set_database
"""

# §10.2 continues §10.1 (same ``app``); it uses ``Request`` and a ``UserCreate`` model it never
# defines.
SEED_10_2 = '''
from starlette.middleware.base import BaseHTTPMiddleware

class TransactionMiddleware(BaseHTTPMiddleware):
    """Automatic transaction per request."""

    async def dispatch(self, request, call_next):
        db = get_database()
        with db.transaction() as conn:
            # Attach connection to request state
            request.state.db_conn = conn
            try:
                response = await call_next(request)
                # Transaction auto-commits on success
                return response
            except Exception:
                # Transaction auto-rollbacks on error
                raise

app.add_middleware(TransactionMiddleware)

# Routes can access connection
@app.post("/users")
async def create_user(user: UserCreate, request: Request):
    conn = request.state.db_conn
    result = conn.execute(
        "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id",
        {"u": user.username, "e": user.email}
    )
    new_id = result.fetchone()["id"]
    return {"id": new_id}
'''
SEED_10_2_MISSING_DEFINITIONS = """
from fastapi import Request
from pydantic import BaseModel

class UserCreate(BaseModel):
    username: str
    email: str
"""

# §8.2, with ``db`` and §8.1's ``HealthStatus`` import in scope as the seed's reader has them.
SEED_8_1_IMPORT = "from structum_lab.plugins.database import HealthStatus"
SEED_8_2 = '''
from fastapi import FastAPI

app = FastAPI()

@app.get("/health")
async def health():
    """Health check endpoint."""
    db_health = db.health_check()
    return {
        "status": "healthy" if db_health.status == HealthStatus.HEALTHY else "unhealthy",
        "database": {
            "status": db_health.status.value,
            "latency_ms": db_health.latency_ms,
            "message": db_health.message
        }
    }
'''

USERS_TABLE = """
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL
)
"""


def run_seed(*sources: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "seed_fastapi", **names}
    exec(compile("\n".join(sources), "seed_fastapi.py", "exec"), namespace)
    return namespace


# FastAPI deprecates @app.on_event in favour of lifespan and warns when it is used; the seed's
# code uses it, and this test runs that code as written, so exactly that warning is allowed here.
@pytest.mark.filterwarnings(
    "ignore:\\s*on_event is deprecated, use lifespan event handlers instead:DeprecationWarning"
)
def test_seed_section_10_runs_as_written(
    fresh_database_url: str,
    isolated_globals: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # §10.1's SQLAlchemyDatabase.from_config() with nothing registered: config/ of the cwd.
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        f'[default]\nurl = "{fresh_database_url}"\npool_size = 2\n'
    )
    monkeypatch.chdir(tmp_path)
    set_config_provider(None)
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute(USERS_TABLE)
        conn.execute("INSERT INTO users (username, email) VALUES ('ada', 'ada@example.com')")

    ns = run_seed(SEED_10_1_MISSING_IMPORTS, SEED_10_1, SEED_10_2_MISSING_DEFINITIONS, SEED_10_2)
    app = ns["app"]
    with TestClient(app) as client:
        db = get_database("default", SQLAlchemyDatabase)
        assert client.get("/users/1").json() == {"id": 1, "username": "ada"}
        missing = client.get("/users/999")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "User not found"}

        created = client.post("/users", json={"username": "grace", "email": "grace@example.com"})
        assert created.status_code == 200
        new_id = created.json()["id"]
        assert client.get(f"/users/{new_id}").json() == {"id": new_id, "username": "grace"}
        assert db.get_pool_info()["checked_out"] == 0
    # The seed's shutdown handler ran.
    assert db.closed
    assert query(fresh_database_url, "SELECT username FROM users ORDER BY id") == [
        ("ada",),
        ("grace",),
    ]


def test_seed_section_8_2_health_endpoint(postgres_server_url: str) -> None:
    from structum_lab.plugins.database import HealthThresholds, SQLAlchemyDatabase

    # A cold pool's first probe includes connecting: a threshold no latency crosses keeps the
    # endpoint's answer about the database, not about how busy the machine is.
    never_slow = HealthThresholds(degraded_latency_ms=86_400_000.0)
    db = SQLAlchemyDatabase(postgres_server_url, pool_size=1, health_thresholds=never_slow)
    try:
        ns = run_seed(SEED_8_1_IMPORT, SEED_8_2, db=db)
        with TestClient(ns["app"]) as client:
            body = client.get("/health").json()
        assert body["status"] == "healthy"
        assert body["database"]["status"] == "healthy"
        assert body["database"]["message"] == "Database connection OK"
        assert body["database"]["latency_ms"] > 0
    finally:
        db.shutdown()


# -- the examples --------------------------------------------------------------------------------
# SQLModel needs Python >= 3.11 (requirements-dev.txt installs it there).
NEEDS_SQLMODEL = pytest.mark.skipif(
    importlib.util.find_spec("sqlmodel") is None, reason="SQLModel is not installed"
)
VARIANTS = [
    pytest.param("sync_app", "SQLAlchemyDatabase", id="sync-sqlalchemy"),
    pytest.param("sync_app", "PostgresDatabase", id="sync-psycopg"),
    pytest.param("async_app", "AsyncPostgresDatabase", id="async-psycopg"),
    pytest.param("async_app", "AsyncSQLAlchemyDatabase", id="async-sqlalchemy"),
    # The ORM flavour (SQLModel sessions in the request transaction): the same API, same answers.
    pytest.param("orm_app", "SQLAlchemyDatabase", id="orm-sync", marks=NEEDS_SQLMODEL),
    pytest.param(
        "orm_app:create_async_app", "AsyncSQLAlchemyDatabase", id="orm-async", marks=NEEDS_SQLMODEL
    ),
]


@pytest.fixture
def example_url(
    fresh_database_url: str, isolated_globals: None, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The examples read examples/fastapi_app/config/app/database.toml; only the URL is ours."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", fresh_database_url)
    return fresh_database_url


def example_app(module: str, backend: str) -> FastAPI:
    """``module`` is ``name`` (its ``create_app``) or ``name:factory``."""
    import structum_lab.plugins.database as facade

    module, _, factory = module.partition(":")
    mod: ModuleType = importlib.import_module(f"fastapi_app.{module}")
    app: FastAPI = getattr(mod, factory or "create_app")(backend=getattr(facade, backend))
    return app


@pytest.mark.parametrize(("module", "backend"), VARIANTS)
def test_example_users_api_end_to_end(example_url: str, module: str, backend: str) -> None:
    app = example_app(module, backend)
    with TestClient(app) as client:
        db: Any = get_database()  # parametrized by class name
        assert type(db).__name__ == backend
        # The example's configuration file was read (pool_size = 10, max_overflow = 0).
        assert db.get_pool_info()["max"] == 10

        ada = client.post("/users", json={"username": "ada", "emails": ["b@ada.org", "a@ada.org"]})
        assert ada.status_code == 201, ada.text
        ada_id = ada.json()["id"]
        assert ada.json() == {"id": ada_id, "username": "ada", "emails": ["a@ada.org", "b@ada.org"]}
        grace = client.post("/users", json={"username": "grace", "emails": ["grace@navy.mil"]})
        assert grace.status_code == 201

        assert client.get(f"/users/{ada_id}").json() == ada.json()
        listed = client.get("/users").json()
        assert [u["username"] for u in listed] == ["ada", "grace"]
        assert client.get("/users", params={"limit": 1, "offset": 1}).json() == [grace.json()]

        missing = client.get("/users/999999")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "user not found"}
        assert client.get("/users/not-a-number").status_code == 422
        assert client.post("/users", json={"username": "", "emails": []}).status_code == 422

        # Unique username: refused before anything is written.
        taken = client.post("/users", json={"username": "ada", "emails": ["new@ada.org"]})
        assert taken.status_code == 409
        assert taken.json() == {"detail": "the username 'ada' is taken"}
        # Address in use: the users row was inserted first; the 409 must roll it back.
        clash = client.post("/users", json={"username": "carol", "emails": ["grace@navy.mil"]})
        assert clash.status_code == 409
        assert clash.json() == {"detail": "an e-mail address is already in use"}

        assert query(example_url, "SELECT username FROM users ORDER BY id") == [
            ("ada",),
            ("grace",),
        ]
        assert query(example_url, "SELECT count(*) FROM user_emails") == [(3,)]
        assert query(example_url, "SELECT count(*) FROM users WHERE username = 'carol'") == [(0,)]
        # The pool still works after the errors, and lent nothing out for good.
        assert client.get("/users").status_code == 200
        assert client.get("/health/ready").status_code == 200
        assert client.get("/health/live").json()["status"] == "pass"
        assert db.get_pool_info()["checked_out"] == 0
    assert db.closed


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("AsyncPostgresDatabase", id="async-psycopg"),
        pytest.param("AsyncSQLAlchemyDatabase", id="async-sqlalchemy"),
    ],
)
async def test_async_app_under_100_concurrent_requests(
    example_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool_size = 5
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", str(pool_size))
    app = example_app("async_app", backend)
    async with app.router.lifespan_context(app):
        db = get_database()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            seeded = [
                (await client.post("/users", json={"username": f"u{i}", "emails": [f"{i}@x.org"]}))
                for i in range(10)
            ]
            ids = [r.json()["id"] for r in seeded]

            peak: dict[Literal["checked_out", "total"], int] = {"checked_out": 0, "total": 0}
            sampling = True

            async def sample() -> None:
                while sampling:
                    info = db.get_pool_info()
                    for key, seen in peak.items():
                        peak[key] = max(seen, info[key])
                    await asyncio.sleep(0)

            def request(i: int) -> Any:
                kind = i % 4
                if kind == 0:  # a write
                    return client.post("/users", json={"username": f"c{i}", "emails": [f"c{i}@x"]})
                if kind == 1:  # a conflict: 409, rolled back
                    return client.post("/users", json={"username": "u0", "emails": [f"d{i}@x"]})
                if kind == 2:
                    return client.get(f"/users/{ids[i % len(ids)]}")
                return client.get("/users", params={"limit": 20})

            sampler = asyncio.create_task(sample())
            started = time.perf_counter()
            responses = await asyncio.gather(*(request(i) for i in range(100)))
            elapsed = time.perf_counter() - started
            sampling = False
            await sampler

        statuses = sorted({r.status_code for r in responses})
        assert statuses == [200, 201, 409], [r.text for r in responses if r.status_code >= 500]
        assert sum(r.status_code == 201 for r in responses) == 25
        assert peak["checked_out"] <= pool_size
        assert peak["total"] <= pool_size
        # The 100 requests did contend for the pool (the test exercised what it claims).
        assert peak["checked_out"] == pool_size
        assert db.get_pool_info()["checked_out"] == 0
        print(f"100 concurrent requests in {elapsed:.3f}s, peak {peak} of {pool_size}")
    assert query(example_url, "SELECT count(*) FROM users") == [(35,)]


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("SQLAlchemyDatabase", id="sync-sqlalchemy"),
        pytest.param("PostgresDatabase", id="sync-psycopg"),
    ],
)
async def test_sync_app_with_more_waiting_requests_than_worker_threads(
    example_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """80 concurrent requests, 2 connections, FastAPI's 40 worker threads: no deadlock.

    Requests waiting for a connection queue without holding a worker thread, so the requests
    that hold one always find a thread to run their handler (see the control test below).
    """
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "2")
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_TIMEOUT", "3")
    app = example_app("sync_app", backend)
    async with app.router.lifespan_context(app):
        db = get_database()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post("/users", json={"username": "ada", "emails": ["a@x"]})
            user = created.json()["id"]
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get(f"/users/{user}") for _ in range(80)))
            elapsed = time.perf_counter() - started
        # Starved, the waiters would fail with PoolTimeoutError (500) after 3 s.
        assert [r.status_code for r in responses] == [200] * 80
        assert db.get_pool_info()["checked_out"] == 0
        print(f"80 requests on 2 connections in {elapsed:.3f}s")


async def test_control_naive_sync_dependency_starves_the_threadpool(
    postgres_server_url: str, isolated_globals: None
) -> None:
    """Why the sync dependency checks out in threads of its own (control for the test above).

    The usual ``def get_conn(): with db.transaction() as conn: yield conn`` checks out on
    FastAPI's shared threadpool: with more waiting requests than threads, the waiters take every
    thread and the requests holding the connections cannot run their handlers until the waiters
    time out.
    """
    from structum_lab.plugins.database import PostgresDatabase

    db = PostgresDatabase(postgres_server_url, pool_size=2, min_size=2, timeout=2)

    def naive_connection() -> Iterator[Connection]:
        with db.transaction() as conn:
            yield conn

    app = FastAPI()

    @app.get("/")
    def index(conn: Connection = Depends(naive_connection)) -> int:  # noqa: B008
        return int(conn.execute("SELECT 1 FROM pg_sleep(0.01)").scalar())

    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get("/") for _ in range(80)))
            elapsed = time.perf_counter() - started
        failed = sum(r.status_code == 500 for r in responses)
        assert failed > 0
        assert elapsed >= 2.0
        print(f"naive dependency: {failed}/80 failed after {elapsed:.2f}s")
        # The core keeps its promise even here: every connection came back.
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


@NEEDS_SQLMODEL
@pytest.mark.parametrize(
    ("module", "backend"),
    [
        pytest.param("orm_app", "SQLAlchemyDatabase", id="orm-sync"),
        pytest.param("orm_app:create_async_app", "AsyncSQLAlchemyDatabase", id="orm-async"),
    ],
)
def test_orm_example_on_sqlite(
    isolated_globals: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    backend: str,
) -> None:
    """The ORM flavour is portable: the same API on SQLite, tables from SQLModel's metadata."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    database = tmp_path / "users.sqlite3"
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", f"sqlite:///{database}")
    app = example_app(module, backend)
    with TestClient(app) as client:
        ada = client.post("/users", json={"username": "ada", "emails": ["a@ada.org"]})
        assert ada.status_code == 201, ada.text
        assert client.get(f"/users/{ada.json()['id']}").json() == ada.json()
        taken = client.post("/users", json={"username": "ada", "emails": ["b@ada.org"]})
        assert taken.status_code == 409
        clash = client.post("/users", json={"username": "bob", "emails": ["a@ada.org"]})
        assert clash.status_code == 409
        assert [u["username"] for u in client.get("/users").json()] == ["ada"]
        assert get_database().get_pool_info()["checked_out"] == 0
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT username FROM users").fetchall() == [("ada",)]
        assert conn.execute("SELECT email FROM user_emails").fetchall() == [("a@ada.org",)]
    conn.close()
