"""Fault-injection suite: real faults injected into a throwaway PostgreSQL cluster it controls.

The cluster (``fault_cluster``, one per session) is started from this machine's server binaries by
the testing package's :class:`LocalPostgresCluster`, so stopping, restarting, freezing
(``SIGSTOP``) and terminating its processes harms nobody else. The ``faults`` fixture injects the
faults and, after every test, undoes them (``SIGCONT`` to every process, server started again,
other sessions terminated), so a failing test cannot poison the next one.

``ledger`` proves that no fault loses or doubles data: a transfer between accounts writes a
uniquely keyed row and moves money in one transaction; ``ledger.check(acknowledged)`` then proves
0 lost (every transfer a caller saw commit is there), 0 doubled (the balances are exactly what the
stored transfers say) and conservation (the total never changes).

The backends under test are the PostgreSQL ones, ``sync_postgres_backend`` /
``async_postgres_backend`` of the integration conftest (``backend.make(faults.url, ...)``).
Tests are written once, async, in ``test_*_async.py``; ``tools/async_to_sync.py`` generates the
sync twin, as for the portable suites.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest

from structum_lab.plugins.database.testing import LocalPostgresCluster
from structum_lab.plugins.database.testing.pytest_plugin import skip_or_fail


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the fault suite on one pytest-xdist worker: one cluster, faults never overlapping."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("faults"))


@pytest.fixture(scope="session")
def fault_cluster(request: pytest.FixtureRequest) -> Iterator[LocalPostgresCluster]:
    """A throwaway PostgreSQL cluster for this session, deleted at the end."""
    try:
        cluster = LocalPostgresCluster(database="faults").start()
    except Exception as exc:
        skip_or_fail(request.config, f"no throwaway PostgreSQL cluster for fault injection: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


class Faults:
    """Faults injected into the throwaway cluster, each undone by :meth:`heal`."""

    def __init__(self, cluster: LocalPostgresCluster) -> None:
        self.cluster = cluster
        self._paused: set[int] = set()

    @property
    def url(self) -> str:
        """TCP URL of the cluster's test database (what the databases under test use)."""
        return self.cluster.url

    def admin(self, sql: str, params: Iterable[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run ``sql`` over the unix socket in autocommit and return its rows."""
        with psycopg.connect(self.cluster.socket_url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def backend_pids(self) -> list[int]:
        """Process ids of the client backends connected to the test database over TCP."""
        rows = self.admin(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND client_port IS NOT NULL "
            "AND pid <> pg_backend_pid() ORDER BY backend_start",
            [self.cluster.database],
        )
        return [int(row[0]) for row in rows]

    def terminate(self, pids: Iterable[int] | None = None) -> int:
        """``pg_terminate_backend`` the given backends (default: every TCP client); how many."""
        targets = list(self.backend_pids() if pids is None else pids)
        for pid in targets:
            self.admin("SELECT pg_terminate_backend(%s)", [pid])
        return len(targets)

    def pause(self, pid: int) -> None:
        """Freeze a process (``SIGSTOP``): it keeps its sockets open and answers nothing."""
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(pid)

    def resume(self, pid: int) -> None:
        """Let a frozen process go on (``SIGCONT``)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        self._paused.discard(pid)

    @contextlib.contextmanager
    def paused(self, pid: int) -> Iterator[None]:
        """Freeze ``pid`` for the duration of the block."""
        self.pause(pid)
        try:
            yield
        finally:
            self.resume(pid)

    def pause_server(self) -> int:
        """Freeze the postmaster: existing sessions go on, new connections get no answer."""
        pid = self.cluster.postmaster_pid
        self.pause(pid)
        return pid

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Take the server down (data and port kept)."""
        self.cluster.stop_server(mode)

    def start(self) -> None:
        """Bring the server back on the same port."""
        self.cluster.start_server()

    def restart(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server with ``mode`` and start it again."""
        self.cluster.restart(mode)

    def heal(self) -> None:
        """Undo every fault: resume frozen processes, start the server, drop other sessions."""
        for pid in list(self._paused):
            self.resume(pid)
        if not self.cluster.server_running:
            self.cluster.start_server()
        with contextlib.suppress(psycopg.Error):
            self.terminate()


@pytest.fixture
def faults(fault_cluster: LocalPostgresCluster) -> Iterator[Faults]:
    """The fault injector for one test; every fault it injected is undone afterwards."""
    injector = Faults(fault_cluster)
    try:
        yield injector
    finally:
        injector.heal()


@dataclass
class Ledger:
    """Accounts and uniquely keyed transfers, to prove 0 lost / 0 doubled under faults."""

    faults: Faults
    accounts: str
    transfers: str
    count: int
    opening: int = 1000

    def transfer_sql(self, src: int, dst: int, amount: int) -> tuple[list[str], str]:
        """The statements of one transfer (portable ``:name`` parameters) and its id.

        Run them in order inside one transaction, with ``{"tx": id, "src": src, "dst": dst,
        "amount": amount}`` as the parameters of each.
        """
        tx = uuid.uuid4().hex
        return (
            [
                f"INSERT INTO {self.transfers} (tx, src, dst, amount) "
                "VALUES (:tx, :src, :dst, :amount)",
                f"UPDATE {self.accounts} SET balance = balance - :amount WHERE id = :src",
                f"UPDATE {self.accounts} SET balance = balance + :amount WHERE id = :dst",
            ],
            tx,
        )

    def check(self, acknowledged: Iterable[str]) -> dict[str, int]:
        """Prove the ledger: return the figures, fail the test on any loss or doubling."""
        rows = self.faults.admin(f"SELECT tx, src, dst, amount FROM {self.transfers}")
        stored = {row[0]: row for row in rows}
        acked = set(acknowledged)
        lost = len(acked - stored.keys())
        expected = dict.fromkeys(range(self.count), self.opening)
        for _, src, dst, amount in stored.values():
            expected[src] -= amount
            expected[dst] += amount
        balances = dict(self.faults.admin(f"SELECT id, balance FROM {self.accounts}"))
        doubled = sum(1 for i in expected if balances.get(i) != expected[i])
        total = sum(balances.values())
        figures = {
            "acknowledged": len(acked),
            "stored": len(stored),
            "lost": lost,
            "doubled": doubled,
            "total_drift": total - self.count * self.opening,
        }
        assert (lost, doubled, figures["total_drift"]) == (0, 0, 0), figures
        return figures


@pytest.fixture
def ledger(faults: Faults) -> Iterator[Ledger]:
    """A fresh ledger of 10 accounts in the fault cluster, dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    book = Ledger(faults, f"fault_accounts_{suffix}", f"fault_transfers_{suffix}", 10)
    faults.admin(f"CREATE TABLE {book.accounts} (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)")
    faults.admin(
        f"CREATE TABLE {book.transfers} (tx TEXT PRIMARY KEY, src INTEGER NOT NULL, "
        "dst INTEGER NOT NULL, amount INTEGER NOT NULL)"
    )
    faults.admin(
        f"INSERT INTO {book.accounts} SELECT i, %s FROM generate_series(0, %s) AS i",
        [book.opening, book.count - 1],
    )
    try:
        yield book
    finally:
        faults.heal()
        faults.admin(f"DROP TABLE IF EXISTS {book.accounts}, {book.transfers}")


def elapsed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``func()`` took and its result (or the exception it raised)."""
    began = time.monotonic()
    try:
        result: Any = func()
    except BaseException as exc:
        result = exc
    return time.monotonic() - began, result


# --- figures for the README's reliability table ----------------------------------------------
# A test states what it measured with ``figure(...)``; with STRUCTUM_FAULT_FIGURES=<path> set, the
# session writes every figure to that JSON file (tools/fault_figures.py runs the suite that way
# and prints the table). Without it figures cost nothing.
_FIGURES: list[dict[str, Any]] = []


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record one row of the reliability table for the current test.

    Call as ``figure(fault="SIGSTOP backend mid-transaction", backend=backend.id,
    saw="StatementTimeoutError after 1.6 s", recover_s=0.0, lost=0, doubled=0)``; any other
    keyword is kept too.
    """

    def record(**row: Any) -> None:
        _FIGURES.append({"test": request.node.nodeid, **row})

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("STRUCTUM_FAULT_FIGURES")
    if path and _FIGURES:
        import json

        with open(path, "w", encoding="utf-8") as out:
            json.dump(_FIGURES, out, indent=1, default=str)


@pytest.fixture(scope="session")
def mariadb_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A throwaway MariaDB server this session may freeze (the shared service must not be)."""
    from structum_lab.plugins.database.testing import LocalMariaDBServer

    try:
        server = LocalMariaDBServer(database="faults").start()
    except Exception as exc:
        skip_or_fail(request.config, f"no throwaway MariaDB server for fault injection: {exc}")
    try:
        yield server
    finally:
        server.stop()
