"""``health_check()`` latency against a bare ``SELECT 1`` round trip.

The reference is the cheapest possible probe: ``SELECT 1`` on a connection that is already open,
in autocommit (one round trip, no pool). ``health_check()`` has to check a connection out of its
pool, probe it, give it back and grade the result; the issue allows it 1.5x the bare round trip.
The raw pool and engine probes are shown for context (a checkout, BEGIN, SELECT 1, COMMIT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from ..context import Context
from ..harness import (
    Comparison,
    Measurement,
    Side,
    Versus,
    Worker,
    as_latency,
    async_rate,
    at_most,
    optional,
    sync_rate,
)
from ..setup_db import sqlalchemy_url

BARE = "SELECT 1, open autocommit psycopg connection (raw)"
RAW_POOL = "psycopg_pool checkout + SELECT 1 (raw)"
RAW_ENGINE = "engine.connect() + SELECT 1 (raw)"
PG_DB = "PostgresDatabase.health_check()"
SA_DB = "SQLAlchemyDatabase.health_check()"
ABARE = "SELECT 1, open autocommit AsyncConnection (raw)"
RAW_APOOL = "AsyncConnectionPool checkout + SELECT 1 (raw)"
RAW_AENGINE = "AsyncEngine.connect() + SELECT 1 (raw)"
APG_DB = "AsyncPostgresDatabase.health_check()"
ASA_DB = "AsyncSQLAlchemyDatabase.health_check()"

SELECT_ONE = text("SELECT 1")


def _micros(op: Callable[[Worker], object]) -> Callable[[float], Measurement]:
    def measure(seconds: float) -> Measurement:
        return as_latency(sync_rate(op, 1, seconds))

    return measure


def _amicros(
    loop: asyncio.AbstractEventLoop, op: Callable[[Worker], Awaitable[object]]
) -> Callable[[float], Measurement]:
    def measure(seconds: float) -> Measurement:
        return as_latency(loop.run_until_complete(async_rate(op, 1, seconds)))

    return measure


def _check_healthy(result: Any) -> None:
    # A probe that fails fast would look wonderfully cheap: only a HEALTHY answer counts.
    if result.status.value != "healthy":
        raise RuntimeError(f"health_check() returned {result.status.value}: {result.message}")


def health_sync(ctx: Context) -> Generator[Comparison, None, None]:
    """PostgresDatabase / SQLAlchemyDatabase ``health_check()`` vs a bare round trip."""
    missing: dict[str, str] = {}
    bare = psycopg.connect(ctx.url, autocommit=True)
    pool = ConnectionPool(ctx.url, min_size=1, max_size=1, open=False)
    pool.open(wait=True)
    engine = create_engine(sqlalchemy_url(ctx.url), pool_size=1, max_overflow=0)

    def make_pg() -> Any:
        from structum_lab.plugins.database.postgres import PostgresDatabase

        return PostgresDatabase(ctx.url, pool_size=1, min_size=1, max_size=1)

    def make_sa() -> Any:
        from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

        return SQLAlchemyDatabase(ctx.url, pool_size=1, max_overflow=0)

    pg_db = optional(PG_DB, missing, make_pg)
    sa_db = optional(SA_DB, missing, make_sa)
    try:

        def bare_op(_w: Worker) -> None:
            bare.execute("SELECT 1").fetchone()

        def pool_op(_w: Worker) -> None:
            with pool.connection() as conn:
                conn.execute("SELECT 1").fetchone()

        def engine_op(_w: Worker) -> None:
            with engine.connect() as conn:
                conn.execute(SELECT_ONE).fetchone()

        def health_of(database: Any) -> Callable[[Worker], None]:
            def op(_w: Worker) -> None:
                database.health_check()

            return op

        sides = [
            Side(BARE, _micros(bare_op)),
            Side(RAW_POOL, _micros(pool_op), (Versus(BARE),)),
            Side(RAW_ENGINE, _micros(engine_op), (Versus(BARE),)),
        ]
        for name, database, raw in ((PG_DB, pg_db, RAW_POOL), (SA_DB, sa_db, RAW_ENGINE)):
            if database is None:
                continue

            def warm(database: Any = database) -> None:
                _check_healthy(database.health_check())
                sync_rate(health_of(database), 1, ctx.warmup_seconds)

            sides.append(
                Side(
                    name,
                    _micros(health_of(database)),
                    (Versus(BARE, at_most(1.5)), Versus(raw)),
                    warmup=warm,
                )
            )
        yield Comparison(
            id="health/sync",
            title="health_check() latency vs a bare SELECT 1 round trip",
            unit="µs",
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
        bare.close()


def health_async(ctx: Context) -> Generator[Comparison, None, None]:
    """AsyncPostgresDatabase / AsyncSQLAlchemyDatabase ``health_check()`` vs a bare round trip."""
    missing: dict[str, str] = {}
    loop = asyncio.new_event_loop()

    async def open_all() -> tuple[psycopg.AsyncConnection[Any], AsyncConnectionPool[Any], Any]:
        bare = await psycopg.AsyncConnection.connect(ctx.url, autocommit=True)
        apool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            ctx.url, min_size=1, max_size=1, open=False
        )
        await apool.open(wait=True)
        engine = create_async_engine(sqlalchemy_url(ctx.url), pool_size=1, max_overflow=0)
        return bare, apool, engine

    def make_pg() -> Any:
        from structum_lab.plugins.database.postgres import AsyncPostgresDatabase

        return AsyncPostgresDatabase(ctx.url, pool_size=1, min_size=1, max_size=1)

    def make_sa() -> Any:
        from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

        return AsyncSQLAlchemyDatabase(ctx.url, pool_size=1, max_overflow=0)

    bare, apool, engine = loop.run_until_complete(open_all())

    async def build(name: str, factory: Callable[[], Any]) -> Any:
        # Built inside the loop: an asyncio pool belongs to the loop it is created in.
        return optional(name, missing, factory)

    pg_db = loop.run_until_complete(build(APG_DB, make_pg))
    sa_db = loop.run_until_complete(build(ASA_DB, make_sa))
    try:

        async def bare_op(_w: Worker) -> None:
            await (await bare.execute("SELECT 1")).fetchone()

        async def pool_op(_w: Worker) -> None:
            async with apool.connection() as conn:
                await (await conn.execute("SELECT 1")).fetchone()

        async def engine_op(_w: Worker) -> None:
            async with engine.connect() as conn:
                (await conn.execute(SELECT_ONE)).fetchone()

        def health_of(database: Any) -> Callable[[Worker], Awaitable[None]]:
            async def op(_w: Worker) -> None:
                await database.health_check()

            return op

        sides = [
            Side(ABARE, _amicros(loop, bare_op)),
            Side(RAW_APOOL, _amicros(loop, pool_op), (Versus(ABARE),)),
            Side(RAW_AENGINE, _amicros(loop, engine_op), (Versus(ABARE),)),
        ]
        for name, database, raw in ((APG_DB, pg_db, RAW_APOOL), (ASA_DB, sa_db, RAW_AENGINE)):
            if database is None:
                continue

            def warm(database: Any = database) -> None:
                _check_healthy(loop.run_until_complete(database.health_check()))
                loop.run_until_complete(async_rate(health_of(database), 1, ctx.warmup_seconds))

            sides.append(
                Side(
                    name,
                    _amicros(loop, health_of(database)),
                    (Versus(ABARE, at_most(1.5)), Versus(raw)),
                    warmup=warm,
                )
            )
        yield Comparison(
            id="health/async",
            title="health_check() latency (asyncio) vs a bare SELECT 1 round trip",
            unit="µs",
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
            await bare.close()

        loop.run_until_complete(close_all())
        loop.close()
