"""Statement hygiene and checkout tracking: the pure logic shared by every backend."""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

import pytest

from structum_lab.plugins.database import ConfigurationError, QueryError
from structum_lab.plugins.database._checkouts import CheckoutTracker, leak_threshold
from structum_lab.plugins.database._statements import check_statement, ends_transaction


# -- check_statement --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("COMMIT", "COMMIT"),
        ("commit work", "COMMIT"),
        ("  \n\tCommit;", "COMMIT"),
        ("END", "END"),
        ("end transaction", "END"),
        ("ABORT", "ABORT"),
        ("ROLLBACK", "ROLLBACK"),
        ("ROLLBACK AND CHAIN", "ROLLBACK"),
        ("BEGIN", "BEGIN"),
        ("begin transaction isolation level serializable", "BEGIN"),
        ("START TRANSACTION READ ONLY", "START TRANSACTION"),
        ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
        ("COMMIT PREPARED 'x'", "COMMIT"),
        ("XA START 'x'", "XA START"),
        ("SET autocommit = 1", "SET AUTOCOMMIT"),
        ("SET @@session.autocommit=1", "SET AUTOCOMMIT"),
        ("SET SESSION autocommit = ON", "SET AUTOCOMMIT"),
        ("-- a comment\nCOMMIT", "COMMIT"),
        ("# MySQL comment\nCOMMIT", "COMMIT"),
        ("/* block */ /* another */ COMMIT", "COMMIT"),
        ("/*!40101 COMMIT */", "COMMIT"),
        (";;COMMIT", "COMMIT"),
        # not transaction control
        ("SELECT 1", None),
        ("ROLLBACK TO SAVEPOINT sp1", None),
        ("rollback to sp1", None),
        ("ROLLBACK WORK TO SAVEPOINT sp1", None),
        ("SAVEPOINT sp1", None),
        ("RELEASE SAVEPOINT sp1", None),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
        ("SET LOCAL statement_timeout = 5", None),
        ("SELECT 'COMMIT'", None),
        ("SELECT commit_id FROM commits", None),
        ("COMMITTED", None),
        ("ENDPOINT", None),
        ("BEGINNING", None),
        ("BEGIN NOT ATOMIC SELECT 1; END", None),
        ("UPDATE t SET autocommit_flag = 1", None),
        ("", None),
    ],
)
def test_transaction_control_is_recognised(sql: str, keyword: str | None) -> None:
    assert check_statement(sql) == keyword


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("SELECT 1; COMMIT", "COMMIT"),
        ("SELECT 1;\n-- x\nrollback", "ROLLBACK"),
        ("SELECT ';'; BEGIN", "BEGIN"),
        ("SELECT $$ ; $$; END", "END"),
        ("SELECT 1 /* ; COMMIT */", None),
        ("SELECT '; COMMIT'", None),
        ('SELECT "a;COMMIT" FROM t', None),
        ("SELECT $tag$ ; COMMIT $tag$", None),
        ("SELECT E'\\'; COMMIT'", None),
        ("SELECT 'a\\'; COMMIT", "COMMIT"),  # standard strings: the backslash is a character
        ("SELECT 1 /* /* ; */ COMMIT */; SELECT 2", None),  # PostgreSQL comments nest
        ("SELECT 1; -- ; COMMIT", None),
        ("SELECT 1;", None),
        ("DO $$ BEGIN PERFORM 1; END $$", None),
    ],
)
def test_every_statement_of_a_postgres_text_is_looked_at(sql: str, keyword: str | None) -> None:
    assert check_statement(sql, multi=True) == keyword


def test_without_multi_only_the_first_statement_counts() -> None:
    assert check_statement("SELECT 1; COMMIT") is None  # that driver refuses the second one


@pytest.mark.parametrize("sql", ["DELETE FROM t\x00 WHERE id = 2", "\x00", b"SELECT 1\x00"])
def test_nul_is_refused(sql: Any) -> None:
    with pytest.raises(QueryError, match="NUL"):
        check_statement(sql)


