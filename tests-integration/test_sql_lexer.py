"""The ``:name`` lexer, property-tested on generated SQL and checked against the real servers.

Generated statements are lists of ``Token``s joined by separators that end a token in every
dialect (spaces, newlines, commas, parentheses, ``=``). Each token knows whether it is a
``:name`` placeholder, a PostgreSQL ``$n`` parameter, a psycopg ``%s``/``%(name)s`` placeholder
or text that must come out untouched: literals and comments whose bodies are full of ``:x``,
``%(``, quotes, backslashes, comment and dollar markers, identifiers glued to quotes or colons,
casts, slices, and (last only) unterminated literals. The properties: the placeholders found are
exactly the generated ones, and everything else is byte-identical (with ``%`` doubled for the
``%``-formatting paramstyles).

The differential tests send literals, quoted identifiers and comments built the same way through
every backend and check that the server gives back exactly the value the literal spells.

Hypothesis runs are bounded and derandomized (the same examples on every run, no example
database), so CI is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structum_lab.plugins.database import QueryError
from structum_lab.plugins.database.params import (
    convert_dollar_numeric,
    convert_for_psycopg,
    convert_named,
    find_named_placeholders,
)

DIALECTS = ("postgresql", "mysql", "sqlite")

# Pieces that trip naive scanners, mixed with arbitrary characters.
# fmt: off
TRICKY = [
    ":x", ":größe", ":_a1", "::", ":", "%(", "%(x)s", "%s", "%%", "%", "'", "''", '"', "`", "\\",
    "\\'", "$", "$$", "$x$", "$é$", "$1", "--", "-- ", "/*", "*/", "/*!", "#", "[", "]", "?",
    "E'", "e'", "\n", "\r", "\t", " ", "é", "ß", "名", "𝄞", "\u00a0", "\u2028", "-", "/", "*",
    "!", "M!", ";", "\\\\", "0",
]
# fmt: on
_body = st.lists(
    st.one_of(
        st.sampled_from(TRICKY),
        st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=3),
    ),
    max_size=8,
).map("".join)

_NAME = st.from_regex(r"[^\W\d]\w{0,6}", fullmatch=True)
_SEPARATORS = st.sampled_from([" ", "\n", "\t", ", ", " (", ") ", " = ", " + ", "\r\n"])


@dataclass(frozen=True)
class Token:
    """One piece of generated SQL.

    ``kind`` is ``"text"`` (must come out byte-identical), ``"name"`` (a ``:name``
    placeholder, ``value`` is the name), ``"num"`` (PostgreSQL ``$n``, ``value`` is n) or
    ``"psy"`` (a psycopg placeholder in code).
    """

    text: str
    kind: str = "text"
    value: str | int | None = None


def _no_close(body: str, close: str) -> str:
    """``body`` made unable to contain ``close`` (so the literal ends where we say)."""
    while close in body:
        body = body.replace(close, close[0] + " " + close[1:])
    return body


@st.composite
def _pg_dollar(draw: st.DrawFn) -> Token:
    tag = draw(st.from_regex(r"(?:[A-Za-z_éßπ名][A-Za-z0-9_éßπ名]{0,4})?", fullmatch=True))
    body = draw(_body)
    delim = f"${tag}$"
    while (body + delim).find(delim) != len(body):
        body = body.replace("$", "$ ")
    return Token(f"{delim}{body}{delim}")


@st.composite
def _pg_block(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        if depth < 2 and draw(st.booleans()):
            parts.append(draw(_pg_block(depth + 1)))
        else:
            # / and * never touch: no accidental /* or */ at the joins.
            parts.append(draw(_body).replace("/", "/ ").replace("*", "* "))
    return "/*" + "".join(parts) + "*/"


def quote_string(value: str, dialect: str, draw: st.DrawFn) -> str:
    """A string literal of ``dialect`` whose value is ``value``, in one of its spellings."""
    if dialect == "postgresql":
        if draw(st.booleans()):
            escaped = "".join(
                "\\\\" if c == "\\" else (draw(st.sampled_from(["\\'", "''"])) if c == "'" else c)
                for c in value
            )
            return draw(st.sampled_from(["E", "e"])) + f"'{escaped}'"
        return "'" + value.replace("'", "''") + "'"
    if dialect == "mysql":
        quote = draw(st.sampled_from(["'", '"']))
        escaped = "".join(
            "\\\\"
            if c == "\\"
            else (draw(st.sampled_from(["\\" + quote, quote * 2])) if c == quote else c)
            for c in value
        )
        return quote + escaped + quote
    return "'" + value.replace("'", "''") + "'"


def quote_identifier(value: str, dialect: str, draw: st.DrawFn) -> str:
    """A quoted identifier of ``dialect`` naming ``value``."""
    if dialect == "postgresql":
        return '"' + value.replace('"', '""') + '"'
    if dialect == "mysql":
        return "`" + value.replace("`", "``") + "`"
    style = draw(st.sampled_from(["double", "backtick", "bracket"]))
    if style == "bracket":
        return "[" + value.replace("]", "") + "]"
    if style == "backtick":
        return "`" + value.replace("`", "``") + "`"
    return '"' + value.replace('"', '""') + '"'


@st.composite
def _literal(draw: st.DrawFn, dialect: str) -> Token:
    body = draw(_body)
    if draw(st.booleans()):
        return Token(quote_string(body, dialect, draw))
    return Token(quote_identifier(body, dialect, draw))


@st.composite
def _comment(draw: st.DrawFn, dialect: str) -> Token:
    body = draw(_body)
    kind = draw(
        st.sampled_from(["line", "block", "hash"] if dialect == "mysql" else ["line", "block"])
    )
    if kind == "block":
        if dialect == "postgresql":
            return Token(draw(_pg_block()))
        body = _no_close(body, "*/")
        if dialect == "mysql" and body.startswith(("!", "M!")):
            body = " " + body
        return Token(f"/*{body}*/")
    ends = "\n\r" if dialect == "postgresql" else "\n"
    for end in ends:
        body = body.replace(end, " ")
    if kind == "hash":
        return Token(f"#{body}\n")
    if dialect == "mysql":  # -- is a comment only when whitespace or a control char follows
        return Token("--" + draw(st.sampled_from([" ", "\t", "\x01"])) + body + "\n")
    return Token(f"--{body}\n")


@st.composite
def _placeholder(draw: st.DrawFn) -> list[Token]:
    name = draw(_NAME)
    tokens = [Token(f":{name}", "name", name)]
    if draw(st.integers(0, 3)) == 0:
        tokens.append(Token("::int"))  # a cast right after the placeholder
    return tokens


@st.composite
def _code(draw: st.DrawFn, dialect: str) -> list[Token]:
    """Code around literals: identifiers, numbers, operators, casts, glued colons."""
    ident = draw(st.sampled_from(["a", "some_e", "name", "größe", "t1", "Ee", "x$"]))
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return [Token(draw(st.sampled_from(["SELECT", "1", "5 % 2", "%", "a.b", "-1", "*", "@v"])))]
    if choice == 1:
        return [Token(ident)]
    if choice == 2:  # a colon glued to the previous token is not a placeholder
        before = draw(st.sampled_from([ident, "1", "(1)", "'a'", '"q"', "a$"]))
        if dialect == "sqlite":
            before = draw(st.sampled_from([before, "[b]"]))
        return [Token(f"{before}:{draw(_NAME)}")]
    if choice == 3:
        return [Token(f"{ident}::{draw(st.sampled_from(['int', 'text', 'ä']))}")]
    if choice == 4 and dialect == "postgresql":
        # A typed literal (an identifier ending in e) whose value ends with a backslash, then a
        # placeholder: read as E'' the literal would swallow the placeholder.
        prefix = draw(st.sampled_from(["name", "some_e", "date", "time", "Ee", "xE"]))
        name = draw(_NAME)
        body = draw(_body).replace("'", "''") + draw(st.sampled_from(["\\", ""]))
        return [Token(f"{prefix}'{body}' "), Token(f":{name}", "name", name)]
    if choice == 5 and dialect == "postgresql":
        name = draw(_NAME)
        return [Token("arr["), Token(f":{name}", "name", name), Token(":hi]")]
    if choice == 6 and dialect == "postgresql":
        n = draw(st.integers(1, 12))
        return [Token(f"${n}", "num", n)]
    if choice == 6 and dialect == "mysql":  # -- not followed by whitespace: minus minus
        name = draw(_NAME)
        return [Token("5--"), Token(f":{name}", "name", name)]
    if choice == 7 and dialect == "mysql":  # executable comments are SQL
        name = draw(_NAME)
        opener = draw(st.sampled_from(["/*!", "/*!50000 ", "/*M!100000 "]))
        return [Token(opener), Token(f":{name}", "name", name), Token(" */")]
    if choice == 9 and dialect == "mysql":
        return [Token("@v:=")]
    if choice == 8:
        return [Token(draw(st.sampled_from(["B'01'", "X'ff'", "N'n:x'", "U&'d\\0061t:x'"])))]
    return [Token(ident)]


@st.composite
def _unterminated(draw: st.DrawFn, dialect: str) -> Token:
    body = draw(_body)
    opener = draw(st.sampled_from(["'", '"', "/*", "--"] + (["["] if dialect == "sqlite" else [])))
    if opener == "'" and dialect != "mysql":
        body = body.replace("'", "")
    elif opener == '"':
        body = body.replace('"', "")
    elif opener == "'":
        body = body.replace("'", "").replace("\\", "")
    elif opener == "[":
        body = body.replace("]", "")
    elif opener == "/*":
        body = body.replace("*", "").replace("/", "")
    else:
        body = body.replace("\n", "").replace("\r", "")
        opener = "-- "
    if opener == '"' and dialect == "mysql":
        body = body.replace("\\", "")
    return Token(opener + body)


@st.composite
def statements(draw: st.DrawFn, dialect: str, *, psycopg: bool = False) -> list[Token]:
    """A statement as tokens (separators included as text tokens)."""
    pieces: list[Token | list[Token]] = draw(
        st.lists(
            st.one_of(
                _literal(dialect),
                _comment(dialect),
                _placeholder(),
                _code(dialect),
                *([_pg_dollar()] if dialect == "postgresql" else []),
                *(
                    [st.sampled_from([Token("%s", "psy"), Token("%(p)s", "psy"), Token("%%")])]
                    if psycopg
                    else []
                ),
            ),
            max_size=12,
        )
    )
    tokens: list[Token] = []
    for piece in pieces:
        if tokens:
            tokens.append(Token(draw(_SEPARATORS)))
        tokens.extend(piece if isinstance(piece, list) else [piece])
    if draw(st.integers(0, 4)) == 0:
        tokens.append(Token(" "))
        tokens.append(draw(_unterminated(dialect)))
    return tokens


@st.composite
def literal_values(draw: st.DrawFn) -> str:
    """A string value full of placeholder, percent, quote and comment lookalikes."""
    return draw(_body)


# --------------------------------------------------------------------------------------------
# Properties of the lexer (pure logic)
# --------------------------------------------------------------------------------------------

BOUNDED = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _expected(tokens: list[Token], part: Callable[[Token], str], pct: bool) -> str:
    return "".join(
        part(t) if t.kind == "name" else (t.text.replace("%", "%%") if pct else t.text)
        for t in tokens
    )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_placeholders_found_are_exactly_the_generated_ones(dialect: str) -> None:
    postgresql = dialect == "postgresql"

    @BOUNDED
    @given(statements(dialect, psycopg=postgresql))
    def check(tokens: list[Token]) -> None:
        sql = "".join(t.text for t in tokens)
        names = tuple(str(t.value) for t in tokens if t.kind == "name")
        assert find_named_placeholders(sql, dialect) == names
        assert convert_named(sql, "named", dialect).sql == sql
        pyformat = convert_named(sql, "pyformat", dialect)
        assert pyformat.sql == _expected(tokens, lambda t: f"%({t.value})s", pct=True)
        assert pyformat.names == names
        qmark = convert_named(sql, "qmark", dialect)
        assert qmark.sql == _expected(tokens, lambda t: "?", pct=False)
        assert qmark.names == names
        assert convert_named(sql, "format", dialect).sql == _expected(
            tokens, lambda t: "%s", pct=True
        )
        if not postgresql:
            return
        # psycopg's own style only without :name and with a real %s / %(name)s in code.
        if names or not any(t.kind == "psy" for t in tokens):
            assert convert_for_psycopg(sql) == pyformat.sql
        else:
            assert convert_for_psycopg(sql) == sql
        dollar = convert_dollar_numeric(sql)
        assert dollar.names == tuple(int(t.value) - 1 for t in tokens if t.kind == "num")  # type: ignore[arg-type]
        assert dollar.sql == "".join(
            "%s" if t.kind == "num" else t.text.replace("%", "%%") for t in tokens
        )

    check()


# --------------------------------------------------------------------------------------------
# Differential: the servers give back exactly what the literals spell
# --------------------------------------------------------------------------------------------

SERVER = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_ALIAS = st.text(":%()'\"`$#-/*xé?[]E\\ ", min_size=1, max_size=12).map(lambda s: s.strip() or "c")


@st.composite
def server_cases(draw: st.DrawFn, dialect: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(sql, params, expected row)``: a tricky literal under a tricky alias, a tricky comment,
    then a placeholder that a misread literal or comment would swallow."""
    value = draw(literal_values())
    if dialect == "postgresql" and draw(st.integers(0, 3)) == 0:
        literal = draw(_pg_dollar_of(value))
    else:
        literal = quote_string(value, dialect, draw)
    alias = draw(_ALIAS)
    if dialect == "sqlite":
        alias = alias.replace("]", "") or "c"
    comment = draw(_comment(dialect)).text
    name = draw(_NAME)
    sql = (
        f"SELECT {literal} AS {quote_identifier(alias, dialect, draw)}, {comment} :{name} AS p_out"
    )
    return sql, {name: 7}, {alias: value, "p_out": 7}


