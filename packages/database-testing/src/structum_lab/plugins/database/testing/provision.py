"""Finding a database server for a test run: PostgreSQL, and MariaDB/MySQL.

The chain behind the ``postgres_url`` fixture, first match wins:

1. an explicit URL (``--structum-db-url``, ``STRUCTUM_TEST_DATABASE_URL`` or
   ``STRUCTUM_TEST_POSTGRES_URL``), used as given;
2. the standard local service, ``postgresql://postgres@127.0.0.1:5432/test`` (another with
   ``STRUCTUM_TEST_POSTGRES_SERVICE``), when a real query on it answers;
3. a throwaway container (testcontainers' ``PostgresContainer``) when a Docker daemon answers;
4. a throwaway cluster from the PostgreSQL server binaries on this machine (``initdb`` +
   ``pg_ctl`` on a free port, unix socket in a temporary directory, fsync off, deleted at the
   end; as root the server runs as an unprivileged user, because PostgreSQL refuses root);
5. otherwise :class:`PostgresUnavailable`, whose message names the ways to provide one.

The chain behind ``mysql_url`` is the same without Docker: an explicit URL
(``--structum-db-mysql-url`` or ``STRUCTUM_TEST_MYSQL_URL``), the local service
``mysql://root@127.0.0.1:3306/test`` (``STRUCTUM_TEST_MYSQL_SERVICE``), a throwaway MariaDB from
the server binaries (:class:`LocalMariaDBServer`), else :class:`MySQLUnavailable`.

Nothing here imports a database driver at module level: the pytest plugin must load without one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from structum_lab.plugins.database import mask_url

from ._throwaway import ClusterError, ThrowawayServer, free_port
from .mariadb import ENV_MYSQL_BINDIR, LocalMariaDBServer, find_mariadb_binaries, mysql_admin

__all__ = [
    "DEFAULT_MYSQL_SERVICE",
    "DEFAULT_POSTGRES_SERVICE",
    "ENV_BINDIR",
    "ENV_IMAGE",
    "ENV_MYSQL_SERVICE",
    "ENV_MYSQL_URL",
    "ENV_OS_USER",
    "ENV_POSTGRES_SERVICE",
    "ENV_POSTGRES_URL",
    "ENV_PROVISION",
    "ENV_REQUIRE",
    "ENV_URL",
    "ClusterError",
    "LocalPostgresCluster",
    "MySQLUnavailable",
    "PostgresUnavailable",
    "ProvisionedPostgres",
    "ProvisionedServer",
    "ServerUnavailable",
    "Source",
    "docker_status",
    "find_postgres_bindir",
    "provision_mysql",
    "provision_postgres",
    "worker_database_url",
]

ENV_URL = "STRUCTUM_TEST_DATABASE_URL"
# The integration suite's name for the same thing; both are honoured (ENV_URL first).
ENV_POSTGRES_URL = "STRUCTUM_TEST_POSTGRES_URL"
ENV_POSTGRES_SERVICE = "STRUCTUM_TEST_POSTGRES_SERVICE"
ENV_MYSQL_URL = "STRUCTUM_TEST_MYSQL_URL"
ENV_MYSQL_SERVICE = "STRUCTUM_TEST_MYSQL_SERVICE"
ENV_REQUIRE = "STRUCTUM_TEST_REQUIRE_DB"
ENV_PROVISION = "STRUCTUM_TEST_DATABASE_PROVISION"
ENV_BINDIR = "STRUCTUM_TEST_PG_BINDIR"
ENV_IMAGE = "STRUCTUM_TEST_POSTGRES_IMAGE"
ENV_OS_USER = "STRUCTUM_TEST_PG_OS_USER"
ENV_TMPDIR = "STRUCTUM_TEST_PG_TMPDIR"

# Where a machine set up for development (and CI) runs its servers: the usual ports, the usual
# superuser with local trust (PostgreSQL) or no password (MariaDB), a database named ``test``.
DEFAULT_POSTGRES_SERVICE = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_SERVICE = "mysql://root@127.0.0.1:3306/test"
_OFF = ("off", "none", "no", "0", "false")
# A service on the loopback answers at once or not at all; longer only behind a firewall.
_SERVICE_TIMEOUT = 3.0

DEFAULT_IMAGE = "postgres:16-alpine"
Source = Literal["url", "service", "docker", "local"]
Mode = Literal["auto", "url", "service", "docker", "local"]
MODES: tuple[str, ...] = ("auto", "url", "service", "docker", "local")

_PUBLIC = "structum_lab.plugins.database.testing"
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")


class ServerUnavailable(Exception):
    """No way to provide the server worked; ``reasons`` says why for each way tried."""

    __module__ = _PUBLIC
    #: The server, as the skip message names it.
    what = "database"

    def __init__(self, reasons: Iterable[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(self.message())

    def ways(self) -> list[str]:
        """How to provide one, in the chain's order."""
        return []

    def message(self) -> str:
        """The explanation shown in the skip (or failure) of the tests that need the server."""
        ways = "".join(f"\n  {n}. {way}" for n, way in enumerate(self.ways(), 1))
        tried = "".join(f"\n  - {reason}" for reason in self.reasons)
        return f"no {self.what} server for the tests. Provide one of:{ways}\nTried:{tried}"


