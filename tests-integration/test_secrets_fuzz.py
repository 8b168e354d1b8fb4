"""A password of any shape never shows (issue #11): a property test over passwords and URL shapes.

Passwords are generated from every character class (letters, digits, spaces and a trailing
space, ``%``, ``#``, ``@``, ``/``, ``;``, ``&``, quotes, backslash, ``:``, ``?``, ``=``,
non-ASCII). Each one is written into every shape a configuration may hold (URLs encoded and not,
query-string passwords, libpq keyword strings quoted and not, URLs that do not parse,
``connect_args``) and handed to every backend, pointing at a closed port or at a database that
does not exist. Everything a user or a tool sees is then searched for the password in each form
it may take in text (raw, stripped, percent-encoded, ``repr``- and JSON-escaped, libpq-quoted):
``repr(db)``, ``db.url``, ``db.name``, the error raised on connect with its whole exception chain
(messages, attributes, the driver frames' local variables), health results, log records,
``structum-db`` output and the FastAPI readiness body.

The test counts the shapes it tried and the leaks it found; the summary line is printed (run
with ``-s``), and any leak fails the test with the place it was seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import string
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    AsyncSQLAlchemyDatabase,
    DatabaseError,
    PostgresDatabase,
    SQLAlchemyDatabase,
)
from structum_lab.plugins.database.cli import main as cli_main
from structum_lab.plugins.database.secrets import mask_text, mask_url, url_secrets

HERE = str(Path(__file__).resolve())

# Every character class a password may hold.
CLASSES = {
    "letters": string.ascii_letters,
    "digits": string.digits,
    "space": " ",
    "percent": "%",
    "hash": "#",
    "at": "@",
    "slash": "/",
    "semicolon": ";",
    "ampersand": "&",
    "quote": "'",
    "double-quote": '"',
    "backslash": "\\",
    "colon": ":",
    "question": "?",
    "equals": "=",
    "non-ascii": "éüßñ€中😀",
}
SPECIAL = "".join(v for k, v in CLASSES.items() if k not in ("letters", "digits"))


def passwords() -> st.SearchStrategy[str]:
    """Special characters around a random core, sometimes with a trailing space.

    The 8-character core makes any partial leak that includes it detectable too.
    """
    core = st.text(string.ascii_letters + string.digits, min_size=8, max_size=8)
    noise = st.text("".join(CLASSES.values()), max_size=6)
    return st.builds(
        lambda a, c, b, trailing: f"{a}Z{c}{b}" + (" " if trailing else ""),
        noise,
        core,
        noise,
        st.booleans(),
    )


def libpq_quoted(password: str) -> str:
    return "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"


# name -> (url, connect_args) for a password, a host, a port and a database name.
Shape = Callable[[str, str, int, str], tuple[str, dict[str, Any]]]
PG_SHAPES: dict[str, Shape] = {
    "url-raw": lambda pw, h, p, d: (f"postgresql://app:{pw}@{h}:{p}/{d}", {}),
    "url-encoded": lambda pw, h, p, d: (f"postgresql://app:{quote(pw, safe='')}@{h}:{p}/{d}", {}),
    "url-plus-encoded": lambda pw, h, p, d: (f"postgres://app:{quote_plus(pw)}@{h}:{p}/{d}", {}),
    "query-encoded": lambda pw, h, p, d: (
        f"postgresql://app@{h}:{p}/{d}?password={quote(pw, safe='')}&sslmode=disable",
        {},
    ),
    "query-raw": lambda pw, h, p, d: (
        f"postgresql://app@{h}:{p}/{d}?sslmode=disable&password={pw}",
        {},
    ),
    "keywords-quoted": lambda pw, h, p, d: (
        f"host={h} port={p} user=app password={libpq_quoted(pw)} dbname={d}",
        {},
    ),
    "keywords-raw": lambda pw, h, p, d: (
        f"host={h} port={p} user=app password={pw} dbname={d}",
        {},
    ),
    "broken-single-slash": lambda pw, h, p, d: (f"postgresql:/app:{pw}@{h}:{p}/{d}", {}),
    "broken-no-colon": lambda pw, h, p, d: (f"postgresql//app:{pw}@{h}:{p}/{d}", {}),
    "broken-no-scheme": lambda pw, h, p, d: (f"notascheme:{pw}", {}),
    "connect-args": lambda pw, h, p, d: (
        f"postgresql://app@{h}:{p}/{d}",
        {"connect_args": {"password": pw, "sslpassword": pw}},
    ),
}
MYSQL_SHAPES: dict[str, Shape] = {
    "mysql-url-raw": lambda pw, h, p, d: (f"mysql://app:{pw}@{h}:{p}/{d}", {}),
    "mysql-url-encoded": lambda pw, h, p, d: (f"mysql://app:{quote(pw, safe='')}@{h}:{p}/{d}", {}),
    "mysql-connect-args": lambda pw, h, p, d: (
        f"mysql://app@{h}:{p}/{d}",
        {"connect_args": {"password": pw}},
    ),
}


def forms(password: str) -> set[str]:
    """How the password (or its distinctive core) may appear in text."""
    raw = {password, password.strip()}
    out = set(raw)
    for text in raw:
        out |= {quote(text, safe=""), quote(text), quote_plus(text), libpq_quoted(text)[1:-1]}
    for text in list(out):
        out |= {
            repr(text)[1:-1],
            json.dumps(text)[1:-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
        }
        out.add(repr(text.encode("utf-8"))[2:-1])
    core = password[password.index("Z") : password.index("Z") + 9]
    out.add(core)
    return {f for f in out if len(f) >= 6}


@dataclass
class Tally:
    shapes: int = 0
    checks: int = 0
    leaks: list[str] = field(default_factory=list)

    def check(self, password: str, where: str, text: str) -> None:
        self.checks += 1
        for form in forms(password):
            if form in text:
                at = text.index(form)
                self.leaks.append(f"{where}: {form!r} in …{text[max(0, at - 60) : at + 60]!r}…")
                return


TALLY = Tally()


def exception_texts(exc: BaseException) -> Iterator[tuple[str, str]]:
    """What an error tracker serialises: each chained exception's text, attributes and frames."""
    yield "traceback", "".join(traceback.format_exception(exc))
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        name = type(current).__name__
        yield f"{name} repr", repr(current)
        yield f"{name} attributes", repr(getattr(current, "__dict__", {}))
        if not isinstance(current, DatabaseError):
            # The driver's frames: their local variables are what Sentry-style tools show.
            # (Our own frames between the caller and the raise hold the caller's arguments,
            # the URL among them, as every Python frame does; that is documented.)
            tb = current.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code.co_filename != HERE:
                    for key, value in tb.tb_frame.f_locals.items():
                        with contextlib.suppress(Exception):
                            yield f"{name} frame local {key}", repr(value)
                tb = tb.tb_next
        pending += [current.__cause__, current.__context__]
        pending += [
            v for v in getattr(current, "__dict__", {}).values() if isinstance(v, BaseException)
        ]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def captured_logs() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _options(cls: type[Any]) -> dict[str, Any]:
    if cls in (PostgresDatabase, AsyncPostgresDatabase):
        return {"pool_size": 1, "min_size": 0, "timeout": 0.3}
    return {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3}


