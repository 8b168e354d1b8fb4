from __future__ import annotations

import re
import threading
import time

import pytest

from structum_lab.plugins.database import (
    DatabaseClosedError,
    DatabaseError,
    DatabaseInterface,
    DatabaseUnavailableError,
    HealthStatus,
    IntegrityError,
    PoolTimeoutError,
    QueryError,
    SerializationError,
    StatementTimeoutError,
)
from structum_lab.plugins.database.testing import (
    ANY,
    MockConnection,
    MockDatabase,
    MockResponse,
    MockScript,
    QueryRecord,
)


def test_facade_exports_the_same_classes() -> None:
    import structum_lab.plugins.database as facade
    from structum_lab.plugins.database import testing

    assert facade.MockDatabase is testing.MockDatabase
    assert facade.AsyncMockDatabase is testing.AsyncMockDatabase
    assert isinstance(MockDatabase(), DatabaseInterface)


def test_records_every_statement_with_its_params(mock_db: MockDatabase) -> None:
    with mock_db.transaction() as conn:
        conn.execute("SELECT * FROM users")
        conn.execute("SELECT * FROM users WHERE id = :id", {"id": 7})
        conn.execute("SELECT %s", [1])
    assert [q.sql for q in mock_db.queries] == [
        "SELECT * FROM users",
        "SELECT * FROM users WHERE id = :id",
        "SELECT %s",
    ]
    assert [q.params for q in mock_db.queries] == [None, {"id": 7}, (1,)]
    assert {q.transaction for q in mock_db.queries} == {mock_db.transactions[0].id}


def test_scripted_rows_by_text_ignore_whitespace(mock_db: MockDatabase) -> None:
    mock_db.on("SELECT id, name FROM users WHERE active = :a", rows=[{"id": 1, "name": "ann"}])
    with mock_db.transaction() as conn:
        result = conn.execute(
            """
            SELECT id, name
              FROM users
             WHERE active = :a;
            """,
            {"a": True},
        )
        assert result.fetchone() == {"id": 1, "name": "ann"}
        assert result.fetchone() is None
        assert result.rowcount == 1
        conn.execute("SELECT id, name FROM users WHERE active = :a", {"a": False})
        assert conn.fetchone() == {"id": 1, "name": "ann"}  # fetch on the last result
        assert conn.execute("SELECT 1").fetchall() == []


def test_rows_are_fresh_copies_each_time(mock_db: MockDatabase) -> None:
    mock_db.on("SELECT 1", rows=[{"x": 1}])
    with mock_db.transaction() as conn:
        first = conn.execute("SELECT 1").fetchone()
        assert first is not None
        first["x"] = 99
        assert conn.execute("SELECT 1").scalar() == 1


def test_regex_params_times_and_order(mock_db: MockDatabase) -> None:
    by_id = mock_db.on(re.compile(r"FROM users WHERE id"), params={"id": 2}, rows=[{"n": "two"}])
    once = mock_db.on(re.compile(r"^SELECT .* FROM users"), rows=[{"n": "first"}], times=1)
    fallback = mock_db.on(re.compile(r"^SELECT .* FROM users"), rows=[{"n": "later"}])
    with mock_db.transaction() as conn:
        assert conn.execute("SELECT n FROM users WHERE id = :id", {"id": 2}).scalar() == "two"
        assert conn.execute("SELECT n FROM users WHERE id = :id", {"id": 3}).scalar() == "first"
        assert conn.execute("SELECT n FROM users WHERE id = :id", {"id": 3}).scalar() == "later"
    assert (by_id.calls, once.calls, fallback.calls) == (1, 1, 1)
    assert once.times == 0


