"""Overload fairness: callers waiting for a connection are served in turn, none starves.

SQLAlchemy's queue pools let a newcomer take a returned connection before the callers already
waiting (a ``Condition`` wakes a waiter, which takes the connection only when it runs again); under
overload some waiters were passed over until their pool timeout expired although the mean wait
was far below it (64 threads on a pool of 8: 168 ``PoolTimeoutError``s; 200 tasks: 696).
psycopg_pool hands a returned connection to its oldest waiter. Source of ``test_fairness_sync.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from structum_lab.plugins.database import PoolTimeoutError
from structum_lab.plugins.database._acompat import asleep

WORKERS = 32
POOL = 4
POOL_TIMEOUT = 2.0
HOLD = 0.02  # seconds each transaction keeps its connection: a mean wait of about 0.16 s
ROUNDS = 15


if True:  # ASYNC

    async def _all_at_once(worker: Callable[[], Awaitable[None]], count: int) -> None:
        """Run ``count`` workers concurrently: tasks here, threads in the sync twin."""
        await asyncio.gather(*(worker() for _ in range(count)))
else:

    def _all_at_once(worker: Callable[[], None], count: int) -> None:
        threads = [threading.Thread(target=worker) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


async def test_waiters_are_served_in_turn_under_overload(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(faults.url, pool_size=POOL, timeout=POOL_TIMEOUT)
    timeouts: list[float] = []
    waits: list[float] = []

    async def worker() -> None:
        for _ in range(ROUNDS):
            began = time.monotonic()
            try:
                async with db.transaction() as conn:
                    waits.append(time.monotonic() - began)
                    await conn.execute("SELECT 1")
                    await asleep(HOLD)
            except PoolTimeoutError:
                timeouts.append(time.monotonic() - began)

    try:
        await _all_at_once(worker, WORKERS)
        leftover = db.get_pool_info()["checked_out"]
    finally:
        await db.shutdown()
    assert leftover == 0
    mean, longest = statistics.mean(waits), max(waits)
    assert timeouts == [], (
        f"{len(timeouts)} PoolTimeoutErrors with a mean wait of {mean:.3f}s (longest served "
        f"{longest:.3f}s, timeout {POOL_TIMEOUT:g}s): waiters starved"
    )
    figure(
        fault=f"overload: {WORKERS} callers on a pool of {POOL} (pool timeout {POOL_TIMEOUT:g} s)",
        backend=async_postgres_backend.id,
        saw=f"0 PoolTimeoutError; wait mean {mean:.2f} s, longest {longest:.2f} s",
        recover_s=0.0,
        lost=0,
        doubled=0,
    )
