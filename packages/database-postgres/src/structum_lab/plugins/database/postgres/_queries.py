"""Placeholder and batch planning for both twins (psycopg keeps this in ``psycopg/_queries.py``).

Every placeholder style a caller may use (psycopg's ``%s`` / ``%(name)s``, the portable ``:name``,
``$1``) becomes what psycopg sends; conversions are cached per SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from structum_lab.plugins.database.errors import (
    QueryError,
)
from structum_lab.plugins.database.params import convert_dollar_numeric, convert_named

__all__ = ["plan_batch", "plan_query", "prepare_query", "reorder"]


# sql -> sql for mappings; sql -> (sql, order) for sequences. Plain dicts: the hot path of a
# repeated statement is one lookup. Bounded by clearing, which only costs re-conversion.
_MAPPING_SQL: dict[str, str] = {}
_SEQUENCE_SQL: dict[str, tuple[str, tuple[int, ...] | None]] = {}
_CACHE_LIMIT = 4096


def _mapping_sql(sql: str) -> str:
    converted = _MAPPING_SQL.get(sql)
    if converted is None:
        # psycopg's own %(name)s passes through untouched; anything else is portable :name SQL,
        # whose literal % signs must be doubled for psycopg.
        converted = sql if "%(" in sql else convert_named(sql, "pyformat").sql
        if len(_MAPPING_SQL) >= _CACHE_LIMIT:
            _MAPPING_SQL.clear()
        _MAPPING_SQL[sql] = converted
    return converted


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
    raise TypeError(
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
    if type(sql) is str and isinstance(first, Mapping) and "%(" not in sql:
        converted = convert_named(sql, "format")
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
            raise QueryError(
                f"the statement uses :{exc.args[0]} but a parameter set has no such key "
                f"(keys: {', '.join(sorted(map(str, params))) or 'none'})"
            ) from None
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
        converted = _MAPPING_SQL.get(sql)
        return (_mapping_sql(sql) if converted is None else converted), params
    if params is None:
        return sql, None
    query, order = plan_query(sql, params)
    if order is not None:
        params = reorder(params, order)
    return query, params