def test_handler_computes_the_answer(mock_db: MockDatabase) -> None:
    def insert(query: QueryRecord) -> MockResponse:
        return MockResponse(rows=[{"id": len(query.params["name"])}], rowcount=1)

    mock_db.on(re.compile("^INSERT INTO users"), handler=insert)
    mock_db.on(re.compile("^SELECT"), handler=lambda q: [{"echo": q.params["v"]}])
    mock_db.on(re.compile("^DELETE"), handler=lambda q: None)
    with mock_db.transaction() as conn:
        result = conn.execute(
            "INSERT INTO users (name) VALUES (:name) RETURNING id", {"name": "abcd"}
        )
        assert (result.scalar(), result.rowcount) == (4, 1)
        assert conn.execute("SELECT :v AS echo", {"v": "hi"}).scalar() == "hi"
        assert conn.execute("DELETE FROM users").rowcount == 0
    with pytest.raises(TypeError, match="either handler"):
        mock_db.on("SELECT 1", rows=[], handler=lambda q: None)


def test_executemany_records_every_parameter_set(mock_db: MockDatabase) -> None:
    with mock_db.transaction() as conn:
        result = conn.executemany("INSERT INTO t (a) VALUES (:a)", [{"a": 1}, {"a": 2}, {"a": 3}])
    assert result.rowcount == 3
    (record,) = mock_db.queries
    assert record.many
    assert record.params == ({"a": 1}, {"a": 2}, {"a": 3})


def test_strict_mock_rejects_unscripted_statements() -> None:
    db = MockDatabase(strict=True)
    db.on("SELECT 1", rows=[{"one": 1}])
    with db.transaction() as conn:
        assert conn.execute("SELECT 1").scalar() == 1
    with (
        pytest.raises(AssertionError, match=r"unexpected statement 'SELECT 2'.*mock_db\.on"),
        db.transaction() as conn,
    ):
        conn.execute("SELECT 2")
    db.assert_rolled_back()
    with pytest.raises(TypeError, match="on the MockScript"):
        MockDatabase(script=MockScript(), strict=True)


def test_missing_named_parameter_is_an_error_like_on_real_backends(mock_db: MockDatabase) -> None:
    with (
        pytest.raises(QueryError, match=r"no value for the parameter\(s\) :email"),
        mock_db.transaction() as conn,
    ):
        conn.execute("INSERT INTO u (n, e) VALUES (:n, :email)", {"n": 1})
    with pytest.raises(QueryError, match="pass a mapping"), mock_db.transaction() as conn:
        conn.execute("SELECT :a", [1])
    with mock_db.transaction() as conn:  # colons in literals, casts and comments are not params
        conn.execute("SELECT '10:30', x::text, 1 -- :nope\nFROM t")
    lenient = MockDatabase(check_params=False)
    with lenient.transaction() as conn:
        conn.execute("SELECT :a")


def test_read_only_transaction_refuses_writes(mock_db: MockDatabase) -> None:
    with mock_db.transaction(read_only=True) as conn:
        conn.execute("SELECT 1")
    with (
        pytest.raises(QueryError, match="read-only transaction") as info,
        mock_db.transaction(read_only=True) as conn,
    ):
        conn.execute("  update users SET a = 1")
    assert info.value.sqlstate == "25006"
    assert mock_db.transactions[-1].options["read_only"] is True


def test_commit_and_rollback_are_tracked_per_transaction(mock_db: MockDatabase) -> None:
    with mock_db.transaction(isolation_level="SERIALIZABLE") as conn:
        conn.execute("INSERT INTO a VALUES (1)")
    mock_db.assert_committed()
    with pytest.raises(RuntimeError, match="boom"), mock_db.transaction() as conn:  # noqa: PT012
        conn.execute("INSERT INTO a VALUES (2)")
        raise RuntimeError("boom")
    mock_db.assert_rolled_back()
    first, second = mock_db.transactions
    assert first.committed
    assert first.options == {
        "isolation_level": "SERIALIZABLE",
        "read_only": False,
        "timeout": None,
    }
    assert second.rolled_back
    assert [q.sql for q in second.queries] == ["INSERT INTO a VALUES (2)"]
    assert mock_db.committed_transactions == [first]
    assert mock_db.rolled_back_transactions == [second]
    with pytest.raises(AssertionError, match=r"last transaction \(#2\) to be committed"):
        mock_db.assert_committed()
    assert mock_db.get_pool_info()["checked_out"] == 0


