r"""Portable ``:name`` placeholders, converted once per statement to the driver's paramstyle.

Every backend accepts ``:name`` with a mapping. The statement is read by a small lexer that follows
the lexical rules of the server it is sent to (``dialect``), so a ``:name`` inside a string
literal, a quoted identifier, a comment or a dollar-quoted body is never taken for a placeholder:

``postgresql``
    ``'...'`` (``''`` escapes a quote; a backslash is an ordinary character, as with the default
    ``standard_conforming_strings = on``), ``E'...'`` with backslash escapes, but only when the
    ``E`` starts a token (``name'a\'`` is the type ``name`` and a standard string),
    ``"..."`` identifiers, ``--`` comments, nested ``/* /* */ */`` comments, ``$tag$...$tag$``
    bodies whose tag may be any identifier (non-ASCII letters included), ``$1`` parameters.
``mysql`` / ``mariadb``
    ``'...'`` and ``"..."`` with backslash escapes (the default ``sql_mode``; neither
    ``ANSI_QUOTES`` nor ``NO_BACKSLASH_ESCAPES``), `````...````` identifiers (no backslash
    escapes), ``#`` comments, ``--`` comments only when followed by whitespace or a control
    character (``5--:x`` is five minus minus ``:x``), ``/* */`` comments that do not nest.
    ``/*! ... */`` and ``/*M! ... */`` are executed by the server, so they are read as SQL.
``sqlite`` (also any other dialect name)
    ``'...'``, ``"..."``, `````...````` and ``[...]`` quoting, ``--`` and non-nesting ``/* */``
    comments.

A placeholder is ``:`` followed by a name that starts with a letter or ``_`` and goes on with
letters, digits and ``_`` (Unicode letters included: ``:größe``). As in SQLAlchemy's ``text()``,
a ``:`` glued to the end of the previous token (a word character, ``$``, ``:``, a closing ``]``,
``)`` or quote) is not a placeholder: ``a::int`` and PostgreSQL slices ``arr[lo:hi]`` stay as
they are. ``arr[:hi]`` is the element at ``:hi`` (as in ``text()``); a slice with placeholder
bounds needs a space before each placeholder's colon: ``arr[:lo : :hi]``, ``arr[1: :hi]``.

For the ``pyformat``/``format`` paramstyles every ``%`` of the statement is doubled, wherever it
is: those drivers run the whole text through ``%`` formatting. Nothing else is changed: apart from
the placeholders the converted text is byte-for-byte the original.

Conversions are cached: the hot path of a repeated statement is one dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from structum_lab.plugins.database.errors import QueryError

__all__ = [
    "ConvertedSQL",
    "Dialect",
    "ParamStyle",
    "adapt_params",
    "convert_dollar_numeric",
    "convert_for_psycopg",
    "convert_named",
    "find_named_placeholders",
    "statement_starts",
    "unencodable_error",
]

ParamStyle = Literal["pyformat", "format", "qmark", "named", "numeric"]
Dialect = Literal["postgresql", "mysql", "mariadb", "sqlite"]
"""Lexical rules to read a statement by; other names get the ``sqlite`` (ANSI-like) rules."""

# -- the lexers -------------------------------------------------------------------------------
# One regular expression per dialect finds, from a position, the next thing that matters: a
# region to copy untouched (literal, quoted identifier, comment), a placeholder, or (PostgreSQL)
# the start of a block comment, whose nesting a regular expression cannot count. Every
# alternative starts with a literal character, so the regex engine skips plain SQL by a character
# set test; what must be checked before that character is a lookbehind placed after it.

# A ``:`` glued to the end of the previous token (word, ``$``, ``:``, closing bracket or quote)
# is that token's tail, never a placeholder.
_PLACEHOLDER = r""":(?<![\w$:\])'"`]:)(?P<name>[^\W\d]\w*)"""
# PostgreSQL identifier characters: bytes >= 0x80 count as letters (scan.l ident_cont).
_PG_IDENT = "A-Za-z0-9_$\u0080-\U0010ffff"
_PG_TAG = "(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?"