@st.composite
def _pg_dollar_of(draw: st.DrawFn, value: str) -> str:
    for tag in (draw(st.sampled_from(["", "t", "é", "größe", "名"])), "q_9"):
        delim = f"${tag}$"
        if (value + delim).find(delim) == len(value):
            return f"{delim}{value}{delim}"
    return quote_string(value, "postgresql", draw)


def test_sync_backends_return_what_the_literal_spells(
    sync_backend: Any, backend_url: Callable[[Any], str]
) -> None:
    db = sync_backend.make(backend_url(sync_backend))

    @SERVER
    @given(server_cases(sync_backend.dialect))
    def check(case: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        sql, params, expected = case
        with db.transaction() as conn:
            assert conn.execute(sql, params).fetchall() == [expected], sql

    try:
        check()
    finally:
        db.shutdown()


def test_async_backends_return_what_the_literal_spells(
    async_backend: Any, backend_url: Callable[[Any], str]
) -> None:
    # Hypothesis drives plain functions: one event loop for the database, one run per example.
    loop = asyncio.new_event_loop()
    db = async_backend.make(backend_url(async_backend))

    async def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with db.transaction() as conn:
            return await (await conn.execute(sql, params)).fetchall()  # type: ignore[no-any-return]

    @SERVER
    @given(server_cases(async_backend.dialect))
    def check(case: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        sql, params, expected = case
        assert loop.run_until_complete(run(sql, params)) == [expected], sql

    try:
        check()
    finally:
        loop.run_until_complete(db.shutdown())
        loop.close()


# Every case the audit of issue 11 measured, on every backend of its dialect: (dialect or None
# for all, sql, params, expected rows).
ISSUE_CASES: list[tuple[str | None, str, dict[str, Any], list[dict[str, Any]]]] = [
    (None, "SELECT '%(' AS lit, :id AS id", {"id": 1}, [{"lit": "%(", "id": 1}]),
    (
        None,
        "SELECT '100%' AS pct, '%s' AS s, :id AS id",
        {"id": 1},
        [{"pct": "100%", "s": "%s", "id": 1}],
    ),
    (None, "SELECT :größe AS g", {"größe": 1}, [{"g": 1}]),
    ("postgresql", "SELECT /* a /* b */ :x */ :id AS id", {"id": 1}, [{"id": 1}]),
    ("postgresql", "SELECT name'a\\' AS n, :id AS id", {"id": 1}, [{"n": "a\\", "id": 1}]),
    (
        "postgresql",
        "SELECT $é$ :x '%( $é$ AS d, :id AS id",
        {"id": 1},
        [{"d": " :x '%( ", "id": 1}],
    ),
    (
        "postgresql",
        "SELECT (ARRAY[10, 20, 30])[lo:hi] AS s, :id AS id FROM (SELECT 1 AS lo, 2 AS hi) AS t",
        {"id": 1},
        [{"s": [10, 20], "id": 1}],
    ),
    (
        "postgresql",
        # [:hi] is a placeholder (as in SQLAlchemy's text()): an element; [: :hi] is a slice.
        "SELECT (ARRAY[10, 20, 30])[:hi] AS e, (ARRAY[10, 20, 30])[: :hi] AS s",
        {"hi": 2},
        [{"e": 20, "s": [10, 20]}],
    ),
    (
        "postgresql",
        "SELECT :id::text AS t, E'it\\'s :x' AS e",
        {"id": 1},
        [{"t": "1", "e": "it's :x"}],
    ),
    ("mysql", "SELECT 1 AS a # it's :x\n, :id AS id", {"id": 1}, [{"a": 1, "id": 1}]),
    ("mysql", "SELECT 1 AS a -- it's :x\n, :id AS id", {"id": 1}, [{"a": 1, "id": 1}]),
    ("mysql", "SELECT 1 AS `a\\`, :id AS id", {"id": 1}, [{"a\\": 1, "id": 1}]),
    ("mysql", "SELECT 5--:x AS v", {"x": 2}, [{"v": 7}]),
    ("mysql", "SELECT /*! :id AS id, */ 'it\\'s :x' AS s", {"id": 1}, [{"id": 1, "s": "it's :x"}]),
    ("sqlite", "SELECT 1 AS [a :b], :id AS id", {"id": 1}, [{"a :b": 1, "id": 1}]),
]


def _issue_cases(dialect: str) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    return [(sql, p, rows) for d, sql, p, rows in ISSUE_CASES if d in (None, dialect)]


def test_issue_cases_sync(sync_db: Any, sync_backend: Any) -> None:
    for sql, params, rows in _issue_cases(sync_backend.dialect):
        with sync_db.transaction() as conn:
            assert conn.execute(sql, params).fetchall() == rows, sql
            if sync_backend.dialect != "sqlite":  # sqlite3 runs only DML in executemany()
                conn.executemany(sql, [params, params])  # the batch path reads it the same way


async def test_issue_cases_async(async_db: Any, async_backend: Any) -> None:
    for sql, params, rows in _issue_cases(async_backend.dialect):
        async with async_db.transaction() as conn:
            assert await (await conn.execute(sql, params)).fetchall() == rows, sql
            if async_backend.dialect != "sqlite":
                await conn.executemany(sql, [params, params])


def test_missing_parameter_is_a_query_error_naming_it_sync(sync_db: Any) -> None:
    with pytest.raises(QueryError, match="missing_b"), sync_db.transaction() as conn:
        conn.execute("SELECT :a AS a, :missing_b AS b", {"a": 1})
    with pytest.raises(QueryError, match="missing_b"), sync_db.transaction() as conn:
        conn.executemany("SELECT :a AS a, :missing_b AS b", [{"a": 1}])
    with sync_db.transaction() as conn:  # the pool keeps working
        assert conn.execute("SELECT :a AS a", {"a": 1}).fetchall() == [{"a": 1}]


async def test_missing_parameter_is_a_query_error_naming_it_async(async_db: Any) -> None:
    async with async_db.transaction() as conn:
        with pytest.raises(QueryError, match="missing_b"):
            await conn.execute("SELECT :a AS a, :missing_b AS b", {"a": 1})
    async with async_db.transaction() as conn:
        with pytest.raises(QueryError, match="missing_b"):
            await conn.executemany("SELECT :a AS a, :missing_b AS b", [{"a": 1}])
    async with async_db.transaction() as conn:
        assert await (await conn.execute("SELECT :a AS a", {"a": 1})).fetchall() == [{"a": 1}]


def test_psycopg_placeholders_still_pass_through(postgres_server_url: str) -> None:
    from structum_lab.plugins.database.postgres import PostgresDatabase

    db = PostgresDatabase(postgres_server_url, min_size=1, pool_size=2)
    try:
        with db.transaction() as conn:
            rows = conn.execute("SELECT %(id)s AS id, '100%%' AS pct", {"id": 1}).fetchall()
            assert rows == [{"id": 1, "pct": "100%"}]
            rows = conn.execute("SELECT '%(' AS lit, :id AS id", {"id": 1}).fetchall()
            assert rows == [{"lit": "%(", "id": 1}]
    finally:
        db.shutdown()


# sqlite3 runs only DML in executemany(): a temporary table for the batch case.
_TEMP_TABLE = "CREATE TEMPORARY TABLE IF NOT EXISTS structum_enc_tmp (v VARCHAR(10))"
_TEMP_INSERT = "INSERT INTO structum_enc_tmp (v) VALUES (:v)"
SURROGATE_CASES: list[tuple[str, dict[str, Any] | None]] = [
    ("SELECT :v AS v", {"v": "a\ud800"}),  # in a parameter
    ("SELECT 'a\udfff' AS v", None),  # in the statement
]


def test_unencodable_text_is_a_query_error_sync(sync_db: Any) -> None:
    for sql, params in SURROGATE_CASES:
        with pytest.raises(QueryError, match="UTF-8"), sync_db.transaction() as conn:
            conn.execute(sql, params)
    with sync_db.transaction() as conn:
        conn.execute(_TEMP_TABLE)
        with pytest.raises(QueryError, match="UTF-8"):
            conn.executemany(_TEMP_INSERT, [{"v": "ok"}, {"v": "a\ud800"}])
    with sync_db.transaction() as conn:  # the pool keeps working
        assert conn.execute("SELECT :v AS v", {"v": "é"}).fetchall() == [{"v": "é"}]


async def test_unencodable_text_is_a_query_error_async(async_db: Any) -> None:
    for sql, params in SURROGATE_CASES:
        async with async_db.transaction() as conn:
            with pytest.raises(QueryError, match="UTF-8"):
                await conn.execute(sql, params)
    async with async_db.transaction() as conn:
        await conn.execute(_TEMP_TABLE)
        with pytest.raises(QueryError, match="UTF-8"):
            await conn.executemany(_TEMP_INSERT, [{"v": "ok"}, {"v": "a\ud800"}])
    async with async_db.transaction() as conn:
        assert await (await conn.execute("SELECT :v AS v", {"v": "é"})).fetchall() == [{"v": "é"}]
