"""In-memory databases for the unit tests: core's real transaction machinery, a recorded log.

They subclass core's ``SyncDatabaseBase`` / ``AsyncDatabaseBase``, so ``transaction()``, nesting and
``health_check()`` behave as on the real backends; what reaches the "server" is appended to
``log`` (``begin``, ``commit``, ``rollback``, ``shutdown``...). The integration suite runs the same
paths against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from typing_extensions import Self

from structum_lab.plugins.database import (
    AsyncConnection,
    Connection,
    HealthResult,
    PoolInfo,
    set_database,
)
from structum_lab.plugins.database.base import AsyncDatabaseBase, SyncDatabaseBase
from structum_lab.plugins.database.interfaces import Params
from structum_lab.plugins.database.registry import clear_databases
from structum_lab.plugins.database.results import AsyncBufferedResult, BufferedResult


class FakeConnection(Connection):
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self._result: BufferedResult | None = None

    def execute(self, sql: str, params: Params = None) -> BufferedResult:
        self.db.log.append(f"execute {sql}")
        self._result = BufferedResult([{"sql": sql}])
        return self._result

    def executemany(self, sql: str, params_seq: Iterable[Params]) -> BufferedResult:
        return self.execute(sql)

    @property
    def last_result(self) -> BufferedResult | None:
        return self._result

    def commit(self) -> None:
        self.db.log.append("commit")

    def rollback(self) -> None:
        self.db.log.append("rollback")

    def close(self) -> None:
        self.db.log.append("close")

    @contextmanager
    def savepoint(self, name: str | None = None) -> Iterator[Self]:
        self.db.log.append("savepoint")
        try:
            yield self
        except BaseException:
            self.db.log.append("rollback to savepoint")
            raise
        self.db.log.append("release savepoint")


class FakeDatabase(SyncDatabaseBase[FakeConnection]):
    """A sync database whose "server" is ``log``; ``commit_error`` makes COMMIT fail."""

    def __init__(
        self,
        url: str = "fake://user:hunter2@host/db",
        *,
        pool_max: int | None = 4,
        health: HealthResult | None = None,
        commit_error: BaseException | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(url, name=name)
        self.log: list[str] = []
        self.options: list[dict[str, Any]] = []
        self.begin_threads: list[int] = []
        self.checked_out = 0
        self.pool_max = pool_max
        self.health = health
        self.health_calls = 0
        self.commit_error = commit_error
        self.down = False

    @classmethod
    def from_config(cls, namespace: str = "database", **overrides: Any) -> Self:
        return cls(f"fake://{namespace}", name=namespace)

    def _begin(self, **options: Any) -> FakeConnection:
        self.options.append(options)
        self.begin_threads.append(threading.get_ident())
        self.checked_out += 1
        self.log.append("begin")
        return FakeConnection(self)

    def _end(self, conn: FakeConnection, *, commit: bool) -> None:
        try:
            if commit and self.commit_error is not None:
                self.log.append("commit failed")
                raise self.commit_error
            self.log.append("commit" if commit else "rollback")
        finally:
            self.checked_out -= 1

    def _probe(self) -> None:
        if self.down:
            raise ConnectionError("connection refused")

    def health_check(self) -> HealthResult:
        self.health_calls += 1
        return self.health or super().health_check()

    def get_pool_info(self) -> PoolInfo:
        info: PoolInfo = {
            "checked_out": self.checked_out,
            "available": 0,
            "total": self.checked_out,
            "overflow": 0,
        }
        if self.pool_max is not None:
            info["max"] = self.pool_max
        return info

    def shutdown(self) -> None:
        self.log.append("shutdown")
        self._closed = True


class AsyncFakeConnection(AsyncConnection):
    def __init__(self, db: AsyncFakeDatabase) -> None:
        self.db = db
        self._result: AsyncBufferedResult | None = None

    async def execute(self, sql: str, params: Params = None) -> AsyncBufferedResult:
        self.db.log.append(f"execute {sql}")
        self._result = AsyncBufferedResult(BufferedResult([{"sql": sql}]))
        return self._result

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> AsyncBufferedResult:
        return await self.execute(sql)

    @property
    def last_result(self) -> AsyncBufferedResult | None:
        return self._result

    async def commit(self) -> None:
        self.db.log.append("commit")

    async def rollback(self) -> None:
        self.db.log.append("rollback")

    async def close(self) -> None:
        self.db.log.append("close")

    @asynccontextmanager
    async def savepoint(self, name: str | None = None) -> AsyncIterator[Self]:
        self.db.log.append("savepoint")
        try:
            yield self
        except BaseException:
            self.db.log.append("rollback to savepoint")
            raise
        self.db.log.append("release savepoint")


class AsyncFakeDatabase(AsyncDatabaseBase[AsyncFakeConnection]):
    """Async twin of :class:`FakeDatabase`; ``health_delay`` makes the probe slow."""

    def __init__(
        self,
        url: str = "fake://user:hunter2@host/db",
        *,
        health: HealthResult | None = None,
        commit_error: BaseException | None = None,
        health_delay: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__(url, name=name)
        self.log: list[str] = []
        self.options: list[dict[str, Any]] = []
        self.checked_out = 0
        self.health = health
        self.health_calls = 0
        self.health_delay = health_delay
        self.commit_error = commit_error
        self.opened = False

    @classmethod
    def from_config(cls, namespace: str = "database", **overrides: Any) -> Self:
        return cls(f"fake://{namespace}", name=namespace)

    async def open(self) -> None:
        self.opened = True
        self.log.append("open")

    async def _begin(self, **options: Any) -> AsyncFakeConnection:
        self.options.append(options)
        self.checked_out += 1
        self.log.append("begin")
        return AsyncFakeConnection(self)

    async def _end(self, conn: AsyncFakeConnection, *, commit: bool) -> None:
        try:
            if commit and self.commit_error is not None:
                self.log.append("commit failed")
                raise self.commit_error
            self.log.append("commit" if commit else "rollback")
        finally:
            self.checked_out -= 1

    async def _probe(self) -> None:
        await asyncio.sleep(self.health_delay)

    async def health_check(self) -> HealthResult:
        self.health_calls += 1
        if self.health is not None:
            await asyncio.sleep(self.health_delay)
            return self.health
        return await super().health_check()

    def get_pool_info(self) -> PoolInfo:
        return {
            "checked_out": self.checked_out,
            "available": 0,
            "total": self.checked_out,
            "overflow": 0,
            "max": 4,
        }

    async def shutdown(self) -> None:
        self.log.append("shutdown")
        self._closed = True


@pytest.fixture
def fake_db() -> Callable[..., FakeDatabase]:
    return FakeDatabase


@pytest.fixture
def async_fake_db() -> Callable[..., AsyncFakeDatabase]:
    return AsyncFakeDatabase


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    """Each test starts with no database registered; the previous ones come back afterwards."""
    registered = clear_databases()
    try:
        yield
    finally:
        clear_databases()
        for name, db in registered.items():
            set_database(db, name)