_PG = re.compile(
    rf"""
      '(?<=(?<![{_PG_IDENT}])[Ee]')                       # E'' (the E starts a token):
          [^'\\]*(?:(?:\\[\s\S]?|'')[^'\\]*)*'?           #   backslash escapes
    | '[^']*(?:''[^']*)*'?                                # string ('' escapes; also B'' X'' U&'')
    | "[^"]*(?:""[^"]*)*"?                                # quoted identifier
    | --[^\n\r]*                                          # line comment
    | /(?P<block>\*)                                      # block comment (they nest)
    | \$(?<![{_PG_IDENT}]\$)                               # at a token start:
        (?:(?P<num>[0-9]+)                                #   $1
          | (?P<tag>{_PG_TAG})\$[\s\S]*?(?:\$(?P=tag)\$|\Z))  #   $tag$ ... $tag$
    | {_PLACEHOLDER}
    | %(?:%|(?P<psy>(?:\([^)'"\n]+\))?[sbt]))             # psycopg's %s, %(name)s (not %%)
    | (?P<semi>;)                                         # end of a statement (several per text)
    """,
    re.VERBOSE,
)
_PG_BLOCK = re.compile(r"/\*|\*/")

_MYSQL = re.compile(
    rf"""
      '[^'\\]*(?:(?:\\[\s\S]?|'')[^'\\]*)*'?             # strings: backslash escapes, '' too
    | "[^"\\]*(?:(?:\\[\s\S]?|"")[^"\\]*)*"?
    | `[^`]*(?:``[^`]*)*`?                                # identifier: only `` escapes
    | \#[^\n]*
    | --(?=[\x00-\x20\x7f]|\Z)[^\n]*                       # -- needs whitespace/control after it
    | /\*(?!!|M!)[\s\S]*?(?:\*/|\Z)                        # /*! */ and /*M! */ are executed
    | {_PLACEHOLDER}
    """,
    re.VERBOSE,
)

_SQLITE = re.compile(
    rf"""
      '[^']*(?:''[^']*)*'?
    | "[^"]*(?:""[^"]*)*"?
    | `[^`]*(?:``[^`]*)*`?
    | \[[^\]]*\]?                                         # [identifier]: no escapes
    | --[^\n]*
    | /\*[\s\S]*?(?:\*/|\Z)
    | {_PLACEHOLDER}
    """,
    re.VERBOSE,
)

_LEXERS: dict[str, re.Pattern[str]] = {
    "postgresql": _PG,
    "postgres": _PG,
    "mysql": _MYSQL,
    "mariadb": _MYSQL,
    "sqlite": _SQLITE,
}
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Lexed(NamedTuple):
    named: tuple[tuple[int, int, str], ...]  # (start, end, name) of each :name
    numbered: tuple[tuple[int, int, int], ...]  # (start, end, n) of each $n (PostgreSQL)
    psycopg: bool  # a %s / %(name)s placeholder outside literals and comments (PostgreSQL)
    ends: tuple[int, ...]  # offsets just past each ``;`` that ends a statement (PostgreSQL)


def _name_end(sql: str, end: int) -> int:
    r"""Extend a name over combining marks and other identifier characters ``\w`` misses."""
    n = len(sql)
    while end < n and not sql[end].isascii() and f"a{sql[end]}".isidentifier():
        end += 1
        while end < n and (sql[end].isalnum() or sql[end] == "_"):
            end += 1
    return end


