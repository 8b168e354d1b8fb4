"""A real primary and a streaming replica of its own for the replica suite.

``replica_pair`` (one per session) is a throwaway primary (``synchronous_commit = on``: read-your-
writes relies on a COMMIT being in the WAL when it returns) and a hot standby made by
``pg_basebackup -R``, each on its own port and socket directory, removed at the end. Tests that
destroy a pair (promotion) build their own with ``make_pair``. ``pgbouncer`` starts Debian's
PgBouncer in transaction mode in front of the primary (skipped only when the binary is missing).

Tests are written once, async, in ``test_*_async.py``; ``tools/async_to_sync.py`` generates the
sync twin.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from structum_lab.plugins.database.testing._throwaway import free_port
from structum_lab.plugins.database.testing.provision import LocalPostgresCluster
from structum_lab.plugins.database.testing.pytest_plugin import skip_or_fail

PRIMARY_SETTINGS = {"synchronous_commit": "on", "wal_level": "replica", "max_wal_senders": "10"}


@dataclass
class Pair:
    """A primary and its streaming replica."""

    primary: LocalPostgresCluster
    replica: LocalPostgresCluster

    def admin(self, cluster: LocalPostgresCluster, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` on ``cluster`` over its unix socket, in autocommit; return its rows."""
        with psycopg.connect(cluster.socket_url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Wait until the replica replayed everything the primary has written so far."""
        target = self.admin(self.primary, "SELECT pg_current_wal_lsn()::text")[0][0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.admin(
                self.replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
            )[0][0]
            if done:
                return
            time.sleep(0.02)
        raise AssertionError("the replica did not catch up")

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()


def _make_pair(config: pytest.Config, database: str) -> Pair:
    try:
        primary = LocalPostgresCluster(database=database, settings=PRIMARY_SETTINGS).start()
    except Exception as exc:
        skip_or_fail(config, f"no throwaway PostgreSQL cluster for the replica suite: {exc}")
    try:
        replica = LocalPostgresCluster.replica_of(primary).start()
    except BaseException:
        primary.stop()
        raise
    return Pair(primary, replica)


@pytest.fixture(scope="session")
def replica_pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """The session's primary and replica (tests must leave replay running, both servers up)."""
    pair = _make_pair(request.config, "replicas")
    pair.admin(
        pair.primary,
        "CREATE TABLE IF NOT EXISTS ryw (id bigserial PRIMARY KEY, v bigint NOT NULL)",
    )
    pair.wait_replayed()
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def make_pair(request: pytest.FixtureRequest) -> Iterator[Callable[[], Pair]]:
    """Build pairs of this test's own (a promotion ends a pair); removed at the end."""
    made: list[Pair] = []

    def make() -> Pair:
        pair = _make_pair(request.config, "failover")
        made.append(pair)
        return pair

    try:
        yield make
    finally:
        for pair in made:
            pair.stop()


@pytest.fixture(autouse=True)
def _replay_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test using ``replica_pair``: replay resumed and both servers up again."""
    yield
    if "replica_pair" not in request.fixturenames:
        return
    pair: Pair = request.getfixturevalue("replica_pair")
    for cluster in (pair.primary, pair.replica):
        if not cluster.server_running:
            cluster.start_server()
    if pair.admin(pair.replica, "SELECT pg_is_wal_replay_paused()")[0][0]:
        pair.admin(pair.replica, "SELECT pg_wal_replay_resume()")


@dataclass
class Bouncer:
    """A PgBouncer process in transaction mode in front of a cluster."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="session")
def pgbouncer(replica_pair: Pair) -> Iterator[Bouncer]:
    """PgBouncer (``pool_mode = transaction``) on a port of its own, in front of the primary."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if binary is None:
        pytest.skip("no pgbouncer binary (apt-get install -y pgbouncer)")
    primary = replica_pair.primary
    # Not below pytest's private temporary directory: PgBouncer runs as the cluster's account.
    directory = Path(tempfile.mkdtemp(prefix="structum-pgbouncer-"))
    os.chmod(directory, 0o755)
    port = free_port()
    users = directory / "userlist.txt"
    users.write_text(f'"{primary.user}" ""\n')
    log = directory / "pgbouncer.log"
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{primary.database} = host=127.0.0.1 port={primary.port} dbname={primary.database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
        f"logfile = {log}\nadmin_users = {primary.user}\n"
    )
    argv = [binary, str(ini)]
    run_as: dict[str, Any] = {}
    account = primary._run_as
    if account is not None:
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        for path in (directory, users, ini):
            os.chown(path, account.pw_uid, account.pw_gid)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **run_as)
    url = f"postgresql://{primary.user}@127.0.0.1:{port}/{primary.database}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            break
        except psycopg.Error:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(10)
                err = process.stderr.read().decode() if process.stderr else ""
                text = log.read_text() if log.exists() else ""
                if process.stderr is not None:
                    process.stderr.close()
                shutil.rmtree(directory, ignore_errors=True)  # nothing left behind
                raise AssertionError(f"pgbouncer did not start: {err}\n{text}") from None
            time.sleep(0.1)
    try:
        yield Bouncer(url, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(directory, ignore_errors=True)
