"""Parameter handling and transaction options of the PostgreSQL backend (pure logic, no server)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from psycopg import IsolationLevel

from structum_lab.plugins.database import QueryError
from structum_lab.plugins.database.postgres._queries import (
    _MAPPING_SQL,
    _SEQUENCE_SQL,
    plan_query,
    prepare_query,
)
from structum_lab.plugins.database.postgres._transactions import savepoint_name, tx_plan


def test_psycopg_positional_passes_through_untouched() -> None:
    sql = "SELECT * FROM users WHERE id = %s AND name LIKE 'a%%'"
    assert prepare_query(sql, (1,)) == (sql, (1,))
    assert prepare_query(sql, [1]) == (sql, [1])


def test_psycopg_named_passes_through_untouched() -> None:
    sql = "SELECT * FROM users WHERE id = %(id)s"
    params = {"id": 1}
    query, out = prepare_query(sql, params)
    assert query == sql
    assert out is params


def test_distinct_colon_names_become_positional_and_percent_is_doubled() -> None:
    # psycopg's cheapest path is %s with a tuple; the mapping's values are picked in SQL order.
    query, out = prepare_query(
        "SELECT :v::int AS n, '50%' AS pct, ':lit' AS lit WHERE x = :w", {"w": 2, "v": 1}
    )
    assert query == "SELECT %s::int AS n, '50%%' AS pct, ':lit' AS lit WHERE x = %s"
    assert out == (1, 2)


def test_a_single_colon_name_is_a_one_element_tuple() -> None:
    assert prepare_query("SELECT :id", {"id": (1, 2)}) == ("SELECT %s", ((1, 2),))


def test_a_repeated_colon_name_stays_named() -> None:
    # psycopg sends %(v)s twice as one parameter: its type is inferred once, as the user wrote it.
    query, out = prepare_query("SELECT :v::int + :v", {"v": "41"})
    assert query == "SELECT %(v)s::int + %(v)s"
    assert out == {"v": "41"}


def test_a_missing_colon_name_is_a_clear_error() -> None:
    expected = r"uses :b but the parameters have no such key \(keys: a\)"
    with pytest.raises(QueryError, match=expected):
        prepare_query("SELECT :a, :b", {"a": 1})


def test_no_placeholders_with_a_mapping_only_doubles_percent() -> None:
    assert prepare_query("SELECT '5%'", {}) == ("SELECT '5%%'", {})


def test_any_mapping_type_is_a_mapping() -> None:
    query, out = prepare_query("SELECT :a", OrderedDict(a=1))
    assert (query, out) == ("SELECT %s", (1,))


def test_dollar_numbers_in_order_keep_the_callers_sequence() -> None:
    params = [1, 2]
    query, out = prepare_query("SELECT $1, $2", params)
    assert query == "SELECT %s, %s"
    assert out is params


def test_dollar_numbers_out_of_order_or_repeated_are_rearranged() -> None:
    assert prepare_query("SELECT $2, $1, $2", ("a", "b")) == ("SELECT %s, %s, %s", ["b", "a", "b"])


def test_dollar_inside_literals_and_dollar_quotes_is_not_a_placeholder() -> None:
    sql = "SELECT '$1', $$ $2 $$, %s"
    assert prepare_query(sql, (5,)) == (sql, (5,))


def test_dollar_number_beyond_the_parameters_is_a_clear_error() -> None:
    with pytest.raises(QueryError, match=r"uses \$3 but only 2 parameters"):
        prepare_query("SELECT $1, $3", [1, 2])


def test_no_parameters_means_no_rewriting() -> None:
    sql = "SELECT ':x', '5%'"
    assert prepare_query(sql, None) == (sql, None)


def test_non_string_queries_are_psycopgs_business() -> None:
    sql = b"SELECT %s"
    assert plan_query(sql, (1,)) == (sql, None)


def test_parameters_of_another_kind_are_rejected() -> None:
    with pytest.raises(QueryError, match=r"mapping .* or a sequence"):
        prepare_query("SELECT 1", 42)
    with pytest.raises(QueryError):
        prepare_query("SELECT 1", "abc")
    with pytest.raises(QueryError, match="must be a str"):
        prepare_query(None, None)


def test_conversions_are_cached() -> None:
    sql = "SELECT :cached_name"
    prepare_query(sql, {"cached_name": 1})
    assert _MAPPING_SQL[sql][0] == "SELECT %s"
    prepare_query("SELECT $2, $1 -- cached", [1, 2])
    assert _SEQUENCE_SQL["SELECT $2, $1 -- cached"] == ("SELECT %s, %s -- cached", (1, 0))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("SERIALIZABLE", IsolationLevel.SERIALIZABLE),
        ("repeatable read", IsolationLevel.REPEATABLE_READ),
        ("READ_COMMITTED", IsolationLevel.READ_COMMITTED),
        ("read-uncommitted", IsolationLevel.READ_UNCOMMITTED),
        (IsolationLevel.SERIALIZABLE, IsolationLevel.SERIALIZABLE),
    ],
)
def test_isolation_level_spellings(given: Any, expected: IsolationLevel) -> None:
    assert tx_plan({"isolation_level": given}).isolation is expected


def test_unknown_isolation_level_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'SERIALIZABLE'"):
        tx_plan({"isolation_level": "snapshot"})


def test_timeout_becomes_set_local_in_milliseconds() -> None:
    assert tx_plan({"timeout": 0.1}).timeout_sql == "SET LOCAL statement_timeout = 100"
    assert tx_plan({"timeout": 2}).timeout_sql == "SET LOCAL statement_timeout = 2000"


@pytest.mark.parametrize("bad", [0, -1, "1", True])
def test_bad_timeout_is_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        tx_plan({"timeout": bad})


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match="isolation_level, read_only, timeout, pipeline"):
        tx_plan({"autocommit": True})


def test_plan_flags() -> None:
    plan = tx_plan({"read_only": True, "pipeline": True})
    assert plan.read_only
    assert plan.pipeline
    assert plan.isolation is None
    assert plan.timeout_sql is None


def test_savepoint_names() -> None:
    assert savepoint_name(None, 3) == "structum_sp_3"
    assert savepoint_name("before_items", 1) == "before_items"
    with pytest.raises(ValueError, match="plain identifier"):
        savepoint_name("x; DROP TABLE users", 1)
