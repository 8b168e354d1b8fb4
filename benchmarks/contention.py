"""SERIALIZABLE contention with and without ``run_transaction()``: the README's retry figures.

    python -m benchmarks.contention                    # every backend whose server answers
    python -m benchmarks.contention --workers 8 --transfers 300 --accounts 10 --only psycopg

Each backend runs the same workload twice: ``--workers`` threads (sync) or tasks (async) each make
``--transfers`` transfers between ``--accounts`` accounts in SERIALIZABLE transactions that read
both balances and write back computed ones, plus one ledger row keyed by the transfer.

- ``raw``: ``db.transaction()``; every serialization failure, deadlock or lock timeout reaches
  the caller, whose transfer is then not made.
- ``run_transaction``: ``db.run_transaction(fn)`` with the database's default retry settings.

Afterwards the ledger is checked against the balances: every ledger row applied exactly once
(0 lost, 0 doubled) and the total conserved. Servers: ``$STRUCTUM_TEST_POSTGRES_URL`` and
``$STRUCTUM_TEST_MYSQL_URL`` (``--pg-url``/``--mysql-url``); SQLite uses a temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from structum_lab.plugins.database import DatabaseError

_LOGGER = "structum_lab.plugins.database"


@dataclass
class Outcome:
    backend: str
    mode: str
    made: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    longest: float = 0.0  # seconds one transfer took, retries included
    ledger_ok: bool = False
    total_ok: bool = False


class _RetryCounter(logging.Handler):
    """Counts ``run_transaction`` retries by SQLSTATE (or error class) from its debug records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("run_transaction: retry") and record.args:
            args = tuple(record.args)
            with self._lock2:
                self.counts[str(args[4] or args[3])] += 1


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or type(exc).__name__)


def _backends(
    pg: str | None, mysql: str | None, sqlite: str, opts: dict[str, Any]
) -> list[tuple[str, bool, Callable[[], Any]]]:
    from structum_lab.plugins.database.postgres import AsyncPostgresDatabase, PostgresDatabase
    from structum_lab.plugins.database.sqlalchemy import (
        AsyncSQLAlchemyDatabase,
        SQLAlchemyDatabase,
    )

    size = {"pool_size": 16, "max_overflow": 0, **opts}
    out: list[tuple[str, bool, Callable[[], Any]]] = []
    if pg:
        out += [
            ("psycopg", False, lambda: PostgresDatabase(pg, pool_size=16, **opts)),
            ("psycopg-async", True, lambda: AsyncPostgresDatabase(pg, pool_size=16, **opts)),
            ("sqlalchemy-postgresql", False, lambda: SQLAlchemyDatabase(pg, **size)),
            ("sqlalchemy-postgresql-async", True, lambda: AsyncSQLAlchemyDatabase(pg, **size)),
        ]
    if mysql:
        out += [
            ("sqlalchemy-mysql", False, lambda: SQLAlchemyDatabase(mysql, **size)),
            ("sqlalchemy-mysql-async", True, lambda: AsyncSQLAlchemyDatabase(mysql, **size)),
        ]
    out += [
        ("sqlalchemy-sqlite", False, lambda: SQLAlchemyDatabase(sqlite, **size)),
        ("sqlalchemy-sqlite-async", True, lambda: AsyncSQLAlchemyDatabase(sqlite, **size)),
    ]
    return out


Step = tuple[str, int, int, int]  # transfer id, source, destination, amount