def test_nested_transaction_is_a_savepoint(mock_db: MockDatabase) -> None:
    with mock_db.transaction() as outer:
        outer.execute("INSERT INTO orders VALUES (1)")
        with pytest.raises(IntegrityError), mock_db.transaction() as inner:  # noqa: PT012
            assert inner is outer
            mock_db.fail_next(error="integrity")
            inner.execute("INSERT INTO order_items VALUES (1)")
        with outer.savepoint("named") as same:
            same.execute("INSERT INTO notes VALUES (1)")
    (tx,) = mock_db.transactions
    assert tx.committed
    assert [(sp.name, sp.status) for sp in tx.savepoints] == [
        ("sp_1", "rolled_back"),
        ("named", "released"),
    ]
    assert [q.sql for q in tx.savepoints[0].queries] == ["INSERT INTO order_items VALUES (1)"]
    assert len(mock_db.queries) == 3  # BEGIN/SAVEPOINT/COMMIT are not statements of the test


def test_assertion_helpers(mock_db: MockDatabase) -> None:
    with mock_db.transaction() as conn:
        conn.execute("SELECT * FROM users WHERE id = :id", {"id": 1})
        conn.execute("SELECT * FROM users WHERE id = :id", {"id": 2})
    mock_db.assert_executed("SELECT * FROM users WHERE id = :id")
    mock_db.assert_executed(re.compile("FROM users"), times=2)
    mock_db.assert_executed_with("SELECT * FROM users WHERE id = :id", {"id": 2})
    mock_db.assert_executed("SELECT * FROM users WHERE id = :id", ANY, times=2)
    mock_db.assert_not_executed(re.compile("DELETE"))
    assert mock_db.count(re.compile("users"), {"id": 1}) == 1
    assert mock_db.executed("SELECT * FROM users WHERE id = :id", {"id": 2})[0].params == {"id": 2}
    with pytest.raises(AssertionError) as info:
        mock_db.assert_executed_with("SELECT * FROM users WHERE id = :id", {"id": 3})
    message = str(info.value)
    assert "with params {'id': 3}" in message
    assert "found 0" in message
    assert "SELECT * FROM users WHERE id = :id {'id': 1}" in message
    with pytest.raises(AssertionError, match="1 time"):
        mock_db.assert_executed(re.compile("users"), times=1)
    with pytest.raises(AssertionError, match="not to be executed, found 2"):
        mock_db.assert_not_executed(re.compile("users"))
    mock_db.reset()
    assert mock_db.queries == []
    assert mock_db.transactions == []
    with pytest.raises(AssertionError, match="none has finished"):
        mock_db.assert_committed()


@pytest.mark.parametrize(
    ("kind", "cls", "sqlstate"),
    [
        ("unavailable", DatabaseUnavailableError, None),
        ("timeout", StatementTimeoutError, "57014"),
        ("serialization", SerializationError, "40001"),
        (StatementTimeoutError, StatementTimeoutError, "57014"),
        (SerializationError, SerializationError, "40001"),
    ],
)
def test_fail_next_raises_the_requested_error(
    mock_db: MockDatabase, kind: object, cls: type[Exception], sqlstate: str | None
) -> None:
    mock_db.fail_next(2, error=kind)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(cls) as info, mock_db.transaction() as conn:
            conn.execute("SELECT 1")
        assert getattr(info.value, "sqlstate", None) == sqlstate
        mock_db.assert_rolled_back()
    with mock_db.transaction() as conn:  # faults used up: the pool keeps working
        conn.execute("SELECT 1")
    mock_db.assert_committed()
    assert mock_db.get_pool_info()["checked_out"] == 0
    assert [type(q.error) for q in mock_db.queries] == [cls, cls, type(None)]


