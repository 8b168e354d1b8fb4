"""Finding a PostgreSQL server for a test run.

The chain behind the ``postgres_url`` fixture, first match wins:

1. an explicit URL (``--structum-db-url`` or ``STRUCTUM_TEST_DATABASE_URL``);
2. a throwaway container (testcontainers' ``PostgresContainer``) when a Docker daemon answers;
3. a throwaway cluster from the PostgreSQL server binaries on this machine (``initdb`` +
   ``pg_ctl`` on a free port, unix socket in a temporary directory, fsync off, deleted at the
   end; as root the server runs as an unprivileged user, because PostgreSQL refuses root);
4. otherwise :class:`PostgresUnavailable`, whose message names the three ways to provide one.

Nothing here imports a database driver at module level: the pytest plugin must load without one.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from typing_extensions import Self

from structum_lab.plugins.database import mask_url

__all__ = [
    "ENV_BINDIR",
    "ENV_IMAGE",
    "ENV_OS_USER",
    "ENV_PROVISION",
    "ENV_REQUIRE",
    "ENV_URL",
    "ClusterError",
    "LocalPostgresCluster",
    "PostgresUnavailable",
    "ProvisionedPostgres",
    "Source",
    "docker_status",
    "find_postgres_bindir",
    "provision_postgres",
    "worker_database_url",
]

ENV_URL = "STRUCTUM_TEST_DATABASE_URL"
ENV_REQUIRE = "STRUCTUM_TEST_REQUIRE_DB"
ENV_PROVISION = "STRUCTUM_TEST_DATABASE_PROVISION"
ENV_BINDIR = "STRUCTUM_TEST_PG_BINDIR"
ENV_IMAGE = "STRUCTUM_TEST_POSTGRES_IMAGE"
ENV_OS_USER = "STRUCTUM_TEST_PG_OS_USER"
ENV_TMPDIR = "STRUCTUM_TEST_PG_TMPDIR"

DEFAULT_IMAGE = "postgres:16-alpine"
Source = Literal["url", "docker", "local"]
Mode = Literal["auto", "url", "docker", "local"]
MODES: tuple[str, ...] = ("auto", "url", "docker", "local")

_PUBLIC = "structum_lab.plugins.database.testing"
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")


class PostgresUnavailable(Exception):
    """No way to provide a PostgreSQL server worked; ``reasons`` says why for each way tried."""

    __module__ = _PUBLIC

    def __init__(self, reasons: Iterable[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(self.message())

    def message(self) -> str:
        """The explanation shown in the skip (or failure) of tests that need PostgreSQL."""
        tried = "".join(f"\n  - {reason}" for reason in self.reasons)
        return (
            "no PostgreSQL server for the tests. Provide one of:\n"
            f"  1. a URL: --structum-db-url=postgresql://user@host:5432/db or {ENV_URL}=...\n"
            "  2. a running Docker daemon, with "
            "`pip install 'structum-database-testing[containers]'` (a throwaway container)\n"
            "  3. the PostgreSQL server binaries (initdb, pg_ctl) on this machine, e.g. "
            f"`apt-get install postgresql`, or {ENV_BINDIR}=<bindir> (a throwaway local cluster)\n"
            f"Tried:{tried}"
        )


class ClusterError(RuntimeError):
    """The throwaway local cluster could not be created or started."""

    __module__ = _PUBLIC


@dataclass
class ProvisionedPostgres:
    """A PostgreSQL server the test run may use.

    Attributes:
        url: ``postgresql://`` URL of the database the tests use (per xdist worker).
        source: ``"url"``, ``"docker"`` or ``"local"``.
        description: One line for the test report (password masked).
        startup_seconds: How long providing it took (container or cluster start), if measured.
    """

    url: str
    source: Source
    description: str
    startup_seconds: float | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    __module__ = _PUBLIC

    def close(self) -> None:
        """Drop the worker database / stop the container or cluster (idempotent)."""
        while self._closers:
            self._closers.pop()()


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


def _start_container(image: str) -> ProvisionedPostgres:
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
    return ProvisionedPostgres(
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_traversable(path: Path) -> bool:
    for part in [path, *path.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _unprivileged_account() -> pwd.struct_passwd:
    """The account a root process runs PostgreSQL as (created when there is none)."""
    wanted = os.environ.get(ENV_OS_USER)
    names = [wanted] if wanted else ["postgres", "nobody"]
    for name in names:
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        if account.pw_uid != 0:
            return account
    if wanted:
        raise ClusterError(f"{ENV_OS_USER}={wanted!r} is not an unprivileged user of this machine")
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ClusterError(
            "running as root, PostgreSQL needs an unprivileged user and none was found "
            f"(postgres, nobody); create one and set {ENV_OS_USER}"
        )
    subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "structum-pg"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("structum-pg")


class LocalPostgresCluster:
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

    Attributes:
        timings: Seconds spent in ``initdb``, ``start`` and ``createdb`` (after ``start()``).
    """

    __module__ = _PUBLIC

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
    ) -> None:
        found = Path(bindir) if bindir is not None else find_postgres_bindir()
        if found is None or not _has_server(found):
            raise ClusterError(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install them "
                f"(e.g. apt-get install postgresql) or set {ENV_BINDIR}"
            )
        self.bindir = found
        self.database = database
        self.user = user
        self.base_dir = base_dir
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self.port: int | None = port
        self._fixed_port = port is not None
        self.dir: Path | None = None
        self.timings: dict[str, float] = {}
        self._run_as: pwd.struct_passwd | None = None
        self._running = False  # started and not yet removed
        self._server_up = False  # the server process is up (stop_server() takes it down)

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
    def startup_seconds(self) -> float:
        """Total seconds ``start()`` took."""
        return sum(self.timings.values())

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

    def _dir(self) -> Path:
        if self.dir is None:
            raise ClusterError("the cluster has no directory yet; call start() first")
        return self.dir

    def _base(self) -> str:
        base = self.base_dir or os.environ.get(ENV_TMPDIR) or tempfile.gettempdir()
        if self._run_as is not None and not _world_traversable(Path(base)):
            # The unprivileged server must reach its directory through every parent.
            if _world_traversable(Path("/tmp")):  # noqa: S108 - a private mkdtemp below it
                return "/tmp"  # noqa: S108
            raise ClusterError(
                f"{base} is not reachable by the unprivileged user {self._run_as.pw_name}; "
                f"set {ENV_TMPDIR} to a directory every user can traverse"
            )
        return str(base)

    def _env(self) -> dict[str, str]:
        # PG* variables of the caller (PGHOST, PGDATA...) must not redirect the admin commands.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        return env

    def _run(self, args: list[str], *, as_server: bool, timeout: float) -> str:
        kwargs: dict[str, Any] = {}
        if as_server and self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        try:
            out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=str(self._dir()),
                env=self._env(),
                check=False,
                **kwargs,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{Path(args[0]).name} did not finish within {timeout:g}s") from exc
        if out.returncode != 0:
            raise ClusterError(
                f"{Path(args[0]).name} failed (exit {out.returncode}): "
                f"{(out.stderr or out.stdout).strip()}{self._log_tail()}"
            )
        return str(out.stdout)

    def _log_tail(self) -> str:
        try:
            lines = (self._dir() / "server.log").read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines) if lines else ""

    def start(self) -> Self:
        """Create and start the cluster, then the test database.

        Raises:
            ClusterError: A step failed; the message carries its output and the server log.
        """
        if self._running:
            return self
        if os.geteuid() == 0:
            self._run_as = _unprivileged_account()
        if not self._fixed_port:
            self.port = None  # a new cluster gets a new free port
        self.dir = Path(tempfile.mkdtemp(prefix="structum-pg-", dir=self._base()))
        try:
            if self._run_as is not None:
                os.chown(self.dir, self._run_as.pw_uid, self._run_as.pw_gid)
            self.socket_dir.mkdir()
            if self._run_as is not None:
                os.chown(self.socket_dir, self._run_as.pw_uid, self._run_as.pw_gid)
            began = time.perf_counter()
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", self.user,
                    "--auth=trust",
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
        except BaseException:
            self.stop()
            raise
        return self

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
                self.port = _free_port()
            options = " ".join(f"-c {key}={value}" for key, value in settings.items())
            began = time.perf_counter()
            try:
                self.pg_ctl(
                    "start",
                    "-l", str(self._dir() / "server.log"),
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
                self._running = True
                atexit.register(self.stop)
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

    def stop(self) -> None:
        """Stop the server (immediately: the data is thrown away) and delete its directory."""
        if self._running:
            self._running = False
            atexit.unregister(self.stop)
            if self._server_up:
                self._server_up = False
                with contextlib.suppress(ClusterError):
                    self.pg_ctl("stop", "-m", "immediate")
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _start_cluster() -> ProvisionedPostgres:
    cluster = LocalPostgresCluster().start()
    t = cluster.timings
    description = (
        f"from a throwaway local cluster (PostgreSQL {cluster.version()}, {cluster.bindir}) on "
        f"127.0.0.1:{cluster.port}, started in {cluster.startup_seconds:.2f}s "
        f"(initdb {t.get('initdb', 0):.2f}s, start {t.get('start', 0):.2f}s, "
        f"createdb {t.get('createdb', 0):.2f}s)"
    )
    return ProvisionedPostgres(
        cluster.url, "local", description, cluster.startup_seconds, [cluster.stop]
    )


# -- one database per xdist worker on a shared server -----------------------------------------
def _plain_url(url: str) -> str:
    """``postgresql+driver://`` → ``postgresql://`` (what libpq and psql accept)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.split("+")[0] in ("postgresql", "postgres") else url


def worker_database_url(url: str, worker: str) -> str:
    """``url`` with its database renamed ``<database>_<worker>`` (e.g. ``test_gw0``)."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/") or (parts.username or "postgres")
    return urlunsplit(parts._replace(path=f"/{database}_{worker}"))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _admin(url: str, statements: list[str]) -> None:
    """Run ``statements`` in autocommit on ``url`` (psycopg when installed, else ``psql``)."""
    plain = _plain_url(url)
    try:
        import psycopg  # noqa: PLC0415 - optional: only needed to create per-worker databases
    except ImportError:
        psql = shutil.which("psql")
        bindir = find_postgres_bindir()
        if psql is None and bindir is not None and (bindir / "psql").is_file():
            psql = str(bindir / "psql")
        if psql is None:
            raise ClusterError(
                "creating one database per xdist worker needs psycopg or the psql client: "
                "pip install 'psycopg[binary]'"
            ) from None
        for statement in statements:
            out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
                [psql, plain, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-c", statement],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if out.returncode != 0:
                raise ClusterError(
                    f"{statement!r} failed on {mask_url(url)}: {out.stderr.strip()}"
                ) from None
        return
    with psycopg.connect(plain, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _worker_database(url: str, worker: str) -> tuple[str, Callable[[], None]]:
    worker_url = worker_database_url(url, worker)
    name = _quote_ident(urlsplit(worker_url).path.lstrip("/"))
    try:
        _admin(url, [f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"])
    except ClusterError:
        raise
    except Exception as exc:
        raise ClusterError(
            f"cannot create the per-worker database {name} on {mask_url(url)} ({exc}); give the "
            "user the CREATEDB privilege, or run without pytest-xdist"
        ) from exc

    def drop() -> None:
        with contextlib.suppress(Exception):
            try:
                _admin(url, [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
            except Exception:  # before PostgreSQL 13 there is no FORCE
                _admin(url, [f"DROP DATABASE IF EXISTS {name}"])

    return worker_url, drop


# -- the chain -----------------------------------------------------------------------------------
def provision_postgres(
    *,
    url: str | None = None,
    mode: Mode = "auto",
    worker: str | None = None,
    image: str | None = None,
    docker_timeout: float = 0.5,
) -> ProvisionedPostgres:
    """Provide a PostgreSQL server by the first way that works (see the module docstring).

    Args:
        url: An explicit server URL (step 1).
        mode: ``"auto"`` walks the chain; ``"url"``, ``"docker"`` or ``"local"`` allow only that
            way (e.g. to test the local cluster even where a URL is configured).
        worker: The pytest-xdist worker id (``gw0``...). With an explicit URL the worker gets its
            own database ``<database>_<worker>``; containers and clusters are per worker anyway.
        image: Docker image for step 2 (default ``STRUCTUM_TEST_POSTGRES_IMAGE`` or
            ``postgres:16-alpine``).
        docker_timeout: Seconds to wait for the Docker daemon to answer.

    Returns:
        The server; call ``close()`` when done.

    Raises:
        PostgresUnavailable: No way worked; its message says what to do.
        ClusterError: An explicit URL was given but the per-worker database cannot be created.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    reasons: list[str] = []
    if mode in ("auto", "url"):
        if url:
            if not worker:
                return ProvisionedPostgres(url, "url", f"from the given URL {mask_url(url)}")
            worker_url, drop = _worker_database(url, worker)
            return ProvisionedPostgres(
                worker_url,
                "url",
                f"from the given URL, database {mask_url(worker_url)} for worker {worker}",
                None,
                [drop],
            )
        reasons.append(f"URL: none given (--structum-db-url, {ENV_URL})")
    if mode in ("auto", "docker"):
        answers, where = docker_status(docker_timeout)
        if answers:
            try:
                return _start_container(image or os.environ.get(ENV_IMAGE) or DEFAULT_IMAGE)
            except Exception as exc:
                reasons.append(f"Docker: the daemon at {where} answers, but {exc}")
        else:
            reasons.append(f"Docker: no daemon answered ({where})")
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
