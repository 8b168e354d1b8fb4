"""transaction(timeout=...) on SQLite: the client-side deadline interrupts a runaway statement."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from structum_lab.plugins.database import StatementTimeoutError
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase

# Counts to a billion: minutes of work unless interrupted.
RUNAWAY = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
    "SELECT count(*) FROM n"
)


def run_runaway(db: SQLAlchemyDatabase) -> None:
    with db.transaction(timeout=0.2) as conn:
        conn.execute(RUNAWAY)


def test_sync_sqlite_statement_is_interrupted(tmp_path: Path) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'd.sqlite3'}", pool_size=1, max_overflow=0)
    try:
        began = time.monotonic()
        with pytest.raises(StatementTimeoutError, match=r"0\.2s"):
            run_runaway(db)
        assert time.monotonic() - began < 5.0
        assert db.fetchone("SELECT 1 AS one") == {"one": 1}  # the pool still serves
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


async def test_async_sqlite_statement_is_interrupted(tmp_path: Path) -> None:
    db = AsyncSQLAlchemyDatabase(
        f"sqlite:///{tmp_path / 'd.sqlite3'}", pool_size=1, max_overflow=0, transaction_timeout=0.2
    )
    try:
        with pytest.raises(StatementTimeoutError):
            async with db.transaction() as conn:
                await conn.execute(RUNAWAY)
        assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
    finally:
        await db.shutdown()


@pytest.mark.parametrize(
    ("url", "is_async", "expected"),
    [
        ("postgresql+psycopg://u@h/db", False, {"connect_timeout": 4}),
        ("mysql+pymysql://u@h/db", False, {"connect_timeout": 3.5}),
        ("mysql+aiomysql://u@h/db", True, {"connect_timeout": 3.5}),
        ("postgresql+psycopg://u@h/db?connect_timeout=9", False, {}),
        ("sqlite:///x.db", False, {}),
    ],
)
def test_connect_timeout_in_the_driver_s_words(
    url: str, is_async: bool, expected: dict[str, float]
) -> None:
    from sqlalchemy.engine import make_url

    from structum_lab.plugins.database.sqlalchemy._urls import connect_arguments

    assert connect_arguments(make_url(url), 3.5, is_async=is_async) == expected
    assert connect_arguments(make_url(url), None, is_async=is_async) == {}


def test_connect_timeout_defaults_to_five_seconds_and_connect_args_are_kept() -> None:
    db = SQLAlchemyDatabase("postgresql://u@localhost/db")
    assert db.connect_timeout == 5.0
    db.shutdown()
    db = SQLAlchemyDatabase("postgresql://u@localhost/db", connect_args={"connect_timeout": 11})
    try:
        cparams = db._sync_engine.dialect.create_connect_args(db._sync_engine.url)[1]
        assert db._engine_any.pool is not None
        assert cparams is not None
    finally:
        db.shutdown()
