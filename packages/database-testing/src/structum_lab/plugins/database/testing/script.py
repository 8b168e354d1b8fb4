"""The behaviour of a mock database, shared by the sync and async twins.

A :class:`MockScript` holds everything a test arranges or inspects: scripted results (matched by
SQL text or regular expression), injected faults, the scripted health, and the logs of statements
and transactions. ``MockDatabase`` and ``AsyncMockDatabase`` only add the I/O style
(``time.sleep`` or ``await asyncio.sleep``), the way one ``httpx.MockTransport`` serves both
``Client`` and ``AsyncClient``. One script can even back a sync and an async database at once.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias

from structum_lab.plugins.database import (
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    HealthStatus,
    IntegrityError,
    PoolOverloadedError,
    PoolTimeoutError,
    QueryError,
    Row,
    SerializationError,
    StatementTimeoutError,
)
from structum_lab.plugins.database.params import find_named_placeholders

__all__ = [
    "ANY",
    "ErrorSpec",
    "MockResponse",
    "MockRule",
    "MockSavepoint",
    "MockScript",
    "MockTransaction",
    "QueryRecord",
    "SQLMatcher",
]

_PUBLIC = "structum_lab.plugins.database.testing"


class _AnyParams:
    """Sentinel: match a statement whatever its parameters."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"


ANY: Final[Any] = _AnyParams()
"""Pass as ``params=`` to match a statement whatever its parameters (the default)."""

FaultKind: TypeAlias = Literal[
    "unavailable", "timeout", "serialization", "integrity", "commit_unknown", "overloaded"
]
ErrorSpec: TypeAlias = BaseException | type[BaseException] | FaultKind
"""An error to raise: an exception instance (raised as a copy), an exception class (instantiated
with a realistic message and SQLSTATE), or one of ``"unavailable"``, ``"timeout"``,
``"serialization"``, ``"integrity"``, ``"commit_unknown"`` (:class:`CommitOutcomeUnknownError`),
``"overloaded"`` (:class:`PoolOverloadedError`)."""

SQLMatcher: TypeAlias = "str | re.Pattern[str]"
"""SQL text (compared after collapsing whitespace and dropping a trailing ``;``) or a compiled
regular expression (``search``-ed in that normalized text)."""

_FAULTS: dict[str, tuple[type[Exception], str, str | None]] = {
    "unavailable": (
        DatabaseUnavailableError,
        "server closed the connection unexpectedly (fault injected by the mock)",
        None,
    ),
    "timeout": (
        StatementTimeoutError,
        "canceling statement due to statement timeout (fault injected by the mock)",
        "57014",
    ),
    "serialization": (
        SerializationError,
        "could not serialize access due to concurrent update (fault injected by the mock)",
        "40001",
    ),
    "integrity": (
        IntegrityError,
        "duplicate key value violates unique constraint (fault injected by the mock)",
        "23505",
    ),
    "commit_unknown": (
        CommitOutcomeUnknownError,
        "the connection was lost during COMMIT; the transaction may or may not have been "
        "committed (fault injected by the mock)",
        None,
    ),
    "overloaded": (
        PoolOverloadedError,
        "too many callers already wait for a connection (fault injected by the mock)",
        None,
    ),
}

_WRITE_KEYWORDS = frozenset(
    {
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
    }
)


def normalize_sql(sql: str) -> str:
    """Collapse whitespace and drop a trailing ``;`` (how scripted SQL text is compared)."""
    text = " ".join(sql.split())
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def _normalize_params(params: Any) -> Any:
    # Stored in one canonical shape so that a test comparing with a tuple or a list, a dict or
    # another mapping, gets the answer it expects.
    if params is None or isinstance(params, (str, bytes)):
        return params
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, Sequence):
        return tuple(params)
    return params


@dataclass(frozen=True)
class QueryRecord:
    """One statement a mock database received.

    Attributes:
        sql: The SQL exactly as passed to ``execute()``/``executemany()``.
        params: The parameters: a ``dict`` for a mapping, a ``tuple`` for a sequence, None for
            none; for ``executemany()`` a tuple of those.
        many: True for ``executemany()``.
        transaction: The id of the :class:`MockTransaction` it ran in.
        error: The exception the statement raised (scripted or injected), if any.
    """

    sql: str
    params: Any = None
    many: bool = False
    transaction: int | None = None
    error: BaseException | None = field(default=None, compare=False)

    __module__ = _PUBLIC

    @property
    def normalized_sql(self) -> str:
        """The SQL with whitespace collapsed (what rules and assertions compare)."""
        return normalize_sql(self.sql)


