"""Deterministic figures: round trips per operation and client instructions per operation.

Wall-clock ratios on a shared 2-core machine swing by tens of percent from round to round; these
two do not:

- **Round trips** are counted on the wire by a loopback proxy
  (:class:`~structum_lab.plugins.database.testing.RoundTripProxy`): the physical floor of a
  point-select is one. Also counted after the connection sat idle past the validation window,
  and for ``pgbench -M prepared`` (its connection set-up subtracted).
- **Instructions** are counted by valgrind's callgrind in a child process per side, over the
  measured loop only (see :mod:`benchmarks.workloads`), with the hash seed fixed. Without
  valgrind on the machine this half is skipped with a note (``apt-get install valgrind``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from structum_lab.plugins.database.testing import counting_proxy

from ..callgrind import instructions_per_operation
from ..context import Context
from ..harness import Comparison, Measurement, Side, Target, Versus, at_most
from ..workloads import BY_NAME, WORKLOADS, Workload, open_workload
from .tpcb import pgbench_tps

ROOT = Path(__file__).resolve().parents[2]
IDLE_SECONDS = 0.6  # past the former default validation window (0.5 s; now 0: a socket poll)

# Targets of issue 12: instructions per operation against the raw driver.
INSTRUCTION_TARGETS = {
    "PostgresDatabase.transaction()": at_most(1.02),
    "AsyncPostgresDatabase.transaction()": at_most(1.02),
    "SQLAlchemyDatabase.transaction()": at_most(1.0),
    "AsyncSQLAlchemyDatabase.transaction()": at_most(1.0),
    "PostgresDatabase TPC-B, pipeline=True": at_most(1.1),
}
# ... and round trips per operation (the figure itself).
ROUND_TRIP_LIMITS = {
    "PostgresDatabase.fetchone()": 1.0,
    "AsyncPostgresDatabase.fetchone()": 1.0,
    "SQLAlchemyDatabase.fetchone()": 1.0,
    "AsyncSQLAlchemyDatabase.fetchone()": 1.0,
    "PostgresDatabase.transaction(read_only=True)": 2.0,
    "PostgresDatabase TPC-B, pipeline=True": 2.0,
    "PostgresDatabase.health_check()": 1.0,
    "after idle: PostgresDatabase.fetchone()": 1.0,
    "after idle: PostgresDatabase.transaction()": 3.0,
    "after idle: PostgresDatabase.health_check()": 1.0,
}
IDLE_SIDES = (
    "PostgresDatabase.transaction()",
    "PostgresDatabase.fetchone()",
    "PostgresDatabase.health_check()",
)
PGBENCH = "pgbench -M prepared TPC-B (C, libpq)"


def _fixed(value: float) -> Any:
    def measure(seconds: float) -> Measurement:
        return Measurement(value)

    return measure


def _comparison(ident: str, title: str, unit: str, sides: list[Side], **notes: Any) -> Comparison:
    return Comparison(
        id=ident, title=title, unit=unit, sides=sides, slice_seconds=0.0, rounds=1, **notes
    )


# -- round trips ----------------------------------------------------------------------------------
def _count(proxy: Any, workload: Workload, url: str, n: int, *, idle: float = 0.0) -> float:
    runner = open_workload(workload, url)
    try:
        runner.run(8)  # warm: connections open, statements prepared (psycopg: 5th execution)
        counts = []
        for _ in range(2):  # outside events only add round trips: the least run is the figure
            before = proxy.round_trips
            for _ in range(n):
                if idle:
                    time.sleep(idle)
                runner.run(1)
            counts.append((proxy.round_trips - before) / n)
        return min(counts)
    finally:
        runner.close()


def _idle_workload(name: str) -> Workload:
    """``name``'s workload on a database with the default validation window."""
    from ..workloads import _user

    def opener(url: str) -> tuple[Any, Any, Any]:
        from structum_lab.plugins.database.postgres import PostgresDatabase

        db = PostgresDatabase(url, pool_size=1, min_size=1)
        sql = "SELECT * FROM bench_users WHERE id = :id"

        def op(i: int) -> None:
            if name.endswith("fetchone()"):
                db.fetchone(sql, {"id": _user(i)})
            elif name.endswith("health_check()"):
                db.health_check()
            else:
                with db.transaction() as conn:
                    conn.execute(sql, {"id": _user(i)}).fetchone()

        return op, db.shutdown, None

    return Workload(f"after idle: {name}", "idle", opener)


