"""One operation per side, for the deterministic measurements (round trips and instructions).

Every workload is one kind of call (a point-select transaction, a single-statement call, a
TPC-B transaction, a health check) done by a backend or by the raw driver it wraps. The same
definition serves both measurements: counted through the round-trip proxy in this process, and
run in a child process under valgrind's callgrind (``python -m benchmarks.workloads NAME URL N``),
where only the measured loop is counted: it runs inside ``sys.call_tracing()``, a C function
nothing else calls, and callgrind is told to collect inside it only
(``--toggle-collect=sys_call_tracing``).
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["WORKLOADS", "Runner", "Workload", "open_workload"]

SQL_NAMED = "SELECT * FROM bench_users WHERE id = :id"
SQL_PSYCOPG = "SELECT * FROM bench_users WHERE id = %s"
SQL_DOLLAR = "SELECT * FROM bench_users WHERE id = $1"
USERS = 10_000
TPCB_SCALE = 2
# pgbench's tpcb-like script; see scenarios/tpcb.py.
TPCB_NAMED = (
    "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid",
    "SELECT abalance FROM pgbench_accounts WHERE aid = :aid",
    "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid",
    "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP)",
)
TPCB_PSYCOPG = tuple(
    s.replace(":delta", "%(delta)s")
    .replace(":aid", "%(aid)s")
    .replace(":tid", "%(tid)s")
    .replace(":bid", "%(bid)s")
    for s in TPCB_NAMED
)

SyncOp = Callable[[int], object]
AsyncOp = Callable[[int], Awaitable[object]]


@dataclass
class Runner:
    """An opened workload: ``run(n)`` does ``n`` operations; ``close()`` releases everything."""

    run: Callable[[int], None]
    close: Callable[[], None]


@dataclass(frozen=True)
class Workload:
    """A named operation and how to open it against a database URL."""

    name: str
    group: str  # what it is compared within (point-select, tpcb, health, ...)
    opener: Callable[[str], tuple[Any, Any, Any]]  # url -> (op, closer, loop or None)
    reference: str | None = None  # the workload it is measured against


def _sync(op: SyncOp, close: Callable[[], object]) -> tuple[Any, Any, Any]:
    return op, close, None


def _tpcb_params(i: int) -> dict[str, int]:
    rng = random.Random(i)
    return {
        "aid": rng.randint(1, 100_000 * TPCB_SCALE),
        "bid": rng.randint(1, TPCB_SCALE),
        "tid": rng.randint(1, 10 * TPCB_SCALE),
        "delta": rng.randint(-5000, 5000),
    }


def _user(i: int) -> int:
    return i % USERS + 1


# -- psycopg ------------------------------------------------------------------------------------
def _psycopg_pool(url: str) -> tuple[Any, Any, Any]:
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(url, min_size=1, max_size=1, kwargs={"row_factory": dict_row})
    pool.wait()

    def op(i: int) -> None:
        with pool.connection() as conn:
            conn.execute(SQL_PSYCOPG, (_user(i),)).fetchone()

    return _sync(op, pool.close)


def _psycopg_autocommit(url: str) -> tuple[Any, Any, Any]:
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    kwargs = {"row_factory": dict_row, "autocommit": True}
    pool = ConnectionPool(url, min_size=1, max_size=1, kwargs=kwargs)
    pool.wait()

    def op(i: int) -> None:
        with pool.connection() as conn:
            conn.execute(SQL_PSYCOPG, (_user(i),)).fetchone()

    return _sync(op, pool.close)


def _pg_db(url: str, **options: Any) -> Any:
    from structum_lab.plugins.database.postgres import PostgresDatabase

    # A huge idle window: a slow machine must not turn a measured call into one after idle.
    return PostgresDatabase(url, pool_size=1, min_size=1, check_idle_seconds=3600, **options)


def _pg_transaction(**options: Any) -> Callable[[str], tuple[Any, Any, Any]]:
    def opener(url: str) -> tuple[Any, Any, Any]:
        db = _pg_db(url)

        def op(i: int) -> None:
            with db.transaction(**options) as conn:
                conn.execute(SQL_NAMED, {"id": _user(i)}).fetchone()

        return _sync(op, db.shutdown)

    return opener


def _pg_fetchone(url: str) -> tuple[Any, Any, Any]:
    db = _pg_db(url)

    def op(i: int) -> None:
        db.fetchone(SQL_NAMED, {"id": _user(i)})

    return _sync(op, db.shutdown)


def _pg_health(url: str) -> tuple[Any, Any, Any]:
    db = _pg_db(url)
    return _sync(lambda i: db.health_check(), db.shutdown)


def _bare_select_one(url: str) -> tuple[Any, Any, Any]:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    return _sync(lambda i: conn.execute("SELECT 1").fetchone(), conn.close)


def _raw_tpcb(pipeline: bool) -> Callable[[str], tuple[Any, Any, Any]]:
    def opener(url: str) -> tuple[Any, Any, Any]:
        from contextlib import nullcontext

        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(url, min_size=1, max_size=1, kwargs={"row_factory": dict_row})
        pool.wait()
        upd_a, sel_a, upd_t, upd_b, ins_h = TPCB_PSYCOPG

        def op(i: int) -> None:
            params = _tpcb_params(i)
            with pool.connection() as conn, conn.pipeline() if pipeline else nullcontext():
                conn.execute(upd_a, params)
                cur = conn.execute(sel_a, params)
                conn.execute(upd_t, params)
                conn.execute(upd_b, params)
                conn.execute(ins_h, params)
                cur.fetchone()

        return _sync(op, pool.close)

    return opener


def _pg_tpcb(**options: Any) -> Callable[[str], tuple[Any, Any, Any]]:
    def opener(url: str) -> tuple[Any, Any, Any]:
        db = _pg_db(url)
        upd_a, sel_a, upd_t, upd_b, ins_h = TPCB_NAMED

        def op(i: int) -> None:
            params = _tpcb_params(i)
            with db.transaction(**options) as conn:
                conn.execute(upd_a, params)
                result = conn.execute(sel_a, params)
                conn.execute(upd_t, params)
                conn.execute(upd_b, params)
                conn.execute(ins_h, params)
                result.fetchone()

        return _sync(op, db.shutdown)

    return opener


# -- asyncio ------------------------------------------------------------------------------------
def _async(make: Callable[[], Awaitable[tuple[AsyncOp, Callable[[], Awaitable[object]]]]]) -> Any:
    loop = asyncio.new_event_loop()
    op, close = loop.run_until_complete(make())

    def closer() -> None:
        loop.run_until_complete(close())
        loop.close()

    return op, closer, loop


def _apsycopg_pool(url: str) -> tuple[Any, Any, Any]:
    async def make() -> tuple[AsyncOp, Callable[[], Awaitable[object]]]:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=1, max_size=1, kwargs={"row_factory": dict_row}, open=False
        )
        await pool.open(wait=True)

        async def op(i: int) -> None:
            async with pool.connection() as conn:
                cur = await conn.execute(SQL_PSYCOPG, (_user(i),))
                await cur.fetchone()

        return op, pool.close

    return _async(make)  # type: ignore[no-any-return]


def _apg_db(url: str) -> Any:
    from structum_lab.plugins.database.postgres import AsyncPostgresDatabase

    return AsyncPostgresDatabase(url, pool_size=1, min_size=1, check_idle_seconds=3600)


def _apg_transaction(url: str) -> tuple[Any, Any, Any]:
    async def make() -> tuple[AsyncOp, Callable[[], Awaitable[object]]]:
        db = _apg_db(url)
        await db.open()

        async def op(i: int) -> None:
            async with db.transaction() as conn:
                result = await conn.execute(SQL_NAMED, {"id": _user(i)})
                await result.fetchone()

        return op, db.shutdown

    return _async(make)  # type: ignore[no-any-return]


def _apg_fetchone(url: str) -> tuple[Any, Any, Any]:
    async def make() -> tuple[AsyncOp, Callable[[], Awaitable[object]]]:
        db = _apg_db(url)
        await db.open()

        async def op(i: int) -> None:
            await db.fetchone(SQL_NAMED, {"id": _user(i)})

        return op, db.shutdown

    return _async(make)  # type: ignore[no-any-return]


def _asyncpg(transaction: bool) -> Callable[[str], tuple[Any, Any, Any]]:
    def opener(url: str) -> tuple[Any, Any, Any]:
        async def make() -> tuple[AsyncOp, Callable[[], Awaitable[object]]]:
            import asyncpg

            conn = await asyncpg.connect(url)

            async def op(i: int) -> None:
                if transaction:
                    async with conn.transaction():
                        await conn.fetchrow(SQL_DOLLAR, _user(i))
                else:
                    await conn.fetchrow(SQL_DOLLAR, _user(i))

            return op, conn.close

        return _async(make)  # type: ignore[no-any-return]

    return opener


# -- SQLAlchemy ---------------------------------------------------------------------------------
def _sa_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def _sa_engine(url: str) -> tuple[Any, Any, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(_sa_url(url), pool_size=1, max_overflow=0)
    stmt = text(SQL_NAMED)

    def op(i: int) -> None:
        with engine.begin() as conn:
            conn.execute(stmt, {"id": _user(i)}).fetchone()

    return _sync(op, engine.dispose)


def _sa_db(url: str) -> tuple[Any, Any, Any]:
    from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

    db = SQLAlchemyDatabase(url, pool_size=1, max_overflow=0, pre_ping_idle_seconds=3600)

    def op(i: int) -> None:
        with db.transaction() as conn:
            conn.execute(SQL_NAMED, {"id": _user(i)}).fetchone()

    return _sync(op, db.shutdown)


def _sa_fetchone(url: str) -> tuple[Any, Any, Any]:
    from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

    db = SQLAlchemyDatabase(url, pool_size=1, max_overflow=0, pre_ping_idle_seconds=3600)
    return _sync(lambda i: db.fetchone(SQL_NAMED, {"id": _user(i)}), db.shutdown)


def _asa_fetchone(url: str) -> tuple[Any, Any, Any]:
    async def make() -> tuple[AsyncOp, Callable[[], Awaitable[object]]]:
        from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

        db = AsyncSQLAlchemyDatabase(url, pool_size=1, max_overflow=0, pre_ping_idle_seconds=3600)

        async def op(i: int) -> None:
            await db.fetchone(SQL_NAMED, {"id": _user(i)})

        return op, db.shutdown

    return _async(make)  # type: ignore[no-any-return]


def _asa_engine(url: str) -> tuple[Any, Any, Any]:
    async def make() -> tuple[AsyncOp, Callable[[], Awaitable[object]]]:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(_sa_url(url), pool_size=1, max_overflow=0)
        stmt = text(SQL_NAMED)

        async def op(i: int) -> None:
            async with engine.begin() as conn:
                (await conn.execute(stmt, {"id": _user(i)})).fetchone()

        return op, engine.dispose

    return _async(make)  # type: ignore[no-any-return]


def _asa_db(url: str) -> tuple[Any, Any, Any]:
    async def make() -> tuple[AsyncOp, Callable[[], Awaitable[object]]]:
        from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

        db = AsyncSQLAlchemyDatabase(url, pool_size=1, max_overflow=0, pre_ping_idle_seconds=3600)

        async def op(i: int) -> None:
            async with db.transaction() as conn:
                result = await conn.execute(SQL_NAMED, {"id": _user(i)})
                await result.fetchone()

        return op, db.shutdown

    return _async(make)  # type: ignore[no-any-return]


RAW_POOL = "psycopg_pool transaction (raw)"
RAW_APOOL = "AsyncConnectionPool transaction (raw)"
RAW_ENGINE = "engine.begin() (raw)"
RAW_AENGINE = "AsyncEngine.begin() (raw)"
RAW_PIPELINE = "psycopg_pool + conn.pipeline() (raw)"
BARE = "SELECT 1, open autocommit connection (raw)"

WORKLOADS: list[Workload] = [
    Workload(RAW_POOL, "point-select", _psycopg_pool),
    Workload("psycopg_pool autocommit, 1 statement (raw)", "point-select", _psycopg_autocommit),
    Workload("PostgresDatabase.transaction()", "point-select", _pg_transaction(), RAW_POOL),
    Workload(
        "PostgresDatabase.transaction(read_only=True)",
        "point-select",
        _pg_transaction(read_only=True),
        RAW_POOL,
    ),
    Workload("PostgresDatabase.fetchone()", "point-select", _pg_fetchone, RAW_POOL),
    Workload(RAW_APOOL, "point-select-async", _apsycopg_pool),
    Workload(
        "AsyncPostgresDatabase.transaction()", "point-select-async", _apg_transaction, RAW_APOOL
    ),
    Workload("AsyncPostgresDatabase.fetchone()", "point-select-async", _apg_fetchone, RAW_APOOL),
    Workload("asyncpg fetchrow, pinned (raw)", "point-select-async", _asyncpg(False), RAW_APOOL),
    Workload(
        "asyncpg transaction + fetchrow, pinned (raw)",
        "point-select-async",
        _asyncpg(True),
        RAW_APOOL,
    ),
    Workload(RAW_ENGINE, "point-select-sqlalchemy", _sa_engine),
    Workload("SQLAlchemyDatabase.transaction()", "point-select-sqlalchemy", _sa_db, RAW_ENGINE),
    Workload("SQLAlchemyDatabase.fetchone()", "point-select-sqlalchemy", _sa_fetchone, RAW_ENGINE),
    Workload(RAW_AENGINE, "point-select-sqlalchemy-async", _asa_engine),
    Workload(
        "AsyncSQLAlchemyDatabase.transaction()",
        "point-select-sqlalchemy-async",
        _asa_db,
        RAW_AENGINE,
    ),
    Workload(
        "AsyncSQLAlchemyDatabase.fetchone()",
        "point-select-sqlalchemy-async",
        _asa_fetchone,
        RAW_AENGINE,
    ),
    Workload("psycopg_pool TPC-B (raw)", "tpcb", _raw_tpcb(False)),
    Workload(RAW_PIPELINE, "tpcb", _raw_tpcb(True)),
    Workload("PostgresDatabase TPC-B", "tpcb", _pg_tpcb(), "psycopg_pool TPC-B (raw)"),
    Workload(
        "PostgresDatabase TPC-B, pipeline=True", "tpcb", _pg_tpcb(pipeline=True), RAW_PIPELINE
    ),
    Workload(BARE, "health", _bare_select_one),
    Workload("PostgresDatabase.health_check()", "health", _pg_health, BARE),
]
BY_NAME = {w.name: w for w in WORKLOADS}


def open_workload(workload: Workload, url: str) -> Runner:
    """Open ``workload`` against ``url``; its runner does ``n`` operations per ``run(n)``."""
    op, closer, loop = workload.opener(url)
    if loop is None:

        def run(n: int, start: int = 0) -> None:
            for i in range(start, start + n):
                op(i)

        return Runner(run, closer)

    async def many(n: int) -> None:
        for i in range(n):
            await op(i)

    def arun(n: int) -> None:
        loop.run_until_complete(many(n))

    return Runner(arun, closer)


def _child(argv: list[str]) -> int:
    """``python -m benchmarks.workloads NAME URL WARMUP N``: the callgrind child."""
    name, url, warmup, n = argv[0], argv[1], int(argv[2]), int(argv[3])
    runner = open_workload(BY_NAME[name], url)
    try:
        runner.run(warmup)
        sys.call_tracing(runner.run, (n,))  # callgrind collects inside this call only
    finally:
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
