"""The portable API on every synchronous backend, against real servers.

Only what ``DatabaseInterface`` promises is used here, so every backend in ``SYNC_BACKENDS``
(SQLAlchemy on PostgreSQL/MariaDB/SQLite, psycopg) runs the same tests unchanged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from structum_lab.plugins.database import (
    DatabaseClosedError,
    HealthStatus,
    IntegrityError,
    PoolTimeoutError,
    QueryError,
    StatementTimeoutError,
)

_ID = {
    "postgresql": "id SERIAL PRIMARY KEY",
    "mysql": "id INTEGER AUTO_INCREMENT PRIMARY KEY",
    "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
}


@pytest.fixture
def table(sync_db: Any, sync_backend: Any) -> Iterator[str]:
    """A fresh table ``(id, name UNIQUE, qty)`` with a unique name, dropped afterwards."""
    name = f"structum_t_{uuid.uuid4().hex[:10]}"
    with sync_db.transaction() as conn:
        conn.execute(
            f"CREATE TABLE {name} ({_ID[sync_backend.dialect]}, "
            "name VARCHAR(50) NOT NULL UNIQUE, qty INTEGER NOT NULL DEFAULT 0)"
        )
    yield name
    if not getattr(sync_db, "closed", False):
        with sync_db.transaction() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def _names(db: Any, table: str) -> list[str]:
    with db.transaction() as conn:
        return [row["name"] for row in conn.execute(f"SELECT name FROM {table} ORDER BY name")]


def _insert(conn: Any, table: str, name: str, qty: int = 0) -> None:
    conn.execute(
        f"INSERT INTO {table} (name, qty) VALUES (:name, :qty)", {"name": name, "qty": qty}
    )


def test_commit_persists(sync_db: Any, table: str) -> None:
    with sync_db.transaction() as conn:
        _insert(conn, table, "alice")
    assert _names(sync_db, table) == ["alice"]


def test_rollback_on_exception_reraises_and_writes_nothing(sync_db: Any, table: str) -> None:
    class Boom(Exception):
        pass

    def failing() -> None:
        with sync_db.transaction() as conn:
            _insert(conn, table, "ghost")
            raise Boom

    with pytest.raises(Boom):
        failing()
    assert _names(sync_db, table) == []
    assert sync_db.get_pool_info()["checked_out"] == 0


def test_nested_transaction_is_a_savepoint(sync_db: Any, table: str) -> None:
    def inner_fails() -> None:
        with sync_db.transaction() as inner:
            _insert(inner, table, "b")
            raise ZeroDivisionError

    with sync_db.transaction() as outer:
        _insert(outer, table, "a")
        with pytest.raises(ZeroDivisionError):
            inner_fails()
        _insert(outer, table, "c")
    assert _names(sync_db, table) == ["a", "c"]


def test_conn_savepoint(sync_db: Any, table: str) -> None:
    def failing_savepoint(conn: Any) -> None:
        with conn.savepoint():
            _insert(conn, table, "dropped")
            _insert(conn, table, "kept")  # unique violation inside the savepoint

    with sync_db.transaction() as conn:
        with conn.savepoint():
            _insert(conn, table, "kept")
        with pytest.raises(IntegrityError):
            failing_savepoint(conn)
        _insert(conn, table, "after")
    assert _names(sync_db, table) == ["after", "kept"]


def test_raw_savepoint_sql(sync_db: Any, table: str) -> None:
    # seed §7.3: a failed statement rolled back to a raw SAVEPOINT; the main transaction commits
    with sync_db.transaction() as conn:
        _insert(conn, table, "order")
        conn.execute("SAVEPOINT sp1")
        try:
            _insert(conn, table, "order")  # duplicate
        except IntegrityError:
            conn.execute("ROLLBACK TO SAVEPOINT sp1")
        _insert(conn, table, "more")
    assert _names(sync_db, table) == ["more", "order"]


def test_rowcount(sync_db: Any, table: str) -> None:
    with sync_db.transaction() as conn:
        for name, qty in (("a", 1), ("b", 1), ("c", 2)):
            _insert(conn, table, name, qty)
        updated = conn.execute(f"UPDATE {table} SET qty = qty + 10 WHERE qty = :q", {"q": 1})
        assert updated.rowcount == 2
        deleted = conn.execute(f"DELETE FROM {table} WHERE qty > :q", {"q": 10})
        assert deleted.rowcount == 2
        none = conn.execute(f"DELETE FROM {table} WHERE name = :n", {"n": "zzz"})
        assert none.rowcount == 0


def test_fetching_a_statement_without_rows_is_empty(sync_db: Any, table: str) -> None:
    with sync_db.transaction() as conn:
        result = conn.execute(f"UPDATE {table} SET qty = 1 WHERE name = :n", {"n": "zzz"})
        assert result.fetchone() is None
        assert result.fetchall() == []
        assert conn.fetchmany(3) == []


def test_insert_returning(sync_db: Any, table: str) -> None:
    with sync_db.transaction() as conn:
        result = conn.execute(
            f"INSERT INTO {table} (name, qty) VALUES (:n, :q) RETURNING id, name",
            {"n": "ret", "q": 3},
        )
        row = result.fetchone()
        assert row is not None
        assert row["id"] > 0
        assert row["name"] == "ret"
        assert type(row) is dict


def test_fetch_variants(sync_db: Any, table: str) -> None:
    with sync_db.transaction() as conn:
        for i in range(5):
            _insert(conn, table, f"n{i}", i)
    query = f"SELECT name, qty FROM {table} ORDER BY qty"
    with sync_db.transaction() as conn:
        result = conn.execute(query)
        assert result.fetchone() == {"name": "n0", "qty": 0}
        assert result.fetchmany(size=2) == [{"name": "n1", "qty": 1}, {"name": "n2", "qty": 2}]
        assert result.fetchall() == [{"name": "n3", "qty": 3}, {"name": "n4", "qty": 4}]
        assert result.fetchone() is None
        assert result.fetchall() == []

        assert conn.execute(f"SELECT count(*) AS n FROM {table}").scalar() == 5
        assert [row["qty"] for row in conn.execute(query)] == [0, 1, 2, 3, 4]

        # seed §1.1: fetch on the connection reads the last statement's result
        conn.execute(f"SELECT name FROM {table} WHERE qty = :q", {"q": 4})
        assert conn.fetchone() == {"name": "n4"}
        conn.execute(query)
        assert len(conn.fetchmany(3)) == 3
        assert len(conn.fetchall()) == 2


def test_executemany(sync_db: Any, table: str) -> None:
    with sync_db.transaction() as conn:
        conn.executemany(
            f"INSERT INTO {table} (name, qty) VALUES (:name, :qty)",
            [{"name": f"m{i}", "qty": i} for i in range(3)],
        )
    assert _names(sync_db, table) == ["m0", "m1", "m2"]


def test_get_connection_commit_rollback_close(sync_db: Any, table: str) -> None:
    conn = sync_db.get_connection()
    try:
        _insert(conn, table, "committed")
        conn.commit()
        _insert(conn, table, "rolled-back")
        conn.rollback()
        _insert(conn, table, "closed-uncommitted")
    finally:
        conn.close()
    assert _names(sync_db, table) == ["committed"]
    assert sync_db.get_pool_info()["checked_out"] == 0


def test_pool_info_keys(sync_db: Any) -> None:
    info = sync_db.get_pool_info()
    assert {"checked_out", "available", "total", "overflow"} <= set(info)
    with sync_db.transaction() as conn:
        conn.execute("SELECT 1")
        assert sync_db.get_pool_info()["checked_out"] == 1
    assert sync_db.get_pool_info()["checked_out"] == 0


def test_health_check(sync_db: Any) -> None:
    result = sync_db.health_check()
    assert result.status is HealthStatus.HEALTHY
    assert result.latency_ms > 0
    assert result.message


def test_pool_exhaustion(sync_backend: Any, backend_url: Callable[[Any], str], table: str) -> None:
    db = sync_backend.make(backend_url(sync_backend), pool_size=1, timeout=0.3)
    try:
        held = db.get_connection()
        start = time.perf_counter()
        with pytest.raises(PoolTimeoutError) as info, db.transaction():
            pass
        assert time.perf_counter() - start < 3
        assert "checked_out=1" in str(info.value)
        held.close()
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


def test_syntax_error(sync_db: Any) -> None:
    with pytest.raises(QueryError) as info, sync_db.transaction() as conn:
        conn.execute("SELEC 1")
    assert info.value.sqlstate is not None
    assert info.value.sqlstate.startswith("42")
    assert sync_db.get_pool_info()["checked_out"] == 0
    with sync_db.transaction() as conn:
        assert conn.execute("SELECT 2 AS two").scalar() == 2


def test_unique_violation(sync_db: Any, table: str) -> None:
    with sync_db.transaction() as conn:
        _insert(conn, table, "dup")
    with pytest.raises(IntegrityError) as info, sync_db.transaction() as conn:
        _insert(conn, table, "dup")
    assert info.value.sqlstate is not None
    assert info.value.sqlstate.startswith("23")
    assert isinstance(info.value.__cause__, Exception)
    assert sync_db.get_pool_info()["checked_out"] == 0


def test_transaction_after_shutdown(sync_db: Any) -> None:
    sync_db.shutdown()
    with pytest.raises(DatabaseClosedError), sync_db.transaction():
        pass
    assert sync_db.get_pool_info()["checked_out"] == 0


def test_colon_in_literal_is_untouched(sync_db: Any) -> None:
    with sync_db.transaction() as conn:
        row = conn.execute("SELECT ':name' AS lit, '50%' AS pct, :v AS v", {"v": 7}).fetchone()
    assert row is not None
    assert row["lit"] == ":name"
    assert row["pct"] == "50%"
    assert int(row["v"]) == 7


def test_postgres_cast(sync_db: Any, sync_backend: Any) -> None:
    if sync_backend.dialect != "postgresql":
        pytest.skip("'::' casts are PostgreSQL syntax")
    with sync_db.transaction() as conn:
        row = conn.execute("SELECT :v::int + 1 AS n, '1'::text AS t", {"v": "41"}).fetchone()
    assert row == {"n": 42, "t": "1"}


def test_read_only_transaction(sync_db: Any, table: str) -> None:
    with pytest.raises(QueryError), sync_db.transaction(read_only=True) as conn:
        _insert(conn, table, "nope")
    with sync_db.transaction(read_only=True) as conn:
        assert conn.execute(f"SELECT count(*) AS n FROM {table}").scalar() == 0
    assert _names(sync_db, table) == []


def test_statement_timeout(sync_backend: Any, backend_url: Callable[[Any], str]) -> None:
    # one connection, so the transaction after the timeout runs on the same one
    db = sync_backend.make(backend_url(sync_backend), pool_size=1)
    try:
        sleep, probe = {
            "postgresql": ("SELECT pg_sleep(3)", "SHOW statement_timeout"),
            "mysql": ("SELECT SLEEP(3)", "SELECT @@session.max_statement_time AS t"),  # MariaDB
        }.get(sync_backend.dialect, (None, None))
        if sleep is None:  # SQLite has no statement timeout: the option is accepted and ignored
            with db.transaction(timeout=0.2) as conn:
                assert conn.execute("SELECT 1 AS one").scalar() == 1
            return
        start = time.perf_counter()
        with pytest.raises(StatementTimeoutError), db.transaction(timeout=0.2) as conn:
            conn.execute(sleep)
        assert time.perf_counter() - start < 2.5
        assert db.get_pool_info()["checked_out"] == 0
        # the timeout does not leak into the next transaction on the pooled connection
        with db.transaction() as conn:
            assert str(conn.execute(probe).scalar()) in ("0", "0.0")
    finally:
        db.shutdown()


def test_isolation_level(sync_db: Any, sync_backend: Any) -> None:
    probe = {
        "postgresql": "SHOW transaction_isolation",
        "mysql": "SELECT @@session.tx_isolation AS level",
    }.get(sync_backend.dialect)
    with sync_db.transaction(isolation_level="SERIALIZABLE") as conn:
        level = conn.execute(probe).scalar() if probe else "serializable"
    assert str(level).lower().replace("-", " ") == "serializable"
    if probe:  # the pooled connection is back to the server default afterwards
        with sync_db.transaction() as conn:
            assert str(conn.execute(probe).scalar()).lower() != "serializable"


def test_escaped_quotes_inside_literals_are_not_placeholders(
    sync_db: Any, sync_backend: Any
) -> None:
    # MySQL/MariaDB escape a quote with a backslash by default; everyone accepts a doubled quote.
    literals = ["'it''s :x'"] + (["'it\\'s :x'"] if sync_backend.dialect == "mysql" else [])
    with sync_db.transaction() as conn:
        for literal in literals:
            row = conn.execute(f"SELECT {literal} AS a, :y AS b", {"y": 2}).fetchone()
            assert row == {"a": "it's :x", "b": 2}
