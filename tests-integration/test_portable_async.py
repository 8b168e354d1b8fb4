"""The portable API on every asyncio backend, against real servers (twin of test_portable_sync).

Only what ``AsyncDatabaseInterface`` promises is used here, so every backend in ``ASYNC_BACKENDS``
(SQLAlchemy on PostgreSQL/MariaDB/SQLite, psycopg) runs the same tests unchanged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from structum_lab.plugins.database import (
    DatabaseClosedError,
    HealthStatus,
    IntegrityError,
    PoolTimeoutError,
    QueryError,
    StatementTimeoutError,
)

_ID = {
    "postgresql": "id SERIAL PRIMARY KEY",
    "mysql": "id INTEGER AUTO_INCREMENT PRIMARY KEY",
    "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
}


@pytest.fixture
async def table(async_db: Any, async_backend: Any) -> AsyncIterator[str]:
    """A fresh table ``(id, name UNIQUE, qty)`` with a unique name, dropped afterwards."""
    name = f"structum_t_{uuid.uuid4().hex[:10]}"
    async with async_db.transaction() as conn:
        await conn.execute(
            f"CREATE TABLE {name} ({_ID[async_backend.dialect]}, "
            "name VARCHAR(50) NOT NULL UNIQUE, qty INTEGER NOT NULL DEFAULT 0)"
        )
    yield name
    if not getattr(async_db, "closed", False):
        async with async_db.transaction() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")


async def _names(db: Any, table: str) -> list[str]:
    async with db.transaction() as conn:
        result = await conn.execute(f"SELECT name FROM {table} ORDER BY name")
        return [row["name"] async for row in result]


async def _insert(conn: Any, table: str, name: str, qty: int = 0) -> None:
    await conn.execute(
        f"INSERT INTO {table} (name, qty) VALUES (:name, :qty)", {"name": name, "qty": qty}
    )


async def test_commit_persists(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        await _insert(conn, table, "alice")
    assert await _names(async_db, table) == ["alice"]


async def test_rollback_on_exception_reraises_and_writes_nothing(async_db: Any, table: str) -> None:
    class Boom(Exception):
        pass

    async def failing() -> None:
        async with async_db.transaction() as conn:
            await _insert(conn, table, "ghost")
            raise Boom

    with pytest.raises(Boom):
        await failing()
    assert await _names(async_db, table) == []
    assert async_db.get_pool_info()["checked_out"] == 0


async def test_nested_transaction_is_a_savepoint(async_db: Any, table: str) -> None:
    async def inner_fails() -> None:
        async with async_db.transaction() as inner:
            await _insert(inner, table, "b")
            raise ZeroDivisionError

    async with async_db.transaction() as outer:
        await _insert(outer, table, "a")
        with pytest.raises(ZeroDivisionError):
            await inner_fails()
        await _insert(outer, table, "c")
    assert await _names(async_db, table) == ["a", "c"]


async def test_child_tasks_get_their_own_connections(async_db: Any, table: str) -> None:
    async def count_rows() -> int:
        async with async_db.transaction() as conn:
            result = await conn.execute(f"SELECT count(*) AS n FROM {table}")
            return int(await result.scalar())

    async with async_db.transaction() as conn:
        await _insert(conn, table, "uncommitted")
        # tasks started inside the transaction do not join it: they cannot see its row
        assert list(await asyncio.gather(count_rows(), count_rows())) == [0, 0]
        assert await count_rows() == 1  # the same task nests as a savepoint and sees it
    assert await count_rows() == 1


async def test_conn_savepoint(async_db: Any, table: str) -> None:
    async def failing_savepoint(conn: Any) -> None:
        async with conn.savepoint():
            await _insert(conn, table, "dropped")
            await _insert(conn, table, "kept")  # unique violation inside the savepoint

    async with async_db.transaction() as conn:
        async with conn.savepoint():
            await _insert(conn, table, "kept")
        with pytest.raises(IntegrityError):
            await failing_savepoint(conn)
        await _insert(conn, table, "after")
    assert await _names(async_db, table) == ["after", "kept"]


async def test_raw_savepoint_sql(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        await _insert(conn, table, "order")
        await conn.execute("SAVEPOINT sp1")
        try:
            await _insert(conn, table, "order")  # duplicate
        except IntegrityError:
            await conn.execute("ROLLBACK TO SAVEPOINT sp1")
        await _insert(conn, table, "more")
    assert await _names(async_db, table) == ["more", "order"]


async def test_rowcount(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        for name, qty in (("a", 1), ("b", 1), ("c", 2)):
            await _insert(conn, table, name, qty)
        updated = await conn.execute(f"UPDATE {table} SET qty = qty + 10 WHERE qty = :q", {"q": 1})
        assert updated.rowcount == 2
        deleted = await conn.execute(f"DELETE FROM {table} WHERE qty > :q", {"q": 10})
        assert deleted.rowcount == 2
        none = await conn.execute(f"DELETE FROM {table} WHERE name = :n", {"n": "zzz"})
        assert none.rowcount == 0


async def test_fetching_a_statement_without_rows_is_empty(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        result = await conn.execute(f"UPDATE {table} SET qty = 1 WHERE name = :n", {"n": "zzz"})
        assert await result.fetchone() is None
        assert await result.fetchall() == []
        assert await conn.fetchmany(3) == []


async def test_insert_returning(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        result = await conn.execute(
            f"INSERT INTO {table} (name, qty) VALUES (:n, :q) RETURNING id, name",
            {"n": "ret", "q": 3},
        )
        row = await result.fetchone()
        assert row is not None
        assert row["id"] > 0
        assert row["name"] == "ret"
        assert type(row) is dict


async def test_fetch_variants(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        for i in range(5):
            await _insert(conn, table, f"n{i}", i)
    query = f"SELECT name, qty FROM {table} ORDER BY qty"
    async with async_db.transaction() as conn:
        result = await conn.execute(query)
        assert await result.fetchone() == {"name": "n0", "qty": 0}
        assert await result.fetchmany(size=2) == [
            {"name": "n1", "qty": 1},
            {"name": "n2", "qty": 2},
        ]
        assert await result.fetchall() == [{"name": "n3", "qty": 3}, {"name": "n4", "qty": 4}]
        assert await result.fetchone() is None

        count = await conn.execute(f"SELECT count(*) AS n FROM {table}")
        assert await count.scalar() == 5
        assert [row["qty"] async for row in await conn.execute(query)] == [0, 1, 2, 3, 4]

        await conn.execute(f"SELECT name FROM {table} WHERE qty = :q", {"q": 4})
        assert await conn.fetchone() == {"name": "n4"}
        await conn.execute(query)
        assert len(await conn.fetchmany(3)) == 3
        assert len(await conn.fetchall()) == 2


async def test_executemany(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        await conn.executemany(
            f"INSERT INTO {table} (name, qty) VALUES (:name, :qty)",
            [{"name": f"m{i}", "qty": i} for i in range(3)],
        )
    assert await _names(async_db, table) == ["m0", "m1", "m2"]


async def test_get_connection_commit_rollback_close(async_db: Any, table: str) -> None:
    conn = await async_db.get_connection()
    try:
        await _insert(conn, table, "committed")
        await conn.commit()
        await _insert(conn, table, "rolled-back")
        await conn.rollback()
        await _insert(conn, table, "closed-uncommitted")
    finally:
        await conn.close()
    assert await _names(async_db, table) == ["committed"]
    assert async_db.get_pool_info()["checked_out"] == 0


async def test_pool_info_keys(async_db: Any) -> None:
    info = async_db.get_pool_info()
    assert {"checked_out", "available", "total", "overflow"} <= set(info)
    async with async_db.transaction() as conn:
        await conn.execute("SELECT 1")
        assert async_db.get_pool_info()["checked_out"] == 1
    assert async_db.get_pool_info()["checked_out"] == 0


async def test_health_check(async_db: Any) -> None:
    result = await async_db.health_check()
    assert result.status is HealthStatus.HEALTHY
    assert result.latency_ms > 0
    assert result.message


async def test_pool_exhaustion(
    async_backend: Any, backend_url: Callable[[Any], str], table: str
) -> None:
    db = async_backend.make(backend_url(async_backend), pool_size=1, timeout=0.3)
    try:
        held = await db.get_connection()
        start = time.perf_counter()
        with pytest.raises(PoolTimeoutError) as info:
            async with db.transaction():
                pass
        assert time.perf_counter() - start < 3
        assert "checked_out=1" in str(info.value)
        await held.close()
        async with db.transaction() as conn:
            one = await conn.execute("SELECT 1 AS one")
            assert await one.scalar() == 1
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()


async def test_syntax_error(async_db: Any) -> None:
    with pytest.raises(QueryError) as info:
        async with async_db.transaction() as conn:
            await conn.execute("SELEC 1")
    assert info.value.sqlstate is not None
    assert info.value.sqlstate.startswith("42")
    assert async_db.get_pool_info()["checked_out"] == 0
    async with async_db.transaction() as conn:
        two = await conn.execute("SELECT 2 AS two")
        assert await two.scalar() == 2


async def test_unique_violation(async_db: Any, table: str) -> None:
    async with async_db.transaction() as conn:
        await _insert(conn, table, "dup")
    with pytest.raises(IntegrityError) as info:
        async with async_db.transaction() as conn:
            await _insert(conn, table, "dup")
    assert info.value.sqlstate is not None
    assert info.value.sqlstate.startswith("23")
    assert isinstance(info.value.__cause__, Exception)
    assert async_db.get_pool_info()["checked_out"] == 0


async def test_transaction_after_shutdown(async_db: Any) -> None:
    await async_db.shutdown()
    with pytest.raises(DatabaseClosedError):
        async with async_db.transaction():
            pass
    assert async_db.get_pool_info()["checked_out"] == 0


async def test_colon_in_literal_is_untouched(async_db: Any) -> None:
    async with async_db.transaction() as conn:
        result = await conn.execute("SELECT ':name' AS lit, '50%' AS pct, :v AS v", {"v": 7})
        row = await result.fetchone()
    assert row is not None
    assert row["lit"] == ":name"
    assert row["pct"] == "50%"
    assert int(row["v"]) == 7


async def test_postgres_cast(async_db: Any, async_backend: Any) -> None:
    if async_backend.dialect != "postgresql":
        pytest.skip("'::' casts are PostgreSQL syntax")
    async with async_db.transaction() as conn:
        result = await conn.execute("SELECT :v::int + 1 AS n, '1'::text AS t", {"v": "41"})
        assert await result.fetchone() == {"n": 42, "t": "1"}


async def test_read_only_transaction(async_db: Any, table: str) -> None:
    with pytest.raises(QueryError):
        async with async_db.transaction(read_only=True) as conn:
            await _insert(conn, table, "nope")
    async with async_db.transaction(read_only=True) as conn:
        count = await conn.execute(f"SELECT count(*) AS n FROM {table}")
        assert await count.scalar() == 0
    assert await _names(async_db, table) == []


async def test_statement_timeout(async_backend: Any, backend_url: Callable[[Any], str]) -> None:
    # one connection, so the transaction after the timeout runs on the same one
    db = async_backend.make(backend_url(async_backend), pool_size=1)
    try:
        sleep, probe = {
            "postgresql": ("SELECT pg_sleep(3)", "SHOW statement_timeout"),
            "mysql": ("SELECT SLEEP(3)", "SELECT @@session.max_statement_time AS t"),  # MariaDB
        }.get(async_backend.dialect, (None, None))
        if sleep is None:  # SQLite has no statement timeout: the option is accepted and ignored
            async with db.transaction(timeout=0.2) as conn:
                one = await conn.execute("SELECT 1 AS one")
                assert await one.scalar() == 1
            return
        start = time.perf_counter()
        with pytest.raises(StatementTimeoutError):
            async with db.transaction(timeout=0.2) as conn:
                await conn.execute(sleep)
        assert time.perf_counter() - start < 2.5
        assert db.get_pool_info()["checked_out"] == 0
        async with db.transaction() as conn:
            value = await (await conn.execute(probe)).scalar()
            assert str(value) in ("0", "0.0")
    finally:
        await db.shutdown()
