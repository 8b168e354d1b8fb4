"""One point-select per transaction (seed §3), with 1 worker and with N concurrent workers.

The body is the seed's::

    with db.transaction() as conn:
        conn.execute("SELECT * FROM users WHERE id = :id", {"id": user_id}).fetchone()

and each raw side does the same work the way that driver's own documentation writes it. The
wrappers return rows as dicts (``user["username"]``), so the raw psycopg references use
psycopg's ``dict_row`` too: the same result, done by hand. The driver's default tuple rows are
shown beside them (what dicts cost is then visible). Every pool holds exactly N connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from ..context import Context
from ..harness import (
    Comparison,
    Side,
    Versus,
    Worker,
    at_least,
    loop_measure,
    optional,
    thread_measure,
)
from ..setup_db import USERS, sqlalchemy_url

# The wrappers' rows are dicts; so are the raw references' (same result, done by hand).
DICT_ROWS: dict[str, Any] = {"row_factory": dict_row}

SQL_NAMED = "SELECT * FROM bench_users WHERE id = :id"
SQL_PSYCOPG = "SELECT * FROM bench_users WHERE id = %s"
SQL_DOLLAR = "SELECT * FROM bench_users WHERE id = $1"

RAW_POOL = "psycopg_pool, dict_row (raw)"
RAW_POOL_TUPLES = "psycopg_pool, tuple rows (raw)"
PINNED = "pinned psycopg connection, no pool"
PG_DB = "PostgresDatabase"
PG_FETCHONE = "PostgresDatabase.fetchone() (one statement, no transaction block)"
APG_FETCHONE = "AsyncPostgresDatabase.fetchone() (one statement)"
ASYNCPG = "asyncpg fetchrow, pinned connection (raw)"
RAW_APOOL = "AsyncConnectionPool, dict_row (raw)"
RAW_APOOL_TUPLES = "AsyncConnectionPool, tuple rows (raw)"
APINNED = "pinned AsyncConnection, no pool"
APG_DB = "AsyncPostgresDatabase"
RAW_ENGINE = "engine.begin() (raw)"
RAW_ENGINE_PING = "engine.begin(), pool_pre_ping (raw)"
SA_DB_PING = "SQLAlchemyDatabase, pool_pre_ping=True"
SA_DB = "SQLAlchemyDatabase, pool_pre_ping=False"
RAW_AENGINE = "AsyncEngine.begin() (raw)"
RAW_AENGINE_PING = "AsyncEngine.begin(), pool_pre_ping (raw)"
ASA_DB_PING = "AsyncSQLAlchemyDatabase, pool_pre_ping=True"
ASA_DB = "AsyncSQLAlchemyDatabase, pool_pre_ping=False"


def user_id(worker: Worker) -> int:
    """A uniformly random existing user id (same sequence on every side)."""
    return worker.rng.randint(1, USERS)


def worker_counts(ctx: Context) -> list[int]:
    """1 worker, then N (once, if N is 1)."""
    return sorted({1, ctx.workers})


def _title(driver: str, workers: int) -> str:
    plural = "worker" if workers == 1 else "workers"
    return f"point-select per transaction · {driver} · {workers} {plural}"


def _ident(name: str, workers: int) -> str:
    return f"point-select/{name}/{workers}w"


def psycopg_sync(ctx: Context) -> Generator[Comparison, None, None]:
    """``PostgresDatabase`` vs ``psycopg_pool.ConnectionPool`` vs pinned connections."""
    size = ctx.workers
    missing: dict[str, str] = {}
    pool = ConnectionPool(ctx.url, min_size=size, max_size=size, kwargs=DICT_ROWS, open=False)
    pool.open(wait=True)
    tuple_pool = ConnectionPool(ctx.url, min_size=size, max_size=size, open=False)
    tuple_pool.open(wait=True)
    pinned = [psycopg.connect(ctx.url, row_factory=dict_row) for _ in range(size)]

    def make_db() -> Any:
        from structum_lab.plugins.database.postgres import PostgresDatabase

        return PostgresDatabase(ctx.url, pool_size=size, min_size=size, max_size=size)

    db = optional(PG_DB, missing, make_db)
    try:

        def raw(worker: Worker) -> None:
            with pool.connection() as conn:
                conn.execute(SQL_PSYCOPG, (user_id(worker),)).fetchone()

        def raw_tuples(worker: Worker) -> None:
            with tuple_pool.connection() as conn:
                conn.execute(SQL_PSYCOPG, (user_id(worker),)).fetchone()

        def pinned_op(worker: Worker) -> None:
            conn = pinned[worker.index]
            conn.execute(SQL_PSYCOPG, (user_id(worker),)).fetchone()
            conn.commit()

        def wrapped(worker: Worker) -> None:
            with db.transaction() as conn:
                conn.execute(SQL_NAMED, {"id": user_id(worker)}).fetchone()

        def single(worker: Worker) -> None:
            db.fetchone(SQL_NAMED, {"id": user_id(worker)})

        for workers in worker_counts(ctx):
            sides = [
                Side(RAW_POOL, thread_measure(raw, workers)),
                Side(RAW_POOL_TUPLES, thread_measure(raw_tuples, workers), (Versus(RAW_POOL),)),
                Side(PINNED, thread_measure(pinned_op, workers), (Versus(RAW_POOL),)),
            ]
            if db is not None:
                sides.append(
                    Side(
                        PG_DB, thread_measure(wrapped, workers), (Versus(RAW_POOL, at_least(0.95)),)
                    )
                )
                sides.append(
                    Side(
                        PG_FETCHONE,
                        thread_measure(single, workers),
                        (Versus(RAW_POOL, at_least(1.8)),),
                    )
                )
            yield Comparison(
                id=_ident("psycopg", workers),
                title=_title("psycopg", workers),
                unit="tx/s",
                sides=sides,
                slice_seconds=ctx.slice_seconds,
                rounds=ctx.rounds,
                unavailable=dict(missing),
            )
    finally:
        if db is not None:
            db.shutdown()
        for conn in pinned:
            conn.close()
        pool.close()
        tuple_pool.close()


def psycopg_async(ctx: Context) -> Generator[Comparison, None, None]:
    """``AsyncPostgresDatabase`` vs ``psycopg_pool.AsyncConnectionPool`` (asyncio tasks)."""
    size = ctx.workers
    missing: dict[str, str] = {}
    loop = asyncio.new_event_loop()

    async def open_all() -> tuple[
        AsyncConnectionPool[Any], AsyncConnectionPool[Any], list[psycopg.AsyncConnection[Any]], Any
    ]:
        apool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            ctx.url, min_size=size, max_size=size, kwargs=DICT_ROWS, open=False
        )
        await apool.open(wait=True)
        tuples: AsyncConnectionPool[Any] = AsyncConnectionPool(
            ctx.url, min_size=size, max_size=size, open=False
        )
        await tuples.open(wait=True)
        conns = [
            await psycopg.AsyncConnection.connect(ctx.url, row_factory=dict_row)
            for _ in range(size)
        ]

        def make_db() -> Any:
            from structum_lab.plugins.database.postgres import AsyncPostgresDatabase

            return AsyncPostgresDatabase(ctx.url, pool_size=size, min_size=size, max_size=size)

        return apool, tuples, conns, optional(APG_DB, missing, make_db)

    async def open_asyncpg() -> list[Any]:
        import asyncpg  # a benchmark dependency only: the async anchor

        return [await asyncpg.connect(ctx.url) for _ in range(size)]

    apool, tuple_apool, pinned, db = loop.run_until_complete(open_all())
    anchors = optional(ASYNCPG, missing, lambda: loop.run_until_complete(open_asyncpg()))
    try:

        async def raw(worker: Worker) -> None:
            async with apool.connection() as conn:
                cur = await conn.execute(SQL_PSYCOPG, (user_id(worker),))
                await cur.fetchone()

        async def raw_tuples(worker: Worker) -> None:
            async with tuple_apool.connection() as conn:
                cur = await conn.execute(SQL_PSYCOPG, (user_id(worker),))
                await cur.fetchone()

        async def pinned_op(worker: Worker) -> None:
            conn = pinned[worker.index]
            cur = await conn.execute(SQL_PSYCOPG, (user_id(worker),))
            await cur.fetchone()
            await conn.commit()

        async def wrapped(worker: Worker) -> None:
            async with db.transaction() as conn:
                result = await conn.execute(SQL_NAMED, {"id": user_id(worker)})
                await result.fetchone()

        async def single(worker: Worker) -> None:
            await db.fetchone(SQL_NAMED, {"id": user_id(worker)})

        async def asyncpg_op(worker: Worker) -> None:
            await anchors[worker.index].fetchrow(SQL_DOLLAR, user_id(worker))

        for workers in worker_counts(ctx):
            sides = [
                Side(RAW_APOOL, loop_measure(loop, raw, workers)),
                Side(
                    RAW_APOOL_TUPLES, loop_measure(loop, raw_tuples, workers), (Versus(RAW_APOOL),)
                ),
                Side(APINNED, loop_measure(loop, pinned_op, workers), (Versus(RAW_APOOL),)),
            ]
            if db is not None:
                sides.append(
                    Side(
                        APG_DB,
                        loop_measure(loop, wrapped, workers),
                        (Versus(RAW_APOOL, at_least(0.95)),),
                    )
                )
                sides.append(
                    Side(
                        APG_FETCHONE,
                        loop_measure(loop, single, workers),
                        (Versus(RAW_APOOL, at_least(1.8)),),
                    )
                )
            if anchors is not None:
                sides.append(
                    Side(ASYNCPG, loop_measure(loop, asyncpg_op, workers), (Versus(RAW_APOOL),))
                )
            yield Comparison(
                id=_ident("psycopg-async", workers),
                title=_title("psycopg async", workers),
                unit="tx/s",
                sides=sides,
                slice_seconds=ctx.slice_seconds,
                rounds=ctx.rounds,
                unavailable=dict(missing),
            )
    finally:

        async def close_all() -> None:
            if db is not None:
                await db.shutdown()
            for conn in pinned:
                await conn.close()
            for anchor in anchors or ():
                await anchor.close()
            await apool.close()
            await tuple_apool.close()

        loop.run_until_complete(close_all())
        loop.close()


def sqlalchemy_sync(ctx: Context) -> Generator[Comparison, None, None]:
    """``SQLAlchemyDatabase`` vs ``engine.begin()``, with and without ``pool_pre_ping``."""
    size = ctx.workers
    missing: dict[str, str] = {}
    url = sqlalchemy_url(ctx.url)
    engine = create_engine(url, pool_size=size, max_overflow=0)
    engine_ping = create_engine(url, pool_size=size, max_overflow=0, pool_pre_ping=True)
    stmt = text(SQL_NAMED)

    def make_db(pre_ping: bool) -> Any:
        from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

        return SQLAlchemyDatabase(ctx.url, pool_size=size, max_overflow=0, pool_pre_ping=pre_ping)

    db_ping = optional(SA_DB_PING, missing, lambda: make_db(True))
    db = optional(SA_DB, missing, lambda: make_db(False))
    try:

        def raw(worker: Worker) -> None:
            with engine.begin() as conn:
                conn.execute(stmt, {"id": user_id(worker)}).fetchone()

        def raw_ping(worker: Worker) -> None:
            with engine_ping.begin() as conn:
                conn.execute(stmt, {"id": user_id(worker)}).fetchone()

        def wrapped_with(database: Any) -> Any:
            def op(worker: Worker) -> None:
                with database.transaction() as conn:
                    conn.execute(SQL_NAMED, {"id": user_id(worker)}).fetchone()

            return op

        for workers in worker_counts(ctx):
            sides = [
                Side(RAW_ENGINE, thread_measure(raw, workers)),
                Side(RAW_ENGINE_PING, thread_measure(raw_ping, workers), (Versus(RAW_ENGINE),)),
            ]
            if db_ping is not None:
                sides.append(
                    Side(
                        SA_DB_PING,
                        thread_measure(wrapped_with(db_ping), workers),
                        (
                            Versus(RAW_ENGINE_PING, at_least(1.0)),
                            Versus(RAW_ENGINE, at_least(0.90)),
                        ),
                    )
                )
            if db is not None:
                sides.append(
                    Side(
                        SA_DB,
                        thread_measure(wrapped_with(db), workers),
                        (Versus(RAW_ENGINE, at_least(0.90)),),
                    )
                )
            yield Comparison(
                id=_ident("sqlalchemy", workers),
                title=_title("SQLAlchemy + psycopg", workers),
                unit="tx/s",
                sides=sides,
                slice_seconds=ctx.slice_seconds,
                rounds=ctx.rounds,
                unavailable=dict(missing),
            )
    finally:
        for database in (db_ping, db):
            if database is not None:
                database.shutdown()
        engine.dispose()
        engine_ping.dispose()


def sqlalchemy_async(ctx: Context) -> Generator[Comparison, None, None]:
    """``AsyncSQLAlchemyDatabase`` vs ``AsyncEngine.begin()``, with and without pre-ping."""
    size = ctx.workers
    missing: dict[str, str] = {}
    url = sqlalchemy_url(ctx.url)
    loop = asyncio.new_event_loop()
    stmt = text(SQL_NAMED)

    async def open_all() -> tuple[Any, Any, Any, Any]:
        engine = create_async_engine(url, pool_size=size, max_overflow=0)
        engine_ping = create_async_engine(url, pool_size=size, max_overflow=0, pool_pre_ping=True)

        def make_db(pre_ping: bool) -> Any:
            from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

            return AsyncSQLAlchemyDatabase(
                ctx.url, pool_size=size, max_overflow=0, pool_pre_ping=pre_ping
            )

        db_ping = optional(ASA_DB_PING, missing, lambda: make_db(True))
        db = optional(ASA_DB, missing, lambda: make_db(False))
        return engine, engine_ping, db_ping, db

    engine, engine_ping, db_ping, db = loop.run_until_complete(open_all())
    try:

        async def raw(worker: Worker) -> None:
            async with engine.begin() as conn:
                (await conn.execute(stmt, {"id": user_id(worker)})).fetchone()

        async def raw_ping(worker: Worker) -> None:
            async with engine_ping.begin() as conn:
                (await conn.execute(stmt, {"id": user_id(worker)})).fetchone()

        def wrapped_with(database: Any) -> Any:
            async def op(worker: Worker) -> None:
                async with database.transaction() as conn:
                    result = await conn.execute(SQL_NAMED, {"id": user_id(worker)})
                    await result.fetchone()

            return op

        for workers in worker_counts(ctx):
            sides = [
                Side(RAW_AENGINE, loop_measure(loop, raw, workers)),
                Side(
                    RAW_AENGINE_PING, loop_measure(loop, raw_ping, workers), (Versus(RAW_AENGINE),)
                ),
            ]
            if db_ping is not None:
                sides.append(
                    Side(
                        ASA_DB_PING,
                        loop_measure(loop, wrapped_with(db_ping), workers),
                        (
                            Versus(RAW_AENGINE_PING, at_least(1.0)),
                            Versus(RAW_AENGINE, at_least(0.90)),
                        ),
                    )
                )
            if db is not None:
                sides.append(
                    Side(
                        ASA_DB,
                        loop_measure(loop, wrapped_with(db), workers),
                        (Versus(RAW_AENGINE, at_least(0.90)),),
                    )
                )
            yield Comparison(
                id=_ident("sqlalchemy-async", workers),
                title=_title("SQLAlchemy asyncio + psycopg", workers),
                unit="tx/s",
                sides=sides,
                slice_seconds=ctx.slice_seconds,
                rounds=ctx.rounds,
                unavailable=dict(missing),
            )
    finally:

        async def close_all() -> None:
            for database in (db_ping, db):
                if database is not None:
                    await database.shutdown()
            await engine.dispose()
            await engine_ping.dispose()

        loop.run_until_complete(close_all())
        loop.close()
