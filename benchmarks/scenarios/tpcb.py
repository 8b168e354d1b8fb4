"""pgbench's TPC-B-like transaction, driven from Python and by pgbench itself.

The five statements are pgbench's built-in ``tpcb-like`` script, verbatim, with its random
``aid``/``bid``/``tid``/``delta`` drawn the same way (uniform over the scaled ranges). Every side
fetches the ``SELECT``'s balance inside the transaction, after the ``INSERT``: the non-pipelined
sides pay one round trip per statement (BEGIN, five statements, COMMIT: the same seven pgbench
pays with ``-M prepared``); the pipelined sides send everything up to the fetch in one go.

pgbench runs as a subprocess for a slice of the same length (see :class:`Pgbench`), with ``-n``
so that it does not vacuum or truncate between slices, and its reported "tps ... without initial
connection time" is read.
"""

from __future__ import annotations

import re
import resource
import subprocess
from collections.abc import Callable, Generator
from typing import Any

from psycopg_pool import ConnectionPool

from ..context import Context
from ..harness import (
    Comparison,
    Measurement,
    Side,
    Versus,
    Worker,
    at_least,
    optional,
    thread_measure,
)
from ..setup_db import reset_tpcb
from .point_select import DICT_ROWS

CLIENTS = (1, 4)

# pgbench's tpcb-like script (src/bin/pgbench/pgbench.c, builtin_script[0]) with :name variables.
TPCB_NAMED = (
    "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid",
    "SELECT abalance FROM pgbench_accounts WHERE aid = :aid",
    "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid",
    "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP)",
)
UPD_ACCOUNT = "UPDATE pgbench_accounts SET abalance = abalance + %s WHERE aid = %s"
SEL_ACCOUNT = "SELECT abalance FROM pgbench_accounts WHERE aid = %s"
UPD_TELLER = "UPDATE pgbench_tellers SET tbalance = tbalance + %s WHERE tid = %s"
UPD_BRANCH = "UPDATE pgbench_branches SET bbalance = bbalance + %s WHERE bid = %s"
INS_HISTORY = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)"
)

RAW = "psycopg_pool, dict_row (raw)"
RAW_PIPELINE = "psycopg_pool + conn.pipeline(), dict_row (raw)"
PG_DB = "PostgresDatabase"
PG_DB_PIPELINE = "PostgresDatabase, pipeline=True"
PGBENCH = "pgbench -M prepared (C, libpq)"

_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_DONE = re.compile(r"^number of transactions actually processed: ([0-9]+)", re.MULTILINE)
SMOKE_PGBENCH_TRANSACTIONS = 25


def draw(worker: Worker, scale: int) -> tuple[int, int, int, int]:
    """``aid``, ``bid``, ``tid``, ``delta`` as pgbench draws them."""
    rng = worker.rng
    return (
        rng.randint(1, 100_000 * scale),
        rng.randint(1, scale),
        rng.randint(1, 10 * scale),
        rng.randint(-5000, 5000),
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Pgbench:
    """pgbench as one side: each call runs it for about ``seconds`` and reads its TPS.

    pgbench's ``-T`` counts whole seconds, so the first (warm-up) run uses ``-T 1`` to learn the
    rate and later runs ask for the matching number of transactions per client (``-t``), which
    keeps pgbench's slices as short as the Python sides'. The smoke run always uses ``-t 25``.
    """

    def __init__(self, pgbench: str, url: str, clients: int, *, smoke: bool) -> None:
        self.pgbench = pgbench
        self.url = url
        self.clients = clients
        self.smoke = smoke
        self.rate: float | None = None

    def warmup(self) -> None:
        """Learn the rate (the figure is discarded, like every side's warm-up)."""
        self.measure(1.0)

    def measure(self, seconds: float) -> Measurement:
        """Run pgbench once; its TPS and its CPU per transaction."""
        if self.smoke:
            budget = ["-t", str(SMOKE_PGBENCH_TRANSACTIONS)]
        elif self.rate is None:
            budget = ["-T", str(max(1, round(seconds)))]
        else:
            budget = ["-t", str(max(10, round(self.rate * seconds / self.clients)))]
        sample = pgbench_tps(self.pgbench, self.url, self.clients, budget)
        self.rate = sample.value
        return sample


def pgbench_tps(pgbench: str, url: str, clients: int, budget: list[str]) -> Measurement:
    """Run ``pgbench -b tpcb-like -M prepared -c clients``; its TPS and its CPU per transaction.

    The CPU figure includes pgbench's start-up and connections (a few milliseconds per run).
    """
    args = [pgbench, "-n", "-b", "tpcb-like", "-M", "prepared", "-c", str(clients), *budget, url]
    cpu = _children_cpu()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    cpu = _children_cpu() - cpu
    tps = _TPS.search(done.stdout)
    count = _DONE.search(done.stdout)
    if done.returncode != 0 or tps is None:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"pgbench failed ({done.returncode}): {detail[-1] if detail else ''}")
    transactions = int(count.group(1)) if count else 0
    return Measurement(float(tps.group(1)), cpu * 1e6 / transactions if transactions else None)


