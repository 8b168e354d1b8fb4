"""Inserting many rows with one ``executemany`` inside one transaction.

Each slice inserts the same rows (10,000 in a full run) into an emptied ``bench_insert`` table and
reports rows per second; emptying the table is outside the timed part. psycopg 3's
``executemany`` pipelines the statements; SQLAlchemy's ``text()`` executemany hands the batch to
that same ``cursor.executemany``; ``insert().returning()`` takes SQLAlchemy's
"insertmanyvalues" path (multi-row ``VALUES`` pages of 1,000 rows). The wrappers are measured
with the portable form (``:name`` and a dict per row) and, for PostgreSQL, also with psycopg's
own ``%s`` and tuples, the raw side's exact input.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from ..context import Context
from ..harness import Comparison, Measurement, Side, Versus, at_least, optional
from ..setup_db import sqlalchemy_url

INSERT_NAMED = (
    "INSERT INTO bench_insert (username, email, score) VALUES (:username, :email, :score)"
)
INSERT_PSYCOPG = "INSERT INTO bench_insert (username, email, score) VALUES (%s, %s, %s)"

RAW = "psycopg cursor.executemany (raw)"
PG_DB = "PostgresDatabase executemany"
PG_DB_NATIVE = "PostgresDatabase executemany, %s + tuples"
SA_TEXT = "SQLAlchemy text() executemany (raw)"
SA_IMV = "SQLAlchemy insert().returning(), insertmanyvalues (raw)"
SA_DB = "SQLAlchemyDatabase executemany"
ARAW = "psycopg AsyncCursor.executemany (raw)"
APG_DB = "AsyncPostgresDatabase executemany"
APG_DB_NATIVE = "AsyncPostgresDatabase executemany, %s + tuples"
ASA_TEXT = "SQLAlchemy asyncio text() executemany (raw)"
ASA_DB = "AsyncSQLAlchemyDatabase executemany"

_table = Table(
    "bench_insert",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("username", String(50)),
    Column("email", String(255)),
    Column("score", Float),
)


def _rows(count: int) -> tuple[list[tuple[str, str, float]], list[dict[str, Any]]]:
    tuples = [(f"user_{i}", f"user_{i}@example.com", i * 0.5) for i in range(count)]
    dicts = [{"username": u, "email": e, "score": s} for u, e, s in tuples]
    return tuples, dicts


def _truncate(admin: psycopg.Connection[Any]) -> None:
    admin.execute("TRUNCATE bench_insert RESTART IDENTITY")


def _timed(
    admin: psycopg.Connection[Any], count: int, seconds: float, work: Callable[[], object]
) -> Measurement:
    """Insert ``count`` rows into an empty table, again, until ``seconds`` of inserting passed."""
    busy = cpu = 0.0
    rows = 0
    while rows == 0 or busy < seconds:
        _truncate(admin)
        cpu_start = time.process_time()
        start = time.perf_counter()
        work()
        busy += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        rows += count
    return Measurement(rows / busy, cpu * 1e6 / rows)


def executemany_sync(ctx: Context) -> Generator[Comparison, None, None]:
    """PostgresDatabase / SQLAlchemyDatabase executemany vs psycopg and SQLAlchemy."""
    count = ctx.executemany_rows
    tuples, dicts = _rows(count)
    missing: dict[str, str] = {}
    admin = psycopg.connect(ctx.url, autocommit=True)
    pool = ConnectionPool(ctx.url, min_size=1, max_size=1, open=False)
    pool.open(wait=True)
    engine = create_engine(sqlalchemy_url(ctx.url), pool_size=1, max_overflow=0)
    stmt = text(INSERT_NAMED)

    def make_pg() -> Any:
        from structum_lab.plugins.database.postgres import PostgresDatabase

        return PostgresDatabase(ctx.url, pool_size=1, min_size=1, max_size=1)

    def make_sa() -> Any:
        from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

        return SQLAlchemyDatabase(ctx.url, pool_size=1, max_overflow=0)

    pg_db = optional(PG_DB, missing, make_pg)
    sa_db = optional(SA_DB, missing, make_sa)
    try:

        def raw() -> None:
            with pool.connection() as conn:
                conn.cursor().executemany(INSERT_PSYCOPG, tuples)

        def sa_text() -> None:
            with engine.begin() as conn:
                conn.execute(stmt, dicts)

        def sa_imv() -> None:
            with engine.begin() as conn:
                conn.execute(insert(_table).returning(_table.c.id), dicts).all()

        def wrapped_with(
            database: Any, sql: str = INSERT_NAMED, rows: list[Any] = dicts
        ) -> Callable[[], None]:
            def work() -> None:
                with database.transaction() as conn:
                    conn.executemany(sql, rows)

            return work

        def side(name: str, work: Callable[[], object], *versus: Versus) -> Side:
            return Side(name, lambda seconds: _timed(admin, count, seconds, work), versus)

        sides = [
            side(RAW, raw),
            side(SA_TEXT, sa_text, Versus(RAW)),
            side(SA_IMV, sa_imv, Versus(RAW)),
        ]
        if pg_db is not None:
            sides.append(side(PG_DB, wrapped_with(pg_db), Versus(RAW, at_least(0.95))))
            native = wrapped_with(pg_db, INSERT_PSYCOPG, tuples)
            sides.append(side(PG_DB_NATIVE, native, Versus(RAW)))
        if sa_db is not None:
            sides.append(
                side(SA_DB, wrapped_with(sa_db), Versus(SA_TEXT, at_least(0.95)), Versus(RAW))
            )
        yield Comparison(
            id="executemany/sync",
            title=f"executemany, {count:,} rows in one transaction",
            unit="rows/s",
            sides=sides,
            slice_seconds=ctx.slice_seconds,
            rounds=ctx.rounds,
            unavailable=missing,
        )
    finally:
        for database in (pg_db, sa_db):
            if database is not None:
                database.shutdown()
        engine.dispose()
        pool.close()
        _truncate(admin)
        admin.close()


def executemany_async(ctx: Context) -> Generator[Comparison, None, None]:
    """The asyncio twins: AsyncPostgresDatabase / AsyncSQLAlchemyDatabase executemany."""
    count = ctx.executemany_rows
    tuples, dicts = _rows(count)
    missing: dict[str, str] = {}
    admin = psycopg.connect(ctx.url, autocommit=True)
    loop = asyncio.new_event_loop()
    stmt = text(INSERT_NAMED)

    async def open_all() -> tuple[AsyncConnectionPool[Any], Any, Any, Any]:
        apool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            ctx.url, min_size=1, max_size=1, open=False
        )
        await apool.open(wait=True)
        engine = create_async_engine(sqlalchemy_url(ctx.url), pool_size=1, max_overflow=0)

        def make_pg() -> Any:
            from structum_lab.plugins.database.postgres import AsyncPostgresDatabase

            return AsyncPostgresDatabase(ctx.url, pool_size=1, min_size=1, max_size=1)

        def make_sa() -> Any:
            from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

            return AsyncSQLAlchemyDatabase(ctx.url, pool_size=1, max_overflow=0)

        return apool, engine, optional(APG_DB, missing, make_pg), optional(ASA_DB, missing, make_sa)

    apool, engine, pg_db, sa_db = loop.run_until_complete(open_all())
    try:

        async def raw() -> None:
            async with apool.connection() as conn:
                await conn.cursor().executemany(INSERT_PSYCOPG, tuples)

        async def sa_text() -> None:
            async with engine.begin() as conn:
                await conn.execute(stmt, dicts)

        def wrapped_with(
            database: Any, sql: str = INSERT_NAMED, rows: list[Any] = dicts
        ) -> Callable[[], Awaitable[None]]:
            async def work() -> None:
                async with database.transaction() as conn:
                    await conn.executemany(sql, rows)

            return work

        def side(name: str, work: Callable[[], Awaitable[object]], *versus: Versus) -> Side:
            def run() -> None:
                loop.run_until_complete(work())

            return Side(name, lambda seconds: _timed(admin, count, seconds, run), versus)

        sides = [side(ARAW, raw), side(ASA_TEXT, sa_text, Versus(ARAW))]
        if pg_db is not None:
            sides.append(side(APG_DB, wrapped_with(pg_db), Versus(ARAW, at_least(0.95))))
            native = wrapped_with(pg_db, INSERT_PSYCOPG, tuples)
            sides.append(side(APG_DB_NATIVE, native, Versus(ARAW)))
        if sa_db is not None:
            sides.append(
                side(ASA_DB, wrapped_with(sa_db), Versus(ASA_TEXT, at_least(0.95)), Versus(ARAW))
            )
        yield Comparison(
            id="executemany/async",
            title=f"executemany (asyncio), {count:,} rows in one transaction",
            unit="rows/s",
            sides=sides,
            slice_seconds=ctx.slice_seconds,
            rounds=ctx.rounds,
            unavailable=missing,
        )
    finally:

        async def close_all() -> None:
            for database in (pg_db, sa_db):
                if database is not None:
                    await database.shutdown()
            await engine.dispose()
            await apool.close()

        loop.run_until_complete(close_all())
        loop.close()
        _truncate(admin)
        admin.close()
