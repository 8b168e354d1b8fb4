from __future__ import annotations

import pytest

from structum_lab.plugins.database import QueryError
from structum_lab.plugins.database.params import (
    ConvertedSQL,
    adapt_params,
    convert_dollar_numeric,
    convert_for_psycopg,
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


# -- the lexer per dialect: every case the audit of issue 11 measured -------------------------


def test_percent_paren_in_a_literal_does_not_switch_conversion_off() -> None:
    sql = "SELECT '%(' AS lit, :id"
    assert convert_for_psycopg(sql) == "SELECT '%%(' AS lit, %(id)s"
    assert convert_named(sql, "format", "postgresql") == ConvertedSQL(
        "SELECT '%%(' AS lit, %s", ("id",), True
    )


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # psycopg's own placeholders in code, no :name: passed through untouched.
        ("SELECT %(id)s, '100%%'", "SELECT %(id)s, '100%%'"),
        ("SELECT %s, %b, %t", "SELECT %s, %b, %t"),
        ("SELECT %(größe)s", "SELECT %(größe)s"),
        # Only in literals or comments: portable SQL, every % doubled.
        ("SELECT '%(id)s', '%s' -- %s", "SELECT '%%(id)s', '%%s' -- %%s"),
        ("SELECT 10 %% 3", "SELECT 10 %%%% 3"),  # %% alone is not a placeholder
        ("SELECT a %(b + 1)", "SELECT a %%(b + 1)"),  # modulo, not %(name)s
        # Any :name makes it portable, even next to something that looks like psycopg's.
        ("SELECT :a, 5 %s", "SELECT %(a)s, 5 %%s"),
    ],
)
def test_psycopg_style_only_outside_literals_and_without_names(sql: str, expected: str) -> None:
    assert convert_for_psycopg(sql) == expected


def test_postgresql_block_comments_nest() -> None:
    assert find_named_placeholders("SELECT /* a /* b */ :x */ :id", "postgresql") == ("id",)
    assert find_named_placeholders("SELECT /* /* /* */ */ :x */ :id", "postgresql") == ("id",)
    # MySQL and SQLite end a comment at the first */.
    assert find_named_placeholders("SELECT /* a /* b */ :x", "mysql") == ("x",)
    assert find_named_placeholders("SELECT /* a /* b */ :x", "sqlite") == ("x",)


@pytest.mark.parametrize("prefix", ["name", "some_e", "date", "xE", "1e"])
def test_identifier_ending_in_e_before_a_quote_is_not_an_escape_string(prefix: str) -> None:
    sql = f"SELECT {prefix}'a\\' AS n, :id"
    assert find_named_placeholders(sql, "postgresql") == ("id",)


@pytest.mark.parametrize("start", ["", " ", "(", ",", "'x'", "/**/", "\n"])
def test_escape_string_at_a_token_start(start: str) -> None:
    sql = f"SELECT {start}E'it\\'s :x', e'\\\\', :y"
    assert find_named_placeholders(sql, "postgresql") == ("y",)