def test_other_statement_objects_are_the_drivers_business() -> None:
    assert check_statement(object()) is None
    assert check_statement(b"COMMIT") is None


def test_ends_transaction() -> None:
    assert ends_transaction("COMMIT")
    assert ends_transaction("ROLLBACK")
    assert not ends_transaction("BEGIN")


# -- leak_detection_threshold -----------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, "2", True, float("nan")])
def test_leak_threshold_must_be_positive_seconds(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="leak_detection_threshold"):
        leak_threshold(value, "Db")


def test_leak_threshold_none_is_off() -> None:
    assert leak_threshold(None, "Db") is None
    assert leak_threshold(2, "Db") == 2.0


# -- CheckoutTracker ----------------------------------------------------------------------------
def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[Any]:
    # By the structured event, not the text: masking may hide any word of a message.
    return [r for r in caplog.records if getattr(r, "structum_event", None) == event]


class Conn:
    _ticket: Any = None


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within 20s")
        time.sleep(0.005)


def test_a_held_connection_is_reported_once_and_its_return_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="structum_lab.plugins.database")
    # A second of margin: the quick connection is back long before anyone could call it a leak.
    tracker = CheckoutTracker("db://", 1.0)
    quick, slow = Conn(), Conn()
    tracker.track(quick, "transaction()")
    quick._ticket.checkin(quick)
    tracker.track(slow, "transaction()")

    def warnings() -> list[Any]:
        return _events(caplog, "connection_leak")

    _wait(warnings, "the leak warning")
    assert tracker.leaked == 1
    assert len(warnings()) == 1
    assert warnings()[0].levelno == logging.WARNING
    assert "test_a_held_connection_is_reported_once" in warnings()[0].structum_taken_at
    slow._ticket.checkin(slow)
    assert tracker.leaked == 0
    assert slow._ticket is None
    (info,) = _events(caplog, "connection_leak_returned")
    assert info.levelno == logging.INFO


def test_leaks_from_many_threads_are_each_reported() -> None:
    tracker = CheckoutTracker("db://", 0.02)
    conns = [Conn() for _ in range(8)]
    threads = [threading.Thread(target=tracker.track, args=(c, "transaction()")) for c in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _wait(lambda: tracker.leaked == 8, "eight leak warnings")
    for conn in conns:
        conn._ticket.checkin(conn)
    assert tracker.leaked == 0
    assert tracker.outstanding() == []


def test_a_dropped_handout_is_reclaimed_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="structum_lab.plugins.database")
    tracker = CheckoutTracker("db://", None)
    reclaimed: list[int] = []
    conn: Any = Conn()
    tracker.handout(conn, lambda: reclaimed.append(1), None)
    assert len(tracker.outstanding()) == 1
    del conn
    gc.collect()
    _wait(lambda: reclaimed == [1], "the reclaim")
    assert tracker.outstanding() == []
    (record,) = _events(caplog, "connection_dropped")
    assert "test_a_dropped_handout_is_reclaimed_once" in record.structum_taken_at


def test_a_returned_handout_is_not_reclaimed() -> None:
    tracker = CheckoutTracker("db://", None)
    reclaimed: list[int] = []
    conn: Any = Conn()
    tracker.handout(conn, lambda: reclaimed.append(1), None)
    conn._ticket.checkin(conn)
    del conn
    gc.collect()
    assert reclaimed == []
    assert tracker.outstanding() == []


def test_forget_inherited_detaches_finalizers() -> None:
    tracker = CheckoutTracker("db://", 0.5)
    reclaimed: list[int] = []
    conn: Any = Conn()
    tracker.handout(conn, lambda: reclaimed.append(1), None)
    assert tracker.forget_inherited() == [conn]
    del conn
    gc.collect()
    assert reclaimed == []
    assert tracker.outstanding() == []
    assert tracker.leaked == 0
