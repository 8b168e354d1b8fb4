from __future__ import annotations

import asyncio
import re
import time

import pytest

from structum_lab.plugins.database import (
    AsyncDatabaseInterface,
    DatabaseClosedError,
    DatabaseUnavailableError,
    HealthStatus,
    PoolTimeoutError,
    SerializationError,
)
from structum_lab.plugins.database.testing import (
    AsyncMockConnection,
    AsyncMockDatabase,
    MockDatabase,
    MockScript,
    async_isolated,
)


async def test_records_and_answers_like_the_sync_twin(async_mock_db: AsyncMockDatabase) -> None:
    assert isinstance(async_mock_db, AsyncDatabaseInterface)
    async_mock_db.on(re.compile("FROM users"), rows=[{"id": 1, "username": "ann"}])
    async with async_mock_db.transaction() as conn:
        result = await conn.execute("SELECT * FROM users WHERE id = $1", [1])
        assert await result.fetchone() == {"id": 1, "username": "ann"}
        await conn.execute("SELECT * FROM users")
        assert await conn.fetchall() == [{"id": 1, "username": "ann"}]
        rows = [row async for row in await conn.execute("SELECT * FROM users")]
        assert rows == [{"id": 1, "username": "ann"}]
        batch = await conn.executemany("INSERT INTO t VALUES (:a)", [{"a": 1}, {"a": 2}])
        assert batch.rowcount == 2
    assert len(async_mock_db.queries) == 4
    assert async_mock_db.queries[0].params == (1,)
    async_mock_db.assert_committed()
    async_mock_db.assert_executed(re.compile("FROM users"), times=3)


async def test_nesting_savepoints_and_rollback(async_mock_db: AsyncMockDatabase) -> None:
    async with async_mock_db.transaction() as outer:
        await outer.execute("INSERT INTO a VALUES (1)")
        with pytest.raises(SerializationError):  # noqa: PT012
            async with async_mock_db.transaction() as inner:
                assert inner is outer
                async_mock_db.fail_next(error="serialization")
                await inner.execute("UPDATE a SET x = 1")
        async with outer.savepoint() as same:
            await same.execute("SELECT 1")
    (tx,) = async_mock_db.transactions
    assert tx.committed
    assert [sp.status for sp in tx.savepoints] == ["rolled_back", "released"]
    with pytest.raises(ValueError, match="boom"):  # noqa: PT012
        async with async_mock_db.transaction() as conn:
            await conn.execute("SELECT 1")
            raise ValueError("boom")
    async_mock_db.assert_rolled_back()


async def test_child_tasks_get_their_own_connections(async_mock_db: AsyncMockDatabase) -> None:
    async def one(i: int) -> None:
        async with async_mock_db.transaction() as conn:
            await conn.execute("SELECT :i", {"i": i})
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one(i) for i in range(3)))
    assert len(async_mock_db.transactions) == 3
    assert async_mock_db.get_pool_info()["total"] == 3


async def test_faults_pool_and_health(async_mock_db: AsyncMockDatabase) -> None:
    async_mock_db.fail_next()
    conn = await async_mock_db.get_connection()
    with pytest.raises(DatabaseUnavailableError):
        await conn.execute("SELECT 1")
    await conn.rollback()
    await conn.close()
    assert async_mock_db.get_pool_info()["total"] == 0

    async_mock_db.exhaust_pool()
    with pytest.raises(PoolTimeoutError):
        async with async_mock_db.transaction():
            pass

    async_mock_db.set_health(delay=0.3)
    started = time.perf_counter()
    health = await async_mock_db.health_check()
    assert time.perf_counter() - started >= 0.3
    assert health.status is HealthStatus.DEGRADED
    async_mock_db.set_health(HealthStatus.UNHEALTHY, message="down for maintenance")
    assert (await async_mock_db.health_check()).message == "down for maintenance"
    async_mock_db.offline = True
    assert (await async_mock_db.health_check()).status is HealthStatus.UNHEALTHY
    with pytest.raises(DatabaseUnavailableError):
        async with async_mock_db.transaction():
            pass


async def test_async_pool_waits_for_a_release() -> None:
    db = AsyncMockDatabase(pool_size=1, pool_timeout=0.05)
    held = await db.get_connection()
    with pytest.raises(PoolTimeoutError, match="checked_out=1"):
        async with db.transaction():
            pass
    db._pool.timeout = 5.0

    async def release_soon() -> None:
        await asyncio.sleep(0.05)
        assert db.get_pool_info()["waiting"] == 1
        await held.close()

    releaser = asyncio.create_task(release_soon())
    async with db.transaction() as conn:
        await conn.execute("SELECT 1")
    await releaser
    await db.shutdown()
    with pytest.raises(DatabaseClosedError):
        await db.get_connection()


async def test_one_script_drives_both_twins() -> None:
    script = MockScript()
    script.on("SELECT 1", rows=[{"one": 1}])
    sync_db, async_db = MockDatabase(script=script), AsyncMockDatabase(script=script)
    with sync_db.transaction() as conn:
        assert conn.execute("SELECT 1").scalar() == 1
    async with async_db.transaction() as aconn:
        assert await (await aconn.execute("SELECT 1")).scalar() == 1
    assert len(script.queries) == 2
    assert sync_db.queries is async_db.queries


async def test_async_isolation_rolls_back(async_mock_db: AsyncMockDatabase) -> None:
    async with async_isolated(async_mock_db) as db, db.transaction() as conn:
        await conn.execute("INSERT INTO a VALUES (1)")
    (tx,) = async_mock_db.transactions
    assert tx.rolled_back
    assert tx.savepoints[0].status == "released"


async def test_standalone_async_connection() -> None:
    class Owner:
        queries: list[object] = []

    async with AsyncMockConnection(Owner()) as conn:
        await conn.execute("SELECT 1")
    assert len(Owner.queries) == 1
    assert repr(conn) == "<AsyncMockConnection closed>"
