"""URLs and drivers: scheme aliases, default drivers for each twin, install hints."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import URL, make_url

from structum_lab.plugins.database.errors import (
    ConfigurationError,
)
from structum_lab.plugins.database.secrets import mask_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "SUPPORTED_SCHEMES",
    "connect_arguments",
    "driver_hint",
    "multihost_as_query",
    "pgbouncer_connect_args",
    "resolve_url",
]

_DIST = "structum-database-sqlalchemy"


# scheme -> (sync driver, async driver) used when the URL names none.
_DEFAULT_DRIVERS: dict[str, tuple[str, str]] = {
    "postgresql": ("psycopg", "psycopg"),
    "mysql": ("pymysql", "aiomysql"),
    "mariadb": ("pymysql", "aiomysql"),
    "sqlite": ("pysqlite", "aiosqlite"),
}
_SCHEME_ALIASES = {"postgres": "postgresql"}
# importable driver module -> extra of structum-database-sqlalchemy that installs it
_DRIVER_EXTRAS = {
    "psycopg": "postgresql",
    "psycopg_binary": "postgresql",
    "pymysql": "mysql",
    "aiomysql": "mysql",
    "aiosqlite": "sqlite-async",
}
SUPPORTED_SCHEMES = (
    "postgresql:// (or postgres://), mysql://, mariadb://, sqlite://; or any SQLAlchemy URL that "
    "names its driver, e.g. mssql+pyodbc://, oracle+oracledb://"
)


def driver_hint(module: str) -> str:
    """The command that installs the DBAPI driver ``module`` (e.g. ``pymysql``)."""
    top = module.split(".", maxsplit=1)[0]
    extra = _DRIVER_EXTRAS.get(top)
    if extra:
        return f'pip install "{_DIST}[{extra}]"'
    if top == "sqlite3":
        return "a Python built with the sqlite3 module (install your OS's libsqlite3 development files and rebuild Python)"  # noqa: E501
    return f"pip install {top}"


def resolve_url(url: str, *, is_async: bool) -> URL:
    """Parse ``url`` and pick the driver Structum uses for its scheme.

    ``postgresql://`` gets psycopg 3 (sync and async), ``mysql://``/``mariadb://`` PyMySQL (sync)
    or aiomysql (async), ``sqlite://`` sqlite3 (sync) or aiosqlite (async). A ``+driver`` in the
    URL is kept.

    Raises:
        ConfigurationError: The URL cannot be parsed, its scheme is unknown, or its driver does not
            match the sync/async flavour of the database class.
    """
    parsed: URL | None = None
    with contextlib.suppress(sa_exc.ArgumentError, ValueError, TypeError):
        parsed = make_url(multihost_as_query(url))
    if parsed is None:
        # Raised outside the failed parse, so that no exception whose frames hold the URL is
        # chained to it.
        raise ConfigurationError(
            f"cannot parse the database URL {mask_url(url)!r}; expected "
            "dialect[+driver]://user:password@host:port/dbname, e.g. "
            "postgresql://app:secret@localhost:5432/app (percent-encode special characters "
            "of the password: urllib.parse.quote(password, safe=''))",
            key="url",
        )
    backend, _, driver = parsed.drivername.partition("+")
    backend = _SCHEME_ALIASES.get(backend, backend)
    if not driver and backend in _DEFAULT_DRIVERS:
        driver = _DEFAULT_DRIVERS[backend][1 if is_async else 0]
    parsed = parsed.set(drivername=f"{backend}+{driver}" if driver else backend)
    try:
        dialect_cls = parsed.get_dialect()
    except sa_exc.NoSuchModuleError:
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r} in {mask_url(url)!r}; "
            f"supported: {SUPPORTED_SCHEMES}",
            key="url",
        ) from None
    if is_async:
        dialect_cls = dialect_cls.get_async_dialect_cls(parsed)
    if bool(getattr(dialect_cls, "is_async", False)) != is_async:
        other = "SQLAlchemyDatabase" if not is_async else "AsyncSQLAlchemyDatabase"
        flavour = "an asyncio" if not is_async else "a blocking"
        raise ConfigurationError(
            f"the driver of {mask_url(url)!r} ({parsed.drivername}) is {flavour} driver; use "
            f"{'AsyncSQLAlchemyDatabase' if not is_async else 'SQLAlchemyDatabase'} with it, or "
            f"a URL without '+driver' so that {other} picks a matching one",
            key="url",
        )
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    )


def multihost_as_query(url: str) -> str:
    """Libpq's multi-host form as SQLAlchemy's: ``h1:5432,h2:5432`` → ``?host=h1:5432&host=...``.

    ``postgresql://app@h1:5432,h2:5432/app?target_session_attrs=read-write`` does not parse as a
    SQLAlchemy URL; SQLAlchemy 2.0 takes the hosts as repeated ``host`` query parameters and
    hands them to psycopg as libpq's ``host=h1,h2 port=5432,5432``, so failover and
    ``target_session_attrs`` work as with libpq. Other URLs are returned unchanged.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in ("postgresql", "postgres"):
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    if "," not in hosts:
        return url
    path, _, query = tail.partition("?")
    extra = "&".join(f"host={host}" for host in hosts.split(",") if host)
    query = f"{extra}&{query}" if query else extra
    return f"{scheme}://{userinfo}{at}{path or '/'}?{query}"