def tpcb(ctx: Context) -> Generator[Comparison, None, None]:
    """TPC-B-like with 1 and 4 clients: PostgresDatabase vs psycopg_pool vs pgbench."""
    scale = ctx.db.scale
    size = max(CLIENTS)
    reset_tpcb(ctx.url)
    missing: dict[str, str] = {}
    skipped: dict[str, str] = {}
    pool = ConnectionPool(ctx.url, min_size=size, max_size=size, kwargs=DICT_ROWS, open=False)
    pool.open(wait=True)

    def make_db() -> Any:
        from structum_lab.plugins.database.postgres import PostgresDatabase

        return PostgresDatabase(ctx.url, pool_size=size, min_size=size, max_size=size)

    db = optional(PG_DB, missing, make_db)
    if db is None:
        missing[PG_DB_PIPELINE] = missing[PG_DB]
    try:

        def raw(worker: Worker) -> None:
            aid, bid, tid, delta = draw(worker, scale)
            with pool.connection() as conn:
                conn.execute(UPD_ACCOUNT, (delta, aid))
                cur = conn.execute(SEL_ACCOUNT, (aid,))
                conn.execute(UPD_TELLER, (delta, tid))
                conn.execute(UPD_BRANCH, (delta, bid))
                conn.execute(INS_HISTORY, (tid, bid, aid, delta))
                cur.fetchone()

        def raw_pipeline(worker: Worker) -> None:
            aid, bid, tid, delta = draw(worker, scale)
            with pool.connection() as conn, conn.pipeline():
                conn.execute(UPD_ACCOUNT, (delta, aid))
                cur = conn.execute(SEL_ACCOUNT, (aid,))
                conn.execute(UPD_TELLER, (delta, tid))
                conn.execute(UPD_BRANCH, (delta, bid))
                conn.execute(INS_HISTORY, (tid, bid, aid, delta))
                cur.fetchone()

        def wrapped_with(**options: Any) -> Callable[[Worker], None]:
            upd_account, sel_account, upd_teller, upd_branch, ins_history = TPCB_NAMED

            def op(worker: Worker) -> None:
                aid, bid, tid, delta = draw(worker, scale)
                params = {"aid": aid, "bid": bid, "tid": tid, "delta": delta}
                with db.transaction(**options) as conn:
                    conn.execute(upd_account, params)
                    result = conn.execute(sel_account, params)
                    conn.execute(upd_teller, params)
                    conn.execute(upd_branch, params)
                    conn.execute(ins_history, params)
                    result.fetchone()

            return op

        pgbench = ctx.db.pgbench
        for clients in CLIENTS:
            sides = [
                Side(RAW, thread_measure(raw, clients)),
                Side(RAW_PIPELINE, thread_measure(raw_pipeline, clients), (Versus(RAW),)),
            ]
            one = clients == 1
            if pgbench is not None:
                runner = Pgbench(pgbench, ctx.url, clients, smoke=ctx.smoke)
                sides.append(
                    Side(
                        PGBENCH,
                        runner.measure,
                        (Versus(RAW),),
                        warmup=runner.warmup,
                    )
                )
            else:
                skipped[PGBENCH] = "pgbench not found (set STRUCTUM_BENCH_PGBENCH or install it)"
            if db is not None:
                sides.append(
                    Side(
                        PG_DB,
                        thread_measure(wrapped_with(), clients),
                        (Versus(RAW, at_least(0.95) if one else None),),
                    )
                )
                versus = [Versus(RAW_PIPELINE)]
                if pgbench is not None:
                    versus.insert(0, Versus(PGBENCH, at_least(1.0) if one else None))
                sides.append(
                    Side(
                        PG_DB_PIPELINE,
                        thread_measure(wrapped_with(pipeline=True), clients),
                        tuple(versus),
                    )
                )
            yield Comparison(
                id=f"tpcb/{clients}c",
                title=(
                    f"TPC-B-like (pgbench tpcb-like, scale {scale}) · "
                    f"{clients} client{'s' if clients > 1 else ''}"
                ),
                unit="tx/s",
                sides=sides,
                slice_seconds=ctx.slice_seconds,
                rounds=ctx.rounds,
                unavailable=dict(missing),
                skipped=dict(skipped),
            )
    finally:
        if db is not None:
            db.shutdown()
        pool.close()
