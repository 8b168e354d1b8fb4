r"""Statement hygiene shared by every backend: what must never reach the driver.

- SQL text with a NUL character: libpq reads a C string and stops at the NUL, so
  ``DELETE FROM t\x00 WHERE id = 2`` would run as ``DELETE FROM t``. Refused everywhere.
- Transaction control inside a ``transaction()`` block (``COMMIT``, ``ROLLBACK``, ``BEGIN``,
  ``END``, ``START TRANSACTION``, ``SET autocommit``...): the block promises all or nothing, and
  such a statement would commit part of it (on SQLite, every later statement would even
  autocommit). Refused there; a ``get_connection()`` connection, whose caller owns the
  transaction, may run them. ``SAVEPOINT``/``RELEASE``/``ROLLBACK TO`` stay allowed.

``check_statement()`` is cached per SQL text: a repeated statement costs one dict lookup.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import DatabaseError, QueryError
from .params import statement_starts

__all__ = ["check_statement", "control_statement_error", "ends_transaction", "manual_only_error"]

# Whitespace, comments and empty statements before a statement's first keyword. MySQL's
# executable /*! ... */ comments are read as SQL (their content is skipped into, not over).
_LEAD = re.compile(
    r"""(?:\s+|;|--[^\n]*(?:\n|\Z)|\#[^\n]*(?:\n|\Z)|/\*(?:!|M!)[0-9]*|/\*(?:[^*]|\*(?!/))*\*/)*""",
    re.VERBOSE,
)
_CONTROL = re.compile(
    r"""(?:
        COMMIT | END | ABORT
      | ROLLBACK (?! \s+ (?:WORK\s+|TRANSACTION\s+)? TO \b )
      | BEGIN (?! \s+ NOT \s+ ATOMIC \b )
      | START \s+ TRANSACTION
      | PREPARE \s+ TRANSACTION
      | XA \s+ (?:START|BEGIN|END|PREPARE|COMMIT|ROLLBACK)
      | SET \s+ (?:SESSION\s+|LOCAL\s+|GLOBAL\s+|@@(?:SESSION\.|LOCAL\.|GLOBAL\.)?)? AUTOCOMMIT
    )\b""",
    re.VERBOSE | re.IGNORECASE,
)


def _keyword(sql: str, pos: int) -> str | None:
    match = _CONTROL.match(sql, _LEAD.match(sql, pos).end())  # type: ignore[union-attr]
    if match is None:
        return None
    words = match.group(0).upper().split()
    return "SET AUTOCOMMIT" if words[0] == "SET" else " ".join(words)


# SQL text -> its transaction-control keyword (None: an ordinary statement), one dict per mode:
# a repeated statement costs one lookup. Bounded by clearing, which only costs re-reading.
_SINGLE: dict[str, str | None] = {}
_MULTI: dict[str, str | None] = {}
_CACHE_LIMIT = 4096
_MISS: Any = object()


def _classify(sql: str, multi: bool) -> str | None:
    if "\x00" in sql:
        raise QueryError(
            f"the SQL text contains a NUL character (\\x00) at offset {sql.index(chr(0))}; it "
            "was not sent: the server would read the statement only up to it. Remove it (pass "
            "data as parameters, never inside the SQL text)"
        )
    keyword = _keyword(sql, 0)
    if keyword is None and multi and ";" in sql:
        for start in statement_starts(sql):
            keyword = _keyword(sql, start)
            if keyword is not None:
                break
    cache = _MULTI if multi else _SINGLE
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[sql] = keyword
    return keyword


def check_statement(sql: Any, multi: bool = False) -> str | None:
    """Refuse SQL with a NUL; return the transaction-control keyword it runs, if any.

    Args:
        sql: The statement (a ``str``; ``bytes`` are checked for NUL only; other objects, such
            as psycopg's ``sql.Composed``, are the driver's business).
        multi: The driver may run several ``;``-separated statements from one text (psycopg
            without parameters): look at every one of them.

    Returns:
        ``"COMMIT"``, ``"ROLLBACK"``, ``"BEGIN"``... when a statement of ``sql`` ends or starts a
        transaction; None otherwise.

    Raises:
        QueryError: ``sql`` contains a NUL character.
    """
    if type(sql) is str:
        found = (_MULTI if multi else _SINGLE).get(sql, _MISS)
        return _classify(sql, multi) if found is _MISS else found
    if isinstance(sql, (bytes, bytearray)) and b"\x00" in sql:
        raise QueryError(
            "the SQL text contains a NUL byte (\\x00); it was not sent: the server would read "
            "the statement only up to it"
        )
    return None


_ENDING = frozenset({"COMMIT", "END", "ABORT", "ROLLBACK", "PREPARE TRANSACTION"})


def ends_transaction(keyword: str) -> bool:
    """True when the control statement ``keyword`` (from :func:`check_statement`) ends one."""
    return keyword in _ENDING


def control_statement_error(keyword: str) -> QueryError:
    """The error for a transaction-control statement run inside a ``transaction()`` block."""
    return QueryError(
        f"{keyword} inside a transaction() block was refused: the block commits or rolls back "
        "as a whole when it ends, and this statement would end it early (what ran before would "
        "stay committed whatever happens next). Use a nested transaction() or conn.savepoint() "
        "for partial rollbacks, or get_connection() to control the transaction yourself"
    )


def manual_only_error(action: str) -> DatabaseError:
    """The error for ``conn.commit()``/``conn.rollback()`` on a ``transaction()`` connection."""
    return DatabaseError(
        f"conn.{action}() is not allowed on a connection of a transaction() block: the block "
        "commits when it ends without an exception and rolls back otherwise. Raise an exception "
        "to roll back, use a nested transaction() (a savepoint) for a partial rollback, or take "
        "the connection with get_connection() to commit or roll back yourself"
    )