def pgbouncer_connect_args(url: URL, connect_args: dict[str, Any], owner: str) -> dict[str, Any]:
    """``connect_args`` for PgBouncer in transaction mode: no server-side prepared statements.

    A prepared statement lives in one server session, which transaction pooling hands to
    another client after each transaction.

    Raises:
        ConfigurationError: The URL is not a PostgreSQL one (PgBouncer speaks PostgreSQL).
    """
    if url.get_backend_name() != "postgresql":
        raise ConfigurationError(
            f"{owner}: pgbouncer=True is for PostgreSQL URLs, not {url.get_backend_name()}",
            key="pgbouncer",
        )
    driver = url.get_driver_name()
    if driver == "asyncpg":
        connect_args.setdefault("statement_cache_size", 0)
        connect_args.setdefault("prepared_statement_cache_size", 0)
    elif driver == "psycopg":
        connect_args["prepare_threshold"] = None
    return connect_args


#: Seconds a new connection may take before the attempt fails (``connect_timeout``).
DEFAULT_CONNECT_TIMEOUT = 5.0

# The connect argument each driver reads its connect timeout from, and whether it counts whole
# seconds (libpq: 2 at least).
_CONNECT_TIMEOUT_ARGS: dict[str, tuple[str, bool]] = {
    "psycopg": ("connect_timeout", True),
    "psycopg_async": ("connect_timeout", True),
    "pymysql": ("connect_timeout", False),
    "aiomysql": ("connect_timeout", False),
    "asyncpg": ("timeout", False),
}


def connect_arguments(url: URL, connect_timeout: float | None, *, is_async: bool) -> dict[str, Any]:
    """Driver connect arguments our settings add (``connect_args`` given by the user win).

    ``connect_timeout`` in the driver's own words, unless the URL already sets it; on the async
    psycopg driver, a connection class whose cancellation returns at once (core
    ``wait_or_abandon``).
    """
    args: dict[str, Any] = {}
    driver = url.get_driver_name()
    known = _CONNECT_TIMEOUT_ARGS.get(driver)
    if connect_timeout is not None and known is not None and known[0] not in url.query:
        key, whole = known
        args[key] = max(2, math.ceil(connect_timeout)) if whole else connect_timeout
    if is_async and driver in ("psycopg", "psycopg_async"):
        args["async_creator_fn"] = _prompt_cancel_connect()
    return args


@functools.cache
def _prompt_cancel_connect() -> Any:
    import psycopg  # noqa: PLC0415 - only with the psycopg driver

    from structum_lab.plugins.database._deadlines import wait_or_abandon  # noqa: PLC0415

    class StructumAsyncConnection(psycopg.AsyncConnection[Any]):
        """psycopg's async connection, closed at once when cancelled mid-statement."""

        wait = wait_or_abandon

    return StructumAsyncConnection.connect