class PostgresUnavailable(ServerUnavailable):
    """No way to provide a PostgreSQL server worked; ``reasons`` says why for each way tried."""

    __module__ = _PUBLIC
    what = "PostgreSQL"

    def ways(self) -> list[str]:
        """How to provide one, in the chain's order."""
        return [
            f"a URL: --structum-db-url=postgresql://user@host:5432/db or {ENV_URL}=... "
            f"(or {ENV_POSTGRES_URL}=...)",
            f"a running PostgreSQL service at {DEFAULT_POSTGRES_SERVICE} (user postgres with "
            f"trust authentication, a database named test), or {ENV_POSTGRES_SERVICE}=<url>",
            "a running Docker daemon, with "
            "`pip install 'structum-database-testing[containers]'` (a throwaway container)",
            "the PostgreSQL server binaries (initdb, pg_ctl) on this machine, e.g. "
            f"`apt-get install postgresql`, or {ENV_BINDIR}=<bindir> (a throwaway local cluster)",
        ]


class MySQLUnavailable(ServerUnavailable):
    """No way to provide a MariaDB/MySQL server worked; ``reasons`` says why for each way."""

    __module__ = _PUBLIC
    what = "MariaDB/MySQL"

    def ways(self) -> list[str]:
        """How to provide one, in the chain's order."""
        return [
            f"a URL: --structum-db-mysql-url=mysql://user@host:3306/db or {ENV_MYSQL_URL}=...",
            f"a running MariaDB/MySQL service at {DEFAULT_MYSQL_SERVICE} (root without a "
            f"password, a database named test), or {ENV_MYSQL_SERVICE}=<url>",
            "the MariaDB server binaries (mariadbd, mariadb-install-db) on this machine, e.g. "
            f"`apt-get install mariadb-server`, or {ENV_MYSQL_BINDIR}=<dir> "
            "(a throwaway local server)",
        ]


@dataclass
class ProvisionedServer:
    """A database server the test run may use.

    Attributes:
        url: URL of the database the tests use (per xdist worker).
        source: ``"url"``, ``"service"``, ``"docker"`` or ``"local"``.
        description: One line for the test report (password masked).
        startup_seconds: How long providing it took (container or server start), if measured.
    """

    url: str
    source: Source
    description: str
    startup_seconds: float | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    __module__ = _PUBLIC

    def close(self) -> None:
        """Drop the worker database / stop the container or server (idempotent)."""
        while self._closers:
            self._closers.pop()()


#: The name this class had when only PostgreSQL was provisioned.
ProvisionedPostgres = ProvisionedServer


