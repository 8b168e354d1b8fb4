"""Connections killed while idle: replaced before or at the first statement, never an error.

A pooled connection the server ended while it sat idle (``pg_terminate_backend``, a restart,
MariaDB's ``KILL``) is found dead at checkout without a round trip (its socket is readable), or,
with that check off, at the transaction's first statement, which then runs again on a new
connection: nothing of the transaction had run. A connection lost after a statement ran is
never replayed: the caller gets ``DatabaseUnavailableError`` and the ledger proves 0 lost /
0 doubled.

Written once, async; ``tools/async_to_sync.py`` generates ``test_killed_sync.py``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pymysql
import pytest

from structum_lab.plugins.database import DatabaseUnavailableError
from structum_lab.plugins.database._acompat import asleep
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase

_CALLS = 6  # more calls than the pool has connections: every dead one is met


def _workloads(backend: Any) -> list[tuple[str, dict[str, Any] | None]]:
    """(name, transaction options or None for ``db.fetchone()``) of the calls to try."""
    calls: list[tuple[str, dict[str, Any] | None]] = [
        ("transaction()", {}),
        ("transaction(read_only=True)", {"read_only": True}),
        ("fetchone()", None),
    ]
    if backend.id.startswith("psycopg"):
        calls.append(("transaction(pipeline=True)", {"pipeline": True}))
    return calls


async def _call(db: Any, options: dict[str, Any] | None) -> None:
    if options is None:
        assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
        return
    async with db.transaction(**options) as conn:
        assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1


async def _fill(db: Any, n: int, own_id: str) -> list[Any]:
    """Open ``n`` pooled connections, leave them idle; return their server-side ids."""
    conns = [await db.get_connection() for _ in range(n)]
    ids = [await (await conn.execute(own_id)).scalar() for conn in conns]
    for conn in conns:
        await conn.close()
    return ids


def _until_gone(faults: Any, pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while set(pids) & set(faults.backend_pids()):
        assert time.monotonic() < deadline, "the server never ended the sessions"
        time.sleep(0.01)


async def _calls_after(
    fault: Any, db: Any, options: dict[str, Any] | None
) -> tuple[float, list[str]]:
    """Run ``fault()``, then the calls; (seconds to the first success, errors seen)."""
    fault()
    began = time.monotonic()
    first: float | None = None
    errors: list[str] = []
    for _ in range(_CALLS):
        try:
            await _call(db, options)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        else:
            if first is None:
                first = time.monotonic() - began
    return (first if first is not None else float("nan")), errors


@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
async def test_idle_connections_terminated(
    async_postgres_backend: Any, faults: Any, figure: Any, check: bool
) -> None:
    # unchecked: pool_pre_ping=False, so only the first-statement replacement is left
    backend = async_postgres_backend
    db = backend.make(faults.url, pool_size=4, timeout=10, pool_pre_ping=check)
    errors: list[str] = []
    took = 0.0
    try:
        for _name, options in _workloads(backend):
            await _fill(db, 4, "SELECT pg_backend_pid() AS id")

            def kill() -> None:
                pids = faults.backend_pids()
                faults.terminate(pids)
                _until_gone(faults, pids)

            first, seen = await _calls_after(kill, db, options)
            took = max(took, first)
            errors += seen
            assert db.get_pool_info()["checked_out"] == 0
        names = ", ".join(name for name, _ in _workloads(backend))
        figure(
            fault="pg_terminate_backend of every idle pooled connection"
            + ("" if check else " (pool_pre_ping=False)"),
            backend=backend.id,
            saw=f"no error ({names})" if not errors else f"{len(errors)} errors",
            recover_s=round(took, 3),
            lost=0,
            doubled=0,
        )
        assert errors == [], errors
    finally:
        await db.shutdown()


async def test_idle_session_timeout(async_postgres_backend: Any, faults: Any, figure: Any) -> None:
    # The server ends every session idle for 0.3 s (57P05): the pool's connections all expire.
    backend = async_postgres_backend
    sep = "&" if "?" in faults.url else "?"
    url = f"{faults.url}{sep}options=-c%20idle_session_timeout%3D300"
    db = backend.make(url, pool_size=3, timeout=10)
    errors: list[str] = []
    took = 0.0
    try:
        for _name, options in _workloads(backend):
            await _fill(db, 3, "SELECT pg_backend_pid() AS id")
            first, seen = await _calls_after(lambda: time.sleep(0.6), db, options)
            took = max(took, first)
            errors += seen
        names = ", ".join(name for name, _ in _workloads(backend))
        figure(
            fault="idle_session_timeout expired on every pooled connection",
            backend=backend.id,
            saw=f"no error ({names})" if not errors else f"{len(errors)} errors",
            recover_s=round(took, 3),
            lost=0,
            doubled=0,
        )
        assert errors == [], errors
    finally:
        await db.shutdown()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_restart_between_transactions(
    async_postgres_backend: Any, faults: Any, figure: Any, mode: str
) -> None:
    backend = async_postgres_backend
    db = backend.make(faults.url, pool_size=4, timeout=10)
    try:
        await _fill(db, 4, "SELECT pg_backend_pid() AS id")
        # restart() returns once the server accepts connections again
        took, errors = await _calls_after(lambda: faults.restart(mode), db, {})
        figure(
            fault=f"server restart ({mode}) between transactions",
            backend=backend.id,
            saw="no error once the server is up" if not errors else f"{len(errors)} errors",
            recover_s=round(took, 3),
            lost=0,
            doubled=0,
        )
        assert errors == [], errors
        for _name, options in _workloads(backend):
            await _call(db, options)  # every kind of call works on the new connections
    finally:
        await db.shutdown()


async def test_kill_after_the_first_statement_is_not_replayed(
    async_postgres_backend: Any, ledger: Any, figure: Any
) -> None:
    backend = async_postgres_backend
    db = backend.make(ledger.faults.url, pool_size=2, timeout=10)
    statements, tx = ledger.transfer_sql(0, 1, 5)
    params = {"tx": tx, "src": 0, "dst": 1, "amount": 5}

    async def transfer() -> None:
        async with db.transaction() as conn:
            await conn.execute(statements[0], params)  # the INSERT ran
            pid = await (await conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
            ledger.faults.terminate([pid])
            _until_gone(ledger.faults, [pid])
            await conn.execute(statements[1], params)  # must not run the INSERT again

    try:
        with pytest.raises(DatabaseUnavailableError):
            await transfer()
        assert db.get_pool_info()["checked_out"] == 0
        figures = ledger.check([])
        assert figures["stored"] == 0  # rolled back with the session, not replayed
        figure(
            fault="pg_terminate_backend after the transaction's first statement",
            backend=backend.id,
            saw="DatabaseUnavailableError (retryable; not replayed)",
            recover_s=0.0,
            lost=figures["lost"],
            doubled=figures["doubled"],
        )
    finally:
        await db.shutdown()


async def test_ledger_with_periodic_terminate(
    async_postgres_backend: Any, ledger: Any, figure: Any
) -> None:
    # Every 10th transfer the pool's idle connections are terminated first (no error allowed);
    # every 10th (offset 5) the transfer's own connection is killed after its INSERT (the
    # error must surface: nothing is replayed after a statement ran).
    backend = async_postgres_backend
    faults = ledger.faults
    db = backend.make(faults.url, pool_size=3, timeout=10)
    acknowledged: list[str] = []
    surfaced = 0
    unexpected: list[str] = []
    transfers = 60
    try:
        for i in range(transfers):
            src, dst = i % ledger.count, (i * 7 + 3) % ledger.count
            statements, tx = ledger.transfer_sql(src, dst, 1 + i % 5)
            params = {"tx": tx, "src": src, "dst": dst, "amount": 1 + i % 5}
            if i % 10 == 0:
                pids = faults.backend_pids()
                faults.terminate(pids)
                _until_gone(faults, pids)
            try:
                async with db.transaction() as conn:
                    await conn.execute(statements[0], params)
                    if i % 10 == 5:
                        pid = await (await conn.execute("SELECT pg_backend_pid() AS p")).scalar()
                        faults.terminate([pid])
                        _until_gone(faults, [pid])
                    for sql in statements[1:]:
                        await conn.execute(sql, params)
            except DatabaseUnavailableError as exc:
                if i % 10 == 5:
                    surfaced += 1
                else:
                    unexpected.append(f"{i}: {exc}")
            else:
                acknowledged.append(tx)
        figures = ledger.check(acknowledged)
        figure(
            fault="ledger, 60 transfers: idle pool terminated every 10, own connection "
            "killed mid-transfer every 10",
            backend=backend.id,
            saw=f"{surfaced} DatabaseUnavailableError (the mid-transfer kills), "
            f"{len(unexpected)} other errors",
            recover_s=0.0,
            lost=figures["lost"],
            doubled=figures["doubled"],
        )
        assert unexpected == []
        assert surfaced == transfers // 10
        assert figures["stored"] == len(acknowledged) == transfers - surfaced
    finally:
        await db.shutdown()


# -- MariaDB: KILL of idle connections on the local service -------------------------------------


def _kill_mariadb(url: str, ids: list[int]) -> None:
    """``KILL`` the given connections (over a connection of our own) and wait until gone."""
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    admin = pymysql.connect(
        host=parts.host or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        autocommit=True,
    )
    try:
        with admin.cursor() as cur:
            for ident in ids:
                cur.execute(f"KILL CONNECTION {int(ident)}")
            deadline = time.monotonic() + 10
            while True:
                listed = ",".join(str(int(i)) for i in ids)
                cur.execute(
                    f"SELECT count(*) FROM information_schema.processlist WHERE id IN ({listed})"
                )
                row = cur.fetchone()
                if row is None or row[0] == 0:
                    break
                assert time.monotonic() < deadline, "the server never ended the sessions"
                time.sleep(0.01)
    finally:
        admin.close()


@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
async def test_mariadb_idle_connections_killed(
    mysql_server_url: str, figure: Any, check: bool
) -> None:
    db = AsyncSQLAlchemyDatabase(
        mysql_server_url, pool_size=3, max_overflow=0, pool_timeout=10, pool_pre_ping=check
    )
    table = f"fault_kill_{uuid.uuid4().hex[:8]}"
    try:
        async with db.transaction() as conn:
            await conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        errors: list[str] = []
        took = 0.0
        for round_ in range(3):
            ids = await _fill(db, 3, "SELECT CONNECTION_ID() AS id")
            _kill_mariadb(mysql_server_url, ids)
            await asleep(0)  # an asyncio driver reads the server's goodbye on the loop
            began = time.monotonic()
            for i in range(_CALLS):
                try:
                    async with db.transaction() as conn:
                        await conn.execute(
                            f"INSERT INTO {table} (id) VALUES (:id)", {"id": round_ * 100 + i}
                        )
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                if i == 0:
                    took = max(took, time.monotonic() - began)
        stored = await db.fetchone(f"SELECT count(*) AS n FROM {table}")
        figure(
            fault="KILL of every idle pooled connection (MariaDB)"
            + ("" if check else " (pool_pre_ping=False)"),
            backend=f"sqlalchemy-mysql{'-async' if db._is_async else ''}",
            saw="no error" if not errors else f"{len(errors)} errors",
            recover_s=round(took, 3),
            lost=3 * _CALLS - len(errors) - int(stored["n"]) if stored else None,
            doubled=0,
        )
        assert errors == [], errors
        assert stored == {"n": 3 * _CALLS}  # every insert once: none lost, none doubled
    finally:
        async with db.transaction() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await db.shutdown()
