"""Portable ``:name`` placeholders, converted once per statement to the driver's paramstyle.

Every backend accepts ``:name`` with a mapping. The converter reads the SQL like the server would,
so colons inside string literals, quoted identifiers, comments, dollar-quoted bodies and ``::``
casts are left alone. Conversions are cached: the hot path of a repeated statement is one dict
lookup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, NamedTuple

__all__ = [
    "ConvertedSQL",
    "ParamStyle",
    "adapt_params",
    "convert_dollar_numeric",
    "convert_named",
    "find_named_placeholders",
]

ParamStyle = Literal["pyformat", "format", "qmark", "named", "numeric"]

_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_DIGITS = re.compile(r"[0-9]+")


class ConvertedSQL(NamedTuple):
    """A statement rewritten for a driver.

    Attributes:
        sql: The statement in the driver's paramstyle.
        names: For positional styles, the parameter names (or 0-based indexes) in the order the
            driver expects them; empty for mapping styles.
        positional: True when the driver wants a sequence rather than a mapping.
    """

    sql: str
    names: tuple[str | int, ...]
    positional: bool


def _scan(
    sql: str, on_placeholder: Any, *, double_percent: bool = False, backslash_escapes: bool = False
) -> str:
    """Walk ``sql``; call ``on_placeholder(sql, i)`` at each candidate position outside literals.

    ``on_placeholder`` returns ``(replacement, new_index)`` or None to copy the character. With
    ``double_percent``, ``%`` inside literals and comments is doubled too: pyformat drivers read
    the whole string. With ``backslash_escapes`` (MySQL's default) a backslash escapes a quote.
    """
    out: list[str] = []
    i = 0
    n = len(sql)
    start = 0
    while i < n:
        ch = sql[i]
        skipped_from = i
        if ch == "'" or ch == '"' or ch == "`":
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote escapes itself
                        j += 2
                        continue
                    break
                if sql[j] == "\\" and (
                    backslash_escapes or (ch == "'" and i > 0 and sql[i - 1] in "eE")
                ):
                    j += 2
                    continue
                j += 1
            i = j + 1
        elif ch == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif ch == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            match = _DOLLAR_TAG.match(sql, i)
            if match:
                tag = match.group(0)
                j = sql.find(tag, match.end())
                i = n if j < 0 else j + len(tag)
                if double_percent:
                    start = _flush_doubled(sql, start, skipped_from, i, out)
            else:
                result = on_placeholder(sql, i)
                if result is None:
                    i += 1
                else:
                    out.append(sql[start:i])
                    out.append(result[0])
                    i = start = result[1]
        elif ch == ":" or ch == "%":
            result = on_placeholder(sql, i)
            if result is None:
                i += 2 if sql.startswith("::", i) else 1
            else:
                out.append(sql[start:i])
                out.append(result[0])
                i = start = result[1]
        else:
            i += 1
            continue
        if double_percent and i > skipped_from + 1 and sql[skipped_from] in "'\"`-/":
            start = _flush_doubled(sql, start, skipped_from, i, out)
    out.append(sql[start:])
    return "".join(out)


def _flush_doubled(sql: str, start: int, region_start: int, region_end: int, out: list[str]) -> int:
    """Copy pending text, then a literal/comment region with ``%`` doubled; return the new start."""
    region = sql[region_start:region_end]
    if "%" not in region:
        return start
    out.append(sql[start:region_start])
    out.append(region.replace("%", "%%"))
    return region_end


@lru_cache(maxsize=1024)
def find_named_placeholders(sql: str) -> tuple[str, ...]:
    """Return the ``:name`` placeholders of ``sql`` in order of appearance (duplicates kept)."""
    found: list[str] = []

    def visit(text: str, i: int) -> tuple[str, int] | None:
        if text[i] != ":" or text.startswith("::", i) or (i > 0 and text[i - 1] == ":"):
            return None
        match = _IDENT.match(text, i + 1)
        if match is None:
            return None
        found.append(match.group(0))
        return text[i : match.end()], match.end()

    _scan(sql, visit)
    return tuple(found)


@lru_cache(maxsize=2048)
def convert_named(sql: str, style: ParamStyle, backslash_escapes: bool = False) -> ConvertedSQL:
    """Rewrite ``:name`` placeholders for a driver paramstyle.

    Args:
        sql: SQL with ``:name`` placeholders.
        style: The driver's DB-API paramstyle.
        backslash_escapes: Backslash escapes quotes inside every literal (MySQL/MariaDB's default
            mode); otherwise only inside PostgreSQL ``E'...'`` strings.

    Returns:
        The converted statement; for ``format``/``qmark``/``numeric`` styles, the names in the
        order the values must be passed.
    """
    names: list[str | int] = []
    percent_styles = style in ("pyformat", "format")

    def visit(text: str, i: int) -> tuple[str, int] | None:
        ch = text[i]
        if ch == "%":
            return ("%%", i + 1) if percent_styles else None
        if ch != ":" or text.startswith("::", i) or (i > 0 and text[i - 1] == ":"):
            return None
        match = _IDENT.match(text, i + 1)
        if match is None:
            return None
        name = match.group(0)
        if style == "pyformat":
            return f"%({name})s", match.end()
        if style == "named":
            return f":{name}", match.end()
        names.append(name)
        if style == "format":
            return "%s", match.end()
        if style == "qmark":
            return "?", match.end()
        return f":{len(names)}", match.end()  # numeric

    converted = _scan(
        sql, visit, double_percent=percent_styles, backslash_escapes=backslash_escapes
    )
    positional = style in ("format", "qmark", "numeric")
    return ConvertedSQL(converted, tuple(names), positional)


@lru_cache(maxsize=1024)
def convert_dollar_numeric(sql: str) -> ConvertedSQL:
    """Rewrite PostgreSQL-style ``$1``, ``$2`` placeholders to psycopg's ``%s``.

    The returned ``names`` are 0-based indexes into the caller's sequence, in the order psycopg
    needs them (``$2 ... $1`` becomes ``(1, 0)``); literal ``%`` is doubled.
    """
    order: list[str | int] = []

    def visit(text: str, i: int) -> tuple[str, int] | None:
        ch = text[i]
        if ch == "%":
            return "%%", i + 1
        if ch != "$":
            return None
        match = _DIGITS.match(text, i + 1)
        if match is None:
            return None
        order.append(int(match.group(0)) - 1)
        return "%s", match.end()

    converted = _scan(sql, visit, double_percent=True)
    return ConvertedSQL(converted, tuple(order), True)


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