@pytest.mark.parametrize("tag", ["", "t", "é", "größe", "名前", "_1", "a$"])
def test_dollar_quotes_with_unicode_tags(tag: str) -> None:
    if tag.endswith("$"):  # $a$$ is not a tag: $a$ ... then text
        assert find_named_placeholders("SELECT $a$ :x $a$, :y", "postgresql") == ("y",)
        return
    sql = f"SELECT ${tag}$ :x '%( $other$ ${tag}$, :y"
    assert find_named_placeholders(sql, "postgresql") == ("y",)
    # A $ glued to an identifier is part of it, not a quote: a$b$ :z is a placeholder.
    assert find_named_placeholders(f"SELECT a${tag}$ :z", "postgresql") == ("z",)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_unicode_placeholder_names(dialect: str) -> None:
    converted = convert_named("SELECT :größe, :名前, :café, :ǅx", "pyformat", dialect)
    assert converted.sql == "SELECT %(größe)s, %(名前)s, %(café)s, %(ǅx)s"
    # A combining mark continues the name (NFD "é" is "e" + U+0301).
    assert find_named_placeholders("SELECT :cafe\u0301 + 1", dialect) == ("cafe\u0301",)


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ('SELECT arr[lo:hi], arr[1:2], arr[(1):(2)], arr["lo":hi]', ()),
        ("SELECT arr[:hi], arr[lo :hi], arr[1 :hi]", ("hi", "hi", "hi")),
        ("SELECT a::int, :x::text, '1'::int", ("x",)),
        ("SELECT x:y, 'a':b, (1):c, [d]:e", ()),
        ("SELECT f(a := :v), @w:=:u", ("v", "u")),
    ],
)
def test_colon_glued_to_the_previous_token_is_not_a_placeholder(
    sql: str, names: tuple[str, ...]
) -> None:
    assert find_named_placeholders(sql, "postgresql") == names


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SELECT 1 # it's :x\n, :id", ("id",)),
        ("SELECT 1 #\n:id", ("id",)),
        ("SELECT `a\\`, :id", ("id",)),  # no backslash escapes in backticks
        ("SELECT `a``:x`, :id", ("id",)),
        ("SELECT 5--:x", ("x",)),  # -- without whitespace after it: minus minus
        ("SELECT 5-- :x\n, :y", ("y",)),
        ("SELECT 5--\t:x\n, :y", ("y",)),
        ("SELECT 5--\n:y", ("y",)),
        ("SELECT 5--", ()),
        ("SELECT 'it\\'s :x', \"a\\\":x\", :y", ("y",)),
        ("SELECT /*! :x */ /*M!100000 :y */ /* :z */ /*+ :w */", ("x", "y")),
        ("SELECT 1 /* :a", ()),
    ],
)
def test_mysql_lexical_rules(sql: str, names: tuple[str, ...]) -> None:
    assert find_named_placeholders(sql, "mysql") == names
    assert find_named_placeholders(sql, "mariadb") == names


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SELECT [a :b], :id", ("id",)),
        ("SELECT [a\\]:b", ()),
        ("SELECT `a :b`, \"c :d\", 'e :f', :id", ("id",)),
        ("SELECT 'C:\\', :y", ("y",)),  # no backslash escapes
        ("SELECT 1 # :x", ("x",)),  # # is not a comment
        ("SELECT /* /* */ :x", ("x",)),
    ],
)
def test_sqlite_lexical_rules(sql: str, names: tuple[str, ...]) -> None:
    assert find_named_placeholders(sql, "sqlite") == names


def test_unknown_dialects_get_the_ansi_like_rules() -> None:
    assert find_named_placeholders("SELECT [a :b], 'c :d', :id", "mssql") == ("id",)


def test_percent_is_doubled_everywhere_independently_of_percent_paren() -> None:
    sql = "SELECT '%(' || '%s' AS a, 5 % 2, :x /* 100% */ -- %(y)s\n"
    assert convert_named(sql, "pyformat", "postgresql").sql == (
        "SELECT '%%(' || '%%s' AS a, 5 %% 2, %(x)s /* 100%% */ -- %%(y)s\n"
    )
    assert convert_named(sql, "qmark", "sqlite").sql == sql.replace(":x", "?")


def test_bool_dialect_is_the_former_backslash_escapes_flag() -> None:
    sql = "SELECT 'a\\', :x, 'b'"
    assert find_named_placeholders(sql, "postgresql") == ("x",)
    assert convert_named(sql, "named", False).names == ("x",)
    assert convert_named(sql, "named", True).names == ()  # MySQL: \' escapes the quote


def test_dollar_zero_is_refused() -> None:
    with pytest.raises(QueryError, match=r"\$0"):
        convert_dollar_numeric("SELECT $0")


@pytest.mark.parametrize("sql", [b"SELECT :x", None, 42])
def test_statement_that_is_not_a_string(sql: object) -> None:
    with pytest.raises(QueryError, match="must be a str"):
        convert_named(sql, "pyformat", "postgresql")


def test_unpaired_surrogate_is_a_query_error() -> None:
    with pytest.raises(QueryError, match=r"U\+D800 at offset 7"):
        convert_named("SELECT \ud800, :x", "pyformat", "postgresql")
