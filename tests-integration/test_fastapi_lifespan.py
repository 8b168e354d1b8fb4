"""database_lifespan over a database the application passes in: two test clients, one database.

The layout of issue 13's template: a module-level database, one ``TestClient`` per test module
(each runs the lifespan). The first client's exit must not shut the database down for the second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from structum_lab.plugins.database import DatabaseClosedError, get_database
from structum_lab.plugins.database.fastapi import (
    DbConnection,
    TransactionMiddleware,
    database_lifespan,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlalchemy-sqlite", "sqlalchemy-postgresql", "psycopg"])
def sync_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = request.param
    if kind == "sqlalchemy-sqlite":
        from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

        db: Any = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'app.db'}")
    else:
        url = request.getfixturevalue("postgres_server_url")
        if kind == "psycopg":
            from structum_lab.plugins.database.postgres import PostgresDatabase

            db = PostgresDatabase(url, min_size=1, pool_size=2)
        else:
            from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

            db = SQLAlchemyDatabase(url, pool_size=2)
    try:
        yield db
    finally:
        db.shutdown()


def _app(db: Any, **options: Any) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(db, **options))
    app.add_middleware(TransactionMiddleware)

    @app.get("/one")
    def one(conn: DbConnection) -> int:
        return int(conn.execute("SELECT 1").scalar())

    return app


def test_two_clients_in_turn_share_an_instance_passed_in(sync_db: Any, registry: None) -> None:
    app = _app(sync_db)
    for _ in range(2):  # one TestClient per test module, in turn
        with TestClient(app) as client:
            assert client.get("/one").json() == 1
            assert get_database(type=type(sync_db)) is sync_db
        assert not sync_db.closed
    # Two applications over the same instance, one after the other.
    with TestClient(_app(sync_db)) as client:
        assert client.get("/one").json() == 1
    with sync_db.transaction() as conn:  # still the caller's, still open
        assert conn.execute("SELECT 1").scalar() == 1
    assert sync_db.get_pool_info()["checked_out"] == 0


def test_shutdown_instances_hands_the_instance_over(sync_db: Any, registry: None) -> None:
    app = _app(sync_db, shutdown_instances=True)
    with TestClient(app) as client:
        assert client.get("/one").json() == 1
    assert sync_db.closed
    with pytest.raises(DatabaseClosedError):
        sync_db.transaction().__enter__()
