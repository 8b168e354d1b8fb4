"""Driver errors → Structum errors, per-transaction option tables, ``:name`` conversion."""

from __future__ import annotations

import sqlite3

import psycopg.errors
import pymysql.err
import pytest
import sqlalchemy.exc as sa_exc

from structum_lab.plugins.database import (
    DatabaseUnavailableError,
    IntegrityError,
    LockTimeoutError,
    QueryError,
    SerializationError,
    StatementTimeoutError,
)
from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase
from structum_lab.plugins.database.sqlalchemy._errors import MYSQL_ERRORS, classify_error
from structum_lab.plugins.database.sqlalchemy._transactions import transaction_setup

SECRET = "pw-n0t-in-messages"


@pytest.fixture
def pg_db() -> SQLAlchemyDatabase:
    # No connection is opened: translation and parameter handling are pure.
    return SQLAlchemyDatabase(f"postgresql://app:{SECRET}@localhost/app")


@pytest.mark.parametrize(
    ("errno", "cls", "sqlstate"),
    [
        (1062, IntegrityError, "23000"),
        (1452, IntegrityError, "23000"),
        (1048, IntegrityError, "23000"),
        (1213, SerializationError, "40001"),
        (1205, LockTimeoutError, "HY000"),
        (3024, StatementTimeoutError, "HY000"),
        (1969, StatementTimeoutError, "70100"),
        (1064, QueryError, "42000"),
        (1146, QueryError, "42S02"),
    ],
)
def test_mysql_errno_mapping(
    pg_db: SQLAlchemyDatabase, errno: int, cls: type[QueryError], sqlstate: str
) -> None:
    orig = pymysql.err.OperationalError(errno, "server said no")
    wrapped = sa_exc.DBAPIError.instance("SELECT 1", {}, orig, pymysql.err.Error)
    err = pg_db._translate(wrapped)
    assert type(err) is cls
    assert isinstance(err, QueryError)
    assert err.sqlstate == sqlstate
    assert f"SQLSTATE {sqlstate}" in str(err)


def test_mysql_connection_errors_mean_unavailable(pg_db: SQLAlchemyDatabase) -> None:
    for errno in (2003, 2006, 2013):
        assert MYSQL_ERRORS[errno][0].startswith("08")
        orig = pymysql.err.OperationalError(errno, "Lost connection")
        wrapped = sa_exc.DBAPIError.instance("SELECT 1", {}, orig, pymysql.err.Error)
        assert isinstance(pg_db._translate(wrapped), DatabaseUnavailableError)


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (psycopg.errors.UniqueViolation, IntegrityError),
        (psycopg.errors.ForeignKeyViolation, IntegrityError),
        (psycopg.errors.SerializationFailure, SerializationError),
        (psycopg.errors.DeadlockDetected, SerializationError),
        (psycopg.errors.QueryCanceled, StatementTimeoutError),
        (psycopg.errors.SyntaxError, QueryError),
    ],
)
def test_psycopg_sqlstate_mapping(
    pg_db: SQLAlchemyDatabase, error: type[psycopg.Error], cls: type[QueryError]
) -> None:
    orig = error(f"failed for app:{SECRET}@localhost")
    wrapped = sa_exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)
    err = pg_db._translate(wrapped)
    assert type(err) is cls
    assert err.__class__.__module__ == "structum_lab.plugins.database"
    assert isinstance(err, QueryError)
    assert err.sqlstate == error.sqlstate
    assert SECRET not in str(err)


def test_postgres_admin_shutdown_means_unavailable(pg_db: SQLAlchemyDatabase) -> None:
    orig = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    wrapped = sa_exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)
    assert isinstance(pg_db._translate(wrapped), DatabaseUnavailableError)


def test_errors_while_connecting_mean_unavailable_and_are_masked(
    pg_db: SQLAlchemyDatabase,
) -> None:
    orig = psycopg.OperationalError(f'password authentication failed for "app" ({SECRET})')
    wrapped = sa_exc.DBAPIError.instance(None, None, orig, psycopg.Error)
    err = pg_db._translate(wrapped, connecting=True)
    assert isinstance(err, DatabaseUnavailableError)
    assert SECRET not in str(err)
    assert "postgresql://app:***@localhost/app" in str(err)