def exercise_sync(
    cls: type[Any], url: str, extra: dict[str, Any], seen: Callable[[str, str], None]
) -> None:
    try:
        db = cls(url, **_options(cls), **extra)
    except Exception as exc:
        seen(
            "constructor error type",
            "" if isinstance(exc, DatabaseError) else f"not a DatabaseError: {exc!r}",
        )
        for where, text in exception_texts(exc):
            seen(f"constructor {where}", text)
        return
    try:
        seen("repr", repr(db))
        seen("url", str(db.url))
        seen("name", str(db.name))
        try:
            with db.transaction() as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            seen(
                "connect error type",
                "" if isinstance(exc, DatabaseError) else f"not a DatabaseError: {exc!r}",
            )
            for where, text in exception_texts(exc):
                seen(f"connect {where}", text)
        health = db.health_check()
        seen("health", repr(health) + json.dumps(health.to_dict(), default=str))
        seen("health+json", json.dumps(health.to_health_json(), default=str))
    finally:
        db.shutdown()


async def exercise_async(
    cls: type[Any], url: str, extra: dict[str, Any], seen: Callable[[str, str], None]
) -> None:
    try:
        db = cls(url, **_options(cls), **extra)
    except Exception as exc:
        seen(
            "constructor error type",
            "" if isinstance(exc, DatabaseError) else f"not a DatabaseError: {exc!r}",
        )
        for where, text in exception_texts(exc):
            seen(f"constructor {where}", text)
        return
    try:
        seen("repr", repr(db))
        seen("url", str(db.url))
        seen("name", str(db.name))
        try:
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:
            seen(
                "connect error type",
                "" if isinstance(exc, DatabaseError) else f"not a DatabaseError: {exc!r}",
            )
            for where, text in exception_texts(exc):
                seen(f"connect {where}", text)
        health = await db.health_check()
        seen("health", repr(health) + json.dumps(health.to_dict(), default=str))
    finally:
        await db.shutdown()