class Workload:
    """Tables, transfers and the ledger check of one run (the SQL is portable)."""

    def __init__(self, args: argparse.Namespace) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.accounts = f"bench_acc_{suffix}"
        self.ledger = f"bench_ledger_{suffix}"
        self.n_accounts: int = args.accounts
        self.workers: int = args.workers
        self.transfers: int = args.transfers
        self.select = f"SELECT balance FROM {self.accounts} WHERE id = :id"
        self.update = f"UPDATE {self.accounts} SET balance = :balance WHERE id = :id"
        self.insert = (
            f"INSERT INTO {self.ledger} (transfer, src, dst, amount) "
            "VALUES (:t, :src, :dst, :amount)"
        )

    def setup_sql(self) -> list[str]:
        return [
            f"CREATE TABLE {self.accounts} (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            f"CREATE TABLE {self.ledger} (transfer VARCHAR(40) PRIMARY KEY, "
            "src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL)",
        ]

    def plan(self, worker: int) -> list[Step]:
        rng = random.Random(worker)
        steps = []
        for n in range(self.transfers):
            src, dst = rng.sample(range(self.n_accounts), 2)
            steps.append((f"{worker}-{n}", src, dst, rng.randint(1, 50)))
        return steps

    def check(self, ledger: list[dict[str, Any]], balances: dict[int, int], out: Outcome) -> None:
        expected = dict.fromkeys(range(self.n_accounts), 1000)
        for row in ledger:
            expected[row["src"]] -= row["amount"]
            expected[row["dst"]] += row["amount"]
        out.ledger_ok = balances == expected and len(ledger) == out.made
        out.total_ok = sum(balances.values()) == 1000 * self.n_accounts


def _move(w: Workload, out: Outcome, lock: threading.Lock, step: Step, conn: Any) -> None:
    transfer, src, dst, amount = step
    with lock:
        out.attempts[transfer] += 1
    a = conn.execute(w.select, {"id": src}).scalar()
    b = conn.execute(w.select, {"id": dst}).scalar()
    conn.execute(w.update, {"balance": a - amount, "id": src})
    conn.execute(w.update, {"balance": b + amount, "id": dst})
    conn.execute(w.insert, {"t": transfer, "src": src, "dst": dst, "amount": amount})


async def _amove(w: Workload, out: Outcome, step: Step, conn: Any) -> None:
    transfer, src, dst, amount = step
    out.attempts[transfer] += 1
    a = await (await conn.execute(w.select, {"id": src})).scalar()
    b = await (await conn.execute(w.select, {"id": dst})).scalar()
    await conn.execute(w.update, {"balance": a - amount, "id": src})
    await conn.execute(w.update, {"balance": b + amount, "id": dst})
    await conn.execute(w.insert, {"t": transfer, "src": src, "dst": dst, "amount": amount})


def run_sync(name: str, make: Callable[[], Any], mode: str, w: Workload) -> Outcome:
    db = make()
    out = Outcome(name, mode)
    lock = threading.Lock()
    try:
        with db.transaction() as conn:
            for sql in w.setup_sql():
                conn.execute(sql)
            conn.executemany(
                f"INSERT INTO {w.accounts} (id, balance) VALUES (:id, 1000)",
                [{"id": i} for i in range(w.n_accounts)],
            )

        def worker(index: int) -> None:
            for step in w.plan(index):
                move = functools.partial(_move, w, out, lock, step)
                began = time.perf_counter()
                try:
                    if mode == "raw":
                        with db.transaction(isolation_level="SERIALIZABLE") as conn:
                            move(conn)
                    else:
                        db.run_transaction(move, isolation_level="SERIALIZABLE")
                except DatabaseError as exc:
                    with lock:
                        out.errors[_code(exc)] += 1
                else:
                    with lock:
                        out.made += 1
                        out.longest = max(out.longest, time.perf_counter() - began)

        start = time.perf_counter()
        with ThreadPoolExecutor(w.workers) as pool:
            list(pool.map(worker, range(w.workers)))
        out.seconds = time.perf_counter() - start
        with db.transaction() as conn:
            ledger = conn.execute(f"SELECT src, dst, amount FROM {w.ledger}").fetchall()
            rows = conn.execute(f"SELECT id, balance FROM {w.accounts}").fetchall()
        w.check(ledger, {r["id"]: r["balance"] for r in rows}, out)
        with db.transaction() as conn:
            conn.execute(f"DROP TABLE {w.accounts}")
            conn.execute(f"DROP TABLE {w.ledger}")
    finally:
        db.shutdown()
    return out


async def run_async(name: str, make: Callable[[], Any], mode: str, w: Workload) -> Outcome:
    db = make()
    out = Outcome(name, mode)
    try:
        async with db.transaction() as conn:
            for sql in w.setup_sql():
                await conn.execute(sql)
            await conn.executemany(
                f"INSERT INTO {w.accounts} (id, balance) VALUES (:id, 1000)",
                [{"id": i} for i in range(w.n_accounts)],
            )

        async def worker(index: int) -> None:
            for step in w.plan(index):
                move = functools.partial(_amove, w, out, step)
                began = time.perf_counter()
                try:
                    if mode == "raw":
                        async with db.transaction(isolation_level="SERIALIZABLE") as conn:
                            await move(conn)
                    else:
                        await db.run_transaction(move, isolation_level="SERIALIZABLE")
                except DatabaseError as exc:
                    out.errors[_code(exc)] += 1
                else:
                    out.made += 1
                    out.longest = max(out.longest, time.perf_counter() - began)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(w.workers)))
        out.seconds = time.perf_counter() - start
        async with db.transaction() as conn:
            select = f"SELECT src, dst, amount FROM {w.ledger}"
            ledger = await (await conn.execute(select)).fetchall()
            rows = await (await conn.execute(f"SELECT id, balance FROM {w.accounts}")).fetchall()
        w.check(ledger, {r["id"]: r["balance"] for r in rows}, out)
        async with db.transaction() as conn:
            await conn.execute(f"DROP TABLE {w.accounts}")
            await conn.execute(f"DROP TABLE {w.ledger}")
    finally:
        await db.shutdown()
    return out


