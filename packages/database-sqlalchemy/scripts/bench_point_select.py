"""Point-select throughput: SQLAlchemyDatabase vs raw SQLAlchemy, interleaved (not a test).

Usage::

    python packages/database-sqlalchemy/scripts/bench_point_select.py \
        postgresql://postgres@127.0.0.1:5432/test [--rounds 15] [--per-round 400]

Two families are measured, each interleaved round by round so drift hits all variants alike:

1. One transaction per point select (checkout, BEGIN, SELECT, COMMIT, checkin):
   ``db.transaction()`` + ``conn.execute(":id")`` against ``engine.begin()`` + ``text()``,
   each with pre-ping on and off (ours pings only connections idle > 0.5 s; SQLAlchemy's own
   ``pool_pre_ping`` pings on every checkout).
2. Statements inside one open transaction, isolating statement overhead:
   ``exec_driver_sql`` with ``convert_named`` vs ``execute(text())`` vs our ``conn.execute``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy import text

from structum_lab.plugins.database.params import convert_named
from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

SQL = "SELECT id, name FROM {table} WHERE id = :id"


def _interleave(
    variants: dict[str, Callable[[int], None]], rounds: int, per_round: int
) -> dict[str, float]:
    """Run every variant ``per_round`` times per round, in a rotating order; median ops/s."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for variant in variants.values():  # warm-up: pools filled, caches primed
        variant(per_round // 4 or 1)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            variants[name](per_round)
            samples[name].append(per_round / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    """Run both families and print median throughput with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a PostgreSQL URL (the table is created and dropped)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=400)
    args = parser.parse_args()

    table = f"structum_bench_{uuid.uuid4().hex[:8]}"
    sql = SQL.format(table=table)
    ids = [random.randint(1, 1000) for _ in range(4096)]  # noqa: S311 - not cryptography

    ours = SQLAlchemyDatabase(args.url, pool_size=1, max_overflow=0)
    ours_no_ping = SQLAlchemyDatabase(args.url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    sa_url = ours.engine.url
    raw = sqlalchemy.create_engine(sa_url, pool_size=1, max_overflow=0)
    raw_ping = sqlalchemy.create_engine(sa_url, pool_size=1, max_overflow=0, pool_pre_ping=True)

    with ours.transaction() as conn:
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute(
            f"INSERT INTO {table} SELECT g, 'user ' || g FROM generate_series(1, 1000) AS g"
        )
    statement = text(sql)

    def ours_tx(db: SQLAlchemyDatabase) -> Callable[[int], None]:
        def run(n: int) -> None:
            for i in range(n):
                with db.transaction() as conn:
                    conn.execute(sql, {"id": ids[i & 4095]}).fetchone()

        return run

    def raw_tx(engine: sqlalchemy.Engine) -> Callable[[int], None]:
        def run(n: int) -> None:
            for i in range(n):
                with engine.begin() as conn:
                    conn.execute(statement, {"id": ids[i & 4095]}).fetchone()

        return run

    per_tx = _interleave(
        {
            "SQLAlchemyDatabase (pre_ping=True, idle-only)": ours_tx(ours),
            "SQLAlchemyDatabase (pre_ping=False)": ours_tx(ours_no_ping),
            "engine.begin()+text() (no pre_ping)": raw_tx(raw),
            "engine.begin()+text() (pool_pre_ping=True)": raw_tx(raw_ping),
        },
        args.rounds,
        args.per_round,
    )

    # statement overhead inside one transaction
    converted = convert_named(sql, raw.dialect.paramstyle)
    sa_conn = raw.connect()
    ours_conn = ours_no_ping.get_connection()

    def driver_sql(n: int) -> None:
        for i in range(n):
            sa_conn.exec_driver_sql(convert_named(sql, "pyformat").sql, {"id": ids[i & 4095]})

    def text_sql(n: int) -> None:
        for i in range(n):
            sa_conn.execute(statement, {"id": ids[i & 4095]})

    def ours_sql(n: int) -> None:
        for i in range(n):
            ours_conn.execute(sql, {"id": ids[i & 4095]})

    per_stmt = _interleave(
        {
            "exec_driver_sql + convert_named": driver_sql,
            "execute(text())": text_sql,
            "SQLAlchemyConnection.execute (rows as dicts)": ours_sql,
        },
        args.rounds,
        args.per_round * 2,
    )
    sa_conn.close()
    ours_conn.close()

    with ours.transaction() as conn:
        conn.execute(f"DROP TABLE {table}")
    for db in (ours, ours_no_ping):
        db.shutdown()
    for engine in (raw, raw_ping):
        engine.dispose()

    _report("one transaction per point select", per_tx, "engine.begin()+text() (no pre_ping)")
    _report("statements inside one transaction", per_stmt, "execute(text())")
    print(f"\n(converted statement: {converted.sql!r})")


def _report(title: str, results: dict[str, Any], baseline: str) -> None:
    print(f"\n{title} (median ops/s; ratio to {baseline!r})")
    base = results[baseline]
    for name, ops in results.items():
        print(f"  {name:48s} {ops:10.0f}   x{ops / base:.3f}")


if __name__ == "__main__":
    main()