def test_fail_next_with_an_instance_or_custom_class(mock_db: MockDatabase) -> None:
    error = SerializationError("deadlock detected", sqlstate="40P01")
    mock_db.fail_next(error=error)
    mock_db.fail_next(error=ValueError)
    with (
        pytest.raises(SerializationError, match="deadlock") as info,
        mock_db.transaction() as conn,
    ):
        conn.execute("SELECT 1")
    assert info.value is not error
    assert info.value.sqlstate == "40P01"
    with pytest.raises(ValueError, match="fault injected"), mock_db.transaction() as conn:
        conn.execute("SELECT 1")
    with pytest.raises(ValueError, match="unknown fault 'nope'"):
        mock_db.fail_next(error="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an exception"):
        mock_db.on("SELECT 1", error=42)  # type: ignore[arg-type]


def test_a_lost_connection_stays_lost_and_is_discarded(mock_db: MockDatabase) -> None:
    mock_db.fail_next()  # "unavailable"
    conn = mock_db.get_connection()
    with pytest.raises(DatabaseUnavailableError):
        conn.execute("SELECT 1")
    with pytest.raises(DatabaseUnavailableError, match="lost"):
        conn.execute("SELECT 2")
    with pytest.raises(DatabaseUnavailableError):
        conn.commit()
    conn.rollback()  # error handling must be able to roll back
    conn.close()
    info = mock_db.get_pool_info()
    assert (info["checked_out"], info["total"]) == (0, 0)
    assert [tx.status for tx in mock_db.transactions] == ["rolled_back"]


def test_scripted_error_and_delay(mock_db: MockDatabase) -> None:
    mock_db.on("SELECT pg_sleep(10)", delay=0.05, error="timeout")
    started = time.perf_counter()
    with pytest.raises(StatementTimeoutError), mock_db.transaction() as conn:
        conn.execute("SELECT pg_sleep(10)")
    assert time.perf_counter() - started >= 0.05


def test_offline_database(mock_db: MockDatabase) -> None:
    conn = mock_db.get_connection()
    mock_db.offline = True
    with pytest.raises(DatabaseUnavailableError, match="offline"), mock_db.transaction():
        pass
    with pytest.raises(DatabaseUnavailableError):
        conn.execute("SELECT 1")
    conn.close()
    health = mock_db.health_check()
    assert health.status is HealthStatus.UNHEALTHY
    assert "offline" in health.message
    mock_db.offline = False
    assert mock_db.health_check().status is HealthStatus.HEALTHY
    with mock_db.transaction() as conn:
        conn.execute("SELECT 1")


def test_scripted_health(mock_db: MockDatabase) -> None:
    mock_db.set_health(HealthStatus.UNHEALTHY, message="replica lag", latency_ms=12.5)
    result = mock_db.health_check()
    assert (result.status, result.message, result.latency_ms) == (
        HealthStatus.UNHEALTHY,
        "replica lag",
        12.5,
    )
    assert not result.is_healthy
    mock_db.set_health(latency_ms=900.0)
    slow = mock_db.health_check()
    assert slow.status is HealthStatus.DEGRADED
    assert "latency 900.0ms" in slow.message
    mock_db.set_health(delay=0.3)
    started = time.perf_counter()
    measured = mock_db.health_check()
    assert time.perf_counter() - started >= 0.3
    assert measured.status is HealthStatus.DEGRADED
    assert measured.latency_ms >= 300
    mock_db.set_health()
    assert mock_db.health_check().status is HealthStatus.HEALTHY


def test_exhaust_pool_fault(mock_db: MockDatabase) -> None:
    mock_db.exhaust_pool()
    with pytest.raises(PoolTimeoutError, match="checked_out=0") as info, mock_db.transaction():
        pass
    assert info.value.pool_info["max"] == 5
    with mock_db.transaction() as conn:
        conn.execute("SELECT 1")


def test_simulated_pool_runs_out_and_waits() -> None:
    db = MockDatabase(pool_size=2, pool_timeout=0.05)
    first, second = db.get_connection(), db.get_connection()
    info = db.get_pool_info()
    assert (info["checked_out"], info["available"], info["total"], info["max"]) == (2, 0, 2, 2)
    assert db.health_check().status is HealthStatus.DEGRADED  # pool saturated
    with (
        pytest.raises(PoolTimeoutError, match=r"checked_out=2.*increase the pool size"),
        db.transaction(),
    ):
        pass
    got: list[object] = []

    def worker() -> None:
        waiting = db.get_connection()
        got.append(waiting)
        waiting.close()

    db._pool.timeout = 5.0
    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 5
    while db.get_pool_info()["waiting"] != 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert db.get_pool_info()["waiting"] == 1
    first.close()
    thread.join(5)
    assert len(got) == 1
    second.close()
    assert db.get_pool_info()["checked_out"] == 0
    with pytest.raises(ValueError, match="pool_size"):
        MockDatabase(pool_size=0)


