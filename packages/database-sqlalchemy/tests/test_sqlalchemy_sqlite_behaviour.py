"""Behaviour on the embedded SQLite engine: memory databases, pools, sessions, idle pings."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool, StaticPool

from structum_lab.plugins.database import (
    DatabaseClosedError,
    HealthStatus,
    HealthThresholds,
    IntegrityError,
    PoolTimeoutError,
    QueryError,
)
from structum_lab.plugins.database.sqlalchemy import (
    AsyncSQLAlchemyDatabase,
    SQLAlchemyConnection,
    SQLAlchemyDatabase,
)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


def test_memory_database_is_shared_by_threads() -> None:
    db = SQLAlchemyDatabase("sqlite://", pool_size=5, pool_timeout=5)
    try:
        with db.transaction() as conn:
            conn.execute("CREATE TABLE t (v INTEGER)")

        def writer(value: int) -> None:
            with db.transaction() as conn:
                conn.execute("INSERT INTO t (v) VALUES (:v)", {"v": value})

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with db.transaction() as conn:
            assert conn.execute("SELECT count(*) AS n FROM t").scalar() == 8
        # one connection, handed to one transaction at a time
        assert db.get_pool_info()["max"] == 1
    finally:
        db.shutdown()


def test_memory_database_second_checkout_waits_then_times_out() -> None:
    db = SQLAlchemyDatabase("sqlite:///:memory:", pool_timeout=0.2)
    try:
        held = db.get_connection()
        start = time.perf_counter()
        with pytest.raises(PoolTimeoutError) as info:
            db.get_connection()
        # The 0.2 s given, not SQLAlchemy's 30 s default (a bound that load cannot reach).
        assert time.perf_counter() - start < 15
        assert "became free within 0.2s" in str(info.value)
        assert "checked_out=1" in str(info.value)
        assert info.value.pool_info["waiting"] == 1
        held.close()
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()


def test_sqlite_transactions_are_real(tmp_path: Path) -> None:
    # BEGIN is emitted up front, so DDL and SAVEPOINT take part in the transaction.
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'x.db'}")
    try:

        def create_then_fail() -> None:
            with db.transaction() as conn:
                conn.execute("CREATE TABLE t (v INTEGER UNIQUE)")
                raise RuntimeError

        def two_inserts(conn: SQLAlchemyConnection) -> None:
            with conn.savepoint("sp_named"):
                conn.execute("INSERT INTO t VALUES (2)")
                conn.execute("INSERT INTO t VALUES (1)")

        with pytest.raises(RuntimeError):
            create_then_fail()
        with db.transaction() as conn:
            names = conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchall()
            assert names == []
            conn.execute("CREATE TABLE t (v INTEGER UNIQUE)")
            conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(IntegrityError):
                two_inserts(conn)
        with db.transaction() as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [{"v": 1}]
    finally:
        db.shutdown()


def test_read_only_sqlite_transaction_and_restore(tmp_path: Path) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'ro.db'}", pool_size=1, max_overflow=0)
    try:
        with db.transaction() as conn:
            conn.execute("CREATE TABLE t (v INTEGER)")
        with pytest.raises(QueryError) as info, db.transaction(read_only=True) as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        assert info.value.sqlstate == "25006"
        # the same pooled connection is writable again
        with db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        assert db.get_pool_info()["total"] == 1
    finally:
        db.shutdown()


def test_orm_session_rolls_back_on_error(tmp_path: Path) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'orm.db'}")
    try:
        Base.metadata.create_all(db.engine)

        def add_then_fail() -> None:
            with db.get_session() as session:
                session.add(Note(text="lost"))
                session.flush()
                raise RuntimeError

        with pytest.raises(RuntimeError):
            add_then_fail()
        with db.get_session() as session:
            session.add(Note(text="kept"))
            session.commit()
        with db.get_session() as session:
            assert session.scalars(select(Note.text)).all() == ["kept"]
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()
    with pytest.raises(DatabaseClosedError):
        db.get_session()


@pytest.mark.parametrize("poolclass", [NullPool, StaticPool])
def test_pool_info_for_other_pools(tmp_path: Path, poolclass: type) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'p.db'}", poolclass=poolclass)
    try:
        with db.transaction() as conn:
            conn.execute("SELECT 1")
            assert db.get_pool_info()["checked_out"] == 1
        info = db.get_pool_info()
        assert info["checked_out"] == 0
        assert set(info) >= {"checked_out", "available", "total", "overflow", "max", "waiting"}
    finally:
        db.shutdown()


def test_idle_connections_are_pinged_recent_ones_are_not(tmp_path: Path) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'ping.db'}", pre_ping_idle_seconds=0.2)
    pings: list[object] = []
    dialect = db.engine.dialect
    original = dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return original(dbapi_connection)  # type: ignore[arg-type]

    dialect.do_ping = counting_ping  # type: ignore[method-assign]
    try:
        for _ in range(5):
            with db.transaction() as conn:
                conn.execute("SELECT 1")
        assert pings == []
        time.sleep(0.3)
        with db.transaction() as conn:
            conn.execute("SELECT 1")
        assert len(pings) == 1
    finally:
        db.shutdown()


def test_failed_ping_replaces_the_connection(tmp_path: Path) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'dead.db'}", pre_ping_idle_seconds=0.0)
    try:
        with db.transaction() as conn:
            first = conn.sqlalchemy_connection.connection.dbapi_connection
        assert first is not None
        first.close()  # the driver connection dies while idle in the pool
        time.sleep(0.01)
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
            assert conn.sqlalchemy_connection.connection.dbapi_connection is not first
    finally:
        db.shutdown()


def test_connection_api_after_close(tmp_path: Path) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        conn = db.get_connection()
        assert isinstance(conn, SQLAlchemyConnection)
        with pytest.raises(RuntimeError, match="no statement"):
            conn.fetchone()
        conn.execute("CREATE TABLE t (v INTEGER)")
        result = conn.executemany("INSERT INTO t VALUES (:v)", [{"v": 1}, {"v": 2}])
        assert result.rowcount == 2
        assert conn.executemany("INSERT INTO t VALUES (:v)", []).rowcount == 0
        conn.commit()
        conn.close()
        conn.close()  # idempotent
        assert conn.closed
        with pytest.raises(DatabaseClosedError):
            conn.execute("SELECT 1")
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()
    db.shutdown()  # idempotent
    assert db.health_check().status is HealthStatus.UNHEALTHY


def test_pool_timeout_is_catchable_as_sqlalchemy_timeout() -> None:
    db = SQLAlchemyDatabase("sqlite://", pool_timeout=0.1)
    try:
        with db.transaction(), pytest.raises(sqlalchemy.exc.TimeoutError):
            db.get_connection()
    finally:
        db.shutdown()


async def test_async_memory_database(tmp_path: Path) -> None:
    # The grade's latency part is not what this test is about (and varies with machine load).
    never_slow = HealthThresholds(degraded_latency_ms=86_400_000.0)
    db = AsyncSQLAlchemyDatabase(
        "sqlite+aiosqlite://", pool_timeout=0.2, health_thresholds=never_slow
    )
    try:
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE t (v INTEGER)")
            await conn.executemany("INSERT INTO t VALUES (:v)", [{"v": 1}, {"v": 2}])
        async with db.transaction() as conn:
            result = await conn.execute("SELECT v FROM t ORDER BY v")
            assert [row async for row in result] == [{"v": 1}, {"v": 2}]
            with pytest.raises(PoolTimeoutError):
                await db.get_connection()
        health = await db.health_check()
        assert health.status is HealthStatus.HEALTHY
    finally:
        await db.shutdown()


async def test_async_orm_session(tmp_path: Path) -> None:
    db = AsyncSQLAlchemyDatabase(f"sqlite:///{tmp_path / 'aorm.db'}")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with db.get_session() as session:
            session.add(Note(text="async"))
            await session.commit()
        async with db.get_session() as session:
            assert (await session.scalars(select(Note.text))).all() == ["async"]
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()
    with pytest.raises(DatabaseClosedError):
        db.get_session()
