from __future__ import annotations

import pytest

from structum_lab.plugins.database.params import (
    adapt_params,
    convert_dollar_numeric,
    convert_named,
    find_named_placeholders,
)


def test_named_to_pyformat() -> None:
    converted = convert_named("SELECT * FROM users WHERE id = :id AND name = :name", "pyformat")
    assert converted.sql == "SELECT * FROM users WHERE id = %(id)s AND name = %(name)s"
    assert not converted.positional


def test_literals_comments_casts_and_dollar_quotes_are_left_alone() -> None:
    sql = (
        "SELECT ':not', \"col:x\", a::int, '50%' FROM t -- :comment\n"
        "WHERE b = :b /* :block */ AND c = $fn$ :body $fn$ AND d = E'it\\'s :e'"
    )
    converted = convert_named(sql, "pyformat")
    assert converted.sql == (
        "SELECT ':not', \"col:x\", a::int, '50%%' FROM t -- :comment\n"
        "WHERE b = %(b)s /* :block */ AND c = $fn$ :body $fn$ AND d = E'it\\'s :e'"
    )
    assert find_named_placeholders(sql) == ("b",)


def test_percent_doubled_for_percent_styles_only() -> None:
    assert convert_named("SELECT 5 % 2, :x", "pyformat").sql == "SELECT 5 %% 2, %(x)s"
    assert convert_named("SELECT 5 % 2, :x", "qmark").sql == "SELECT 5 % 2, ?"


@pytest.mark.parametrize(
    ("style", "sql"),
    [
        ("qmark", "SELECT ?, ?, ?"),
        ("format", "SELECT %s, %s, %s"),
        ("numeric", "SELECT :1, :2, :3"),
    ],
)
def test_positional_styles_keep_order_and_repeats(style: str, sql: str) -> None:
    converted = convert_named("SELECT :a, :b, :a", style)
    assert converted.sql == sql
    assert converted.names == ("a", "b", "a")
    assert adapt_params(converted, {"a": 1, "b": 2}) == [1, 2, 1]


def test_missing_parameter_raises_key_error() -> None:
    converted = convert_named("SELECT :a, :b", "qmark")
    with pytest.raises(KeyError):
        adapt_params(converted, {"a": 1})


def test_doubled_quote_inside_literal() -> None:
    assert convert_named("SELECT 'it''s :x', :y", "named").sql == "SELECT 'it''s :x', :y"
    assert find_named_placeholders("SELECT 'it''s :x', :y") == ("y",)


def test_dollar_numeric_reorders() -> None:
    converted = convert_dollar_numeric("SELECT $2, $1, '$3', 10%")
    assert converted.sql == "SELECT %s, %s, '$3', 10%%"
    assert adapt_params(converted, ["one", "two"]) == ["two", "one"]


def test_conversion_is_cached() -> None:
    first = convert_named("SELECT :cached", "pyformat")
    assert convert_named("SELECT :cached", "pyformat") is first


def test_backslash_escapes_for_mysql_only() -> None:
    sql = "SELECT 'it\\'s :x', :y"
    assert convert_named(sql, "pyformat", True).sql == "SELECT 'it\\'s :x', %(y)s"
    # PostgreSQL (standard_conforming_strings): a backslash is an ordinary character.
    assert convert_named("SELECT 'C:\\', :y", "pyformat").sql == "SELECT 'C:\\', %(y)s"
