"""Read replicas: the state both router twins share (``_replicas_async.py`` does the I/O).

A database built with ``replicas=[url, ...]`` holds one database object of its own class per
replica (same settings, no replicas of their own) and a router. The router keeps, without any
lock:

* ``samples``: a tuple of ``(time, lsn)`` of the primary's WAL write position, taken in the
  background every ``replica_check_interval`` seconds (time = just before the query was sent);
* per replica a :class:`Node`: the WAL position it has replayed, when that was seen, its lag in
  seconds and its state.

Lag is the age of the oldest primary sample the replica has not replayed yet: 0 when it has
replayed the latest one (an idle primary does not make a replica look behind, unlike
``now() - pg_last_xact_replay_timestamp()``), otherwise the time since the first sample beyond
its replay position.

Read-your-writes costs nothing on the write path: a committed write stamps the caller's context
(thread or task) with the time it returned. A replica may serve that context once it replayed
the WAL position of a primary sample taken after that time; until then, the primary does. This
relies on the COMMIT being written to WAL when it returns (``synchronous_commit`` not ``off``).
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from ._state import logger
from .errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    PoolTimeoutError,
)
from .health import HealthResult, HealthStatus

__all__ = [
    "DEFAULT_CHECK_INTERVAL",
    "DEFAULT_MAX_LAG",
    "FAILOVER_ERRORS",
    "PRIMARY_SQL",
    "REPLICA_SQL",
    "Node",
    "ReplicaState",
    "checked_replica_options",
]

DEFAULT_MAX_LAG = 1.0
DEFAULT_CHECK_INTERVAL = 0.5

#: The primary's WAL write position in bytes (NULL when the server is itself a standby).
PRIMARY_SQL = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN NULL "
    "ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END AS lsn"
)
#: A replica's state: standby or not, and the WAL position it has replayed, in bytes.
REPLICA_SQL = (
    "SELECT pg_is_in_recovery() AS standby, "
    "pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint AS replay"
)

#: Errors of a replica after which the work goes to the primary instead (a read is safe to run
#: again: the replica could not have changed anything).
FAILOVER_ERRORS = (DatabaseUnavailableError, PoolTimeoutError)


def checked_replica_options(
    owner: str,
    replicas: Sequence[str] | str | None,
    max_replica_lag: float,
    replica_check_interval: float,
) -> list[str]:
    """Check the replica settings; return the replica URLs (a single string is one URL).

    Raises:
        ConfigurationError: A URL is not a non-empty string, or a number is out of range.
    """
    if replicas is None:
        urls: list[str] = []
    elif isinstance(replicas, str):
        urls = [replicas] if replicas.strip() else []
    elif isinstance(replicas, (list, tuple)):
        urls = list(replicas)
    else:
        raise ConfigurationError(
            f"{owner}: replicas must be a list of database URLs, got a {type(replicas).__name__}",
            key="replicas",
        )
    for i, url in enumerate(urls):
        if not isinstance(url, str) or not url.strip():
            raise ConfigurationError(
                f"{owner}: replicas[{i}] must be a database URL string", key="replicas"
            )
    for key, value in (
        ("max_replica_lag", max_replica_lag),
        ("replica_check_interval", replica_check_interval),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigurationError(
                f"{owner}: {key} must be a number of seconds > 0, got {value!r}", key=key
            )
    return urls


class Node:
    """One replica as the router sees it."""

    __slots__ = ("db", "error", "index", "lag", "observed_at", "replay", "state")

    def __init__(self, db: Any, index: int) -> None:
        self.db = db
        self.index = index
        #: ``unknown`` (not seen yet), ``ok``, ``lagging``, ``down``, ``not_standby``.
        self.state = "unknown"
        self.lag: float | None = None
        self.replay: int | None = None
        self.observed_at = 0.0
        self.error: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.db.name,
            "url": self.db.url,
            "state": self.state,
            "lag_seconds": None if self.lag is None else round(self.lag, 3),
            **({"error": self.error} if self.error else {}),
        }


class ReplicaState:
    """What both router twins share: nodes, primary samples, picking and read-your-writes."""

    def __init__(
        self,
        primary: Any,
        replicas: list[Any],
        *,
        max_lag: float,
        interval: float,
    ) -> None:
        self.primary = primary
        self.nodes = [Node(db, i) for i, db in enumerate(replicas)]
        self.max_lag = float(max_lag)
        self.interval = float(interval)
        # A replica not seen for this long is not used (its watcher may be stuck on it).
        self.stale_after = max(3 * self.interval, self.interval + 2.0)
        # Samples kept: enough to measure lags well beyond max_lag.
        self._keep = min(10_000, int(max(2 * self.max_lag, 10.0) / self.interval) + 8)
        self.samples: tuple[tuple[float, int], ...] = ()
        self.primary_error: str | None = None
        self._turn = itertools.count()
        self._written: ContextVar[float] = ContextVar(
            f"structum_db_written_{id(self)}", default=0.0
        )
        self.stopped = False

    # -- the hot path ------------------------------------------------------------------------
    def pick(self) -> Any:
        """The replica database for a read now, or None (the primary serves it)."""
        nodes = self.nodes
        count = len(nodes)
        now = time.monotonic()
        written = self._written.get()
        need: int | None = None
        if written:
            need = self._lsn_after(written)
            if need is None:
                return None  # no primary sample since this context's last write yet
        start = next(self._turn)
        for k in range(count):
            node = nodes[(start + k) % count]
            if node.state != "ok" or now - node.observed_at > self.stale_after:
                continue
            if need is not None and (node.replay is None or node.replay < need):
                continue
            return node.db
        return None

    def _lsn_after(self, moment: float) -> int | None:
        """The WAL position of the first primary sample taken at or after ``moment``."""
        samples = self.samples
        i = bisect.bisect_left(samples, (moment, -1))
        if i >= len(samples):
            return None
        return samples[i][1]

    def wrote(self) -> None:
        """Stamp the caller's context: it wrote on the primary just now."""
        self._written.set(time.monotonic())

    def stamp(self) -> float:
        """The caller's context's stamp (to restore it after a read that fell back)."""
        return self._written.get()

    def restore(self, stamp: float) -> None:
        self._written.set(stamp)

    def node_of(self, db: Any) -> Node | None:
        for node in self.nodes:
            if node.db is db:
                return node
        return None

    # -- observations (the watchers) ---------------------------------------------------------
    def observe_primary(self, taken: float, lsn: int | None) -> None:
        if self.primary_error is not None:
            logger.info("replica monitor of %s reaches the primary again", self.primary.name)
        self.primary_error = None
        if lsn is None:
            return  # the primary URL led to a standby: no write position to compare with
        samples = self.samples
        if samples and lsn < samples[-1][1]:
            # A new primary (failover) whose WAL position is behind the old one's: start over.
            samples = ()
        if len(samples) >= self._keep:
            samples = samples[len(samples) - self._keep + 1 :]
        self.samples = (*samples, (taken, int(lsn)))

    def primary_failed(self, exc: BaseException) -> None:
        if self.primary_error is None:
            logger.info(
                "replica monitor of %s cannot reach the primary: %s",
                self.primary.name,
                _first_line(exc),
            )
        self.primary_error = _first_line(exc)

    def observe_replica(self, node: Node, standby: bool, replay: int | None) -> None:
        now = time.monotonic()
        if not standby or replay is None:
            self._set(node, "not_standby", None, "the server is not a standby (promoted?)")
            node.observed_at = now
            return
        node.replay = int(replay)
        lag = self._lag(node.replay, now)
        node.observed_at = now
        if lag is None:
            self._set(node, "unknown", None, "no position of the primary known yet")
        elif lag <= self.max_lag:
            self._set(node, "ok", lag, None)
        else:
            self._set(node, "lagging", lag, f"lag {lag:.2f}s > max_replica_lag")

    def _lag(self, replay: int, now: float) -> float | None:
        samples = self.samples
        if not samples:
            return None
        if replay >= samples[-1][1]:
            return 0.0
        for taken, lsn in samples:
            if lsn > replay:
                return max(0.0, now - taken)
        return 0.0  # pragma: no cover - the last sample is beyond replay

    def failed_db(self, db: Any, exc: BaseException) -> None:
        """A replica failed a caller's work: stop using it until its watcher sees it well."""
        node = self.node_of(db)
        if node is not None:
            self.replica_failed(node, exc)

    def replica_failed(self, node: Node, exc: BaseException) -> None:
        node.observed_at = time.monotonic()
        self._set(node, "down", None, _first_line(exc))

    def _set(self, node: Node, state: str, lag: float | None, error: str | None) -> None:
        before = node.state
        node.lag = lag
        node.error = error
        node.state = state
        if before == state:
            return
        if state == "ok":
            logger.info("replica %s is in use (lag %.3fs)", node.db.name, lag or 0.0)
        elif before in ("ok", "unknown"):
            logger.warning(
                "replica %s is %s and not used until it recovers: %s",
                node.db.name,
                state,
                error,
                extra={"structum_event": f"replica_{state}"},
            )

    # -- reporting ---------------------------------------------------------------------------
    def ensure_watching(self) -> None:
        """Start the watchers if they are not running (the twins implement it)."""

    def info(self) -> list[dict[str, Any]]:
        """Each replica's state and lag, with its pool statistics (starts nothing)."""
        out = []
        for node in self.nodes:
            entry = node.describe()
            entry["pool"] = node.db.get_pool_info()
            out.append(entry)
        return out

    def grade(self, primary: HealthResult) -> HealthResult:
        """The database's health: the primary's, DEGRADED when a replica is not usable.

        The replicas are graded from what their watchers last saw (no probe here: a replica
        that does not answer must not slow the health check down).
        """
        now = time.monotonic()
        details = dict(primary.details)
        listed = []
        unusable = []
        for node in self.nodes:
            entry = node.describe()
            seen = now - node.observed_at if node.observed_at else None
            entry["seen_seconds_ago"] = None if seen is None else round(seen, 3)
            usable = node.state == "ok" and seen is not None and seen <= self.stale_after
            if usable:
                entry["status"] = HealthStatus.HEALTHY.value
            elif node.state in ("lagging", "not_standby"):
                entry["status"] = HealthStatus.DEGRADED.value  # reachable, not used
            else:
                entry["status"] = HealthStatus.UNHEALTHY.value  # down, or not seen lately
            listed.append(entry)
            if not usable:
                unusable.append(f"{node.db.name} ({node.error or node.state})")
        details["replicas"] = listed
        status, message = primary.status, primary.message
        if unusable and status is HealthStatus.HEALTHY:
            status = HealthStatus.DEGRADED
            message = (
                f"{message}; {len(unusable)} of {len(self.nodes)} replica(s) not used: "
                + ", ".join(unusable)
            )
        return HealthResult(status, message, primary.latency_ms, details)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
