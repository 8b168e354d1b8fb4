"""Deadlines and honest errors: a frozen backend or postmaster, a stopped server, a full pool.

No call may wait longer than its configured bound, whatever the server does, and each failure must
say what happened: ``StatementTimeoutError`` for a transaction that ran out of time (its connection
closed, never reused), ``DatabaseUnavailableError`` naming the masked target when no connection can
be made (never a pool-size hint), ``PoolTimeoutError`` with the oldest holder's hold time when the
pool is exhausted. Source of ``test_deadlines_sync.py`` (``tools/async_to_sync.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from structum_lab.plugins.database import (
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    PoolTimeoutError,
    StatementTimeoutError,
)

if True:  # ASYNC
    import asyncio

# What a bound may exceed by: scheduling on a loaded 2-core CI machine, not the work itself.
SLACK = 1.5
TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0  # libpq's smallest
# Trust authentication ignores it: the URL carries a password that must never be shown.
PASSWORD = "Fault-s3cret-PW"


def with_password(url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def assert_masked(exc: BaseException) -> None:
    """No password anywhere in the error, its arguments, or its cause/context chain."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        for text in (str(link), repr(link), *(repr(a) for a in link.args)):
            assert PASSWORD not in text, text
        link = link.__cause__ or link.__context__


async def select_one(db: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute("SELECT 1")


async def failure(call: Callable[[], Any]) -> tuple[float, BaseException]:
    """Seconds ``call()`` took to fail, and its error (the test fails if it succeeds)."""
    began = time.monotonic()
    try:
        await call()
    except Exception as exc:
        return time.monotonic() - began, exc
    raise AssertionError("expected an error, the call succeeded")


async def transfer(db: Any, ledger: Any, src: int, dst: int, acked: list[str]) -> None:
    statements, tx = ledger.transfer_sql(src, dst, 1)
    params = {"tx": tx, "src": src, "dst": dst, "amount": 1}
    async with db.transaction() as conn:
        for sql in statements:
            await conn.execute(sql, params)
    acked.append(tx)


async def test_frozen_backend_mid_transaction_times_out(
    faults: Any, ledger: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(with_password(faults.url), pool_size=2, timeout=10.0)
    acked: list[str] = []
    try:
        await transfer(db, ledger, 0, 1, acked)
        statements, tx = ledger.transfer_sql(2, 3, 5)
        params = {"tx": tx, "src": 2, "dst": 3, "amount": 5}
        pids: list[int] = []

        async def frozen() -> None:
            async with db.transaction(timeout=TIMEOUT) as conn:
                row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
                pids.append(row["pid"])
                await conn.execute(statements[0], params)
                faults.pause(row["pid"])  # the server stops answering mid-transaction
                for sql in statements[1:]:
                    await conn.execute(sql, params)

        took, error = await failure(frozen)
        faults.resume(pids[0])
        assert isinstance(error, StatementTimeoutError), repr(error)
        assert_masked(error)
        assert db.url in str(error)
        # The pool still works, at full capacity: every connection can be held at once.
        held = [await db.get_connection() for _ in range(2)]
        for conn in held:
            assert (await (await conn.execute("SELECT 1 AS one")).fetchone())["one"] == 1
            await conn.close()
        for i in range(4):
            await transfer(db, ledger, i, i + 1, acked)
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()
    figures = ledger.check(acked)
    assert took < TIMEOUT + SLACK, took
    figure(
        fault="SIGSTOP backend mid-transaction, transaction(timeout=1)",
        backend=async_postgres_backend.id,
        saw=f"StatementTimeoutError after {took:.2f} s; pool usable at full size",
        time_s=round(took, 2),
        lost=figures["lost"],
        doubled=figures["doubled"],
    )


async def test_frozen_backend_transaction_timeout_default(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(faults.url, pool_size=1, transaction_timeout=TIMEOUT)
    try:
        pids: list[int] = []

        async def frozen() -> None:
            async with db.transaction() as conn:
                row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
                pids.append(row["pid"])
                faults.pause(row["pid"])
                await conn.execute("SELECT 1")

        took, error = await failure(frozen)
        faults.resume(pids[0])
        assert isinstance(error, StatementTimeoutError), repr(error)
        assert await db.fetchone("SELECT 2 AS two") == {"two": 2}
    finally:
        await db.shutdown()
    assert took < TIMEOUT + SLACK, took
    figure(
        fault="SIGSTOP backend mid-transaction, transaction_timeout=1 (database default)",
        backend=async_postgres_backend.id,
        saw=f"StatementTimeoutError after {took:.2f} s",
        time_s=round(took, 2),
        lost=0,
        doubled=0,
    )


async def test_frozen_backend_single_statement_times_out(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    """``db.fetchone()`` (one statement in autocommit) is bounded by ``transaction_timeout`` too."""
    db = async_postgres_backend.make(faults.url, pool_size=1, transaction_timeout=TIMEOUT)
    try:
        pid = (await db.fetchone("SELECT pg_backend_pid() AS pid"))["pid"]
        with faults.paused(pid):
            took, error = await failure(lambda: db.fetchone("SELECT 1"))
        # Sent in autocommit, the statement may have run: its outcome is unknown, and says so.
        assert isinstance(error, (StatementTimeoutError, CommitOutcomeUnknownError)), repr(error)
        assert f"{TIMEOUT:g}" in str(error), str(error)
        assert await db.fetchone("SELECT 2 AS two") == {"two": 2}
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()
    assert took < TIMEOUT + SLACK, took
    figure(
        fault="SIGSTOP backend during db.fetchone(), transaction_timeout=1",
        backend=async_postgres_backend.id,
        saw=f"{type(error).__name__} after {took:.2f} s; pool usable",
        time_s=round(took, 2),
        lost=0,
        doubled=0,
    )


async def test_frozen_postmaster_is_unavailable_within_connect_timeout(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    faults.pause_server()  # accepts nothing: every connect attempt waits for an answer
    db = async_postgres_backend.make(
        with_password(faults.url), pool_size=2, timeout=30.0, connect_timeout=CONNECT_TIMEOUT
    )
    try:
        took, error = await failure(lambda: select_one(db))
    finally:
        await db.shutdown()
    assert isinstance(error, DatabaseUnavailableError), repr(error)
    message = str(error)
    assert_masked(error)
    assert db.url in message
    assert "pool size" not in message
    assert took < CONNECT_TIMEOUT + SLACK, took
    figure(
        fault="SIGSTOP postmaster, new transaction (connect_timeout=2)",
        backend=async_postgres_backend.id,
        saw=f"DatabaseUnavailableError after {took:.2f} s",
        time_s=round(took, 2),
        lost=0,
        doubled=0,
    )


async def test_stopped_server_is_unavailable_at_once(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(with_password(faults.url), pool_size=2, timeout=30.0)
    try:
        assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
        faults.stop("fast")
        took, error = await failure(lambda: select_one(db))
        # A caller arriving while the server is known down: at once too.
        took_next, again = await failure(lambda: db.fetchone("SELECT 1"))
    finally:
        await db.shutdown()
    for exc in (error, again):
        assert isinstance(exc, DatabaseUnavailableError), repr(exc)
        assert_masked(exc)
        assert db.url in str(exc)
        assert "pool size" not in str(exc)
    assert took < SLACK, took
    assert took_next < SLACK, took_next
    figure(
        fault="server stopped (fast), new transaction",
        backend=async_postgres_backend.id,
        saw=f"DatabaseUnavailableError after {took:.2f} s (next caller {took_next:.2f} s)",
        time_s=round(took, 2),
        lost=0,
        doubled=0,
    )


async def test_exhausted_pool_names_the_oldest_holder(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(with_password(faults.url), pool_size=1, timeout=0.5)
    try:
        held = await db.get_connection()
        await held.execute("SELECT 1")
        took, error = await failure(lambda: select_one(db))
        await held.close()
    finally:
        await db.shutdown()
    assert isinstance(error, PoolTimeoutError), repr(error)
    message = str(error)
    assert "oldest holder has had its connection for" in message, message
    assert error.pool_info["oldest_held_s"] >= 0.5
    assert error.pool_info["checked_out"] == 1
    assert_masked(error)
    figure(
        fault="pool exhausted (1/1 held), pool timeout 0.5 s",
        backend=async_postgres_backend.id,
        saw=f"PoolTimeoutError after {took:.2f} s naming the oldest holder's hold time",
        time_s=round(took, 2),
        lost=0,
        doubled=0,
    )


if True:  # ASYNC: cancellation is an asyncio notion

    async def test_wait_for_on_a_frozen_backend_returns_promptly(
        faults: Any, ledger: Any, async_postgres_backend: Any, figure: Any
    ) -> None:
        db = async_postgres_backend.make(with_password(faults.url), pool_size=1, timeout=10.0)
        acked: list[str] = []
        try:
            await transfer(db, ledger, 0, 1, acked)
            pids: list[int] = []

            async def stuck() -> None:
                async with db.transaction() as conn:
                    row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
                    pids.append(row["pid"])
                    faults.pause(row["pid"])
                    await conn.execute("SELECT 1")

            began = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stuck(), 0.5)
            took = time.monotonic() - began
            faults.resume(pids[0])
            # The abandoned connection was discarded, not returned: the pool (size 1) serves.
            for i in range(3):
                await transfer(db, ledger, i, i + 1, acked)
            assert db.get_pool_info()["checked_out"] == 0
        finally:
            await db.shutdown()
        figures = ledger.check(acked)
        assert took < 0.5 + SLACK, took
        figure(
            fault="SIGSTOP backend, asyncio.wait_for(transaction, 0.5)",
            backend=async_postgres_backend.id,
            saw=f"TimeoutError after {took:.2f} s; connection discarded, pool usable",
            time_s=round(took, 2),
            lost=figures["lost"],
            doubled=figures["doubled"],
        )