SYNC = [PostgresDatabase, SQLAlchemyDatabase]
ASYNC = [AsyncPostgresDatabase, AsyncSQLAlchemyDatabase]


@dataclass
class Targets:
    closed: tuple[str, int, str]
    missing_pg: tuple[str, int, str]
    mysql: tuple[str, int, str] | None


@pytest.fixture(scope="module")
def targets() -> Targets:
    pg = urlsplit(
        os.environ.get("STRUCTUM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/x")
    )
    my = os.environ.get("STRUCTUM_TEST_MYSQL_URL")
    mysql = None
    if my:
        parts = urlsplit(my)
        mysql = (parts.hostname or "127.0.0.1", parts.port or 3306, "structum_no_such_db")
    return Targets(
        closed=("127.0.0.1", 1, "db"),
        missing_pg=(pg.hostname or "127.0.0.1", pg.port or 5432, "structum_no_such_db"),
        mysql=mysql,
    )


def _run_all(password: str, targets: Targets) -> None:
    def seen_for(label: str) -> Callable[[str, str], None]:
        def seen(where: str, text: str) -> None:
            if where.endswith("error type") and text:
                TALLY.leaks.append(f"{label} {where}: {text}")
                return
            TALLY.check(password, f"{label} {where}", text)

        return seen

    with captured_logs() as logs:
        for target_name, (host, port, dbname) in (
            ("closed-port", targets.closed),
            ("missing-db", targets.missing_pg),
        ):
            for shape, make in PG_SHAPES.items():
                url, extra = make(password, host, port, dbname)
                for cls in SYNC:
                    TALLY.shapes += 1
                    exercise_sync(
                        cls, url, extra, seen_for(f"{cls.__name__} {shape} {target_name}")
                    )
                for cls in ASYNC:
                    TALLY.shapes += 1
                    asyncio.run(
                        exercise_async(
                            cls, url, extra, seen_for(f"{cls.__name__} {shape} {target_name}")
                        )
                    )
        mysql_targets = [("closed-port", targets.closed)]
        if targets.mysql:
            mysql_targets.append(("missing-db", targets.mysql))
        for target_name, (host, port, dbname) in mysql_targets:
            for shape, make in MYSQL_SHAPES.items():
                url, extra = make(password, host, port, dbname)
                TALLY.shapes += 1
                exercise_sync(
                    SQLAlchemyDatabase,
                    url,
                    extra,
                    seen_for(f"SQLAlchemyDatabase {shape} {target_name}"),
                )
                TALLY.shapes += 1
                asyncio.run(
                    exercise_async(
                        AsyncSQLAlchemyDatabase,
                        url,
                        extra,
                        seen_for(f"AsyncSQLAlchemyDatabase {shape} {target_name}"),
                    )
                )
    for line in logs.lines:
        TALLY.check(password, "log record", line)


