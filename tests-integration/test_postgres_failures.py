"""The psycopg backend when things go wrong, against real PostgreSQL: connections killed
server-side, unreachable servers, bad input. After each failure nothing stays checked out and the
pool keeps working; no message shows the password."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseClosedError,
    DatabaseUnavailableError,
    HealthStatus,
    HealthThresholds,
    PoolTimeoutError,
    QueryError,
)
from structum_lab.plugins.database.postgres import AsyncPostgresDatabase, PostgresDatabase
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

PASSWORD = "Pw-9f8e7d-secret"


def _terminate(url: str, pid: int) -> None:
    """Kill backend ``pid`` from a separate superuser connection and wait until it is gone."""
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        for _ in range(200):
            if admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                time.sleep(0.01)
            else:
                return
    raise AssertionError(f"backend {pid} did not exit")


def _count_validations(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every connection the database validates before use."""
    seen: list[object] = []
    original = db._validated

    def counting(raw: Any) -> Any:
        seen.append(raw)
        return original(raw)

    monkeypatch.setattr(db, "_validated", counting)
    return seen


# -- idle validation -----------------------------------------------------------------------------


def test_connection_killed_while_idle_is_replaced(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, min_size=1, check_idle_seconds=0.2)
    validations = _count_validations(db, monkeypatch)
    try:
        with db.transaction() as conn:
            first = conn.execute("SELECT pg_backend_pid() AS pid").scalar()
        for _ in range(20):  # connections used within the window are not validated
            with db.transaction() as conn:
                conn.execute("SELECT 1")
        assert validations == []

        _terminate(postgres_server_url, first)
        time.sleep(0.3)
        with db.transaction() as conn:  # no error for the caller
            second = conn.execute("SELECT pg_backend_pid() AS pid").scalar()
        assert second != first
        assert len(validations) == 1
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