@dataclass
class MockSavepoint:
    """A SAVEPOINT taken inside a :class:`MockTransaction`.

    Attributes:
        name: Savepoint name.
        status: ``"open"``, ``"released"`` or ``"rolled_back"``.
        queries: Statements executed while it was the innermost savepoint.
    """

    name: str
    status: Literal["open", "released", "rolled_back"] = "open"
    queries: list[QueryRecord] = field(default_factory=list)

    __module__ = _PUBLIC


@dataclass
class MockTransaction:
    """One transaction of a mock connection, from BEGIN to COMMIT or ROLLBACK.

    Attributes:
        id: Sequence number (1 for the first transaction of the script).
        options: The options it was opened with (``isolation_level``, ``read_only``, ...).
        status: ``"open"``, ``"committed"`` or ``"rolled_back"``.
        queries: Statements executed in it.
        savepoints: Savepoints taken in it, in order.
    """

    id: int
    options: dict[str, Any] = field(default_factory=dict)
    status: Literal["open", "committed", "rolled_back"] = "open"
    queries: list[QueryRecord] = field(default_factory=list)
    savepoints: list[MockSavepoint] = field(default_factory=list)

    __module__ = _PUBLIC

    @property
    def committed(self) -> bool:
        """True once it was committed."""
        return self.status == "committed"

    @property
    def rolled_back(self) -> bool:
        """True once it was rolled back."""
        return self.status == "rolled_back"


@dataclass(frozen=True)
class MockResponse:
    """What a statement returns (or raises).

    Attributes:
        rows: Rows as dicts; each execution gets fresh copies.
        rowcount: ``result.rowcount``; defaults to the number of rows (``executemany``: the number
            of parameter sets).
        error: Raise this instead of returning (see :data:`ErrorSpec`).
        delay: Seconds the statement takes before it returns or raises.
    """

    rows: Sequence[Row] = ()
    rowcount: int | None = None
    error: ErrorSpec | None = None
    delay: float = 0.0

    __module__ = _PUBLIC


Handler: TypeAlias = Callable[[QueryRecord], "MockResponse | Iterable[Row] | None"]


class MockRule:
    """A scripted answer for the statements that match it (returned by :meth:`MockScript.on`).

    Attributes:
        sql: The SQL text or pattern it matches.
        params: The parameters it requires (:data:`ANY` for any).
        times: How many more statements it answers (None: unlimited).
        calls: How many statements it has answered so far.
    """

    __module__ = _PUBLIC

    def __init__(
        self,
        sql: SQLMatcher,
        *,
        params: Any = ANY,
        response: MockResponse | None = None,
        handler: Handler | None = None,
        times: int | None = None,
    ) -> None:
        self.sql = sql
        self._text = normalize_sql(sql) if isinstance(sql, str) else None
        self.params = params if params is ANY else _normalize_params(params)
        self.response = response or MockResponse()
        self.handler = handler
        self.times = times
        self.calls = 0

    def __repr__(self) -> str:
        pattern = self.sql.pattern if isinstance(self.sql, re.Pattern) else self.sql
        return f"<MockRule {pattern!r} calls={self.calls} times={self.times}>"

    def matches(self, normalized_sql: str, params: Any) -> bool:
        """True when this rule answers ``normalized_sql`` with ``params`` (``times`` aside)."""
        if self._text is not None:
            if self._text != normalized_sql:
                return False
        elif isinstance(self.sql, re.Pattern) and self.sql.search(normalized_sql) is None:
            return False
        return self.params is ANY or self.params == params

    def _respond(self, record: QueryRecord) -> MockResponse:
        self.calls += 1
        if self.times is not None:
            self.times -= 1
        if self.handler is None:
            return self.response
        answer = self.handler(record)
        if answer is None:
            return MockResponse()
        if isinstance(answer, MockResponse):
            return answer
        return MockResponse(rows=list(answer))


def _matches(record: QueryRecord, sql: SQLMatcher, params: Any) -> bool:
    normalized = record.normalized_sql
    if isinstance(sql, str):
        if normalize_sql(sql) != normalized:
            return False
    elif sql.search(normalized) is None:
        return False
    return params is ANY or _normalize_params(params) == record.params


def _describe(sql: SQLMatcher) -> str:
    return f"re.compile({sql.pattern!r})" if isinstance(sql, re.Pattern) else repr(sql)


@dataclass
class _HealthPlan:
    status: HealthStatus | None = None
    message: str | None = None
    latency_ms: float | None = None
    delay: float = 0.0


@dataclass
class _Outcome:
    rows: list[Row]
    rowcount: int
    error: BaseException | None
    delay: float


