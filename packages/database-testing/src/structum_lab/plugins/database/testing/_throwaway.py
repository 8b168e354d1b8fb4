"""What the throwaway local servers (PostgreSQL cluster, MariaDB server) have in common.

A throwaway server lives in a new temporary directory, listens on a free port of 127.0.0.1, runs
as an unprivileged account when we are root (PostgreSQL and MariaDB both refuse root), and is
stopped and deleted at the end (or at interpreter exit).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from typing_extensions import Self

_PUBLIC = "structum_lab.plugins.database.testing"


class ClusterError(RuntimeError):
    """A throwaway local server (PostgreSQL cluster, MariaDB) could not be created or started."""

    __module__ = _PUBLIC


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (the caller retries if it is taken meanwhile)."""
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


def unprivileged_account(env: str, preferred: Sequence[str]) -> pwd.struct_passwd:
    """The account a root process runs a server as: ``$env``, else ``preferred``, else created."""
    wanted = os.environ.get(env)
    names = [wanted] if wanted else list(preferred)
    for name in names:
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        if account.pw_uid != 0:
            return account
    if wanted:
        raise ClusterError(f"{env}={wanted!r} is not an unprivileged user of this machine")
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ClusterError(
            "running as root, the server needs an unprivileged user and none was found "
            f"({', '.join(preferred)}); create one and set {env}"
        )
    subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "structum-pg"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("structum-pg")


class ThrowawayServer:
    """Base of the throwaway servers: directory, account, commands, log, stop, context manager.

    Subclasses set the class attributes and implement ``_create`` (everything ``start()`` does
    once the directory exists) and ``_stop_server``.
    """

    #: Prefix of the temporary directory.
    dir_prefix = "structum-"
    #: Environment variables starting with this are dropped from the commands' environment.
    env_prefix = ""
    #: Environment variable naming the account to run as (as root).
    os_user_env = ""
    #: Accounts tried in order when ``os_user_env`` is not set.
    os_users: tuple[str, ...] = ("nobody",)
    #: Environment variable naming where the temporary directory goes.
    tmpdir_env = ""
    #: The server's log file, inside the directory.
    log_name = "server.log"

    def __init__(self, *, base_dir: Path | str | None, start_timeout: float) -> None:
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.dir: Path | None = None
        self.timings: dict[str, float] = {}
        self._run_as: pwd.struct_passwd | None = None
        self._running = False

    @property
    def startup_seconds(self) -> float:
        """Total seconds ``start()`` took."""
        return sum(self.timings.values())

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped since."""
        return self._running

    def _dir(self) -> Path:
        if self.dir is None:
            raise ClusterError("the server has no directory yet; call start() first")
        return self.dir

    def _base(self) -> str:
        base = self.base_dir or os.environ.get(self.tmpdir_env) or tempfile.gettempdir()
        if self._run_as is not None and not _world_traversable(Path(base)):
            # The unprivileged server must reach its directory through every parent.
            if _world_traversable(Path("/tmp")):  # noqa: S108 - a private mkdtemp below it
                return "/tmp"  # noqa: S108
            raise ClusterError(
                f"{base} is not reachable by the unprivileged user {self._run_as.pw_name}; "
                f"set {self.tmpdir_env} to a directory every user can traverse"
            )
        return str(base)

    def _env(self) -> dict[str, str]:
        # The caller's client variables (PGHOST, MYSQL_HOST...) must not redirect our commands.
        env = {k: v for k, v in os.environ.items() if not k.startswith(self.env_prefix)}
        env.update(LC_ALL="C", LANG="C")
        return env

    def _as_server(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a command as the server's account (when root)."""
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def _mkdir(self, path: Path) -> Path:
        """Create ``path`` owned by the server's account."""
        path.mkdir(exist_ok=True)
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        return path

    def _run(self, args: list[str], *, as_server: bool, timeout: float) -> str:
        try:
            out = subprocess.run(  # noqa: S603 - argv list of a located binary, no shell
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=str(self._dir()),
                env=self._env(),
                check=False,
                **(self._as_server() if as_server else {}),
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
            text = (self._dir() / self.log_name).read_text(errors="replace")
        except (OSError, ClusterError):
            return ""
        lines = text.splitlines()[-15:]
        return "\nserver log:\n" + "\n".join(lines) if lines else ""

    def start(self) -> Self:
        """Create and start the server in a new temporary directory.

        Raises:
            ClusterError: A step failed; the message carries its output and the server log.
        """
        if self._running:
            return self
        if os.geteuid() == 0:
            self._run_as = unprivileged_account(self.os_user_env, self.os_users)
        self.dir = Path(tempfile.mkdtemp(prefix=self.dir_prefix, dir=self._base()))
        try:
            self._mkdir(self.dir)
            self._create()
        except BaseException:
            self.stop()
            raise
        return self

    def _started(self) -> None:
        """Called by ``_create`` once the server accepts connections."""
        self._running = True
        atexit.register(self.stop)

    def _create(self) -> None:
        raise NotImplementedError

    def _stop_server(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (at once: the data is thrown away) and delete its directory."""
        if self._running:
            self._running = False
            atexit.unregister(self.stop)
            self._stop_server()
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
