"""Transaction options and small helpers of both twins: what to run at BEGIN, savepoint names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import psycopg
from psycopg import IsolationLevel

from structum_lab.plugins.database.errors import (
    DatabaseError,
)

__all__ = ["TxPlan", "is_no_rows", "returned_error", "savepoint_name", "tx_plan"]


_ISOLATION_LEVELS = {
    "READ UNCOMMITTED": IsolationLevel.READ_UNCOMMITTED,
    "READ COMMITTED": IsolationLevel.READ_COMMITTED,
    "REPEATABLE READ": IsolationLevel.REPEATABLE_READ,
    "SERIALIZABLE": IsolationLevel.SERIALIZABLE,
}
_TX_OPTIONS = ("isolation_level", "read_only", "timeout", "pipeline")


class TxPlan(NamedTuple):
    """What ``transaction(**options)`` asks of a fresh connection.

    ``begin`` is the statements that open such a transaction: ``BEGIN`` with the isolation level
    and access mode, then ``SET LOCAL statement_timeout`` for a timeout. They are sent by the
    backend itself on an autocommit connection, so that they can travel with the first statement
    (psycopg would send its own ``BEGIN`` in a round trip of its own).
    """

    isolation: IsolationLevel | None
    read_only: bool
    timeout_sql: str | None
    pipeline: bool
    begin: tuple[bytes, ...]

    @property
    def begin_sql(self) -> bytes:
        """The ``BEGIN`` statement itself (options included)."""
        return self.begin[0]

    @property
    def begin_text(self) -> str:
        """Every statement of :attr:`begin` as one simple-protocol string."""
        return ";\n".join(b.decode() for b in self.begin)


def _isolation(value: Any) -> IsolationLevel | None:
    if value is None or isinstance(value, IsolationLevel):
        return value
    key = " ".join(str(value).replace("_", " ").replace("-", " ").upper().split())
    try:
        return _ISOLATION_LEVELS[key]
    except KeyError:
        allowed = ", ".join(repr(k) for k in _ISOLATION_LEVELS)
        raise ValueError(f"unknown isolation_level {value!r}; use one of {allowed}") from None


# Plans by their options: a service uses a handful of option sets, so after the first
# transaction of each, ``tx_plan`` is one dictionary lookup.
_PLANS: dict[tuple[Any, ...], TxPlan] = {}
_PLAN_LIMIT = 256


def tx_plan(options: Mapping[str, Any]) -> TxPlan:
    """Check ``transaction()`` options before any connection is checked out (cached).

    Raises:
        TypeError: An option this backend does not know.
        ValueError: A value out of range (an unknown isolation level, a timeout <= 0).
    """
    # The timeout's type is part of the key: True == 1, but timeout=True is refused.
    key = (*options.items(), type(options.get("timeout")))
    try:
        plan = _PLANS.get(key)
    except TypeError:  # an unhashable value: checked (and refused or planned) below
        plan, key = None, ()
    if plan is None:
        plan = _plan(options)
        if key:
            if len(_PLANS) >= _PLAN_LIMIT:
                _PLANS.clear()
            _PLANS[key] = plan
    return plan


def _plan(options: Mapping[str, Any]) -> TxPlan:
    unknown = set(options) - set(_TX_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown transaction option(s) {', '.join(sorted(unknown))}; PostgreSQL "
            f"transactions accept {', '.join(_TX_OPTIONS)}"
        )
    timeout = options.get("timeout")
    timeout_sql = None
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        timeout_sql = f"SET LOCAL statement_timeout = {max(1, round(timeout * 1000))}"
    isolation = _isolation(options.get("isolation_level"))
    read_only = bool(options.get("read_only"))
    begin = "BEGIN"
    if isolation is not None:
        begin += " ISOLATION LEVEL " + isolation.name.replace("_", " ")
    if read_only:
        begin += " READ ONLY"
    statements = (begin,) if timeout_sql is None else (begin, timeout_sql)
    return TxPlan(
        isolation,
        read_only,
        timeout_sql,
        bool(options.get("pipeline")),
        tuple(s.encode() for s in statements),
    )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def savepoint_name(name: str | None, counter: int) -> str:
    """A savepoint name: ``structum_sp_<n>`` by default, else a checked identifier."""
    if name is None:
        return f"structum_sp_{counter}"
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"savepoint name {name!r} must be a plain identifier (letters, digits, underscore)"
        )
    return name


def returned_error() -> DatabaseError:
    """The error for using a connection after it went back to the pool."""
    return DatabaseError(
        "this connection was already given back to the pool (its transaction() block ended, "
        "close() was called, or it was checked out by the parent process before os.fork()); "
        "open a new transaction() or get_connection()"
    )


def is_no_rows(exc: BaseException) -> bool:
    """True when psycopg refused a fetch because the statement produced no result set."""
    return isinstance(exc, psycopg.ProgrammingError) and "didn't produce" in str(exc)