def test_get_connection_lifecycle(mock_db: MockDatabase) -> None:
    conn = mock_db.get_connection()
    conn.execute("UPDATE a SET x = 1")
    conn.commit()
    conn.execute("UPDATE a SET x = 2")  # a new transaction starts with the next statement
    conn.rollback()
    conn.execute("UPDATE a SET x = 3")
    conn.close()  # uncommitted work is rolled back
    conn.close()  # twice is harmless
    assert [tx.status for tx in mock_db.transactions] == ["committed", "rolled_back", "rolled_back"]
    with pytest.raises(DatabaseError, match="already returned to the pool"):
        conn.execute("SELECT 1")
    with mock_db.get_connection() as conn2:
        conn2.execute("SELECT 1")
    assert mock_db.get_pool_info()["checked_out"] == 0


def test_connection_used_after_its_transaction_block(mock_db: MockDatabase) -> None:
    with mock_db.transaction() as conn:
        pass
    with pytest.raises(DatabaseError, match="only inside its transaction"):
        conn.execute("SELECT 1")


def test_shutdown(mock_db: MockDatabase) -> None:
    conn = mock_db.get_connection()
    with MockDatabase() as other:
        assert not other.closed
    assert repr(other) == "<MockDatabase 'mock://' closed>"
    mock_db.shutdown()
    with pytest.raises(DatabaseClosedError, match="shut down"), mock_db.transaction():
        pass
    with pytest.raises(DatabaseClosedError):
        mock_db.get_connection()
    with pytest.raises(DatabaseClosedError):
        conn.execute("SELECT 1")
    conn.close()
    assert mock_db.health_check().status is HealthStatus.UNHEALTHY


def test_force_rollback_turns_transactions_into_savepoints(mock_db: MockDatabase) -> None:
    with mock_db.force_rollback():
        with mock_db.transaction() as conn:
            conn.execute("INSERT INTO a VALUES (1)")
        with mock_db.transaction() as conn:
            conn.execute("INSERT INTO a VALUES (2)")
    (tx,) = mock_db.transactions
    assert tx.rolled_back
    assert [sp.status for sp in tx.savepoints] == ["released", "released"]


def test_password_never_shown() -> None:
    db = MockDatabase(url="postgresql://app:s3cret-pw@db.example/prod")
    db.offline = True
    assert "s3cret" not in repr(db)
    with pytest.raises(DatabaseUnavailableError) as info, db.transaction():
        pass
    assert "s3cret" not in str(info.value)
    health = db.health_check()
    assert "s3cret" not in str(health.to_dict())


def test_standalone_connection_records_into_the_owner_list() -> None:
    class Owner:
        def __init__(self) -> None:
            self.queries: list[QueryRecord] = []

    owner = Owner()
    with MockConnection(owner) as conn:
        conn.execute("SELECT 1")
        conn.commit()
    assert [q.sql for q in owner.queries] == ["SELECT 1"]
    with MockConnection() as loose:
        loose.execute("SELECT 2")
    assert repr(loose) == "<MockConnection closed>"


def test_from_config_reads_the_namespace() -> None:
    from structum_lab.config import DictConfigProvider, get_config_provider, set_config_provider

    previous = get_config_provider()
    set_config_provider(
        DictConfigProvider({"database": {"url": "postgresql://u:pw@h/db", "pool_size": 3}})
    )
    try:
        db = MockDatabase.from_config()
    finally:
        set_config_provider(previous)
    assert repr(db) == "<MockDatabase 'postgresql://u:***@h/db' open>"
    assert db.get_pool_info()["max"] == 3
