"""Deadlines on MariaDB: a frozen server cannot hold a caller past its bound.

The whole throwaway MariaDB server is frozen with ``SIGSTOP`` (it is one process), which is what a
dead network or a hung host looks like to a client: no answer, no error. Source of
``test_mariadb_deadlines_sync.py`` (``tools/async_to_sync.py``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from structum_lab.plugins.database import StatementTimeoutError
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

# What a bound may exceed by: scheduling on a loaded 2-core CI machine, not the work itself.
SLACK = 1.5
TIMEOUT = 1.0


@contextmanager
def frozen(server: Any) -> Iterator[None]:
    pid = int((server._dir() / "mysqld.pid").read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def make(server: Any, **options: Any) -> AsyncSQLAlchemyDatabase:
    return AsyncSQLAlchemyDatabase(server.url, pool_size=1, max_overflow=0, **options)


async def select_one(db: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute("SELECT 1")


async def test_frozen_server_mid_transaction_times_out(mariadb_server: Any, figure: Any) -> None:
    db = make(mariadb_server, transaction_timeout=TIMEOUT)
    try:
        await select_one(db)
        began = time.monotonic()
        with pytest.raises(StatementTimeoutError), frozen(mariadb_server):
            await select_one(db)
        took = time.monotonic() - began
        # The connection was closed, not returned: the pool serves again at once.
        async with db.transaction() as conn:
            assert (await (await conn.execute("SELECT 2 AS two")).fetchone())["two"] == 2
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()
    assert took < TIMEOUT + SLACK, took
    figure(
        fault="MariaDB server frozen (SIGSTOP) mid-transaction, transaction_timeout=1",
        backend="sqlalchemy-mysql" + ("-async" if "Async" in type(db).__name__ else ""),
        saw=f"StatementTimeoutError after {took:.2f} s; pool usable",
        time_s=round(took, 2),
        lost=0,
        doubled=0,
    )
