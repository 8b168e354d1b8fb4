"""Read replicas: what routing costs per transaction, and the router's decision alone.

Run from the repository root (needs PostgreSQL server binaries: a throwaway primary and a
streaming replica are built and removed)::

    python -m benchmarks.replica_routing --ops 3000 --blocks 5

For each sync backend it measures the client's CPU time of ``transaction(read_only=True)`` +
``SELECT 1`` on the replica in two ways, in alternating blocks: (a) a database opened on the
replica's URL itself, (b) a database opened on the primary with ``replicas=[replica]``, whose
router sends the transaction to that replica. The difference of the medians is the routing
overhead per transaction (the same server does the work in both). It also times
``router.pick()`` alone. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

from structum_lab.plugins.database.postgres import PostgresDatabase
from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase
from structum_lab.plugins.database.testing.provision import LocalPostgresCluster


def _per_op(db: Any, ops: int) -> float:
    """Client CPU microseconds per transaction (this process's CPU time, not the wall clock:
    what routing adds is client work, and CPU time is far less disturbed by a loaded machine)."""
    began = time.process_time()
    for _ in range(ops):
        with db.transaction(read_only=True) as conn:
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
        _per_op(direct, 200), _per_op(routed, 200)  # warm up
        a, b = [], []
        for _ in range(args.blocks):
            a.append(_per_op(direct, args.ops))
            b.append(_per_op(routed, args.ops))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    primary = LocalPostgresCluster(database="bench", settings={"synchronous_commit": "on"}).start()
    try:
        replica = LocalPostgresCluster.replica_of(primary).start()
        try:
            compare("psycopg", PostgresDatabase, primary.url, replica.url, args)
            compare("sqlalchemy", SQLAlchemyDatabase, primary.url, replica.url, args)
        finally:
            replica.stop()
    finally:
        primary.stop()


if __name__ == "__main__":
    main()
