"""Rotating credentials: ``password=`` as a callable, called for every new physical connection.

A throwaway PostgreSQL cluster with password (SCRAM) authentication over TCP; its role's password
is changed with ``ALTER ROLE ... PASSWORD`` while the pool runs, as a cloud IAM token would
expire. Administration goes over the cluster's unix socket (trusted).
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import structum_lab.plugins.database as package
from structum_lab.plugins.database import ConfigurationError, DatabaseUnavailableError
from structum_lab.plugins.database.testing import ClusterError, LocalPostgresCluster
from structum_lab.plugins.database.testing.pytest_plugin import skip_or_fail

pytestmark = pytest.mark.integration


class Backend:
    """One PostgreSQL backend: its class and its pool-timeout keyword."""

    def __init__(self, id: str, class_name: str, timeout_key: str) -> None:
        self.id = id
        self.class_name = class_name
        self.timeout_key = timeout_key

    def __str__(self) -> str:
        return self.id

    def make(self, url: str, *, pool_size: int = 2, timeout: float = 5.0, **kw: Any) -> Any:
        cls = getattr(package, self.class_name)
        extra = {"min_size": 1} if "Postgres" in self.class_name else {"max_overflow": 0}
        return cls(url, pool_size=pool_size, **{self.timeout_key: timeout}, **extra, **kw)


POSTGRES_SYNC = [
    Backend("psycopg", "PostgresDatabase", "timeout"),
    Backend("sqlalchemy", "SQLAlchemyDatabase", "pool_timeout"),
]
POSTGRES_ASYNC = [
    Backend("psycopg_async", "AsyncPostgresDatabase", "timeout"),
    Backend("sqlalchemy_async", "AsyncSQLAlchemyDatabase", "pool_timeout"),
]
WRONG = "wr0ng-Pa55-never-shown"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalPostgresCluster]:
    try:
        server = LocalPostgresCluster(database="credentials", host_auth="scram-sha-256")
    except ClusterError as exc:
        skip_or_fail(request.config, str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Role:
    """A login role of the cluster whose password the test rotates."""

    def __init__(self, cluster: LocalPostgresCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.password = f"{name}-first-Pa55"
        self.asked = 0
        self._admin(f"CREATE ROLE {name} LOGIN PASSWORD '{self.password}'")

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.cluster.socket_url, autocommit=True) as conn:
            conn.execute(sql)

    def rotate(self) -> None:
        self.password = f"{self.name}-second-Pa55"
        self._admin(f"ALTER ROLE {self.name} PASSWORD '{self.password}'")

    def current(self) -> str:
        self.asked += 1
        return self.password

    @property
    def url(self) -> str:
        return f"postgresql://{self.name}@127.0.0.1:{self.cluster.port}/{self.cluster.database}"


def _role(cluster: LocalPostgresCluster, backend: Backend) -> Role:
    return Role(cluster, f"app_{backend.id}_{uuid.uuid4().hex[:8]}")


def _current_user(conn: Any) -> Any:
    return conn.execute("SELECT current_user AS u").fetchone()["u"]


def _assert_masked(exc: BaseException, secret: str) -> None:
    text = "".join(traceback.format_exception(exc))
    assert secret not in text


@pytest.mark.parametrize("backend", POSTGRES_SYNC, ids=str)
def test_password_callable_follows_a_rotation(
    cluster: LocalPostgresCluster, backend: Backend
) -> None:
    role = _role(cluster, backend)
    db = backend.make(role.url, pool_size=2, timeout=5.0, password=role.current)
    try:
        old = db.get_connection()  # made with the first password
        assert _current_user(old) == role.name
        role.rotate()
        new = db.get_connection()  # a new physical connection: asks for the password again
        try:
            assert _current_user(new) == role.name
            assert _current_user(old) == role.name, "an open connection outlives a rotation"
        finally:
            new.close()
            old.close()
        assert role.asked >= 2
        assert role.password not in repr(db)
    finally:
        db.shutdown()


@pytest.mark.parametrize("backend", POSTGRES_ASYNC, ids=str)
async def test_async_password_callable_follows_a_rotation(
    cluster: LocalPostgresCluster, backend: Backend
) -> None:
    role = _role(cluster, backend)

    async def token() -> str:  # e.g. an IAM token fetched over the network
        return role.current()

    db = backend.make(role.url, pool_size=2, timeout=5.0, password=token)
    try:
        old = await db.get_connection()
        row = await (await old.execute("SELECT current_user AS u")).fetchone()
        assert row["u"] == role.name
        role.rotate()
        new = await db.get_connection()
        try:
            row = await (await new.execute("SELECT current_user AS u")).fetchone()
            assert row["u"] == role.name
            row = await (await old.execute("SELECT 1 AS one")).fetchone()
            assert row["one"] == 1, "an open connection outlives a rotation"
        finally:
            await new.close()
            await old.close()
        assert role.asked >= 2
    finally:
        await db.shutdown()


@pytest.mark.parametrize("backend", POSTGRES_SYNC, ids=str)
def test_wrong_or_failing_password_is_unavailable_and_masked(
    cluster: LocalPostgresCluster, backend: Backend
) -> None:
    role = _role(cluster, backend)
    db = backend.make(role.url, pool_size=1, timeout=1.0, password=lambda: WRONG)
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            db.get_connection()
        _assert_masked(info.value, WRONG)
    finally:
        db.shutdown()

    def broken() -> str:
        raise RuntimeError("token service down")

    db = backend.make(role.url, pool_size=1, timeout=1.0, password=broken)
    try:
        with pytest.raises(DatabaseUnavailableError, match="password callable failed"):
            db.get_connection()
    finally:
        db.shutdown()


@pytest.mark.parametrize("backend", POSTGRES_SYNC, ids=str)
def test_static_password_and_argument_checks(
    cluster: LocalPostgresCluster, backend: Backend
) -> None:
    role = _role(cluster, backend)
    db = backend.make(role.url, pool_size=1, timeout=5.0, password=role.password)
    try:
        with db.transaction() as conn:
            assert _current_user(conn) == role.name
        assert role.password not in repr(db)
    finally:
        db.shutdown()
    with_password = role.url.replace("@", f":{role.password}@")
    with pytest.raises(ConfigurationError, match="in one place") as info:
        backend.make(with_password, password=role.password)
    _assert_masked(info.value, role.password)

    async def coroutine_function() -> str:
        return role.password

    with pytest.raises(ConfigurationError, match="coroutine function"):
        backend.make(role.url, password=coroutine_function)
    bad: Callable[..., Any] = backend.make
    with pytest.raises(ConfigurationError, match="password must be a string or a callable"):
        bad(role.url, password=12345)
