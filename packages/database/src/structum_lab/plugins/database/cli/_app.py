"""The argument parser and the ``health``, ``info`` and ``exec`` commands (``demo`` is in _demo)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ._output import Printer, format_table, mask_settings, secrets_in, to_json
from ._resolve import BACKENDS, CliError, Resolved, open_database, resolve
from ._version import __version__

__all__ = ["build_parser", "main"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_DEGRADED = 1  # health: degraded; exec/demo: the statement or a step failed
EXIT_FAILED = 1
EXIT_UNHEALTHY = 2  # health: unreachable; any command: bad usage, configuration, missing backend
EXIT_USAGE = 2

_DEFAULTS: dict[str, Any] = {
    "namespace": "database",
    "url": None,
    "backend": "auto",
    "root": None,
    "verbose": 0,
}
_DML = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(insert|update|delete|merge|replace)\b", re.I | re.S
)

_EPILOG = """\
exit status: 0 success (health: healthy), 1 degraded or the statement/step failed,
2 unhealthy, bad usage, configuration error or missing backend.

Settings are read from config/app/<namespace>.toml, config/.secrets.toml and
STRUCTUM_<NAMESPACE>__<KEY> variables (environment chosen by STRUCTUM_ENV), unless --url is given.
Passwords are never printed."""


def _common_options(*, suppress: bool) -> argparse.ArgumentParser:
    # Accepted before and after the command; only the top-level copy has defaults, so a value given
    # before the command is not reset by the subcommand's parser.
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("database selection")

    def default(name: str) -> Any:
        return argparse.SUPPRESS if suppress else _DEFAULTS[name]

    group.add_argument(
        "--namespace",
        metavar="NAME",
        default=default("namespace"),
        help="configuration namespace (default: database)",
    )
    group.add_argument(
        "--url",
        metavar="URL",
        default=default("url"),
        help="database URL to use instead of the configuration",
    )
    group.add_argument(
        "--backend",
        choices=["auto", *BACKENDS],
        default=default("backend"),
        help="auto (default): postgresql:// uses the psycopg backend when installed, "
        "anything else SQLAlchemy",
    )
    group.add_argument(
        "--root",
        metavar="PATH",
        default=default("root"),
        help="project folder holding config/ (default: the current directory)",
    )
    group.add_argument(
        "--verbose",
        "-v",
        action="count",
        default=default("verbose"),
        help="show library log messages: -v info, -vv debug (default: errors, and "
        "Structum warnings)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The ``structum-db`` argument parser (stdlib only: no backend is imported)."""
    parser = argparse.ArgumentParser(
        prog="structum-db",
        description="Check, inspect and try a Structum database.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options(suppress=True)

    health = commands.add_parser(
        "health",
        parents=[common],
        help="probe the database: exit 0 healthy, 1 degraded, 2 unhealthy",
        description="Run health_check() and report it. Exit 0 healthy, 1 degraded, 2 unhealthy.",
    )
    health.add_argument(
        "--json", action="store_true", help="print IETF health+json (status pass/warn/fail)"
    )
    health.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="report unhealthy when the check takes longer (default: 10)",
    )
    health.add_argument(
        "--degraded-latency-ms",
        type=_positive_float,
        default=None,
        metavar="MS",
        help="report degraded above this probe latency (default: the backend's threshold)",
    )

    info = commands.add_parser(
        "info",
        parents=[common],
        help="show the resolved settings (secrets masked), backend and pool",
        description="Show what the configuration resolves to (no query is run).",
    )
    info.add_argument("--json", action="store_true", help="print JSON")

    exe = commands.add_parser(
        "exec",
        parents=[common],
        help="run one SQL statement in a transaction and print the rows",
        description="Run one statement in a transaction (committed on success) and print the "
        "rows as a table. Placeholders are :name.",
    )
    exe.add_argument("sql", metavar="SQL", help='the statement, or "-" to read it from stdin')
    exe.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="bind :NAME to the string VALUE; NAME:=JSON binds a JSON value (1, true, null). "
        "Repeatable",
    )
    exe.add_argument("--json", action="store_true", help="print rows and rowcount as JSON")

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run the Quick Start end to end (embedded SQLite when no URL is configured)",
        description="Create a users table, insert with RETURNING, query it, use an ORM session, "
        "check health and show the pool. Uses the configured database, or an embedded SQLite "
        "file (./structum-demo.sqlite3) when the namespace has no url. Needs the SQLAlchemy "
        "backend.",
    )
    demo.add_argument(
        "--sqlite-file",
        metavar="PATH",
        default=None,
        help="SQLite file used when no URL is configured (default: ./structum-demo.sqlite3)",
    )
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``--param`` items into a mapping: ``name=text`` or ``name:=json``.

    Raises:
        CliError: An item is malformed (exit 2).
    """
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--param {item!r}: expected NAME=VALUE or NAME:=JSON")
        if name.endswith(":"):
            name = name[:-1]
            try:
                params[name.strip()] = json.loads(value)
            except ValueError:
                raise CliError(f"--param {name}:=...: the value is not valid JSON") from None
        else:
            params[name.strip()] = value
        if not name.strip().isidentifier():
            raise CliError(f"--param {item!r}: {name.strip()!r} is not a parameter name")
    return params


def _await_if_needed(value: Any) -> Any:
    # Async backends return coroutines; the CLI builds sync backends, but a registered custom
    # class may be async.
    if inspect.isawaitable(value):
        return asyncio.run(_awaited(value))
    return value


async def _awaited(value: Any) -> Any:
    return await value


def _shutdown(db: Any) -> None:
    _await_if_needed(db.shutdown())


def _run_with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` in a daemon thread; TimeoutError when it has not finished in ``timeout`` s.

    A blackholed host can hang a connect far longer than a probe should; the abandoned thread is
    a daemon, so it does not keep the process alive.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="structum-db-health", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _common(args: argparse.Namespace) -> tuple[str, str | None, str, str | None]:
    return args.namespace, args.url, args.backend, args.root


def cmd_health(args: argparse.Namespace, printer: Printer) -> int:
    """``structum-db health``."""
    from structum_lab.plugins.database import (  # noqa: PLC0415
        HealthResult,
        HealthStatus,
        HealthThresholds,
    )

    namespace, url, backend, root = _common(args)
    described = ""

    def check() -> HealthResult:
        nonlocal described
        resolved = resolve_masked(namespace, url, root, printer)
        db, _ = open_database(resolved, backend)
        described = f"{type(db).__name__} {getattr(db, 'url', '')}".strip()
        try:
            if args.degraded_latency_ms is not None:
                current = getattr(db, "health_thresholds", None) or HealthThresholds()
                db.health_thresholds = HealthThresholds(
                    degraded_latency_ms=args.degraded_latency_ms,
                    degraded_pool_usage=current.degraded_pool_usage,
                )
            result: HealthResult = _await_if_needed(db.health_check())
            return result
        finally:
            _shutdown(db)

    try:
        result = _run_with_timeout(check, args.timeout)
    except CliError as exc:
        result = HealthResult(HealthStatus.UNHEALTHY, str(exc), 0.0)
        if not args.json:
            printer.err(str(exc))
            return EXIT_UNHEALTHY
    except TimeoutError as exc:
        result = HealthResult(
            HealthStatus.UNHEALTHY, f"database unreachable: {exc}", args.timeout * 1000
        )

    if args.json:
        printer.out(to_json(result.to_health_json(component=namespace)))
    else:
        where = f" [{described}]" if described else ""
        printer.out(
            f"{namespace}: {result.status.value} in {result.latency_ms:.1f} ms: "
            f"{result.message}{where}"
        )
    return {
        HealthStatus.HEALTHY: EXIT_OK,
        HealthStatus.DEGRADED: EXIT_DEGRADED,
    }.get(result.status, EXIT_UNHEALTHY)


def resolve_masked(namespace: str, url: str | None, root: str | None, printer: Printer) -> Resolved:
    """:func:`resolve`, teaching ``printer`` every secret found in the settings."""
    resolved = resolve(namespace, url=url, root=root)
    printer.add_secrets(secrets_in(resolved.settings))
    if resolved.url:
        printer.add_secrets(secrets_in(resolved.url))
    return resolved


def _qualified(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def cmd_info(args: argparse.Namespace, printer: Printer) -> int:
    """``structum-db info``."""
    from structum_lab.plugins.database import mask_url  # noqa: PLC0415

    namespace, url, backend, root = _common(args)
    resolved = resolve_masked(namespace, url, root, printer)
    db, kwargs = open_database(resolved, backend)
    try:
        pool = dict(db.get_pool_info())
    finally:
        _shutdown(db)
    shown_url = getattr(db, "url", None) or mask_url(resolved.url)
    settings = mask_settings({k: v for k, v in kwargs.items() if k != "url"})
    report = {
        "namespace": namespace,
        "environment": resolved.env,
        "sources": [resolved.describe_source()] if resolved.from_option else resolved.sources,
        "backend": _qualified(type(db)),
        "url": mask_url(shown_url),
        "settings": settings,
        "pool": mask_settings(pool),
    }
    if args.json:
        printer.out(to_json(report))
        return EXIT_OK
    printer.out(f"namespace    {namespace}")
    if resolved.env:
        printer.out(f"environment  {resolved.env}")
    printer.out(f"sources      {resolved.describe_source()}")
    printer.out(f"backend      {report['backend']}")
    printer.out(f"url          {report['url']}")
    for title, values in (("settings", settings), ("pool", report["pool"])):
        printer.out(f"{title}{'' if values else '     (none)'}")
        width = max((len(str(k)) for k in values), default=0)
        for key, value in values.items():
            shown = json.dumps(value, default=str) if not isinstance(value, str) else value
            printer.out(f"  {key.ljust(width)}  {shown}")
    return EXIT_OK


def _rows_of(result: Any) -> tuple[list[dict[str, Any]], list[str] | None]:
    """All rows of ``result`` and its column names; no columns for a statement without rows.

    ``keys()`` (where the backend has it) tells a SELECT that found nothing, whose header is still
    shown, from a statement that returns no rows at all (DDL, plain DML).
    """
    from structum_lab.plugins.database import QueryError  # noqa: PLC0415

    keys = getattr(result, "keys", None)
    if callable(keys):
        columns = [str(k) for k in keys()]
        rows = [dict(row) for row in result.fetchall()] if columns else []
        return rows, columns or None
    try:
        rows = [dict(row) for row in result.fetchall()]
    except QueryError as exc:
        if exc.sqlstate:  # a real server error, not "this statement has no rows"
            raise
        return [], None
    return rows, (list(rows[0]) if rows else None)


def _read_sql(arg: str) -> str:
    """The statement: the argument, or standard input for ``-``; refuse text SQL cannot hold."""
    if arg != "-":
        sql = arg
    else:
        try:
            sql = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise CliError(
                f"standard input is not valid text in {exc.encoding} (byte {exc.start}); "
                "save the statement as UTF-8"
            ) from None
    where = "the statement read from standard input" if arg == "-" else "the statement"
    if (nul := sql.find("\0")) >= 0:
        # Drivers stop at a NUL: running the text before it would run a different statement.
        raise CliError(
            f"{where} contains a NUL character (offset {nul}); SQL text cannot hold one. "
            "Is the file UTF-16 or binary? Save it as UTF-8 text"
        )
    if any("\ud800" <= ch <= "\udfff" for ch in sql):
        raise CliError(f"{where} is not valid UTF-8 text; save it as UTF-8")
    if not sql.strip():
        raise CliError("no SQL statement given")
    return sql


def _check_params(sql: str, params: dict[str, Any]) -> None:
    """Name every ``:name`` of ``sql`` that no ``-p`` sets (before connecting)."""
    from structum_lab.plugins.database.params import find_named_placeholders  # noqa: PLC0415

    missing = [n for n in dict.fromkeys(find_named_placeholders(sql)) if n not in params]
    if missing:
        names = ", ".join(f":{name}" for name in missing)
        first = missing[0]
        raise CliError(
            f"the statement uses {names} but no value was given for "
            f"{'it' if len(missing) == 1 else 'them'}; pass -p {first}=TEXT "
            f"or -p {first}:=JSON for each",
            exit_code=EXIT_FAILED,
        )


def cmd_exec(args: argparse.Namespace, printer: Printer) -> int:
    """``structum-db exec``."""
    namespace, url, backend, root = _common(args)
    sql = _read_sql(args.sql)
    params = parse_params(args.param)
    _check_params(sql, params)
    resolved = resolve_masked(namespace, url, root, printer)
    db, _ = open_database(resolved, backend)
    try:
        with db.transaction() as conn:
            result = conn.execute(sql, params or None)
            rows, columns = _rows_of(result)
            rowcount = result.rowcount
    except Exception as exc:  # DatabaseError, or a driver error the backend did not wrap
        printer.err(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    finally:
        _shutdown(db)

    is_dml = bool(_DML.match(sql))
    if is_dml and columns:
        # With RETURNING every affected row comes back, and sqlite3 reports rowcount 0 until the
        # rows are read: count them instead.
        rowcount = len(rows)
    if args.json:
        printer.out(to_json({"columns": columns or [], "rows": rows, "rowcount": rowcount}))
        return EXIT_OK
    if columns:
        printer.out(format_table(rows, columns))
        printer.out(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    if is_dml:
        printer.out(f"{rowcount} row{'' if rowcount == 1 else 's'} affected")
    elif not columns:
        printer.out("OK")
    return EXIT_OK


class _MaskingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records on stderr, scrubbed by the printer; quiet by default.

    Without ``-v`` only errors (and Structum's own warnings) are shown: a pool retrying an
    unreachable server would otherwise bury the one line the command prints.
    """

    def __init__(self, printer: Printer, verbosity: int) -> None:
        super().__init__(sys.stderr)
        self._printer = printer
        self._verbosity = verbosity
        self.setFormatter(logging.Formatter("structum-db: %(name)s: %(levelname)s: %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        if self._verbosity >= 2:
            return True
        if self._verbosity == 1:
            return record.levelno >= logging.INFO
        if record.name.startswith("structum_lab"):
            return record.levelno >= logging.WARNING
        return record.levelno >= logging.ERROR

    def format(self, record: logging.LogRecord) -> str:
        return self._printer.clean(super().format(record))


@contextlib.contextmanager
def _logging(printer: Printer, verbosity: int) -> Iterator[None]:
    """Route library logging to stderr for the command's duration, unless the host set it up."""
    root = logging.getLogger()
    if root.handlers:  # embedded in an application (or a test run) that handles logging
        yield
        return
    handler = _MaskingHandler(printer, verbosity)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``structum-db`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Args:
        argv: The arguments, without the program name.

    Returns:
        0 on success (healthy), 1 degraded or failed statement/step, 2 unhealthy, bad usage,
        configuration error or missing backend.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    printer = Printer()
    if args.url:
        printer.add_secrets(secrets_in(args.url))
    try:
        with _logging(printer, args.verbose):
            return _dispatch(args, printer)
    except CliError as exc:
        printer.err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        printer.err("interrupted")
        return 130
    except BrokenPipeError:
        # `structum-db ... | head`: the reader left. Point stdout at devnull so that the
        # interpreter's final flush does not raise again (Python docs, "Note on SIGPIPE").
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace, printer: Printer) -> int:
    if args.command == "demo":
        try:
            from ._demo import cmd_demo  # noqa: PLC0415 - imports SQLAlchemy
        except ImportError as exc:
            raise CliError(
                f"the demo needs SQLAlchemy ({exc}); run: "
                'pip install "structum-database[sqlalchemy]"'
            ) from exc
        return cmd_demo(args, printer)
    commands: dict[str, Callable[[argparse.Namespace, Printer], int]] = {
        "health": cmd_health,
        "info": cmd_info,
        "exec": cmd_exec,
    }
    return commands[args.command](args, printer)