# Every character class at once, then random ones (each example: ~100 shapes x backends, about
# 20 s on a busy 2-core machine, so CI runs a few; raise STRUCTUM_FUZZ_EXAMPLES for more).
EVERYTHING = f"{SPECIAL} Zeverything "
EXAMPLES = int(os.environ.get("STRUCTUM_FUZZ_EXAMPLES", "3"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(password=EVERYTHING)
@example(password="@Zhostname:/")  # libpq reads the first "@": a piece becomes a host name
@given(password=passwords())
def test_no_backend_shows_the_password(password: str, targets: Targets) -> None:
    before = len(TALLY.leaks)
    _run_all(password, targets)
    assert TALLY.leaks[before:] == []


# One password per character class, and one with all of them, for the slower surfaces.
FIXED = [f"{chars[:3]}Zfix{name[:4]:x<4}{chars[-2:]}" for name, chars in CLASSES.items()] + [
    EVERYTHING
]


def _cli(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        cli_main(list(argv))
    return out.getvalue() + err.getvalue()


@pytest.mark.parametrize("password", FIXED)
def test_cli_and_readiness_never_show_the_password(password: str, targets: Targets) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from structum_lab.plugins.database.fastapi import (
        database_lifespan,
        health_router,
    )

    before = len(TALLY.leaks)
    host, port, dbname = targets.missing_pg
    with captured_logs() as logs:
        for shape, make in PG_SHAPES.items():
            url, extra = make(password, host, port, dbname)
            if extra:
                continue  # the CLI takes a URL
            TALLY.shapes += 1
            # The SQLAlchemy backend fails fast on a refused login; PostgresDatabase waits for
            # its pool timeout (5 s in the CLI), so it runs `info` (no connection) here and the
            # connection errors of the psycopg backend are covered above.
            for argv in (("health", "--json"), ("info",), ("exec", "SELECT 1")):
                text = _cli(*argv, "--url", url, "--backend", "sqlalchemy")
                TALLY.check(password, f"structum-db {argv[0]} sqlalchemy {shape}", text)
            text = _cli("info", "--url", url, "--backend", "postgres")
            TALLY.check(password, f"structum-db info postgres {shape}", text)
            for detail in ("status", "full"):
                try:
                    db = PostgresDatabase(url, **_options(PostgresDatabase))
                except DatabaseError:
                    continue
                app = FastAPI(lifespan=database_lifespan(db))
                app.include_router(health_router(detail=detail))
                try:
                    with TestClient(app) as client:
                        response = client.get("/health/ready")
                finally:
                    # No pool may outlive the test: psycopg_pool's threads draw from the global
                    # random module, which Hypothesis in other tests watches.
                    db.shutdown()
                TALLY.check(password, f"readiness detail={detail} {shape}", response.text)
    for line in logs.lines:
        TALLY.check(password, "log record", line)
    assert TALLY.leaks[before:] == []


@settings(max_examples=300, deadline=None)
@given(password=passwords(), prefix=st.sampled_from(["", "error: ", "cannot use '", "x\n"]))
def test_masking_functions_on_every_shape(password: str, prefix: str) -> None:
    """The pure rules, on many more passwords: the masked forms of every shape, in free text too."""
    before = len(TALLY.leaks)
    for shape, make in {**PG_SHAPES, **MYSQL_SHAPES}.items():
        url, extra = make(password, "db.example.com", 5432, "app")
        if extra:
            TALLY.shapes += 1
            TALLY.check(password, f"mask_text {shape}", mask_text(repr(extra), [password]))
            continue
        TALLY.shapes += 1
        TALLY.check(password, f"mask_url {shape}", mask_url(url))
        TALLY.check(
            password, f"mask_text+secrets {shape}", mask_text(f"{prefix}{url}'", url_secrets(url))
        )
    assert TALLY.leaks[before:] == []


def test_zz_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Report the counts (last in this module; run with -s to see them)."""
    with capsys.disabled():
        print(
            f"\nsecrets fuzz: {TALLY.shapes} shapes tried, {TALLY.checks} texts checked, "
            f"{len(TALLY.leaks)} leaks found"
        )
    assert TALLY.leaks == []