def _fmt(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total:,} (" + ", ".join(f"{k}: {v:,}" for k, v in counts.most_common()) + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--transfers", type=int, default=300, help="per worker")
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--only", default="", help="backends whose name contains this text")
    parser.add_argument("--retries", type=int, help="override the database's default")
    parser.add_argument("--retry-backoff", type=float, help="override the database's default")
    parser.add_argument("--retry-max-backoff", type=float, help="override the database's default")
    parser.add_argument("--modes", default="raw,run_transaction")
    parser.add_argument("--pg-url", default=os.environ.get("STRUCTUM_TEST_POSTGRES_URL"))
    parser.add_argument("--mysql-url", default=os.environ.get("STRUCTUM_TEST_MYSQL_URL"))
    args = parser.parse_args(argv)

    counter = _RetryCounter()
    logger = logging.getLogger(_LOGGER)
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    print(
        f"{args.workers} workers x {args.transfers} transfers between {args.accounts} accounts, "
        "SERIALIZABLE\n"
    )
    print(
        "| backend | mode | transfers made | errors seen by callers | retries | "
        "most attempts / longest s for one transfer | ledger (0 lost / 0 doubled) | "
        "total conserved | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{Path(tmp) / 'contention.sqlite3'}"
        opts = {
            key: value
            for key in ("retries", "retry_backoff", "retry_max_backoff")
            if (value := getattr(args, key)) is not None
        }
        for name, is_async, make in _backends(args.pg_url, args.mysql_url, sqlite, opts):
            if args.only and args.only not in name:
                continue
            for mode in args.modes.split(","):
                counter.counts.clear()
                w = Workload(args)
                if is_async:
                    outcome = asyncio.run(run_async(name, make, mode, w))
                else:
                    outcome = run_sync(name, make, mode, w)
                outcome.retries = Counter(counter.counts)
                most = f"{max(outcome.attempts.values(), default=0)} / {outcome.longest:.2f}"
                print(
                    f"| {name} | {mode} | {outcome.made:,} / {w.workers * w.transfers:,} | "
                    f"{_fmt(outcome.errors)} | {_fmt(outcome.retries)} | {most} | "
                    f"{'yes' if outcome.ledger_ok else 'NO'} | "
                    f"{'yes' if outcome.total_ok else 'NO'} | {outcome.seconds:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
