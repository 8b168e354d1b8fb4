"""MariaDB/MySQL for a test run: talking to a server without a driver, and a throwaway server.

- :func:`mysql_admin` runs statements on a server through PyMySQL when it is installed, else the
  ``mariadb``/``mysql`` command-line client (the testing package depends on no driver).
- :class:`LocalMariaDBServer` starts a throwaway MariaDB from the server binaries of this machine
  (``mariadb-install-db`` + ``mariadbd`` on a free port, as an unprivileged account when root).

:func:`~structum_lab.plugins.database.testing.provision_mysql` chains them with an explicit URL
and the standard local service.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from structum_lab.plugins.database import mask_url

from ._throwaway import ClusterError, ThrowawayServer, free_port

__all__ = [
    "ENV_MYSQL_BINDIR",
    "ENV_MYSQL_OS_USER",
    "LocalMariaDBServer",
    "MariaDBBinaries",
    "find_mariadb_binaries",
    "mysql_admin",
]

ENV_MYSQL_BINDIR = "STRUCTUM_TEST_MARIADB_BINDIR"
ENV_MYSQL_OS_USER = "STRUCTUM_TEST_MARIADB_OS_USER"
ENV_MYSQL_TMPDIR = "STRUCTUM_TEST_MARIADB_TMPDIR"

_PUBLIC = "structum_lab.plugins.database.testing"
_SERVERS = ("mariadbd", "mysqld")
_INSTALLERS = ("mariadb-install-db", "mysql_install_db")
_CLIENTS = ("mariadb", "mysql")
_SEARCH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/local/mysql/bin")
_SEARCH_GLOBS = ("/opt/homebrew/opt/mariadb*/bin", "/usr/local/opt/mariadb*/bin")


# -- talking to a server ---------------------------------------------------------------------
def _connect_args(url: str) -> dict[str, str | int]:
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in ("mysql", "mariadb"):
        raise ValueError(f"not a MariaDB/MySQL URL: {mask_url(url)}")
    args: dict[str, str | int] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
    }
    if parts.password is not None:
        args["password"] = unquote(parts.password)
    database = parts.path.lstrip("/")
    if database:
        args["database"] = database
    return args


def _client() -> str | None:
    for name in _CLIENTS:
        found = shutil.which(name)
        if found:
            return found
    return None


def mysql_admin(url: str, statements: Sequence[str], *, connect_timeout: float = 10.0) -> None:
    """Run ``statements`` on the MariaDB/MySQL server of ``url``, in autocommit.

    Through PyMySQL when it is installed, else the ``mariadb``/``mysql`` client.

    Args:
        url: ``mysql://user[:password]@host[:port][/database]`` (a ``+driver`` suffix is fine).
        statements: SQL statements, run in order.
        connect_timeout: Seconds to wait for the connection.

    Raises:
        ClusterError: Neither PyMySQL nor a client is installed, or a statement failed (the
            message carries the server's error, the password masked).
    """
    args = _connect_args(url)
    try:
        import pymysql  # noqa: PLC0415 - optional: the testing package depends on no driver
    except ImportError:
        _admin_with_client(url, args, statements, connect_timeout)
        return
    try:
        conn = pymysql.connect(
            **args,
            connect_timeout=max(1, round(connect_timeout)),
            autocommit=True,
        )
    except pymysql.MySQLError as exc:
        raise ClusterError(f"cannot connect to {mask_url(url)}: {exc}") from None
    with conn, conn.cursor() as cursor:
        for statement in statements:
            try:
                cursor.execute(statement)
            except pymysql.MySQLError as exc:
                raise ClusterError(f"{statement!r} failed on {mask_url(url)}: {exc}") from None


def _admin_with_client(
    url: str, args: dict[str, str | int], statements: Sequence[str], connect_timeout: float
) -> None:
    client = _client()
    if client is None:
        raise ClusterError(
            "talking to MariaDB/MySQL needs PyMySQL or the mariadb/mysql client: "
            "pip install pymysql"
        )
    argv = [
        client,
        "--no-defaults",
        "--protocol=TCP",
        f"--host={args['host']}",
        f"--port={args['port']}",
        f"--user={args['user']}",
        f"--connect-timeout={max(1, round(connect_timeout))}",
        "--batch",
    ]
    if "database" in args:
        argv.append(f"--database={args['database']}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL")}
    if "password" in args:
        env["MYSQL_PWD"] = str(args["password"])  # not on the command line, where ps shows it
    out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
        [*argv, "-e", ";\n".join(statements)],
        capture_output=True,
        text=True,
        check=False,
        timeout=connect_timeout + 60,
        env=env,
    )
    if out.returncode != 0:
        raise ClusterError(f"{Path(client).name} on {mask_url(url)}: {out.stderr.strip()}")


# -- the server binaries -----------------------------------------------------------------------
class MariaDBBinaries:
    """Where the MariaDB server (``mariadbd``) and its installer (``mariadb-install-db``) are."""

    __module__ = _PUBLIC

    def __init__(self, server: Path, installer: Path) -> None:
        self.server = server
        self.installer = installer

    def __repr__(self) -> str:
        return f"MariaDBBinaries(server={str(self.server)!r}, installer={str(self.installer)!r})"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_mariadb_binaries() -> MariaDBBinaries | None:
    """Find the MariaDB server and installer of this machine.

    Looks in ``STRUCTUM_TEST_MARIADB_BINDIR`` only when it is set, else in ``PATH``,
    ``/usr/sbin``, ``/usr/bin``, ``/usr/local/...`` and Homebrew's prefixes.

    Returns:
        The binaries, or None when either is missing.
    """
    explicit = os.environ.get(ENV_MYSQL_BINDIR)
    if explicit:
        dirs = [explicit]
    else:
        dirs = [*os.environ.get("PATH", "").split(os.pathsep), *_SEARCH]
        for pattern in _SEARCH_GLOBS:
            dirs.extend(str(p) for p in sorted(Path("/").glob(pattern.lstrip("/"))))
    found: dict[str, Path] = {}
    for kind, names in (("server", _SERVERS), ("installer", _INSTALLERS)):
        hits = (Path(d) / name for d in dirs for name in names)
        hit = next((path for path in hits if _executable(path)), None)
        if hit is not None:
            found[kind] = hit
    if len(found) < 2:
        return None
    return MariaDBBinaries(found["server"], found["installer"])


# -- a throwaway server ------------------------------------------------------------------------
class LocalMariaDBServer(ThrowawayServer):
    """A throwaway MariaDB server run from the server binaries of this machine.

    ``start()`` runs ``mariadb-install-db`` into a new temporary directory (root may log in
    from 127.0.0.1 without a password), then ``mariadbd`` on a free port of 127.0.0.1 with its
    socket in that directory, the binary log off and InnoDB's log flushed lazily, and creates the
    test database; ``stop()`` kills the server and deletes the directory. As root the server runs
    as an unprivileged user (``STRUCTUM_TEST_MARIADB_OS_USER``, else ``mysql`` or ``nobody``).

    Args:
        binaries: Where ``mariadbd`` and ``mariadb-install-db`` are (default: found by
            :func:`find_mariadb_binaries`).
        database: Database created for the tests.
        base_dir: Where the temporary directory goes (default: ``STRUCTUM_TEST_MARIADB_TMPDIR``,
            else the system temporary directory).
        start_timeout: Seconds to wait for the server to accept connections.

    Attributes:
        timings: Seconds spent in ``install`` and ``start`` (after ``start()``).
    """

    __module__ = _PUBLIC
    dir_prefix = "structum-mariadb-"
    env_prefix = "MYSQL"
    os_user_env = ENV_MYSQL_OS_USER
    os_users = ("mysql", "nobody")
    tmpdir_env = ENV_MYSQL_TMPDIR
    log_name = "server.log"

    # Small and lazy: the data is thrown away, and eight test servers must not cost 1 GB.
    _SETTINGS = (
        "--skip-name-resolve",
        "--innodb-log-file-size=8M",
        "--innodb-buffer-pool-size=32M",
    )

    def __init__(
        self,
        *,
        binaries: MariaDBBinaries | None = None,
        database: str = "structum_test",
        base_dir: Path | str | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        found = binaries or find_mariadb_binaries()
        if found is None:
            raise ClusterError(
                "no MariaDB server binaries (mariadbd, mariadb-install-db) found; install them "
                f"(e.g. apt-get install mariadb-server) or set {ENV_MYSQL_BINDIR}"
            )
        super().__init__(base_dir=base_dir, start_timeout=start_timeout)
        self.binaries = found
        self.database = database
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = f"running on 127.0.0.1:{self.port}" if self._running else "stopped"
        return f"<LocalMariaDBServer {self.binaries.server} {state}>"

    @property
    def data_dir(self) -> Path:
        """The server's data directory."""
        return self._dir() / "data"

    @property
    def socket_path(self) -> Path:
        """The server's unix socket."""
        return self._dir() / "mysqld.sock"

    @property
    def url(self) -> str:
        """``mysql://root@127.0.0.1:<port>/<database>`` (root has no password)."""
        if not self._running:
            raise ClusterError("the MariaDB server is not running; call start() first")
        return f"mysql://root@127.0.0.1:{self.port}/{self.database}"

    def version(self) -> str:
        """The server version, e.g. ``10.11.6``."""
        out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
            [str(self.binaries.server), "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        match = re.search(r"Ver\s+(\d+(?:\.\d+)*)", out.stdout)
        return match.group(1) if match else out.stdout.strip()

    def _create(self) -> None:
        began = time.perf_counter()
        self._run(
            [
                str(self.binaries.installer),
                "--no-defaults",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *self._SETTINGS,
            ],
            as_server=True,
            timeout=120,
        )
        self.timings["install"] = time.perf_counter() - began
        init = self._dir() / "init.sql"
        # Run by the server itself before it accepts connections: no client needed.
        init.write_text(f"CREATE DATABASE IF NOT EXISTS `{self.database}`;\n")
        os.chmod(init, 0o644)
        for attempt in range(3):
            # A free port can be taken by someone else before the server binds it: retry.
            self.port = free_port()
            began = time.perf_counter()
            if self._start_server(init):
                self.timings["start"] = time.perf_counter() - began
                self._started()
                return
            if attempt == 2 or "Address already in use" not in self._log_tail():
                raise ClusterError(f"mariadbd did not start{self._log_tail()}")

    def _start_server(self, init: Path) -> bool:
        """Start ``mariadbd``; True once it accepts connections, False if it exited."""
        log = self._dir() / self.log_name
        log.touch()
        if self._run_as is not None:
            os.chown(log, self._run_as.pw_uid, self._run_as.pw_gid)
        self._process = subprocess.Popen(  # noqa: S603 - argv list of a located binary
            [
                str(self.binaries.server),
                "--no-defaults",
                f"--datadir={self.data_dir}",
                f"--socket={self.socket_path}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self._dir() / 'mysqld.pid'}",
                f"--log-error={log}",
                f"--init-file={init}",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
                *self._SETTINGS,
            ],
            cwd=str(self._dir()),
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the test run is ours to handle, not the server's
            **self._as_server(),
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            # The server logs this once the init file ran and the port is open.
            if "ready for connections" in log.read_text(errors="replace"):
                return True
            time.sleep(0.05)
        self._kill()
        raise ClusterError(f"mariadbd did not accept connections within {self.start_timeout:g}s")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()  # the data is thrown away: no shutdown needed
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)

    def _stop_server(self) -> None:
        self._kill()

    def stop(self) -> None:
        """Kill the server (the data is thrown away) and delete its directory."""
        self._kill()  # also a server that never became ready
        super().stop()
