"""Resident memory over many transactions: a wrapper must not grow (caches are bounded).

Each side first runs a warm-up (statement caches, prepared statements, pool connections filled),
then its RSS (``VmRSS`` from ``/proc/self/status``) is read, the point-select transaction of
:mod:`.point_select` runs 100,000 times in one worker, and RSS is read again after a full garbage
collection. The raw psycopg_pool side shows the driver's own drift for comparison.
"""

from __future__ import annotations

import asyncio
import gc
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from psycopg_pool import ConnectionPool

from ..context import Context
from ..harness import Comparison, Measurement, Side, Worker, below, optional
from .point_select import DICT_ROWS, SQL_NAMED, SQL_PSYCOPG, user_id

RAW_POOL = "psycopg_pool, dict_row (raw)"
PG_DB = "PostgresDatabase"
APG_DB = "AsyncPostgresDatabase"
SA_DB = "SQLAlchemyDatabase"
ASA_DB = "AsyncSQLAlchemyDatabase"

LIMIT_MB = 5.0


def rss_bytes() -> int:
    """Current resident set size (Linux ``VmRSS``; elsewhere the peak, which only grows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _growth_mb(run: Callable[[int], object], warmup: int, transactions: int) -> Measurement:
    run(warmup)
    gc.collect()
    before = rss_bytes()
    cpu = time.process_time()
    run(transactions)
    cpu = time.process_time() - cpu
    gc.collect()
    return Measurement((rss_bytes() - before) / (1024 * 1024), cpu * 1e6 / transactions)


def _sync_runner(op: Callable[[Worker], object]) -> Callable[[int], None]:
    worker = Worker(0, random.Random(7))

    def run(count: int) -> None:
        for _ in range(count):
            op(worker)

    return run


def _async_runner(
    loop: asyncio.AbstractEventLoop, op: Callable[[Worker], Awaitable[object]]
) -> Callable[[int], None]:
    worker = Worker(0, random.Random(7))

    async def many(count: int) -> None:
        for _ in range(count):
            await op(worker)

    def run(count: int) -> None:
        loop.run_until_complete(many(count))

    return run


def memory(ctx: Context) -> Generator[Comparison, None, None]:
    """RSS growth over ``ctx.memory_transactions`` point-select transactions per wrapper."""
    transactions = ctx.memory_transactions
    warmup = max(50, min(5_000, transactions // 20))
    missing: dict[str, str] = {}
    loop = asyncio.new_event_loop()
    pool = ConnectionPool(ctx.url, min_size=1, max_size=1, kwargs=DICT_ROWS, open=False)
    pool.open(wait=True)

    def make_pg() -> Any:
        from structum_lab.plugins.database.postgres import PostgresDatabase

        return PostgresDatabase(ctx.url, pool_size=1, min_size=1, max_size=1)

    def make_sa() -> Any:
        from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

        return SQLAlchemyDatabase(ctx.url, pool_size=1, max_overflow=0)

    def make_apg() -> Any:
        from structum_lab.plugins.database.postgres import AsyncPostgresDatabase

        return AsyncPostgresDatabase(ctx.url, pool_size=1, min_size=1, max_size=1)

    def make_asa() -> Any:
        from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

        return AsyncSQLAlchemyDatabase(ctx.url, pool_size=1, max_overflow=0)

    async def build(name: str, factory: Callable[[], Any]) -> Any:
        return optional(name, missing, factory)

    sync_dbs = {PG_DB: optional(PG_DB, missing, make_pg), SA_DB: optional(SA_DB, missing, make_sa)}
    async_dbs = {
        APG_DB: loop.run_until_complete(build(APG_DB, make_apg)),
        ASA_DB: loop.run_until_complete(build(ASA_DB, make_asa)),
    }
    try:

        def raw(worker: Worker) -> None:
            with pool.connection() as conn:
                conn.execute(SQL_PSYCOPG, (user_id(worker),)).fetchone()

        def sync_op(database: Any) -> Callable[[Worker], None]:
            def op(worker: Worker) -> None:
                with database.transaction() as conn:
                    conn.execute(SQL_NAMED, {"id": user_id(worker)}).fetchone()

            return op

        def async_op(database: Any) -> Callable[[Worker], Awaitable[None]]:
            async def op(worker: Worker) -> None:
                async with database.transaction() as conn:
                    await (await conn.execute(SQL_NAMED, {"id": user_id(worker)})).fetchone()

            return op

        def side(name: str, run: Callable[[int], None], limit: bool = True) -> Side:
            return Side(
                name,
                lambda _s: _growth_mb(run, warmup, transactions),
                limit=below(LIMIT_MB, "MB") if limit else None,
                warmup=lambda: None,  # the measurement warms up itself, before reading RSS
            )

        sides = [side(RAW_POOL, _sync_runner(raw), limit=False)]
        sides += [
            side(name, _sync_runner(sync_op(db))) for name, db in sync_dbs.items() if db is not None
        ]
        sides += [
            side(name, _async_runner(loop, async_op(db)))
            for name, db in async_dbs.items()
            if db is not None
        ]
        yield Comparison(
            id="memory",
            title=f"RSS growth over {transactions:,} point-select transactions (MB)",
            unit="MB",
            sides=sides,
            slice_seconds=0.0,
            rounds=1,
            unavailable=missing,
        )
    finally:
        for database in sync_dbs.values():
            if database is not None:
                database.shutdown()

        async def close_all() -> None:
            for database in async_dbs.values():
                if database is not None:
                    await database.shutdown()

        loop.run_until_complete(close_all())
        loop.close()
        pool.close()