# -- Docker ------------------------------------------------------------------------------------
def _docker_endpoints() -> list[str]:
    host = os.environ.get("DOCKER_HOST")
    if host:
        return [host]
    candidates = ["/var/run/docker.sock"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append(os.path.join(runtime, "docker.sock"))
    candidates.append(os.path.expanduser("~/.docker/run/docker.sock"))
    return [f"unix://{path}" for path in candidates]


def _ping(endpoint: str, timeout: float) -> str | None:
    """None when the daemon at ``endpoint`` answers ``/_ping``, else why not."""
    parts = urlsplit(endpoint)
    sock: socket.socket
    try:
        if parts.scheme == "unix":
            path = parts.path or parts.netloc
            if not os.path.exists(path):
                return f"{path} does not exist"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(path)
        elif parts.scheme in ("tcp", "http", "https"):
            sock = socket.create_connection(
                (parts.hostname or "localhost", parts.port or 2375), timeout
            )
            if os.environ.get("DOCKER_TLS_VERIFY") or parts.scheme == "https":
                # Speaking TLS just to ping is not worth it: a listening port is a good sign.
                sock.close()
                return None
        else:
            return f"unsupported DOCKER_HOST {endpoint!r}"
    except OSError as exc:
        return f"{endpoint}: {exc.strerror or exc}"
    with sock:
        try:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
        except OSError as exc:
            return f"{endpoint}: {exc.strerror or exc}"
    if re.match(rb"HTTP/1\.[01] 200", reply):
        return None
    return f"{endpoint} did not answer /_ping with 200"


def docker_status(timeout: float = 0.5) -> tuple[bool, str]:
    """Whether a Docker daemon answers, asked directly on its socket (no docker package needed).

    Args:
        timeout: Seconds to wait for each endpoint (``DOCKER_HOST``, or the usual sockets).

    Returns:
        ``(True, endpoint)`` when one answers, else ``(False, reasons)``.
    """
    reasons = []
    for endpoint in _docker_endpoints():
        why = _ping(endpoint, timeout)
        if why is None:
            return True, endpoint
        reasons.append(why)
    return False, "; ".join(reasons)


def _start_container(image: str) -> ProvisionedServer:
    try:
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415
    except ImportError:
        try:
            with warnings.catch_warnings():  # the old module path warns that it is deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                from testcontainers.postgres import PostgresContainer  # noqa: PLC0415
        except ImportError:
            raise ClusterError(
                "a Docker daemon answers but testcontainers is not installed: "
                "pip install 'structum-database-testing[containers]'"
            ) from None
    started = time.perf_counter()
    container = PostgresContainer(image, driver=None)
    container.start()
    elapsed = time.perf_counter() - started
    url = container.get_connection_url()
    return ProvisionedServer(
        url,
        "docker",
        f"from a throwaway Docker container ({image}), started in {elapsed:.2f}s",
        elapsed,
        [container.stop],
    )


# -- local server binaries ---------------------------------------------------------------------
def _has_server(bindir: Path) -> bool:
    return all(
        (bindir / name).is_file() and os.access(bindir / name, os.X_OK) for name in _SERVER_BINARIES
    )


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_postgres_bindir() -> Path | None:
    """Find a directory holding PostgreSQL's server binaries (``initdb``, ``pg_ctl``, ``postgres``).

    Looks at ``STRUCTUM_TEST_PG_BINDIR``, ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``
    (Debian, newest first), ``/usr/pgsql-*/bin`` (RHEL), Homebrew's prefixes, then ``PATH``.

    Returns:
        The directory, or None when no server is installed.
    """
    explicit = os.environ.get(ENV_BINDIR)
    if explicit:
        return Path(explicit) if _has_server(Path(explicit)) else None
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(out.stdout.strip())
    for pattern in (
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/opt/homebrew/opt/postgresql*/bin",
        "/usr/local/opt/postgresql*/bin",
    ):
        candidates.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        if _has_server(Path(candidate)):
            return Path(candidate)
    return None


class LocalPostgresCluster(ThrowawayServer):
    """A throwaway PostgreSQL cluster run from the server binaries of this machine.

    ``start()`` runs ``initdb`` into a new temporary directory and ``pg_ctl start`` on a free
    port of 127.0.0.1 (or ``port``) with its unix socket in that directory, durability off
    (``fsync``, ``full_page_writes``, ``synchronous_commit``) and trust authentication; ``stop()``
    stops the server and deletes the directory. As root the server runs as an unprivileged user
    (``STRUCTUM_TEST_PG_OS_USER``, else ``postgres`` or ``nobody``; created when neither exists).

    For fault-injection tests the server can be taken down and brought back while the cluster
    keeps its data and port: :meth:`stop_server`, :meth:`start_server`, :meth:`restart`, and
    :attr:`postmaster_pid` (to pause the whole server with ``SIGSTOP``).

    Args:
        bindir: Directory of ``initdb``, ``pg_ctl`` and ``postgres`` (default: found by
            :func:`find_postgres_bindir`).
        database: Database created for the tests.
        user: The cluster's superuser role.
        base_dir: Where the temporary directory goes (default: ``STRUCTUM_TEST_PG_TMPDIR``, else
            the system temporary directory).
        settings: Extra ``postgres -c`` settings.
        start_timeout: Seconds to wait for the server to accept connections.
        port: TCP port to listen on (default: a free one, chosen at the first start and kept
            across restarts).
        host_auth: Authentication method of TCP connections (``trust``, or ``scram-sha-256``
            to test passwords: give roles one with ``ALTER ROLE ... PASSWORD``). Unix socket
            connections (:attr:`socket_url`) always trust, so the cluster stays administrable.

    Attributes:
        timings: Seconds spent in ``initdb``, ``start`` and ``createdb`` (after ``start()``).
    """

    __module__ = _PUBLIC
    dir_prefix = "structum-pg-"
    env_prefix = "PG"
    os_user_env = ENV_OS_USER
    os_users = ("postgres", "nobody")
    tmpdir_env = ENV_TMPDIR

    def __init__(
        self,
        *,
        bindir: Path | str | None = None,
        database: str = "structum_test",
        user: str = "postgres",
        base_dir: Path | str | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        port: int | None = None,
        host_auth: str = "trust",
    ) -> None:
        found = Path(bindir) if bindir is not None else find_postgres_bindir()
        if found is None or not _has_server(found):
            raise ClusterError(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install them "
                f"(e.g. apt-get install postgresql) or set {ENV_BINDIR}"
            )
        super().__init__(base_dir=base_dir, start_timeout=start_timeout)
        self.bindir = found
        self.database = database
        self.user = user
        self.settings = dict(settings or {})
        self.port = port
        self.host_auth = host_auth
        self._fixed_port = port is not None
        self._server_up = False  # the server process is up (stop_server() takes it down)
        self._primary: LocalPostgresCluster | None = None  # set by replica_of()

    @classmethod
    def replica_of(
        cls,
        primary: LocalPostgresCluster,
        *,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> LocalPostgresCluster:
        """A streaming replica of the running ``primary`` (``pg_basebackup -R``), not started.

        ``start()`` copies the primary with ``pg_basebackup -R`` (which writes
        ``standby.signal`` and ``primary_conninfo``) into a directory of its own and starts it
        on its own port and socket directory as a hot standby. The primary needs
        ``wal_level = replica`` (the default) and free WAL senders (the default 10). The
        replica can be stopped and started again like any cluster, and promoted
        (:meth:`promote`).

        Args:
            primary: The cluster to replicate (running).
            settings: Extra ``postgres -c`` settings of the replica.
            start_timeout: Seconds to wait for the replica to accept connections.
        """
        replica = cls(
            bindir=primary.bindir,
            database=primary.database,
            user=primary.user,
            base_dir=primary.base_dir,
            settings=settings,
            start_timeout=start_timeout,
            host_auth=primary.host_auth,
        )
        replica._primary = primary
        return replica

    def promote(self, timeout: float = 60.0) -> None:
        """Promote this standby to a primary (``pg_ctl promote``, waiting until it is one)."""
        self.pg_ctl("promote", "-t", str(int(timeout)), timeout=timeout + 10)

    def __repr__(self) -> str:
        state = f"running on 127.0.0.1:{self.port}" if self._running else "stopped"
        return f"<LocalPostgresCluster {self.bindir} {state}>"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self._dir() / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's unix socket."""
        return self._dir() / "socket"

    @property
    def url(self) -> str:
        """``postgresql://<user>@127.0.0.1:<port>/<database>`` (no password: trust auth)."""
        if not self._running:
            raise ClusterError("the cluster is not running; call start() first")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def socket_url(self) -> str:
        """The superuser's URL over the unix socket (trusted whatever ``host_auth`` is)."""
        if not self._running:
            raise ClusterError("the cluster is not running; call start() first")
        return f"postgresql://{self.user}@/{self.database}?host={self.socket_dir}&port={self.port}"

    def version(self) -> str:
        """The server version, e.g. ``15.13``."""
        out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
            [str(self.bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        match = re.search(r"(\d+(?:\.\d+)*)", out.stdout)
        return match.group(1) if match else out.stdout.strip()

    def _create(self) -> None:
        if not self._fixed_port:
            self.port = None  # a new cluster gets a new free port
        self._mkdir(self.socket_dir)
        began = time.perf_counter()
        if self._primary is not None:
            self._copy_primary(self._primary)
            self.timings["basebackup"] = time.perf_counter() - began
            self._start_server()
            return
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", self.user,
                "--auth-local=trust",
                f"--auth-host={self.host_auth}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_server=True,
            timeout=120,
        )  # fmt: skip
        self.timings["initdb"] = time.perf_counter() - began
        self._start_server()
        began = time.perf_counter()
        self._create_database()
        self.timings["createdb"] = time.perf_counter() - began

    def _copy_primary(self, primary: LocalPostgresCluster) -> None:
        self._run(
            [
                str(self.bindir / "pg_basebackup"),
                "-D", str(self.data_dir),
                "-h", str(primary.socket_dir),
                "-p", str(primary.port),
                "-U", primary.user,
                "-R",
                "-X", "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            as_server=True,
            timeout=120,
        )  # fmt: skip

    def _start_server(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "max_connections": "100",
            **self.settings,
        }
        # The first start of a cluster without a fixed port picks a free one; a free port can be
        # taken by someone else before the server binds it, so that case retries. Later starts
        # (after stop_server) keep the port: clients must find the server where it was.
        attempts = 1 if self._fixed_port or self.port is not None else 3
        for attempt in range(attempts):
            if self.port is None or (attempt and not self._fixed_port):
                self.port = free_port()
            options = " ".join(f"-c {key}={value}" for key, value in settings.items())
            began = time.perf_counter()
            try:
                self.pg_ctl(
                    "start",
                    "-l", str(self._dir() / self.log_name),
                    "-t", str(int(self.start_timeout)),
                    "-o", f"-p {self.port} {options}",
                    timeout=self.start_timeout + 10,
                )  # fmt: skip
            except ClusterError:
                if attempt == attempts - 1 or "already in use" not in self._log_tail():
                    raise
                continue
            self.timings.setdefault("start", time.perf_counter() - began)
            if not self._running:
                self._started()
            self._server_up = True
            return

    def pg_ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``pg_ctl <args> -D <data> -w -s`` as the account that owns the cluster.

        Raises:
            ClusterError: pg_ctl failed or did not finish within ``timeout`` seconds.
        """
        return self._run(
            [str(self.bindir / "pg_ctl"), *args, "-D", str(self.data_dir), "-w", "-s"],
            as_server=True,
            timeout=timeout,
        )

    @property
    def server_running(self) -> bool:
        """True while the server process is up (False after :meth:`stop_server`)."""
        return self._running and self._server_up

    @property
    def postmaster_pid(self) -> int:
        """The server's main process id (its backends are its children).

        Raises:
            ClusterError: The server is not running.
        """
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            raise ClusterError("the server is not running (no postmaster.pid)") from None

    def stop_server(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server but keep the cluster (data, port) for :meth:`start_server`.

        Args:
            mode: pg_ctl's shutdown mode: ``fast`` disconnects clients and shuts down cleanly,
                ``immediate`` kills every process at once (crash recovery on the next start).
        """
        if not self._running:
            raise ClusterError("the cluster is not running; call start() first")
        self.pg_ctl("stop", "-m", mode)
        self._server_up = False

    def start_server(self) -> None:
        """Start the server again after :meth:`stop_server`, on the same port."""
        if not self._running:
            raise ClusterError("the cluster is not running; call start() first")
        if not self._server_up:
            self._start_server()

    def restart(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server with ``mode`` and start it again on the same port."""
        self.stop_server(mode)
        self.start_server()

    def _create_database(self) -> None:
        createdb = self.bindir / "createdb"
        if not createdb.is_file():
            self.database = "postgres"  # every cluster has it; a client-less install lacks createdb
            return
        self._run(
            [
                str(createdb),
                "-h", str(self.socket_dir),
                "-p", str(self.port),
                "-U", self.user,
                self.database,
            ],
            as_server=True,
            timeout=60,
        )  # fmt: skip

    def _stop_server(self) -> None:
        if self._server_up:
            self._server_up = False
            with contextlib.suppress(ClusterError):
                self.pg_ctl("stop", "-m", "immediate")


def _start_cluster() -> ProvisionedServer:
    cluster = LocalPostgresCluster().start()
    t = cluster.timings
    description = (
        f"from a throwaway local cluster (PostgreSQL {cluster.version()}, {cluster.bindir}) on "
        f"127.0.0.1:{cluster.port}, started in {cluster.startup_seconds:.2f}s "
        f"(initdb {t.get('initdb', 0):.2f}s, start {t.get('start', 0):.2f}s, "
        f"createdb {t.get('createdb', 0):.2f}s)"
    )
    return ProvisionedServer(
        cluster.url, "local", description, cluster.startup_seconds, [cluster.stop]
    )


# -- talking to a PostgreSQL server without depending on a driver ----------------------------
def _plain_url(url: str) -> str:
    """``postgresql+driver://`` → ``postgresql://`` (what libpq and psql accept)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.split("+")[0] in ("postgresql", "postgres") else url


def _is_mysql(url: str) -> bool:
    return url.split("://", 1)[0].split("+", 1)[0] in ("mysql", "mariadb")


def _admin(url: str, statements: list[str], *, connect_timeout: float | None = None) -> None:
    """Run ``statements`` in autocommit on ``url`` (psycopg when installed, else ``psql``)."""
    plain = _plain_url(url)
    seconds = None if connect_timeout is None else max(1, round(connect_timeout))
    timeout = {} if seconds is None else {"connect_timeout": seconds}
    try:
        import psycopg  # noqa: PLC0415 - optional: the testing package depends on no driver
    except ImportError:
        psql = shutil.which("psql")
        bindir = find_postgres_bindir()
        if psql is None and bindir is not None and (bindir / "psql").is_file():
            psql = str(bindir / "psql")
        if psql is None:
            raise ClusterError(
                "talking to PostgreSQL needs psycopg or the psql client: "
                "pip install 'psycopg[binary]'"
            ) from None
        env = dict(os.environ)
        if seconds is not None:
            env["PGCONNECT_TIMEOUT"] = str(seconds)
        for statement in statements:
            out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
                [psql, plain, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-c", statement],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
                env=env,
            )
            if out.returncode != 0:
                raise ClusterError(
                    f"{statement!r} failed on {mask_url(url)}: {out.stderr.strip()}"
                ) from None
        return
    with psycopg.connect(plain, autocommit=True, **timeout) as conn:  # type: ignore[arg-type]
        for statement in statements:
            conn.execute(statement)


# -- the standard local service ---------------------------------------------------------------
def _service_url(explicit: str | None, env: str, default: str) -> str | None:
    """The service address to probe, or None when switched off (``off``)."""
    url = explicit if explicit is not None else os.environ.get(env, default)
    return None if url.strip().lower() in _OFF else url.strip() or default


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _probe_service(url: str) -> str | None:
    """None when a real query on ``url`` answers, else why not (one line, password masked)."""
    try:
        if _is_mysql(url):
            mysql_admin(url, ["SELECT 1"], connect_timeout=_SERVICE_TIMEOUT)
        else:
            _admin(url, ["SELECT 1"], connect_timeout=_SERVICE_TIMEOUT)
    except Exception as exc:
        why = _first_line(exc)
        database = urlsplit(url).path.lstrip("/")
        if re.search(r"does not exist|unknown database", why, re.IGNORECASE) and database:
            create = (
                f"mysql -h {urlsplit(url).hostname} -u root -e 'CREATE DATABASE {database}'"
                if _is_mysql(url)
                else f"createdb -h {urlsplit(url).hostname} -U postgres {database}"
            )
            return f"{mask_url(url)} answers, but has no database {database} (`{create}`)"
        masked = mask_url(url)
        why = why.replace(url, masked).removeprefix(f"cannot connect to {masked}: ")
        return f"{masked}: {why}"
    return None


# -- one database per xdist worker on a shared server -----------------------------------------
def worker_database_url(url: str, worker: str) -> str:
    """``url`` with its database renamed ``<database>_<worker>`` (e.g. ``test_gw0``)."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/") or (parts.username or "postgres")
    return urlunsplit(parts._replace(path=f"/{database}_{worker}"))


def _worker_database(url: str, worker: str) -> tuple[str, Callable[[], None]]:
    worker_url = worker_database_url(url, worker)
    bare = urlsplit(worker_url).path.lstrip("/")
    if _is_mysql(url):
        name = "`" + bare.replace("`", "``") + "`"

        def admin(statements: list[str]) -> None:
            mysql_admin(url, statements)

        drops = [[f"DROP DATABASE IF EXISTS {name}"]]
        privilege = "CREATE and DROP"
    else:
        name = '"' + bare.replace('"', '""') + '"'

        def admin(statements: list[str]) -> None:
            _admin(url, statements)

        # Before PostgreSQL 13 there is no FORCE.
        drops = [
            [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            [f"DROP DATABASE IF EXISTS {name}"],
        ]
        privilege = "CREATEDB"
    try:
        admin([f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"])
    except Exception as exc:
        raise ClusterError(
            f"cannot create the per-worker database {name} on {mask_url(url)} "
            f"({_first_line(exc)}); give the user the {privilege} privilege, or run without "
            "pytest-xdist"
        ) from exc

    def drop() -> None:
        for statements in drops:
            with contextlib.suppress(Exception):
                admin(statements)
                return

    return worker_url, drop


def _given(url: str, source: Source, what: str, worker: str | None) -> ProvisionedServer:
    """A server we were given (a URL, or the service): the worker's own database on it."""
    if not worker:
        return ProvisionedServer(url, source, f"{what} {mask_url(url)}")
    worker_url, drop = _worker_database(url, worker)
    return ProvisionedServer(
        worker_url,
        source,
        f"{what}, database {mask_url(worker_url)} for worker {worker}",
        None,
        [drop],
    )


def _url_or_service(
    mode: Mode,
    url: str | None,
    worker: str | None,
    service: str | None,
    reasons: list[str],
    *,
    url_names: str,
    service_env: str,
    default_service: str,
) -> ProvisionedServer | None:
    """Steps 1 and 2 of both chains: the URL given, else the local service if a query answers.

    Appends to ``reasons`` why each step allowed by ``mode`` did not apply.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode in ("auto", "url"):
        if url:
            return _given(url, "url", "from the given URL", worker)
        reasons.append(f"URL: none given ({url_names})")
    if mode in ("auto", "service"):
        where = _service_url(service, service_env, default_service)
        why = "switched off" if where is None else _probe_service(where)
        if where is not None and why is None:
            return _given(where, "service", "from the local service", worker)
        reasons.append(f"local service: {why}")
    return None


# -- the chains ----------------------------------------------------------------------------------
def provision_postgres(
    *,
    url: str | None = None,
    mode: Mode = "auto",
    worker: str | None = None,
    service: str | None = None,
    image: str | None = None,
    docker_timeout: float = 0.5,
) -> ProvisionedServer:
    """Provide a PostgreSQL server by the first way that works (see the module docstring).

    Args:
        url: An explicit server URL (step 1).
        mode: ``"auto"`` walks the chain; ``"url"``, ``"service"``, ``"docker"`` or ``"local"``
            allow only that way (e.g. to test the local cluster even where a URL is configured).
        worker: The pytest-xdist worker id (``gw0``...). With a URL or the service the worker
            gets its own database ``<database>_<worker>``; containers and clusters are per worker
            anyway.
        service: The local service to probe in step 2 (default ``STRUCTUM_TEST_POSTGRES_SERVICE``,
            else ``postgresql://postgres@127.0.0.1:5432/test``; ``"off"`` skips the step).
        image: Docker image for step 3 (default ``STRUCTUM_TEST_POSTGRES_IMAGE`` or
            ``postgres:16-alpine``).
        docker_timeout: Seconds to wait for the Docker daemon to answer.

    Returns:
        The server; call ``close()`` when done.

    Raises:
        PostgresUnavailable: No way worked; its message says what to do.
        ClusterError: A URL or the service was found but the per-worker database cannot be
            created.
    """
    reasons: list[str] = []
    given = _url_or_service(
        mode,
        url,
        worker,
        service,
        reasons,
        url_names=f"--structum-db-url, {ENV_URL}, {ENV_POSTGRES_URL}",
        service_env=ENV_POSTGRES_SERVICE,
        default_service=DEFAULT_POSTGRES_SERVICE,
    )
    if given is not None:
        return given
    if mode in ("auto", "docker"):
        answers, docker = docker_status(docker_timeout)
        if answers:
            try:
                return _start_container(image or os.environ.get(ENV_IMAGE) or DEFAULT_IMAGE)
            except Exception as exc:
                reasons.append(f"Docker: the daemon at {docker} answers, but {exc}")
        else:
            reasons.append(f"Docker: no daemon answered ({docker})")
    if mode in ("auto", "local"):
        if find_postgres_bindir() is None:
            reasons.append(
                "local cluster: no PostgreSQL server binaries (initdb, pg_ctl, postgres) found "
                f"via {ENV_BINDIR}, pg_config --bindir, /usr/lib/postgresql/*/bin or PATH"
            )
        else:
            try:
                return _start_cluster()
            except ClusterError as exc:
                reasons.append(f"local cluster: {exc}")
    raise PostgresUnavailable(reasons)


def _start_mariadb() -> ProvisionedServer:
    server = LocalMariaDBServer().start()
    t = server.timings
    description = (
        f"from a throwaway local server (MariaDB {server.version()}, {server.binaries.server}) "
        f"on 127.0.0.1:{server.port}, started in {server.startup_seconds:.2f}s "
        f"(install {t.get('install', 0):.2f}s, start {t.get('start', 0):.2f}s)"
    )
    return ProvisionedServer(
        server.url, "local", description, server.startup_seconds, [server.stop]
    )


def provision_mysql(
    *,
    url: str | None = None,
    mode: Mode = "auto",
    worker: str | None = None,
    service: str | None = None,
) -> ProvisionedServer:
    """Provide a MariaDB/MySQL server by the first way that works (see the module docstring).

    Args:
        url: An explicit server URL, ``mysql://user[:password]@host[:port]/database``.
        mode: ``"auto"`` walks the chain; ``"url"``, ``"service"`` or ``"local"`` allow only
            that way (``"docker"`` allows none: there is no MariaDB container step).
        worker: The pytest-xdist worker id. With a URL or the service the worker gets its own
            database ``<database>_<worker>``; a throwaway server is per worker anyway.
        service: The local service to probe (default ``STRUCTUM_TEST_MYSQL_SERVICE``, else
            ``mysql://root@127.0.0.1:3306/test``; ``"off"`` skips the step).

    Returns:
        The server; call ``close()`` when done.

    Raises:
        MySQLUnavailable: No way worked; its message says what to do.
        ClusterError: A URL or the service was found but the per-worker database cannot be
            created.
    """
    reasons: list[str] = []
    given = _url_or_service(
        mode,
        url,
        worker,
        service,
        reasons,
        url_names=f"--structum-db-mysql-url, {ENV_MYSQL_URL}",
        service_env=ENV_MYSQL_SERVICE,
        default_service=DEFAULT_MYSQL_SERVICE,
    )
    if given is not None:
        return given
    if mode == "docker":
        reasons.append("Docker: no MariaDB/MySQL container step (use another way)")
    if mode in ("auto", "local"):
        if find_mariadb_binaries() is None:
            reasons.append(
                "local server: no MariaDB server binaries (mariadbd, mariadb-install-db) found "
                f"via {ENV_MYSQL_BINDIR}, PATH, /usr/sbin or /usr/local"
            )
        else:
            try:
                return _start_mariadb()
            except ClusterError as exc:
                reasons.append(f"local server: {exc}")
    raise MySQLUnavailable(reasons)
