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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _server_case_list(dialect: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Draw the differential cases before any pool exists.

    psycopg_pool's workers call ``random`` when they open a connection (lifetime jitter); done while
    Hypothesis draws, Hypothesis reports it as a strategy using global randomness. Drawing first,
    then running every case, keeps the check the same and the draws undisturbed.
    """
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    @SERVER
    @given(server_cases(dialect))
    def collect(case: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        cases.append(case)

    collect()
    return cases


def test_sync_backends_return_what_the_literal_spells(
    sync_backend: Any, backend_url: Callable[[Any], str]
) -> None:
    cases = _server_case_list(sync_backend.dialect)
    db = sync_backend.make(backend_url(sync_backend))
    try:
        for sql, params, expected in cases:
            with db.transaction() as conn:
                assert conn.execute(sql, params).fetchall() == [expected], sql
    finally:
        db.shutdown()


async def test_async_backends_return_what_the_literal_spells(
    async_backend: Any, backend_url: Callable[[Any], str]
) -> None:
    cases = _server_case_list(async_backend.dialect)
    db = async_backend.make(backend_url(async_backend))
    try:
        for sql, params, expected in cases:
            async with db.transaction() as conn:
                result = await conn.execute(sql, params)
                assert await result.fetchall() == [expected], sql
    finally:
        await db.shutdown()
