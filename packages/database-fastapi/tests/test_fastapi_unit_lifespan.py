"""database_lifespan: what it opens, registers, publishes and shuts down, and when it refuses."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseUnavailableError,
    HealthResult,
    HealthStatus,
    get_database,
)
from structum_lab.plugins.database.fastapi import DatabaseLifespan, database, database_lifespan


def test_a_namespace_needs_a_backend() -> None:
    with pytest.raises(ValueError, match="backend=SQLAlchemyDatabase"):
        database_lifespan()
    with pytest.raises(ValueError, match="'replica_db'"):
        database_lifespan("replica_db")


def test_two_databases_with_one_name_are_refused(fake_db: Any) -> None:
    with pytest.raises(ValueError, match="registered as 'default'"):
        database_lifespan(fake_db(), "database", backend=fake_db)
    with pytest.raises(ValueError, match="registered as 'replica'"):
        database_lifespan("replica", named={"replica": fake_db()}, backend=fake_db)


async def test_namespaces_are_built_registered_published_and_shut_down(fake_db: Any) -> None:
    lifespan = database_lifespan(
        "database", "replica_db", backend=fake_db, named={"audit": fake_db(name="audit")}
    )
    assert repr(lifespan) == "<DatabaseLifespan default, replica_db, audit>"
    async with lifespan(FastAPI()) as state:
        dbs = state["structum_databases"]
        assert set(dbs) == {"default", "replica_db", "audit"}
        assert dbs["default"].name == "database"  # built from the namespace "database"
        assert dbs["replica_db"].name == "replica_db"
        assert get_database() is dbs["default"]
        assert get_database("replica_db") is dbs["replica_db"]
        assert get_database("audit") is dbs["audit"]
        assert dict(lifespan.databases) == dbs
        opened = dict(dbs)
    # Built from a namespace: shut down. Passed as an instance (audit): left to its owner.
    assert opened["default"].log == opened["replica_db"].log == ["shutdown"]
    assert opened["default"].closed
    assert opened["replica_db"].closed
    assert opened["audit"].log == []
    assert not opened["audit"].closed
    assert dict(lifespan.databases) == {}


async def test_instances_are_shut_down_only_when_handed_over(fake_db: Any) -> None:
    kept, handed = fake_db(), fake_db()
    async with database_lifespan(kept)(FastAPI()):
        pass
    assert kept.log == []
    async with database_lifespan(handed, shutdown_instances=True)(FastAPI()):
        pass
    assert handed.log == ["shutdown"]


async def test_sync_work_runs_in_a_worker_thread(fake_db: Any) -> None:
    threads: list[int] = []

    class Recording(fake_db):  # type: ignore[misc]
        @classmethod
        def from_config(cls, namespace: str = "database", **overrides: Any) -> Any:
            threads.append(threading.get_ident())
            return cls(name=namespace)

        def shutdown(self) -> None:
            threads.append(threading.get_ident())
            super().shutdown()

    async with database_lifespan(backend=Recording)(FastAPI()):
        pass
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_async_databases_are_opened_in_the_loop_and_awaited_at_exit(
    async_fake_db: Any,
) -> None:
    lifespan = database_lifespan("database", backend=async_fake_db)
    async with lifespan(FastAPI()) as state:
        db = state["structum_databases"]["default"]
        assert db.opened
    assert db.log == ["open", "shutdown"]


async def test_a_failed_startup_shuts_down_what_was_opened(fake_db: Any) -> None:
    class Broken(fake_db):  # type: ignore[misc]
        @classmethod
        def from_config(cls, namespace: str = "database", **overrides: Any) -> Any:
            raise ConfigurationError(f"no url in {namespace}")

    first, instance = fake_db(), fake_db()
    lifespan = DatabaseLifespan(
        first, "broken", named={"mine": instance}, backend=Broken, shutdown_instances=True
    )
    with pytest.raises(ConfigurationError, match="no url in broken"):
        async with lifespan(FastAPI()):
            pytest.fail("must not start")
    assert first.log == ["shutdown"]
    assert instance.log == []  # after the failure: never opened, never shut down


async def test_a_failing_shutdown_does_not_stop_the_others(
    fake_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Stuck(fake_db):  # type: ignore[misc]
        def shutdown(self) -> None:
            raise RuntimeError("cannot close")

    other = fake_db()
    lifespan = database_lifespan(other, named={"stuck": Stuck()}, shutdown_instances=True)
    async with lifespan(FastAPI()):
        pass
    assert other.log == ["shutdown"]
    assert "shutdown of database 'stuck' failed" in caplog.text


async def test_require_healthy(fake_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    down = fake_db()
    down.down = True
    with pytest.raises(DatabaseUnavailableError, match="'default' is unhealthy at startup"):
        async with database_lifespan(down, require_healthy=True)(FastAPI()):
            pytest.fail("must not start")
    assert not down.closed  # the caller's instance: the caller decides
    with pytest.raises(DatabaseUnavailableError):
        async with database_lifespan(down, require_healthy=True, shutdown_instances=True)(
            FastAPI()
        ):
            pytest.fail("must not start")
    assert down.closed

    slow = fake_db(health=HealthResult(HealthStatus.DEGRADED, "slow", 900.0))
    caplog.set_level(logging.INFO)
    async with database_lifespan(slow, require_healthy=True)(FastAPI()):
        pass
    assert "database 'default' is degraded at startup" in caplog.text


async def test_one_lifespan_runs_once_at_a_time(fake_db: Any) -> None:
    lifespan = database_lifespan(fake_db())
    async with lifespan(FastAPI()):
        with pytest.raises(RuntimeError, match="already running"):
            async with lifespan(FastAPI()):
                pass


def test_requests_use_their_own_application_database(fake_db: Any) -> None:
    """Two apps register "default": each request resolves its own app's (lifespan state first)."""
    first, second = fake_db(name="first"), fake_db(name="second")

    def app_with_depends(db: Any) -> FastAPI:
        app = FastAPI(lifespan=database_lifespan(db))
        get_db = database()

        @app.get("/")
        async def index(db: Any = Depends(get_db)) -> str:  # noqa: B008
            return str(db.name)

        return app

    with TestClient(app_with_depends(first)) as a, TestClient(app_with_depends(second)) as b:
        assert get_database() is second  # the registry holds the last one registered
        assert a.get("/").json() == "first"
        assert b.get("/").json() == "second"
