"""What the psycopg backend adds to the portable API, sync and async, against real PostgreSQL:
parameter styles, concurrency, transaction options, pipeline mode, pool statistics."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from structum_lab.plugins.database import (
    DatabaseError,
    IntegrityError,
    QueryError,
    StatementTimeoutError,
)
from structum_lab.plugins.database.postgres import AsyncPostgresDatabase, PostgresDatabase


@pytest.fixture
def db(postgres_server_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(postgres_server_url, pool_size=5, min_size=1, timeout=10)
    try:
        yield database
        assert database.get_pool_info()["checked_out"] == 0, "a test leaked a connection"
    finally:
        database.shutdown()


@pytest.fixture
async def adb(postgres_server_url: str) -> AsyncIterator[AsyncPostgresDatabase]:
    database = AsyncPostgresDatabase(postgres_server_url, pool_size=5, min_size=1, timeout=10)
    try:
        yield database
        assert database.get_pool_info()["checked_out"] == 0, "a test leaked a connection"
    finally:
        await database.shutdown()


@pytest.fixture
def table(db: PostgresDatabase) -> Iterator[str]:
    name = f"structum_pg_{uuid.uuid4().hex[:10]}"
    with db.transaction() as conn:
        conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, note TEXT)")
    yield name
    with db.transaction() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def _ids(db: PostgresDatabase, table: str) -> list[int]:
    with db.transaction() as conn:
        return [r["id"] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


# -- parameters ---------------------------------------------------------------------------------


def test_every_parameter_style(db: PostgresDatabase) -> None:
    with db.transaction() as conn:
        assert conn.execute("SELECT %s::int AS v", (1,)).fetchone() == {"v": 1}
        assert conn.execute("SELECT %(v)s::int AS v", {"v": 2}).fetchone() == {"v": 2}
        assert conn.execute("SELECT :v::int AS v, '5%' AS p", {"v": 3}).fetchone() == {
            "v": 3,
            "p": "5%",
        }
        assert conn.execute("SELECT $2::int AS a, $1::text AS b", ["x", 4]).fetchone() == {
            "a": 4,
            "b": "x",
        }
        assert conn.execute("SELECT $1::int + $1::int AS v", (5,)).scalar() == 10


async def test_every_parameter_style_async(adb: AsyncPostgresDatabase) -> None:
    async with adb.transaction() as conn:
        assert await (await conn.execute("SELECT %s::int AS v", (1,))).fetchone() == {"v": 1}
        assert await (await conn.execute("SELECT :v::int AS v", {"v": 3})).scalar() == 3
        result = await conn.execute("SELECT $2::int AS a, $1::text AS b", ["x", 4])
        assert await result.fetchone() == {"a": 4, "b": "x"}


def test_executemany_with_dollar_placeholders_out_of_order(
    db: PostgresDatabase, table: str
) -> None:
    with db.transaction() as conn:
        result = conn.executemany(
            f"INSERT INTO {table} (note, id) VALUES ($2, $1)", [(1, "a"), (2, "b")]
        )
        assert result.rowcount == 2
        conn.executemany(f"INSERT INTO {table} (id, note) VALUES (:id, :n)", [{"id": 3, "n": "c"}])
        assert conn.executemany(f"INSERT INTO {table} (id) VALUES (%s)", []).rowcount == 0
    assert _ids(db, table) == [1, 2, 3]


def test_executemany_named_params_as_tuples(db: PostgresDatabase, table: str) -> None:
    # :name with dicts is sent as %s with tuples; a repeated name, a lone name, a literal %
    # and a %(name)s statement all keep their meaning.
    with db.transaction() as conn:
        conn.executemany(
            f"INSERT INTO {table} (id, note) VALUES (:id, :note || '%' || :note)",
            [{"note": "a", "id": 1}, {"id": 2, "note": "b", "unused": 0}],
        )
        conn.executemany(f"INSERT INTO {table} (id) VALUES (:id)", ({"id": i} for i in (3, 4)))
        conn.executemany(f"INSERT INTO {table} (id) VALUES (%(id)s)", [{"id": 5}])
        notes = conn.execute(f"SELECT note FROM {table} WHERE id <= 2 ORDER BY id").fetchall()
    assert notes == [{"note": "a%a"}, {"note": "b%b"}]
    assert _ids(db, table) == [1, 2, 3, 4, 5]


def test_executemany_missing_key_is_a_clear_error(db: PostgresDatabase, table: str) -> None:
    expected = r"uses :note but a parameter set has no such key"
    with pytest.raises(QueryError, match=expected), db.transaction() as conn:
        conn.executemany(
            f"INSERT INTO {table} (id, note) VALUES (:id, :note)",
            [{"id": 1, "note": "a"}, {"id": 2}],
        )
    assert _ids(db, table) == []
    assert db.get_pool_info()["checked_out"] == 0
    with db.transaction() as conn:  # the pool keeps working
        conn.execute(f"INSERT INTO {table} (id) VALUES (:id)", {"id": 9})
    assert _ids(db, table) == [9]


def test_fetching_from_a_statement_without_rows_is_empty(db: PostgresDatabase) -> None:
    # Portable behaviour (same as the SQLAlchemy backend and the mocks): nothing to fetch.
    with db.transaction() as conn:
        result = conn.execute("SET LOCAL work_mem = '8MB'")
        assert result.fetchone() is None
        assert result.fetchall() == []
        assert conn.execute("SET LOCAL work_mem = '4MB'").fetchmany(5) == []


# -- concurrency ---------------------------------------------------------------------------------


async def test_fifty_concurrent_transactions_on_a_pool_of_five(postgres_server_url: str) -> None:
    db = AsyncPostgresDatabase(postgres_server_url, pool_size=5, min_size=1, timeout=20)
    try:

        async def one(i: int) -> int:
            async with db.transaction() as conn:
                result = await conn.execute("SELECT $1::int AS i, pg_sleep(0.01)", [i])
                row = await result.fetchone()
                assert row is not None
                return int(row["i"])

        results = await asyncio.gather(*(one(i) for i in range(50)))
        assert sorted(results) == list(range(50))
        info = db.get_pool_info()
        assert info["checked_out"] == 0
        assert info["total"] <= 5
        assert info["stats"]["requests_num"] >= 50
    finally:
        await db.shutdown()


async def test_cancelled_task_gives_its_connection_back(adb: AsyncPostgresDatabase) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with adb.transaction() as conn:
            started.set()
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - start < 3
    assert adb.get_pool_info()["checked_out"] == 0
    async with adb.transaction() as conn:
        assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1


def test_threads_share_a_small_pool(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=3, min_size=1, timeout=20)
    try:

        def one(i: int) -> int:
            with db.transaction() as conn:
                return int(conn.execute("SELECT :i::int AS i, pg_sleep(0.005)", {"i": i}).scalar())

        with ThreadPoolExecutor(max_workers=12) as pool:
            assert sorted(pool.map(one, range(60))) == list(range(60))
        assert db.get_pool_info()["checked_out"] == 0
        assert db.get_pool_info()["total"] <= 3
    finally:
        db.shutdown()


def test_force_rollback_is_shared_across_threads(db: PostgresDatabase, table: str) -> None:
    with db.force_rollback():
        with db.transaction() as conn:
            conn.execute(f"INSERT INTO {table} (id) VALUES (1)")

        def other_thread() -> None:
            with db.transaction() as conn:
                conn.execute(f"INSERT INTO {table} (id) VALUES (2)")

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert _ids(db, table) == [1, 2]
    assert _ids(db, table) == []


# -- transaction options -------------------------------------------------------------------------


def test_isolation_level_and_read_only_are_reset_afterwards(db: PostgresDatabase) -> None:
    db2 = PostgresDatabase(db._conninfo, pool_size=1, min_size=1)
    try:
        with db2.transaction(isolation_level="REPEATABLE READ", read_only=True) as conn:
            assert conn.execute("SHOW transaction_isolation").scalar() == "repeatable read"
            assert conn.execute("SHOW transaction_read_only").scalar() == "on"
        with db2.transaction() as conn:  # the only connection of the pool: must be reset
            assert conn.execute("SHOW transaction_isolation").scalar() == "read committed"
            assert conn.execute("SHOW transaction_read_only").scalar() == "off"
    finally:
        db2.shutdown()


async def test_isolation_level_async(adb: AsyncPostgresDatabase) -> None:
    async with adb.transaction(isolation_level="serializable") as conn:
        assert await (await conn.execute("SHOW transaction_isolation")).scalar() == "serializable"


def test_write_in_read_only_transaction_fails_clearly(db: PostgresDatabase, table: str) -> None:
    with pytest.raises(QueryError) as info, db.transaction(read_only=True) as conn:
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
    assert info.value.sqlstate == "25006"
    assert "read-only transaction" in str(info.value)
    assert _ids(db, table) == []


async def test_write_in_read_only_transaction_fails_clearly_async(
    adb: AsyncPostgresDatabase,
) -> None:
    with pytest.raises(QueryError) as info:
        async with adb.transaction(read_only=True) as conn:
            await conn.execute("CREATE TEMP TABLE structum_ro (id int)")
    assert info.value.sqlstate == "25006"


def test_statement_timeout_per_transaction(db: PostgresDatabase) -> None:
    with pytest.raises(StatementTimeoutError) as info, db.transaction(timeout=0.1) as conn:
        conn.execute("SELECT pg_sleep(1)")
    assert info.value.sqlstate == "57014"
    assert db.get_pool_info()["checked_out"] == 0
    with db.transaction() as conn:
        assert conn.execute("SHOW statement_timeout").scalar() == "0"
        assert conn.execute("SELECT 1 AS one").scalar() == 1


async def test_statement_timeout_per_transaction_async(adb: AsyncPostgresDatabase) -> None:
    with pytest.raises(StatementTimeoutError):
        async with adb.transaction(timeout=0.1) as conn:
            await conn.execute("SELECT pg_sleep(1)")
    async with adb.transaction() as conn:
        assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1


def test_statement_timeout_for_every_connection(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, min_size=1, statement_timeout=0.1)
    try:
        with pytest.raises(StatementTimeoutError), db.transaction() as conn:
            conn.execute("SELECT pg_sleep(1)")
        with db.transaction() as conn:
            assert conn.execute("SHOW statement_timeout").scalar() == "100ms"
    finally:
        db.shutdown()


def test_bad_options_fail_before_a_connection_is_taken(db: PostgresDatabase) -> None:
    with pytest.raises(ValueError, match="isolation_level"), db.transaction(isolation_level="x"):
        pass
    with pytest.raises(TypeError, match="unknown transaction option"), db.transaction(foo=1):
        pass
    assert db.get_pool_info()["checked_out"] == 0


def test_caught_error_without_savepoint_is_reported_at_commit(
    db: PostgresDatabase, table: str
) -> None:
    with pytest.raises(QueryError, match="aborted by an earlier error"), db.transaction() as conn:  # noqa: PT012 - raised at the block's exit
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        with pytest.raises(IntegrityError):
            conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
    assert _ids(db, table) == []


def test_seed_7_3_raw_savepoint_sql(db: PostgresDatabase, table: str) -> None:
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        conn.execute("SAVEPOINT sp1")
        try:
            conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        except Exception:
            conn.execute("ROLLBACK TO SAVEPOINT sp1")
        conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
    assert _ids(db, table) == [1, 2]


def test_seed_7_2_get_connection(db: PostgresDatabase, table: str) -> None:
    conn = db.get_connection()
    try:
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    assert _ids(db, table) == [1, 2]
    with pytest.raises(DatabaseError, match="given back to the pool"):
        conn.execute("SELECT 1")
    conn.close()  # idempotent


# -- pipeline mode -------------------------------------------------------------------------------


def test_pipeline_commits_everything(db: PostgresDatabase, table: str) -> None:
    with db.transaction(pipeline=True) as conn:
        assert conn.pipelined
        for i in range(1, 6):
            conn.execute(f"INSERT INTO {table} (id, note) VALUES (%s, %s)", (i, f"n{i}"))
        result = conn.execute(f"UPDATE {table} SET note = 'x' WHERE id <= :n", {"n": 3})
        select = conn.execute(f"SELECT count(*) AS n FROM {table}")
        assert result.rowcount == 3  # waits for that result only now
        assert select.scalar() == 5
    assert _ids(db, table) == [1, 2, 3, 4, 5]
    with db.transaction() as conn:  # the connection left pipeline mode
        assert not conn.pipelined
        assert conn.raw._pipeline is None


def test_pipeline_error_surfaces_at_commit_and_rolls_everything_back(
    db: PostgresDatabase, table: str
) -> None:
    with pytest.raises(IntegrityError) as info, db.transaction(pipeline=True) as conn:  # noqa: PT012 - raised at the block's exit
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")  # fails, but nobody waits for it
        conn.execute(f"INSERT INTO {table} (id) VALUES (3)")
    assert info.value.sqlstate == "23505"
    assert db.get_pool_info()["checked_out"] == 0
    assert _ids(db, table) == []
    with db.transaction() as conn:  # the pooled connection is healthy
        assert conn.execute("SELECT 1 AS one").scalar() == 1
        assert conn.raw._pipeline is None


def test_pipeline_error_surfaces_when_a_result_is_read(db: PostgresDatabase, table: str) -> None:
    with pytest.raises(IntegrityError), db.transaction(pipeline=True) as conn:  # noqa: PT012 - raised at the block's exit
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        conn.execute("SELECT 1 AS one").fetchone()
    assert _ids(db, table) == []


def test_pipeline_savepoint_catches_its_own_error(db: PostgresDatabase, table: str) -> None:
    with db.transaction(pipeline=True) as conn:
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        with pytest.raises(IntegrityError), db.transaction() as nested:
            nested.execute(f"INSERT INTO {table} (id) VALUES (1)")
        conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
    assert _ids(db, table) == [1, 2]


def test_pipeline_commit_inside_starts_a_new_transaction(db: PostgresDatabase, table: str) -> None:
    with pytest.raises(RuntimeError), db.transaction(pipeline=True) as conn:  # noqa: PT012
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        conn.commit()
        conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
        raise RuntimeError("after the commit")
    assert _ids(db, table) == [1]  # 2 was in the new transaction, rolled back
    with db.transaction() as conn:  # autocommit, used by pipelined transactions, is reset
        assert conn.raw.autocommit is False


def test_pipeline_read_only(db: PostgresDatabase, table: str) -> None:
    with pytest.raises(QueryError) as info, db.transaction(pipeline=True, read_only=True) as conn:
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
    assert info.value.sqlstate == "25006"
    with db.transaction(pipeline=True, read_only=True) as conn:
        assert conn.execute("SHOW transaction_read_only").scalar() == "on"


def test_pipeline_with_options(db: PostgresDatabase, table: str) -> None:
    with db.transaction(pipeline=True, isolation_level="SERIALIZABLE", timeout=5) as conn:
        level = conn.execute("SHOW transaction_isolation")
        timeout = conn.execute("SHOW statement_timeout")
        assert (level.scalar(), timeout.scalar()) == ("serializable", "5s")


async def test_pipeline_async(adb: AsyncPostgresDatabase) -> None:
    table = f"structum_pg_{uuid.uuid4().hex[:10]}"
    async with adb.transaction() as conn:
        await conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    try:
        with pytest.raises(IntegrityError):  # noqa: PT012 - raised at the block's exit
            async with adb.transaction(pipeline=True) as conn:
                await conn.execute(f"INSERT INTO {table} (id) VALUES ($1)", [1])
                await conn.execute(f"INSERT INTO {table} (id) VALUES ($1)", [1])
                await conn.execute(f"INSERT INTO {table} (id) VALUES ($1)", [3])
        assert adb.get_pool_info()["checked_out"] == 0

        async with adb.transaction(pipeline=True) as conn:
            result = await conn.execute(f"INSERT INTO {table} (id) VALUES (1), (2)")
            with pytest.raises(DatabaseError, match=r"await conn\.sync\(\)"):
                _ = result.rowcount
            await conn.sync()
            assert result.rowcount == 2
            count = await conn.execute(f"SELECT count(*) AS n FROM {table}")
            assert await count.scalar() == 2
            with pytest.raises(IntegrityError):
                async with adb.transaction() as nested:  # a savepoint inside the pipeline
                    await nested.execute(f"INSERT INTO {table} (id) VALUES (1)")

        async with adb.transaction() as conn:
            ids = await (await conn.execute(f"SELECT id FROM {table} ORDER BY id")).fetchall()
            assert ids == [{"id": 1}, {"id": 2}]
    finally:
        async with adb.transaction() as conn:
            await conn.execute(f"DROP TABLE {table}")


# -- pool, health, settings ----------------------------------------------------------------------


def test_pool_info_has_portable_keys_and_psycopg_stats(db: PostgresDatabase) -> None:
    with db.transaction():
        info = db.get_pool_info()
        assert info["checked_out"] == 1
    info = db.get_pool_info()
    assert set(info) >= {"checked_out", "available", "total", "overflow", "max", "min", "waiting"}
    assert info["checked_out"] == 0
    assert info["total"] >= 1
    assert info["max"] == 5
    assert info["stats"]["requests_num"] >= 1
    assert info["stats"]["pool_max"] == 5


def test_health_check_reports_the_pool(db: PostgresDatabase) -> None:
    result = db.health_check()
    assert result.is_healthy
    assert result.details["backend"] == "postgresql (psycopg)"
    assert result.details["pool"]["checked_out"] == 0


async def test_health_check_async_opens_the_pool(postgres_server_url: str) -> None:
    db = AsyncPostgresDatabase(postgres_server_url, pool_size=2)
    try:
        assert db.get_pool_info()["total"] == 0
        result = await db.health_check()
        assert result.is_healthy
        assert db.get_pool_info()["total"] >= 1
    finally:
        await db.shutdown()


async def test_async_context_manager_opens_and_shuts_down(postgres_server_url: str) -> None:
    async with AsyncPostgresDatabase(postgres_server_url, pool_size=2) as db:
        assert db.get_pool_info()["total"] >= 1
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1
    assert db.closed


def test_lazy_open(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=2, open=False)
    try:
        assert db.get_pool_info()["total"] == 0
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
        assert db.get_pool_info()["total"] >= 1
    finally:
        db.shutdown()


def test_application_name_and_prepare_threshold(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, application_name="billing-api")
    bouncer = PostgresDatabase(postgres_server_url, pool_size=1, pgbouncer=True)
    try:
        with db.transaction() as conn:
            assert conn.execute("SHOW application_name").scalar() == "billing-api"
            assert conn.raw.prepare_threshold == 5
        with bouncer.transaction() as conn:
            assert conn.execute("SHOW application_name").scalar() == "structum"
            assert conn.raw.prepare_threshold is None
            for _ in range(10):
                conn.execute("SELECT %s::int AS v", (1,))
            prepared = conn.execute("SELECT count(*) AS n FROM pg_prepared_statements").scalar()
            assert prepared == 0
    finally:
        db.shutdown()
        bouncer.shutdown()


def test_echo_logs_statements(postgres_server_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, echo=True)
    try:
        with (
            caplog.at_level(logging.DEBUG, logger="structum_lab.plugins.database.postgres"),
            db.transaction() as conn,
        ):
            conn.execute("SELECT :v::int AS v", {"v": 1})
        assert any("SELECT %s::int AS v (1,)" in r.getMessage() for r in caplog.records)
    finally:
        db.shutdown()
