"""Readiness follows the database down and back up; liveness never looks at it.

The database is a throwaway PostgreSQL cluster of our own (``LocalPostgresCluster`` of the testing
package), stopped and started again here: the machine's shared server is used by other tests at
the same time and must not be touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from structum_lab.plugins.database.fastapi import (
    AsyncDbConnection,
    DbConnection,
    TransactionMiddleware,
    database_lifespan,
    health_router,
)
from structum_lab.plugins.database.testing import ClusterError, LocalPostgresCluster
from structum_lab.plugins.database.testing.pytest_plugin import skip_or_fail

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55"  # trust authentication ignores it; it must never be shown


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalPostgresCluster]:
    try:
        server = LocalPostgresCluster()
    except ClusterError as exc:
        skip_or_fail(request.config, str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_db(kind: str, url: str) -> Any:
    from structum_lab.plugins.database import (
        AsyncPostgresDatabase,
        AsyncSQLAlchemyDatabase,
        HealthThresholds,
        PostgresDatabase,
        SQLAlchemyDatabase,
    )

    connect = {"connect_timeout": 2}
    # Probes after a restart reconnect (their latency varies): with a threshold no latency
    # crosses, "pass" vs "fail" is about the server being up, which is what is tested here.
    common: dict[str, Any] = {
        "pool_size": 2,
        "connect_args": connect,
        "health_thresholds": HealthThresholds(degraded_latency_ms=86_400_000.0),
    }
    if kind == "sqlalchemy":
        return SQLAlchemyDatabase(url, pool_timeout=2, **common)
    if kind == "sqlalchemy-async":
        return AsyncSQLAlchemyDatabase(url, pool_timeout=2, **common)
    if kind == "psycopg":
        return PostgresDatabase(url, min_size=1, timeout=2, **common)
    return AsyncPostgresDatabase(url, min_size=1, timeout=2, **common)


def build_app(db: Any, kind: str) -> FastAPI:
    app = FastAPI(lifespan=database_lifespan(db, shutdown_instances=True))
    app.add_middleware(TransactionMiddleware)
    app.include_router(health_router(timeout=5))
    if kind.endswith("-async"):

        @app.get("/one")
        async def one_async(conn: AsyncDbConnection) -> int:
            return int(await (await conn.execute("SELECT 1")).scalar())

    else:

        @app.get("/one")
        def one(conn: DbConnection) -> int:
            return int(conn.execute("SELECT 1").scalar())

    return app


def wait_ready(client: TestClient, seconds: float) -> tuple[int, float]:
    started = time.perf_counter()
    while True:
        status = client.get("/health/ready").status_code
        elapsed = time.perf_counter() - started
        if status == 200 or elapsed > seconds:
            return status, elapsed
        time.sleep(0.1)


@pytest.mark.parametrize("kind", ["sqlalchemy", "psycopg", "sqlalchemy-async", "psycopg-async"])
def test_readiness_follows_the_database_down_and_up(
    cluster: LocalPostgresCluster, kind: str, registry: None
) -> None:
    url = cluster.url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    db = make_db(kind, url)
    app = build_app(db, kind)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 200
            assert ready.headers["content-type"] == "application/health+json"
            assert ready.json()["status"] == "pass"
            check = ready.json()["checks"]["database:responseTime"][0]
            assert check["componentType"] == "datastore"
            assert check["observedUnit"] == "ms"
            assert client.get("/one").json() == 1

            cluster.stop_server("fast")
            down = client.get("/health/ready")
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/health+json"
            body = down.json()
            assert body["status"] == "fail"
            assert body["checks"]["database:responseTime"][0]["status"] == "fail"
            assert PASSWORD not in down.text
            # The probe itself saw the outage (a refused connection), rather than the endpoint
            # giving up after its 5 s timeout: told by the answer, not by a clock.
            assert "did not answer within" not in down.text, down.text
            # Liveness is about the process: a database outage must not get it restarted.
            live = client.get("/health/live")
            assert live.status_code == 200
            assert live.json() == {"status": "pass", "description": "the process is running"}
            assert client.get("/one").status_code >= 500

            cluster.start_server()
            status, recovered = wait_ready(client, 20.0)
            assert status == 200, f"still unready {recovered:.1f}s after the restart"
            assert client.get("/one").json() == 1
            assert PASSWORD not in client.get("/health/ready").text
            assert db.get_pool_info()["checked_out"] == 0
            print(f"{kind}: ready again {recovered:.2f}s after the restart")
    finally:
        # Leave the server up for the next parameter, whatever happened.
        if not cluster.server_running:
            cluster.start_server()


@pytest.mark.parametrize("kind", ["sqlalchemy", "psycopg", "sqlalchemy-async", "psycopg-async"])
def test_readiness_stays_up_at_peak_load(
    cluster: LocalPostgresCluster, kind: str, registry: None
) -> None:
    # Every connection busy (the Spring Boot trap, spring-boot#19047): the probe must not wait for
    # the pool and fail; readiness answers 200 "warn" (DEGRADED, pool saturated) at once.
    db = make_db(kind, cluster.url)
    app = build_app(db, kind)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.portal is not None
        capacity = db.get_pool_info()["max"]  # pool_size 2, plus SQLAlchemy's overflow
        if kind.endswith("-async"):
            held = [client.portal.call(db.get_connection) for _ in range(capacity)]
        else:
            held = [db.get_connection() for _ in range(capacity)]
        try:
            started = time.perf_counter()
            ready = client.get("/health/ready")
            took = time.perf_counter() - started
        finally:
            for conn in held:
                if kind.endswith("-async"):
                    client.portal.call(conn.close)
                else:
                    conn.close()
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "warn"
        # Well below the pool timeout (2 s) plus the router's 5 s: the answer did not queue.
        assert took < 2.0, took
        assert db.get_pool_info()["checked_out"] == 0