def _lex(sql: str, dialect: str) -> _Lexed:
    """Find the placeholders of ``sql`` read by ``dialect``'s lexical rules."""
    if type(sql) is not str:
        given: object = sql  # callers are typed; users' code is not
        raise QueryError(
            f"the statement must be a str, got {type(given).__name__}"
            + ("; decode it first" if isinstance(given, (bytes, bytearray)) else "")
        )
    bad = None if sql.isascii() else _SURROGATE.search(sql)
    if bad is not None:
        raise QueryError(
            f"the statement contains an unpaired surrogate (U+{ord(bad.group()):04X} at offset "
            f"{bad.start()}), which cannot be sent as UTF-8; fix the text where it was decoded"
        )
    pattern = _LEXERS.get(dialect, _SQLITE)
    named: list[tuple[int, int, str]] = []
    numbered: list[tuple[int, int, int]] = []
    psycopg = False
    ends: list[int] = []
    pos = 0
    search = pattern.search
    while (match := search(sql, pos)) is not None:
        pos = match.end()
        kind = match.lastgroup
        if kind == "name":
            end = pos if pos == len(sql) or sql[pos].isascii() else _name_end(sql, pos)
            named.append((match.start(), end, sql[match.start() + 1 : end]))
            pos = end
        elif kind == "block":  # PostgreSQL block comments nest
            depth = 1
            for mark in _PG_BLOCK.finditer(sql, pos):
                depth += 1 if mark.group() == "/*" else -1
                if depth == 0:
                    pos = mark.end()
                    break
            else:
                pos = len(sql)
        elif kind == "num":
            numbered.append((match.start(), pos, int(match.group("num"))))
        elif kind == "psy":
            psycopg = True
        elif kind == "semi":
            ends.append(pos)
    return _Lexed(tuple(named), tuple(numbered), psycopg, tuple(ends))


def _splice(
    sql: str, spans: Sequence[tuple[int, int, Any]], parts: Sequence[str], pct: bool
) -> str:
    """``sql`` with each span replaced by its part; ``%`` doubled elsewhere when ``pct``."""
    pct = pct and "%" in sql
    if not spans:
        return sql.replace("%", "%%") if pct else sql
    out: list[str] = []
    last = 0
    for (start, end, _), part in zip(spans, parts, strict=True):
        # Only the original text is escaped: the placeholders just made keep their single %.
        out.append(sql[last:start].replace("%", "%%") if pct else sql[last:start])
        out.append(part)
        last = end
    out.append(sql[last:].replace("%", "%%") if pct else sql[last:])
    return "".join(out)


class ConvertedSQL(NamedTuple):
    """A statement rewritten for a driver.

    Attributes:
        sql: The statement in the driver's paramstyle.
        names: The placeholder names in order of appearance (duplicates kept); for
            ``convert_dollar_numeric``, 0-based indexes into the caller's sequence.
        positional: True when the driver wants a sequence rather than a mapping.
    """

    sql: str
    names: tuple[str | int, ...]
    positional: bool


def _dialect_name(dialect: str | bool) -> str:
    # A bool is the former ``backslash_escapes`` argument: True meant MySQL/MariaDB.
    if dialect is True:
        return "mysql"
    if dialect is False:
        return "postgresql"
    return dialect


@lru_cache(maxsize=1024)
def find_named_placeholders(sql: str, dialect: str = "postgresql") -> tuple[str, ...]:
    """Return the ``:name`` placeholders of ``sql`` in order of appearance (duplicates kept).

    Args:
        sql: The statement.
        dialect: Whose lexical rules to read it by (see the module docstring).

    Raises:
        QueryError: ``sql`` is not a str or cannot be encoded as UTF-8.
    """
    return tuple(name for _, _, name in _lex(sql, dialect).named)


@lru_cache(maxsize=2048)
def convert_named(sql: str, style: ParamStyle, dialect: str | bool = "postgresql") -> ConvertedSQL:
    """Rewrite ``:name`` placeholders for a driver paramstyle.

    Args:
        sql: SQL with ``:name`` placeholders.
        style: The driver's DB-API paramstyle.
        dialect: Whose lexical rules to read ``sql`` by: ``postgresql``, ``mysql``, ``mariadb``
            or ``sqlite`` (see the module docstring). A bool is still accepted for the former
            ``backslash_escapes`` flag (True: MySQL/MariaDB, False: PostgreSQL).

    Returns:
        The converted statement and its placeholder names in order (for ``format``/``qmark``/
        ``numeric`` styles, the order the values must be passed in).

    Raises:
        QueryError: ``sql`` is not a str or cannot be encoded as UTF-8.
    """
    spans = _lex(sql, _dialect_name(dialect)).named
    names = tuple(name for _, _, name in spans)
    if style == "pyformat":
        parts = [f"%({name})s" for name in names]
    elif style == "format":
        parts = ["%s"] * len(names)
    elif style == "qmark":
        parts = ["?"] * len(names)
    elif style == "numeric":
        parts = [f":{i}" for i in range(1, len(names) + 1)]
    else:  # named
        parts = [f":{name}" for name in names]
    converted = _splice(sql, spans, parts, style in ("pyformat", "format"))
    return ConvertedSQL(converted, names, style in ("format", "qmark", "numeric"))