async def test_connection_killed_while_idle_is_replaced_async(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = AsyncPostgresDatabase(postgres_server_url, pool_size=1, min_size=1, check_idle_seconds=0.2)
    validations = _count_validations(db, monkeypatch)
    try:
        async with db.transaction() as conn:
            first = await (await conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
        for _ in range(20):
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
        assert validations == []

        _terminate(postgres_server_url, first)
        await asyncio.sleep(0.3)
        async with db.transaction() as conn:
            second = await (await conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
        assert second != first
        assert len(validations) == 1
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()


def test_health_check_after_a_kill_is_healthy(postgres_server_url: str) -> None:
    # The probe after the kill reconnects, so its latency includes connecting: a threshold no
    # latency crosses keeps the grade about the kill only.
    db = PostgresDatabase(
        postgres_server_url,
        pool_size=1,
        min_size=1,
        check_idle_seconds=0.1,
        health_thresholds=HealthThresholds(degraded_latency_ms=86_400_000.0),
    )
    try:
        with db.transaction() as conn:
            pid = conn.execute("SELECT pg_backend_pid() AS pid").scalar()
        _terminate(postgres_server_url, pid)
        time.sleep(0.2)
        assert db.health_check().status is HealthStatus.HEALTHY
    finally:
        db.shutdown()


def test_one_dead_connection_makes_the_others_suspect(postgres_server_url: str) -> None:
    # A long window: without suspicion the second dead connection would reach the caller too.
    db = PostgresDatabase(postgres_server_url, pool_size=2, min_size=2, check_idle_seconds=60)
    try:
        a, b = db.get_connection(), db.get_connection()
        pids = [c.execute("SELECT pg_backend_pid() AS pid").scalar() for c in (a, b)]
        a.close()
        b.close()
        for pid in pids:
            _terminate(postgres_server_url, pid)

        # The first checkout gets a dead connection used a moment ago (trusted: inside the
        # window): its first statement fails, so it is replaced and the statement run again.
        # The other connection, idle since before that failure, is checked first.
        with db.transaction() as conn:
            assert conn.execute("SELECT pg_backend_pid() AS pid").scalar() not in pids
        assert db.get_pool_info()["checked_out"] == 0
        for _ in range(3):
            with db.transaction() as conn:
                assert conn.execute("SELECT pg_backend_pid() AS pid").scalar() not in pids
    finally:
        db.shutdown()


def test_connection_lost_mid_transaction(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, min_size=1)
    try:
        with pytest.raises(DatabaseUnavailableError), db.transaction() as conn:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        assert db.get_pool_info()["checked_out"] == 0
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()


# -- unreachable servers and passwords -----------------------------------------------------------


def _assert_no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text, text


@pytest.mark.parametrize(
    "make_url",
    [
        lambda base: f"postgresql://app:{PASSWORD}@127.0.0.1:1/test",  # nothing listens there
        lambda base: (
            base.replace("://", f"://postgres:{PASSWORD}@", 1).rsplit("/", 1)[0]
            + "/structum_no_such_db"
        ),
    ],
    ids=["closed-port", "wrong-database"],
)
def test_unreachable_database_is_unavailable_and_masked(
    postgres_server_url: str,
    make_url: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = make_url(postgres_server_url.replace("postgres@", "", 1))
    db = PostgresDatabase(url, pool_size=2, min_size=1, timeout=1.0)
    try:
        start = time.perf_counter()
        with pytest.raises(DatabaseUnavailableError) as info, db.transaction():
            pass
        # Refused or rejected at once, not waited out: far below psycopg_pool's 30 s default
        # (a bound that load cannot reach; the 1 s timeout given is the pool's own timer).
        assert time.perf_counter() - start < 15
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert "***" in str(info.value)
        health = db.health_check()
        assert health.status is HealthStatus.UNHEALTHY
        _assert_no_password(
            str(info.value),
            repr(db),
            db.url,
            health.message,
            str(health.to_dict()),
            *(r.getMessage() for r in caplog.records),
        )
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


async def test_unreachable_database_async(postgres_server_url: str) -> None:
    db = AsyncPostgresDatabase(
        f"postgresql://app:{PASSWORD}@127.0.0.1:1/test", pool_size=1, timeout=1.0
    )
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            async with db.transaction():
                pass
        _assert_no_password(str(info.value), repr(db))
        health = await db.health_check()
        assert health.status is HealthStatus.UNHEALTHY
        _assert_no_password(health.message)
    finally:
        await db.shutdown()


def test_exhausted_pool_is_a_pool_timeout_with_a_snapshot(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, min_size=1, timeout=0.3)
    try:
        held = db.get_connection()
        with pytest.raises(PoolTimeoutError) as info, db.transaction():
            pass
        message = str(info.value)
        assert "checked_out=1" in message
        assert "max=1" in message
        assert info.value.pool_info["checked_out"] == 1
        held.close()
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()


# -- bad input -----------------------------------------------------------------------------------


def test_unknown_scheme_says_what_to_use() -> None:
    with pytest.raises(ConfigurationError, match="SQLAlchemyDatabase") as info:
        PostgresDatabase(f"mysql://root:{PASSWORD}@localhost/app")
    _assert_no_password(str(info.value))


def test_syntax_error_rolls_back_and_returns_the_connection(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, min_size=1)
    try:
        with pytest.raises(QueryError) as info, db.transaction() as conn:  # noqa: PT012
            conn.execute("CREATE TEMP TABLE structum_tmp (id int)")
            conn.execute("SELEC 1")
        assert info.value.sqlstate == "42601"
        assert isinstance(info.value.__cause__, psycopg.errors.SyntaxError)
        assert db.get_pool_info()["checked_out"] == 0
        with db.transaction() as conn:  # same (only) connection: the temp table was rolled back
            assert conn.execute("SELECT to_regclass('structum_tmp') AS t").scalar() is None
    finally:
        db.shutdown()


async def test_syntax_error_async(postgres_server_url: str) -> None:
    db = AsyncPostgresDatabase(postgres_server_url, pool_size=1, min_size=1)
    try:
        with pytest.raises(QueryError) as info:
            async with db.transaction() as conn:
                await conn.execute("SELEC 1")
        assert info.value.sqlstate == "42601"
        assert db.get_pool_info()["checked_out"] == 0
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 2 AS two")).scalar() == 2
    finally:
        await db.shutdown()


def test_bad_parameters_are_query_errors(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1, min_size=1)
    try:
        cases: list[tuple[str, Any]] = [
            ("SELECT :a AS a", {}),
            ("SELECT %s AS a", ()),
            ("SELECT $3 AS a", [1, 2]),
        ]
        for sql, params in cases:
            with pytest.raises(QueryError), db.transaction() as conn:
                conn.execute(sql, params)
            assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


def test_transaction_after_shutdown(postgres_server_url: str) -> None:
    db = PostgresDatabase(postgres_server_url, pool_size=1)
    db.shutdown()
    db.shutdown()  # idempotent
    with pytest.raises(DatabaseClosedError, match="shut down"), db.transaction():
        pass
    with pytest.raises(DatabaseClosedError):
        db.get_connection()
    assert db.health_check().status is HealthStatus.UNHEALTHY
    assert db.get_pool_info()["checked_out"] == 0


async def test_transaction_after_shutdown_async(postgres_server_url: str) -> None:
    db = AsyncPostgresDatabase(postgres_server_url, pool_size=1)
    async with db.transaction():
        pass
    await db.shutdown()
    with pytest.raises(DatabaseClosedError):
        async with db.transaction():
            pass
    assert db.get_pool_info()["checked_out"] == 0


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str) -> None:
    for name in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF", "STRUCTUM_DATABASE__URL"):
        monkeypatch.delenv(name, raising=False)
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(toml)


@pytest.fixture
def clean_provider() -> Any:
    yield
    set_config_provider(None)


def test_namespace_without_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_provider: None
) -> None:
    _project(tmp_path, monkeypatch, "[default]\npool_size = 5\n")
    set_config_provider(DynaconfConfigProvider(root_path=tmp_path).auto_discover())
    with pytest.raises(ConfigurationError) as info:
        PostgresDatabase.from_config()
    message = str(info.value)
    assert "'database'" in message
    assert "'url'" in message
    assert "database.toml" in message
    assert "STRUCTUM_DATABASE__URL" in message


def test_pool_size_from_the_environment_must_be_a_number(
    postgres_server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_provider: None,
) -> None:
    _project(tmp_path, monkeypatch, f'[default]\nurl = "{postgres_server_url}"\n')
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "abc")
    set_config_provider(DynaconfConfigProvider(root_path=tmp_path).auto_discover())
    with pytest.raises(ConfigurationError, match=r"pool_size must be an integer, got 'abc'"):
        AsyncPostgresDatabase.from_config()


def test_malformed_toml_names_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_provider: None
) -> None:
    _project(tmp_path, monkeypatch, '[default]\nurl = "postgresql://x"\npool_size = = 3\n')
    monkeypatch.chdir(tmp_path)  # no provider registered: from_config discovers this project
    set_config_provider(None)
    with pytest.raises(ConfigurationError) as info:
        PostgresDatabase.from_config()
    assert "database.toml" in str(info.value)
    assert info.value.line == 3
