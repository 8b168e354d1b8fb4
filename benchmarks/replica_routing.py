"""Read replicas: what routing costs per transaction, and the router's decision alone.

Run from the repository root (needs PostgreSQL server binaries: a throwaway primary and a
streaming replica are built and removed)::

    python -m benchmarks.replica_routing --ops 3000 --blocks 5
    python -m benchmarks.replica_routing --callgrind 2000   # client instructions per transaction

For each sync backend it measures the client's CPU time of a transaction with ``SELECT 1`` on
the replica in two ways, in alternating blocks: (a) ``transaction()`` of a database opened on the
replica's URL itself, (b) ``transaction(read_only=True)`` of a database opened on the primary
with ``replicas=[replica]``, whose router begins a plain transaction on that replica (a standby
refuses writes by itself). The difference of the medians is the routing
overhead per transaction (the same server does the work in both). It also times
``router.pick()`` alone. With ``--callgrind N`` it counts instead, for each side, the client's
instructions per transaction under valgrind's callgrind (a child process per side; only the
measured loop is counted, as in ``benchmarks/scenarios/deterministic.py``): deterministic, unlike
the clock on a shared machine. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from benchmarks.callgrind import instructions_per_operation
from structum_lab.plugins.database.postgres import PostgresDatabase
from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase
from structum_lab.plugins.database.testing.provision import LocalPostgresCluster


def _per_op(db: Any, ops: int, read_only: bool) -> float:
    """Client CPU microseconds per transaction (this process's CPU time, not the wall clock:
    what routing adds is client work, and CPU time is far less disturbed by a loaded machine)."""
    began = time.process_time()
    for _ in range(ops):
        with db.transaction(read_only=read_only) as conn:
            conn.execute("SELECT 1").fetchone()
    return (time.process_time() - began) / ops * 1e6


def compare(name: str, factory: Callable[..., Any], primary: str, replica: str, args: Any) -> None:
    direct = factory(replica, pool_size=2)
    routed = factory(primary, pool_size=2, replicas=[replica])
    try:
        routed.fetchone("SELECT 1", read_only=True)  # starts the watchers
        deadline = time.monotonic() + 20
        while routed.get_pool_info()["replicas"][0]["state"] != "ok":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica never became usable")
            time.sleep(0.05)
        with routed.transaction(read_only=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery() AS r").fetchone()["r"]
        _per_op(direct, 200, False), _per_op(routed, 200, True)  # warm up
        a, b = [], []
        for _ in range(args.blocks):
            a.append(_per_op(direct, args.ops, False))
            b.append(_per_op(routed, args.ops, True))
        da, db_ = statistics.median(a), statistics.median(b)
        print(
            f"{name}: client CPU direct {da:.1f} us/tx, routed {db_:.1f} us/tx, "
            f"overhead {db_ - da:+.1f} us/tx ({(db_ - da) / da * 100:+.1f}%)"
        )
        router = routed._router
        n = 20_000  # short runs: a replica not seen for 2 s would not be picked
        pick = min(timeit.repeat(router.pick, number=n, repeat=20)) / n * 1e9
        noop = min(timeit.repeat(lambda: None, number=n, repeat=20)) / n * 1e9
        print(
            f"{name}: router.pick() {pick:.0f} ns = {pick / noop:.0f} no-op calls "
            f"= {pick / 1000 / da * 100:.2f}% of a direct transaction's client CPU"
        )
    finally:
        direct.shutdown()
        routed.shutdown()


FACTORIES: dict[str, Callable[..., Any]] = {
    "psycopg": PostgresDatabase,
    "sqlalchemy": SQLAlchemyDatabase,
}


def _open(backend: str, side: str, primary: str, replica: str) -> Any:
    factory = FACTORIES[backend]
    if side == "direct":
        return factory(replica, pool_size=2)
    # A long check interval: the watcher threads stay out of the measured loop.
    db = factory(primary, pool_size=2, replicas=[replica], replica_check_interval=30.0)
    db.fetchone("SELECT 1", read_only=True)  # starts the watchers
    deadline = time.monotonic() + 60
    while db.get_pool_info()["replicas"][0]["state"] != "ok":
        if time.monotonic() > deadline:
            raise RuntimeError("the replica never became usable")
        time.sleep(0.05)
    return db


def _child(argv: list[str]) -> int:
    """``--child BACKEND SIDE PRIMARY REPLICA N``: the callgrind child of one side."""
    backend, side, primary, replica, n = argv[0], argv[1], argv[2], argv[3], int(argv[4])
    db = _open(backend, side, primary, replica)

    # The router begins a plain transaction on the replica (a standby refuses writes by
    # itself), so that is the direct side's work; the routed side asks for read_only=True.
    def run(count: int) -> None:
        for _ in range(count):
            with db.transaction(read_only=side == "routed") as conn:
                conn.execute("SELECT 1").fetchone()

    try:
        with db.transaction(read_only=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery() AS r").fetchone()["r"]
        run(50)
        sys.call_tracing(run, (n,))  # callgrind collects inside this call only
    finally:
        db.shutdown()
    return 0


def _instructions(backend: str, side: str, primary: str, replica: str, n: int) -> float:
    return instructions_per_operation(
        "benchmarks.replica_routing", ["--child", backend, side, primary, replica, str(n)], n
    )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--callgrind", type=int, default=0, metavar="N")
    args = parser.parse_args()
    primary = LocalPostgresCluster(database="bench", settings={"synchronous_commit": "on"}).start()
    try:
        replica = LocalPostgresCluster.replica_of(primary).start()
        try:
            for name, factory in FACTORIES.items():
                if args.callgrind:
                    direct = _instructions(name, "direct", primary.url, replica.url, args.callgrind)
                    routed = _instructions(name, "routed", primary.url, replica.url, args.callgrind)
                    print(
                        f"{name}: client instructions per read-only transaction: direct "
                        f"{direct:,.0f}, routed {routed:,.0f}, routing {routed - direct:+,.0f} "
                        f"({(routed - direct) / direct * 100:+.1f}%)"
                    )
                else:
                    compare(name, factory, primary.url, replica.url, args)
        finally:
            replica.stop()
    finally:
        primary.stop()


if __name__ == "__main__":
    main()
