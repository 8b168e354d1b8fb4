"""The mocks behave as the real backends at the boundaries: leaks, dropped connections, hygiene."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from structum_lab.config import DictConfigProvider, set_config_provider
from structum_lab.plugins.database import DatabaseError, QueryError
from structum_lab.plugins.database.testing import AsyncMockDatabase, MockDatabase

LOGGER = "structum_lab.plugins.database"


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    # By the structured event, not the text: masking may hide any word of a message.
    return [r for r in caplog.records if getattr(r, "structum_event", None) == event]


def _wait(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within 20s")
        time.sleep(0.005)


def test_commit_and_rollback_belong_to_get_connection() -> None:
    db = MockDatabase()
    for action in ("commit", "rollback"):
        with pytest.raises(DatabaseError, match=rf"conn\.{action}\(\)"), db.transaction() as conn:
            getattr(conn, action)()
        db.assert_rolled_back()
    conn = db.get_connection()
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    db.assert_committed()


def test_transaction_control_sql_and_nul_are_refused() -> None:
    db = MockDatabase()
    with pytest.raises(QueryError, match="COMMIT inside a transaction"), db.transaction() as conn:
        conn.execute("COMMIT")
    with pytest.raises(QueryError, match="NUL"), db.transaction() as conn:
        conn.execute("DELETE FROM t\x00 WHERE id = 2")
    assert db.queries == []  # neither reached the (mock) server
    with db.get_connection() as manual:
        manual.execute("COMMIT")  # allowed: its caller owns the transaction
    assert db.get_pool_info()["checked_out"] == 0


def test_leak_detection_on_the_mock(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    db = MockDatabase(leak_detection_threshold=0.02)
    with db.transaction():
        _wait(lambda: _events(caplog, "connection_leak"), "the leak warning")
        assert db.get_pool_info()["leaked"] == 1
    assert db.get_pool_info()["leaked"] == 0
    assert len(_events(caplog, "connection_leak")) == 1
    assert len(_events(caplog, "connection_leak_returned")) == 1


def test_a_dropped_mock_connection_is_returned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    db = MockDatabase(pool_size=1)
    conn: Any = db.get_connection()
    conn.execute("INSERT INTO t VALUES (1)")
    del conn
    gc.collect()
    _wait(lambda: db.get_pool_info()["checked_out"] == 0, "the dropped connection's return")
    db.assert_rolled_back()
    assert len(_events(caplog, "connection_dropped")) == 1
    with db.transaction() as again:  # the pool of one is whole again
        again.execute("SELECT 1")


async def test_a_dropped_async_mock_connection_is_returned_on_its_loop() -> None:
    db = AsyncMockDatabase(pool_size=1)
    conn: Any = await db.get_connection()
    del conn
    gc.collect()
    deadline = time.monotonic() + 20
    while db.get_pool_info()["checked_out"]:
        assert time.monotonic() < deadline, "the dropped connection was not returned"
        await asyncio.sleep(0.005)
    db.assert_rolled_back()


def test_shutdown_names_what_is_still_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    db = MockDatabase()
    conn = db.get_connection()
    db.shutdown()
    conn.close()
    (record,) = _events(caplog, "connections_unreturned")
    assert "test_shutdown_names_what_is_still_out" in record.structum_taken_at[0]  # type: ignore[attr-defined]


@pytest.fixture
def use_config() -> Iterator[Callable[[dict[str, Any]], None]]:
    yield lambda data: set_config_provider(DictConfigProvider(data))
    set_config_provider(None)


def test_leak_detection_threshold_from_configuration(
    use_config: Callable[[dict[str, Any]], None],
) -> None:
    use_config({"database": {"url": "mock://", "leak_detection_threshold": "2.5"}})
    assert MockDatabase.from_config().leak_detection_threshold == 2.5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_forked_child_starts_with_an_empty_mock_pool() -> None:
    db = MockDatabase(pool_size=1)
    held = db.get_connection()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with db.transaction() as conn:  # the parent's checkout is not the child's
                conn.execute("SELECT 1")
            os.write(write, str(db.get_pool_info()["checked_out"]).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"
    os.close(read)
    assert status == 0
    held.close()
