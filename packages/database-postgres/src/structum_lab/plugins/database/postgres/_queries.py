"""Placeholder and batch planning for both twins (psycopg keeps this in ``psycopg/_queries.py``).

Every placeholder style a caller may use (psycopg's ``%s`` / ``%(name)s``, the portable ``:name``,
``$1``) becomes what psycopg sends; conversions are cached per SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from psycopg.sql import Composable

from structum_lab.plugins.database._statements import check_statement
from structum_lab.plugins.database.base import DatabaseState
from structum_lab.plugins.database.errors import (
    QueryError,
)
from structum_lab.plugins.database.params import (
    convert_dollar_numeric,
    convert_for_psycopg,
    convert_named,
)

__all__ = ["plan_batch", "plan_query", "prepare_query", "reorder"]


# sql -> (sql, pick, single) for mappings; sql -> (sql, order) for sequences. Plain dicts: the
# hot path of a repeated statement is one lookup. Bounded by clearing, which only costs
# re-conversion.
_MAPPING_SQL: dict[str, tuple[str, Callable[[Any], Any] | None, bool]] = {}
# ``conn.execute(sql, dict)``, the per-transaction hot path: its statement check and its
# conversion in one lookup, ``(control keyword or None, sql for psycopg, pick, single)``.
EXECUTE_SQL: dict[str, tuple[str | None, str, Callable[[Any], Any] | None, bool]] = {}
_SEQUENCE_SQL: dict[str, tuple[str, tuple[int, ...] | None]] = {}
_CACHE_LIMIT = 4096


def _mapping_entry(sql: str) -> tuple[str, Callable[[Any], Any] | None, bool]:
    """How to send ``sql`` with a mapping: ``(sql for psycopg, pick, single)``.

    Portable ``:name`` SQL whose names are all different is sent as ``%s`` with a tuple that
    ``pick`` (an ``itemgetter``) takes from the mapping: psycopg's own ``%(name)s`` handling
    costs a Python-level list comprehension per statement, and a tuple is its cheapest path.
    ``single`` tells that ``pick`` returns the one value itself, not a tuple. A repeated name
    stays ``%(name)s`` (psycopg sends it as one parameter, so its type is inferred once), and
    psycopg's own ``%(name)s`` SQL passes through untouched (``pick`` is None: send the mapping).
    Which one the text is, the PostgreSQL lexer decides from the placeholders outside literals
    and comments (``convert_for_psycopg``): a ``%(`` inside a literal does not count. Literal
    ``%`` signs of portable SQL are doubled for psycopg.
    """
    entry = _MAPPING_SQL.get(sql)
    if entry is None:
        converted = convert_named(sql, "format", "postgresql")
        names = converted.names
        if not names:
            entry = (convert_for_psycopg(sql), None, False)
        elif len(set(names)) == len(names):
            entry = (converted.sql, itemgetter(*names), len(names) == 1)
        else:
            entry = (convert_named(sql, "pyformat", "postgresql").sql, None, False)
        if len(_MAPPING_SQL) >= _CACHE_LIMIT:
            _MAPPING_SQL.clear()
        _MAPPING_SQL[sql] = entry
    return entry


def execute_entry(sql: str) -> tuple[str | None, str, Callable[[Any], Any] | None, bool]:
    """``EXECUTE_SQL``'s entry for ``sql`` (a str), made on a miss.

    Raises:
        QueryError: ``sql`` contains a NUL character (nothing is cached then).
    """
    control = check_statement(sql, True)
    entry = (control, *_mapping_entry(sql))
    if len(EXECUTE_SQL) >= _CACHE_LIMIT:
        EXECUTE_SQL.clear()
    EXECUTE_SQL[sql] = entry
    return entry


def missing_key(exc: KeyError, params: Any) -> QueryError:
    """The error for a ``:name`` the parameters of ``execute()`` lack."""
    return _missing_key(exc, params, "the parameters have")


def _mapping_sql(sql: str) -> str:
    """``sql`` for psycopg with the mapping itself (``%(name)s`` placeholders)."""
    query, pick, _ = _mapping_entry(sql)
    return query if pick is None else convert_named(sql, "pyformat", "postgresql").sql


def _missing_key(exc: KeyError, params: Any, where: str) -> QueryError:
    return QueryError(
        f"the statement uses :{exc.args[0]} but {where} no such key "
        f"(keys: {', '.join(sorted(map(str, params))) or 'none'})"
    )


def _sequence_sql(sql: str) -> tuple[str, tuple[int, ...] | None]:
    entry = _SEQUENCE_SQL.get(sql)
    if entry is None:
        converted = convert_dollar_numeric(sql) if "$" in sql else None
        if converted is None or not converted.names:
            entry = (sql, None)  # psycopg's own %s
        else:
            order = tuple(int(n) for n in converted.names)
            # $1, $2, ... in order needs no rearranging of the caller's sequence.
            entry = (converted.sql, None if order == tuple(range(len(order))) else order)
        if len(_SEQUENCE_SQL) >= _CACHE_LIMIT:
            _SEQUENCE_SQL.clear()
        _SEQUENCE_SQL[sql] = entry
    return entry


def plan_query(sql: Any, params: Any) -> tuple[Any, tuple[int, ...] | None]:
    """Return ``(sql for psycopg, order)`` for ``params``' kind; ``order`` rearranges a sequence.

    ``%s`` / ``%(name)s`` pass through; ``:name`` with a mapping and ``$1`` with a sequence are
    rewritten. Non-string queries (``psycopg.sql.SQL``, bytes) are psycopg's business.
    """
    if type(sql) is not str:
        if not isinstance(sql, (bytes, Composable)):
            raise DatabaseState._statement_type_error(sql)
        return sql, None
    kind = type(params)
    if kind is dict:
        return _mapping_sql(sql), None
    if kind is tuple or kind is list:
        return _sequence_sql(sql)
    if isinstance(params, Mapping):
        return _mapping_sql(sql), None
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        return _sequence_sql(sql)
    raise QueryError(
        f"query parameters must be a mapping (for :name or %(name)s) or a sequence "
        f"(for %s or $1), got {type(params).__name__}"
    )


def plan_batch(sql: Any, params_seq: Iterable[Any]) -> tuple[Any, Iterable[Any]] | None:
    """Return ``(sql for psycopg, parameter sets)`` for ``executemany``, or None when empty.

    Shared by both twins. Portable ``:name`` SQL with mappings is sent as ``%s`` with tuples:
    psycopg's per-row work on tuples is measurably cheaper than on ``%(name)s`` dicts, and the
    conversion is done once per batch.
    """
    rows = iter(params_seq)
    first = next(rows, None)
    if first is None:
        return None
    batch: Iterable[Any] = chain((first,), rows)
    if type(sql) is str and isinstance(first, Mapping):
        converted = convert_named(sql, "format", "postgresql")
        if converted.names:
            return converted.sql, _as_tuples(batch, tuple(str(n) for n in converted.names))
    query, order = plan_query(sql, first)
    if order is not None:
        batch = (reorder(p, order) for p in batch)
    return query, batch


def _as_tuples(batch: Iterable[Mapping[str, Any]], names: tuple[str, ...]) -> Iterator[Any]:
    pick = itemgetter(*names)
    single = len(names) == 1
    for params in batch:
        try:
            values = pick(params)
        except KeyError as exc:
            raise _missing_key(exc, params, "a parameter set has") from None
        yield (values,) if single else values


def reorder(params: Any, order: tuple[int, ...]) -> list[Any]:
    """Arrange ``params`` for ``$n`` placeholders that psycopg sees as ``%s`` in SQL order."""
    try:
        return [params[i] for i in order]
    except IndexError:
        raise QueryError(
            f"the statement uses ${max(order) + 1} but only {len(params)} parameters were given"
        ) from None


def prepare_query(sql: Any, params: Any) -> tuple[Any, Any]:
    """Return the statement and parameters to hand to psycopg (``params`` may be None)."""
    if type(params) is dict and type(sql) is str:
        # The common case (seed §3: ``:name`` with a dict) on every execute(): one cache lookup.
        query, pick, single = _MAPPING_SQL.get(sql) or _mapping_entry(sql)
        if pick is None:
            return query, params
        try:
            values = pick(params)
        except KeyError as exc:
            raise _missing_key(exc, params, "the parameters have") from None
        return query, ((values,) if single else values)
    if params is None:
        if type(sql) is not str and not isinstance(sql, (bytes, Composable)):
            raise DatabaseState._statement_type_error(sql)
        return sql, None
    if type(sql) is str and isinstance(params, Mapping):
        return prepare_query(sql, dict(params))  # any other mapping: as a dict
    query, order = plan_query(sql, params)
    if order is not None:
        params = reorder(params, order)
    return query, params