def _pgbench_round_trips(ctx: Context, proxy: Any, transactions: int) -> float:
    pgbench = ctx.db.pgbench
    if pgbench is None:
        raise RuntimeError("pgbench not found")
    url = proxy.url(ctx.url)
    counts = []
    for budget in (1, transactions + 1):
        before = proxy.round_trips
        pgbench_tps(pgbench, url, 1, ["-t", str(budget)])
        counts.append(proxy.round_trips - before)
    return (counts[1] - counts[0]) / transactions  # connection set-up and the first subtracted


def round_trips(ctx: Context) -> Generator[Comparison, None, None]:
    """Round trips per operation, counted on the wire, for every backend and its raw driver."""
    n = 4 if ctx.smoke else 20
    figures: dict[str, float] = {}
    errors: dict[str, str] = {}
    with counting_proxy(ctx.url) as proxy:
        url = proxy.url(ctx.url)
        for workload in WORKLOADS:
            try:
                figures[workload.name] = _count(proxy, workload, url, n)
            except Exception as exc:
                errors[workload.name] = f"{type(exc).__name__}: {exc}"
        for name in IDLE_SIDES:
            idle = _idle_workload(name)
            try:
                figures[idle.name] = _count(
                    proxy, idle, url, 1 if ctx.smoke else 3, idle=IDLE_SECONDS
                )
            except Exception as exc:
                errors[idle.name] = f"{type(exc).__name__}: {exc}"
        try:
            figures[PGBENCH] = _pgbench_round_trips(ctx, proxy, 5 if ctx.smoke else 50)
        except Exception as exc:
            errors[PGBENCH] = f"{type(exc).__name__}: {exc}"

    groups: dict[str, list[str]] = {}
    for workload in WORKLOADS:
        groups.setdefault(workload.group, []).append(workload.name)
    groups["tpcb"].append(PGBENCH)
    groups["idle"] = [f"after idle: {name}" for name in IDLE_SIDES]
    for group, names in groups.items():
        sides = []
        for name in names:
            limit = ROUND_TRIP_LIMITS.get(name)
            if name in figures:
                sides.append(
                    Side(
                        name,
                        _fixed(figures[name]),
                        limit=None if limit is None else Target("<=", limit, "round trips"),
                        warmup=lambda: None,
                    )
                )
        yield _comparison(
            f"round-trips/{group}",
            f"round trips per operation · {group} (counted on the wire; floor: 1)",
            "round trips",
            sides,
            unavailable={k: v for k, v in errors.items() if k in names},
        )


# -- instructions ---------------------------------------------------------------------------------
def _callgrind(workload: Workload, url: str, n: int) -> float:
    return instructions_per_operation("benchmarks.workloads", [workload.name, url, "50", str(n)], n)


SMOKE_INSTRUCTIONS = ("psycopg_pool transaction (raw)", "PostgresDatabase.transaction()")


def instructions(ctx: Context) -> Generator[Comparison, None, None]:
    """Client instructions per operation (callgrind) for every backend and its raw driver."""
    chosen = [w for w in WORKLOADS if not ctx.smoke or w.name in SMOKE_INSTRUCTIONS]
    n = 20 if ctx.smoke else 400
    figures: dict[str, float] = {}
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if ctx.smoke and not os.environ.get("STRUCTUM_BENCH_CALLGRIND"):
        # Python's start-up under valgrind takes 20 s to minutes: too slow for CI's smoke run.
        reason = "smoke mode (STRUCTUM_BENCH_CALLGRIND=1 runs it)"
        skipped = {w.name: reason for w in chosen}
    elif shutil.which("valgrind") is None:
        skipped = {w.name: "valgrind not found (apt-get install valgrind)" for w in chosen}
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {w.name: pool.submit(_callgrind, w, ctx.url, n) for w in chosen}
            for name, future in futures.items():
                try:
                    figures[name] = future.result()
                except Exception as exc:
                    errors[name] = f"{type(exc).__name__}: {exc}"
    groups: dict[str, list[Workload]] = {}
    for workload in chosen:
        groups.setdefault(workload.group, []).append(workload)
    for group, workloads in groups.items():
        sides = []
        for workload in workloads:
            if workload.name not in figures:
                continue
            versus: tuple[Versus, ...] = ()
            if workload.reference is not None and workload.reference in figures:
                versus = (Versus(workload.reference, INSTRUCTION_TARGETS.get(workload.name)),)
            sides.append(
                Side(workload.name, _fixed(figures[workload.name]), versus, warmup=lambda: None)
            )
        yield _comparison(
            f"instructions/{group}",
            f"client instructions per operation · {group} (callgrind, {n} operations)",
            "instructions",
            sides,
            unavailable={w.name: errors[w.name] for w in workloads if w.name in errors},
            skipped={w.name: skipped[w.name] for w in workloads if w.name in skipped},
        )


__all__ = ["BY_NAME", "instructions", "round_trips"]
