"""``structum-db demo``: the Quick Start of the documentation, run end to end.

Imported only when the demo runs: it needs SQLAlchemy (the ORM step), imported at the top here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ._app import resolve_masked
from ._output import Printer
from ._resolve import CliError, Resolved, open_database

if TYPE_CHECKING:
    from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

__all__ = ["DEMO_FILE", "cmd_demo"]

DEMO_FILE = "structum-demo.sqlite3"

# id column per dialect; the rest of the users table is portable.
_ID_COLUMN = {
    "postgresql": "id SERIAL PRIMARY KEY",
    "mysql": "id INTEGER AUTO_INCREMENT PRIMARY KEY",
    "mariadb": "id INTEGER AUTO_INCREMENT PRIMARY KEY",
    "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
}
_USERS_DDL = (
    "CREATE TABLE IF NOT EXISTS users ({id}, username VARCHAR(50) NOT NULL, "
    "email VARCHAR(255) NOT NULL, created_at TIMESTAMP NOT NULL)"
)
_INSERT = (
    "INSERT INTO users (username, email, created_at) VALUES (:username, :email, CURRENT_TIMESTAMP)"
)
_QUERY = "SELECT * FROM users WHERE id = :user_id"


class _StepFailed(Exception):
    pass


class _DemoBase(DeclarativeBase):
    pass


class Note(_DemoBase):
    """The ORM model of the demo (its own table, so an existing ``users`` is never remapped)."""

    __tablename__ = "demo_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    text: Mapped[str] = mapped_column(String(200))


class _Demo:
    def __init__(self, db: SQLAlchemyDatabase, printer: Printer) -> None:
        self.db = db
        self.out = printer.out
        self.user_id: int | None = None
        self.steps = 0

    def step(self, title: str, action: Callable[[], str]) -> None:
        self.steps += 1
        self.out(f"[{self.steps}] {title}")
        start = time.perf_counter()
        try:
            outcome = action()
        except _StepFailed:
            raise
        except Exception as exc:
            raise _StepFailed(
                f"step {self.steps} ({title}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.out(f"    {outcome}  ({(time.perf_counter() - start) * 1000:.1f} ms)")

    # -- the Quick Start, step by step ------------------------------------------------------
    def create_table(self) -> str:
        dialect = self.db.engine.dialect.name
        ddl = _USERS_DDL.format(id=_ID_COLUMN.get(dialect, "id INTEGER PRIMARY KEY"))
        with self.db.transaction() as conn:
            conn.execute(ddl)
        return f"conn.execute('CREATE TABLE IF NOT EXISTS users (...)') -> ok ({dialect})"

    def insert(self) -> str:
        params = {"username": "john_doe", "email": "john@example.com"}
        returning = getattr(self.db.engine.dialect, "insert_returning", True)
        with self.db.transaction() as conn:
            if returning:
                result = conn.execute(_INSERT + " RETURNING id", params)
                row = result.fetchone()
                how = "RETURNING id"
            else:
                # MySQL has no RETURNING: ask for the id in the same transaction instead.
                conn.execute(_INSERT, params)
                row = conn.execute(
                    "SELECT MAX(id) AS id FROM users WHERE username = :username",
                    {"username": params["username"]},
                ).fetchone()
                how = "no RETURNING on this server; id read back"
        if row is None or row.get("id") is None:
            raise _StepFailed("the INSERT returned no id")
        self.user_id = int(row["id"])
        return f"Created user with ID: {self.user_id} ({how})"

    def query(self) -> str:
        with self.db.transaction() as conn:
            result = conn.execute(_QUERY, {"user_id": self.user_id})
            user = result.fetchone()
        if not user:
            raise _StepFailed(f"user {self.user_id} was inserted but not found")
        return f"Found user: {user['username']} <{user['email']}>"

    def orm(self) -> str:
        assert self.user_id is not None
        _DemoBase.metadata.create_all(self.db.engine)
        with self.db.get_session() as session:
            note = Note(user_id=self.user_id, text="written through db.get_session()")
            session.add(note)
            session.commit()
            count = session.scalar(select(func.count()).select_from(Note))
            again = session.get(Note, note.id)
        if again is None:
            raise _StepFailed("the ORM session did not find the note it committed")
        return (
            f"session.add(Note(...)); session.commit() -> note #{note.id}; "
            f"{count} note(s) in demo_notes"
        )

    def health(self) -> str:
        from structum_lab.plugins.database import HealthStatus  # noqa: PLC0415

        result = self.db.health_check()
        if result.status is HealthStatus.UNHEALTHY:
            raise _StepFailed(f"health check failed: {result.message}")
        return (
            f"Status: {result.status}  Message: {result.message}  "
            f"Latency: {result.latency_ms:.2f}ms"
        )

    def pool(self) -> str:
        info = self.db.get_pool_info()
        if info.get("checked_out"):
            raise _StepFailed(f"{info['checked_out']} connection(s) still checked out: {info}")
        return ", ".join(f"{key}={value}" for key, value in info.items())


def _target(args: argparse.Namespace, printer: Printer) -> tuple[Resolved, str]:
    """The configured database, or an embedded SQLite file when no URL is configured."""
    resolved = resolve_masked(args.namespace, args.url, args.root, printer)
    if resolved.from_option:
        return resolved, "the database given with --url"
    if resolved.url:
        return resolved, f"the database of namespace {args.namespace!r}"
    if args.sqlite_file:
        path = Path(args.sqlite_file)
    else:
        path = (Path(args.root) if args.root else Path.cwd()) / DEMO_FILE
    path = path.resolve()
    if not path.parent.is_dir():
        raise CliError(f"cannot create the SQLite file {str(path)!r}: no such folder")
    url = f"sqlite:///{path}"
    why = (
        f"an embedded SQLite file, {path} (namespace {args.namespace!r} has no url; "
        "configure one or pass --url to use your server)"
    )
    return Resolved(args.namespace, url, {"url": url}, ["demo default"], from_option=True), why


def cmd_demo(args: argparse.Namespace, printer: Printer) -> int:
    """``structum-db demo``."""
    if args.backend == "postgres":
        raise CliError(
            "the demo's ORM step needs the SQLAlchemy backend; run it without --backend postgres"
        )
    resolved, where = _target(args, printer)
    db, _ = open_database(resolved, "sqlalchemy")
    printer.out("Structum Database demo: the Quick Start, end to end")
    printer.out(f"  database: {db.url}")
    printer.out(f"  on:       {where}")
    printer.out(f"  backend:  {type(db).__name__}")
    demo = _Demo(db, printer)
    start = time.perf_counter()
    try:
        demo.step("create the users table (if it does not exist)", demo.create_table)
        demo.step("insert a user with RETURNING", demo.insert)
        demo.step(f"query: {_QUERY}", demo.query)
        demo.step("ORM session (SQLAlchemy DeclarativeBase model on demo_notes)", demo.orm)
        demo.step("health check", demo.health)
        demo.step("pool info", demo.pool)
    except _StepFailed as exc:
        printer.err(str(exc))
        return 1
    finally:
        db.shutdown()
    elapsed = (time.perf_counter() - start) * 1000
    printer.out(f"done: {demo.steps} steps in {elapsed:.0f} ms; db.shutdown() called")
    return 0