class MockScript:
    """Scripted behaviour and recorded history of a mock database.

    Args:
        strict: Raise ``AssertionError`` for a statement no rule matches (default: return an
            empty result).
        check_params: Raise :class:`~structum_lab.plugins.database.QueryError` when a ``:name``
            placeholder has no value in the parameters, as a real backend would.
        queries: A list to record statements into (default: a new one). Lets an application's own
            test double keep its ``queries`` list (seed §11.3).

    Rules are tried in the order they were added; a rule whose ``times`` is used up is skipped.
    Injected faults (:meth:`fail_next`) win over rules.
    """

    __module__ = _PUBLIC

    def __init__(
        self,
        *,
        strict: bool = False,
        check_params: bool = True,
        queries: list[QueryRecord] | None = None,
    ) -> None:
        self.strict = strict
        self.check_params = check_params
        self.queries: list[QueryRecord] = [] if queries is None else queries
        self.transactions: list[MockTransaction] = []
        self.offline = False
        self._lock = threading.RLock()
        self._rules: list[MockRule] = []
        self._faults: deque[ErrorSpec] = deque()
        self._commit_faults: deque[ErrorSpec] = deque()
        self._pool_faults: deque[FaultKind] = deque()
        self._health = _HealthPlan()
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return (
            f"<MockScript rules={len(self._rules)} queries={len(self.queries)} "
            f"transactions={len(self.transactions)}>"
        )

    # -- arranging ---------------------------------------------------------------------------
    def on(
        self,
        sql: SQLMatcher,
        *,
        params: Any = ANY,
        rows: Iterable[Row] | None = None,
        rowcount: int | None = None,
        error: ErrorSpec | None = None,
        delay: float = 0.0,
        handler: Handler | None = None,
        times: int | None = None,
    ) -> MockRule:
        """Script the answer to the statements matching ``sql`` (and ``params``, if given).

        Args:
            sql: SQL text (whitespace-insensitive) or a compiled ``re`` pattern.
            params: Only match statements with exactly these parameters.
            rows: Rows (dicts) the statement returns.
            rowcount: ``result.rowcount`` (defaults to the number of rows).
            error: Raise this instead (see :data:`ErrorSpec`).
            delay: Seconds the statement takes.
            handler: Called with the :class:`QueryRecord`; returns rows, a :class:`MockResponse`
                or None (empty result), or raises. Replaces ``rows``/``rowcount``/``error``.
            times: Answer only this many statements, then let later rules answer.

        Returns:
            The rule; its ``calls`` counts the statements it answered.
        """
        if handler is not None and (rows is not None or rowcount is not None or error is not None):
            raise TypeError("pass either handler= or rows=/rowcount=/error=, not both")
        if error is not None:
            _check_spec(error)
        response = MockResponse(
            rows=tuple(rows) if rows is not None else (),
            rowcount=rowcount,
            error=error,
            delay=delay,
        )
        rule = MockRule(sql, params=params, response=response, handler=handler, times=times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail_next(self, times: int = 1, *, error: ErrorSpec = "unavailable") -> None:
        """Make the next ``times`` statements raise ``error``, whatever their SQL.

        Args:
            times: How many statements fail.
            error: ``"unavailable"`` (:class:`DatabaseUnavailableError`, the connection is lost),
                ``"timeout"`` (:class:`StatementTimeoutError`), ``"serialization"``
                (:class:`SerializationError`), ``"integrity"``, or any exception class/instance.
        """
        _check_spec(error)
        with self._lock:
            self._faults.extend([error] * times)

    def fail_commit(self, times: int = 1, *, error: ErrorSpec = "commit_unknown") -> None:
        """Make the next ``times`` COMMITs raise ``error``.

        Args:
            times: How many COMMITs fail.
            error: ``"commit_unknown"`` (:class:`CommitOutcomeUnknownError`: the connection was
                lost during COMMIT; the mock records the transaction as committed, the case an
                application must survive: its changes are there although it saw an error), or
                any other :data:`ErrorSpec` (``"serialization"``: a serialization failure at
                COMMIT, recorded as rolled back).
        """
        _check_spec(error)
        with self._lock:
            self._commit_faults.extend([error] * times)

    def exhaust_pool(self, times: int = 1) -> None:
        """Make the next ``times`` connection checkouts raise :class:`PoolTimeoutError`."""
        with self._lock:
            self._pool_faults.extend(["timeout"] * times)

    def overload_pool(self, times: int = 1) -> None:
        """Make the next ``times`` checkouts raise :class:`PoolOverloadedError`."""
        with self._lock:
            self._pool_faults.extend(["overloaded"] * times)

    def set_health(
        self,
        status: HealthStatus | None = None,
        *,
        message: str | None = None,
        latency_ms: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script what ``health_check()`` reports.

        Args:
            status: Report this status (None: grade the probe normally).
            message: The message to report with ``status``.
            latency_ms: Report this latency instead of the measured one; without ``status`` it is
                graded by the database's thresholds (above 250 ms: DEGRADED).
            delay: Seconds the probe really takes (a slow database).
        """
        with self._lock:
            self._health = _HealthPlan(status, message, latency_ms, delay)

    def reset(self) -> None:
        """Forget rules, faults, scripted health and every recorded statement and transaction."""
        with self._lock:
            self._rules.clear()
            self._faults.clear()
            self._commit_faults.clear()
            self._pool_faults.clear()
            self._health = _HealthPlan()
            self.offline = False
            self.queries.clear()
            self.transactions.clear()

    # -- inspecting --------------------------------------------------------------------------
    @property
    def committed_transactions(self) -> list[MockTransaction]:
        """Transactions that were committed."""
        return [tx for tx in self.transactions if tx.committed]

    @property
    def rolled_back_transactions(self) -> list[MockTransaction]:
        """Transactions that were rolled back."""
        return [tx for tx in self.transactions if tx.rolled_back]

    def executed(self, sql: SQLMatcher, params: Any = ANY) -> list[QueryRecord]:
        """The recorded statements matching ``sql`` (and ``params``, if given)."""
        return [record for record in list(self.queries) if _matches(record, sql, params)]

    def count(self, sql: SQLMatcher, params: Any = ANY) -> int:
        """How many recorded statements match ``sql`` (and ``params``, if given)."""
        return len(self.executed(sql, params))

    def assert_executed(
        self, sql: SQLMatcher, params: Any = ANY, *, times: int | None = None
    ) -> None:
        """Assert that a statement matching ``sql`` (and ``params``) ran (exactly ``times`` times).

        Raises:
            AssertionError: Listing the statements that did run.
        """
        found = self.count(sql, params)
        if (times is None and found) or found == times:
            return
        wanted = "at least once" if times is None else f"{times} time(s)"
        with_params = "" if params is ANY else f" with params {_normalize_params(params)!r}"
        raise AssertionError(
            f"expected {_describe(sql)}{with_params} to be executed {wanted}, "
            f"found {found}; executed:{self._history()}"
        )

    def assert_executed_with(self, sql: SQLMatcher, params: Any) -> None:
        """Assert that ``sql`` ran with exactly ``params`` at least once."""
        self.assert_executed(sql, params)

    def assert_not_executed(self, sql: SQLMatcher, params: Any = ANY) -> None:
        """Assert that no statement matching ``sql`` (and ``params``) ran."""
        found = self.count(sql, params)
        if found:
            raise AssertionError(
                f"expected {_describe(sql)} not to be executed, found {found}; "
                f"executed:{self._history()}"
            )

    def assert_committed(self) -> None:
        """Assert that the last finished transaction was committed."""
        self._assert_last("committed")

    def assert_rolled_back(self) -> None:
        """Assert that the last finished transaction was rolled back."""
        self._assert_last("rolled_back")

    def _assert_last(self, status: str) -> None:
        finished = [tx for tx in self.transactions if tx.status != "open"]
        if not finished:
            raise AssertionError(f"expected a {status} transaction, but none has finished")
        last = finished[-1]
        if last.status != status:
            raise AssertionError(
                f"expected the last transaction (#{last.id}) to be {status}, it was "
                f"{last.status}; its statements:"
                + "".join(f"\n  {q.normalized_sql} {q.params!r}" for q in last.queries)
            )

    def _history(self) -> str:
        if not self.queries:
            return " (nothing)"
        return "".join(f"\n  {q.normalized_sql} {q.params!r}" for q in self.queries)

    # -- the engine the mock connections drive -------------------------------------------------
    def _begin(self, options: dict[str, Any]) -> MockTransaction:
        with self._lock:
            tx = MockTransaction(next(self._ids), options)
            self.transactions.append(tx)
            return tx

    def _take_pool_fault(self) -> FaultKind | None:
        with self._lock:
            return self._pool_faults.popleft() if self._pool_faults else None

    def _take_commit_fault(self) -> BaseException | None:
        with self._lock:
            return make_error(self._commit_faults.popleft()) if self._commit_faults else None

    def _health_plan(self) -> _HealthPlan:
        return self._health

    def _run(
        self,
        sql: str,
        params: Any,
        *,
        many: bool,
        tx: MockTransaction,
        savepoint: MockSavepoint | None,
    ) -> _Outcome:
        if many:
            param_sets = list(params)
            stored: Any = tuple(_normalize_params(p) for p in param_sets)
        else:
            stored = _normalize_params(params)
        record = QueryRecord(sql, stored, many, tx.id)
        normalized = record.normalized_sql
        rows: list[Row] = []
        rowcount = 0
        delay = 0.0
        error: BaseException | None = None
        with self._lock:
            try:
                if self._faults:
                    error = make_error(self._faults.popleft())
                else:
                    self._validate(sql, param_sets if many else [params], normalized, tx)
                    rule = next(
                        (
                            r
                            for r in self._rules
                            if (r.times is None or r.times > 0) and r.matches(normalized, stored)
                        ),
                        None,
                    )
                    if rule is None:
                        if self.strict:
                            raise AssertionError(
                                f"unexpected statement {normalized!r} with params {stored!r}: "
                                "no rule of the strict mock matches it; script it with "
                                "mock_db.on(...)"
                            )
                        response = MockResponse()
                    else:
                        response = rule._respond(record)
                    rows = [dict(row) for row in response.rows]
                    if response.rowcount is not None:
                        rowcount = response.rowcount
                    else:
                        rowcount = len(param_sets) if many and not rows else len(rows)
                    delay = response.delay
                    if response.error is not None:
                        error = make_error(response.error)
            except Exception as exc:
                error = exc
            if error is not None:
                record = replace(record, error=error)
            self.queries.append(record)
            tx.queries.append(record)
            if savepoint is not None:
                savepoint.queries.append(record)
        return _Outcome(rows, rowcount, error, delay)

    def _validate(
        self, sql: str, param_sets: list[Any], normalized: str, tx: MockTransaction
    ) -> None:
        if tx.options.get("read_only"):
            keyword = normalized.split(" ", 1)[0].upper()
            if keyword in _WRITE_KEYWORDS:
                raise QueryError(
                    f"cannot execute {keyword} in a read-only transaction [SQLSTATE 25006]",
                    sqlstate="25006",
                )
        if not self.check_params:
            return
        names = find_named_placeholders(sql)
        if not names:
            return
        for params in param_sets:
            if params is not None and not isinstance(params, Mapping):
                raise QueryError(
                    f"the statement uses :name placeholders ({', '.join(dict.fromkeys(names))}) "
                    f"but the parameters are a {type(params).__name__}; pass a mapping"
                )
            missing = [n for n in dict.fromkeys(names) if params is None or n not in params]
            if missing:
                raise QueryError(
                    "no value for the parameter(s) "
                    + ", ".join(f":{n}" for n in missing)
                    + f" of {normalized!r}; add them to the params mapping"
                )


def _check_spec(spec: object) -> None:
    if isinstance(spec, str) and spec not in _FAULTS:
        raise ValueError(
            f"unknown fault {spec!r}; use one of {', '.join(map(repr, _FAULTS))} or an exception"
        )
    if not isinstance(spec, (str, BaseException)) and not (
        isinstance(spec, type) and issubclass(spec, BaseException)
    ):
        raise TypeError(
            f"error must be an exception, an exception class or a fault name, not {spec!r}"
        )


def make_error(spec: ErrorSpec) -> BaseException:
    """Build the exception an :data:`ErrorSpec` stands for (a fresh one per call)."""
    if isinstance(spec, str):
        try:
            cls, message, sqlstate = _FAULTS[spec]
        except KeyError:
            raise ValueError(
                f"unknown fault {spec!r}; use one of {', '.join(map(repr, _FAULTS))} "
                "or an exception"
            ) from None
        if issubclass(cls, QueryError):
            return cls(f"{message} [SQLSTATE {sqlstate}]", sqlstate=sqlstate)
        return cls(message)
    if isinstance(spec, BaseException):
        # A copy, so that raising the same scripted error twice does not chain tracebacks.
        try:
            return copy.copy(spec)
        except Exception:  # an exception class whose constructor copy cannot call
            return spec
    if isinstance(spec, type) and issubclass(spec, BaseException):
        for kind, (cls, _message, _sqlstate) in _FAULTS.items():
            if spec is cls:
                return make_error(kind)  # type: ignore[arg-type]
        if issubclass(spec, QueryError):
            return spec("statement failed (fault injected by the mock)")
        if issubclass(spec, PoolTimeoutError):
            return spec("no connection became free (fault injected by the mock)")
        try:
            return spec("fault injected by the mock")
        except TypeError:
            return spec()
    raise TypeError(f"error must be an exception, an exception class or a fault name, not {spec!r}")