def convert_for_psycopg(sql: str) -> str:
    """The statement to give psycopg with a mapping of parameters.

    Portable ``:name`` SQL becomes ``%(name)s`` with every other ``%`` doubled. Text is taken as
    psycopg's own (and passed through untouched) only when it has no ``:name`` placeholder and
    has a real ``%s``/``%b``/``%t``/``%(name)s`` placeholder outside literals and comments:
    ``SELECT '%(' AS lit, :id`` is portable SQL whose literal is kept as written.

    Not cached: the PostgreSQL backend keeps its own cache of the result.

    Raises:
        QueryError: ``sql`` cannot be encoded as UTF-8.
    """
    lexed = _lex(sql, "postgresql")
    if not lexed.named and lexed.psycopg:
        return sql
    return _splice(sql, lexed.named, [f"%({name})s" for _, _, name in lexed.named], True)


@lru_cache(maxsize=1024)
def convert_dollar_numeric(sql: str) -> ConvertedSQL:
    """Rewrite PostgreSQL-style ``$1``, ``$2`` placeholders to psycopg's ``%s``.

    The returned ``names`` are 0-based indexes into the caller's sequence, in the order psycopg
    needs them (``$2 ... $1`` becomes ``(1, 0)``); every other ``%`` is doubled. Without any
    ``$n`` outside literals and comments, ``names`` is empty.

    Raises:
        QueryError: ``sql`` cannot be encoded as UTF-8.
    """
    spans = _lex(sql, "postgresql").numbered
    if any(n == 0 for _, _, n in spans):
        raise QueryError("the statement uses $0; positional parameters are numbered from $1")
    converted = _splice(sql, spans, ["%s"] * len(spans), True)
    return ConvertedSQL(converted, tuple(n - 1 for _, _, n in spans), True)


def statement_starts(sql: str) -> tuple[int, ...]:
    """Where the second and later statements of a PostgreSQL text start (past each ``;``).

    psycopg runs every statement of a text sent without parameters; the ``;`` inside literals,
    quoted identifiers, comments and dollar-quoted bodies are not statement ends.

    Raises:
        QueryError: ``sql`` is not a str or cannot be encoded as UTF-8.
    """
    return _lex(sql, "postgresql").ends


def unencodable_error(exc: UnicodeError) -> QueryError:
    """The clear error for a statement or parameter the driver could not encode or decode.

    An unpaired surrogate (text decoded with ``errors="surrogateescape"``, or cut in the middle
    of a pair) cannot be sent as UTF-8; drivers raise ``UnicodeEncodeError`` (or, aiomysql,
    ``UnicodeDecodeError``) before anything reaches the server, so the connection is intact.
    """
    return QueryError(
        f"the statement or one of its parameters cannot be sent as UTF-8 ({exc}); "
        "fix the text where it was decoded (an unpaired surrogate is the usual cause)"
    )


def adapt_params(
    converted: ConvertedSQL, params: Mapping[str, Any] | Sequence[Any]
) -> Mapping[str, Any] | Sequence[Any]:
    """Arrange ``params`` the way ``converted`` expects them.

    Raises:
        KeyError: A placeholder has no value in ``params`` (the caller turns it into a clear error).
    """
    if not converted.positional:
        return params
    if isinstance(params, Mapping):
        return [params[name] for name in converted.names]  # type: ignore[index]
    if converted.names and all(isinstance(n, int) for n in converted.names):
        seq = list(params)
        return [seq[n] for n in converted.names]  # type: ignore[index]
    return params
