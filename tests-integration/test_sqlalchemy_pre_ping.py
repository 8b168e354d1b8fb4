"""Idle-connection validation against a real PostgreSQL: a connection killed server-side while it
sits in the pool is replaced on checkout without the caller seeing an error."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from structum_lab.plugins.database import DatabaseUnavailableError
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase

WINDOW = 0.2


def _terminate(url: str, pid: int) -> None:
    # a separate raw superuser connection, outside the pool under test
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert row == (True,)
        # wait until the backend is really gone
        for _ in range(100):
            alive = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            if alive.fetchone() is None:
                return
            time.sleep(0.01)


def _count_pings(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record each ping the pool sends (instrumentation; the ping itself still runs)."""
    pings: list[object] = []
    engine = db.engine if isinstance(db, SQLAlchemyDatabase) else db.engine.sync_engine
    original = engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return bool(original(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return pings


def test_killed_idle_connection_is_replaced(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = SQLAlchemyDatabase(
        postgres_server_url, pool_size=1, max_overflow=0, pre_ping_idle_seconds=WINDOW
    )
    pings = _count_pings(db, monkeypatch)
    try:
        with db.transaction() as conn:
            first_pid = conn.execute("SELECT pg_backend_pid() AS pid").scalar()
        # busy connections are not pinged: no round trip on a checkout within the window
        for _ in range(20):
            with db.transaction() as conn:
                conn.execute("SELECT 1")
        assert pings == []

        _terminate(postgres_server_url, first_pid)
        time.sleep(WINDOW + 0.1)
        with db.transaction() as conn:  # the caller sees no error
            second_pid = conn.execute("SELECT pg_backend_pid() AS pid").scalar()
        assert second_pid != first_pid
        assert len(pings) == 1
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


async def test_killed_idle_connection_is_replaced_async(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncSQLAlchemyDatabase(
        postgres_server_url, pool_size=1, max_overflow=0, pre_ping_idle_seconds=WINDOW
    )
    pings = _count_pings(db, monkeypatch)
    try:
        async with db.transaction() as conn:
            first_pid = await (await conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
        for _ in range(20):
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
        assert pings == []

        await asyncio.to_thread(_terminate, postgres_server_url, first_pid)
        await asyncio.sleep(WINDOW + 0.1)
        async with db.transaction() as conn:
            second_pid = await (await conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
        assert second_pid != first_pid
        assert len(pings) == 1
    finally:
        await db.shutdown()


def test_without_pre_ping_the_first_statement_replaces_the_dead_connection(
    postgres_server_url: str,
) -> None:
    # No check at checkout: the first statement meets the dead connection, which is replaced,
    # and the statement runs again on a new one; the caller sees nothing.
    db = SQLAlchemyDatabase(postgres_server_url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    try:
        with db.transaction() as conn:
            pid = conn.execute("SELECT pg_backend_pid() AS pid").scalar()
        _terminate(postgres_server_url, pid)
        time.sleep(WINDOW + 0.1)
        with db.transaction() as conn:
            assert conn.execute("SELECT pg_backend_pid() AS pid").scalar() != pid
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


def test_connection_killed_mid_transaction(postgres_server_url: str) -> None:
    db = SQLAlchemyDatabase(postgres_server_url, pool_size=1, max_overflow=0)
    try:

        def killed_midway() -> None:
            with db.transaction() as conn:
                pid = conn.execute("SELECT pg_backend_pid() AS pid").scalar()
                _terminate(postgres_server_url, pid)
                conn.execute("SELECT 1")

        with pytest.raises(DatabaseUnavailableError) as info:
            killed_midway()
        assert "postgresql://" in str(info.value)
        assert db.get_pool_info()["checked_out"] == 0
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()