@pytest.mark.parametrize(
    ("orig", "sqlstate", "cls"),
    [
        (sqlite3.IntegrityError("UNIQUE constraint failed: t.v"), "23000", None),
        (sqlite3.OperationalError('near "SELEC": syntax error'), "42000", None),
        (sqlite3.OperationalError("no such table: nope"), "42000", None),
        (sqlite3.OperationalError("database is locked"), None, LockTimeoutError),
        (sqlite3.OperationalError("attempt to write a readonly database"), "25006", None),
        (sqlite3.OperationalError("disk I/O error"), None, None),
    ],
)
def test_sqlite_error_mapping(
    orig: sqlite3.Error, sqlstate: str | None, cls: type[QueryError] | None
) -> None:
    assert classify_error(orig) == (sqlstate, cls)


def test_unknown_driver_error_has_no_sqlstate() -> None:
    assert classify_error(RuntimeError("boom")) == (None, None)
    assert classify_error(pymysql.err.OperationalError(9999, "new")) == (None, None)


def test_transaction_setup_per_dialect() -> None:
    pg = transaction_setup("postgresql", False, "repeatable_read", True, 1.5)
    assert pg.execution_options == {
        "isolation_level": "REPEATABLE READ",
        "postgresql_readonly": True,
    }
    assert pg.statements == ("SET LOCAL statement_timeout = 1500",)
    assert pg.restore == ()

    maria = transaction_setup("mysql", True, None, True, 2)
    assert maria.statements == (
        "SET TRANSACTION READ ONLY",
        "SET SESSION max_statement_time = 2",
    )
    assert maria.restore == ("SET SESSION max_statement_time = DEFAULT",)

    mysql = transaction_setup("mysql", False, None, False, 0.25)
    assert mysql.statements == ("SET SESSION max_execution_time = 250",)

    lite = transaction_setup("sqlite", False, None, True, 3)
    assert lite.statements == ("PRAGMA query_only = 1",)
    assert lite.restore == ("PRAGMA query_only = 0",)


def test_transaction_setup_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="timeout"):
        transaction_setup("postgresql", False, None, False, 0)
    with pytest.raises(ValueError, match="read_only"):
        transaction_setup("mssql", False, None, True, None)


def test_unknown_transaction_option(pg_db: SQLAlchemyDatabase) -> None:
    with pytest.raises(TypeError, match="pipeline"):
        pg_db._setup_for({"pipeline": True})


def test_named_params_for_pyformat(pg_db: SQLAlchemyDatabase) -> None:
    sql, params = pg_db._prepare(
        "SELECT :a::text, ':b', '50%' WHERE x = :a AND y = :c", {"a": 1, "c": 2}
    )
    assert sql == "SELECT %(a)s::text, ':b', '50%%' WHERE x = %(a)s AND y = %(c)s"
    assert params == {"a": 1, "c": 2}


def test_named_params_for_qmark() -> None:
    db = SQLAlchemyDatabase("sqlite://")
    try:
        sql, params = db._prepare("SELECT :b, ':a', :a", {"a": 1, "b": 2})
        assert (sql, params) == ("SELECT ?, ':a', ?", (2, 1))
        with pytest.raises(QueryError, match=":b"):
            db._prepare("SELECT :a, :b", {"a": 1})
        # a sequence goes to the driver's own placeholders untouched
        assert db._prepare("SELECT ?", [5]) == ("SELECT ?", (5,))
        sql, rows = db._prepare_many("INSERT INTO t VALUES (:x)", [{"x": 1}, {"x": 2}])
        assert (sql, rows) == ("INSERT INTO t VALUES (?)", [(1,), (2,)])
        with pytest.raises(QueryError, match="mapping"):
            db._prepare("SELECT 1", "oops")
    finally:
        db.shutdown()
